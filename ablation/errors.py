"""The base of every error the suite raises for a user to read and act on.

Each message says what was expected, what was found and what to do; the CLI
prints it as one line (``ABLATION_DEBUG=1`` shows the traceback).
"""


class AblationError(ValueError):
    """A problem with the user's input or files, phrased for the user."""
