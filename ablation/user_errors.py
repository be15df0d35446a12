"""User errors as one line: how every subcommand of the ``ablation`` command ends on a
mistake the user can fix (a bad argument, data or checkpoint; a full disk), in the words
of the command they typed. ``ABLATION_DEBUG=1`` shows the traceback instead."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ablation.errors import AblationError

DEBUG_ENV = "ABLATION_DEBUG"


# The library's messages name the flags of `ablation fit` (--data.root) and of `ablation
# eval` (--ckpt); each command says them in its own words, and under make (which sets
# MAKELEVEL for its recipes) as the Makefile's variables.
MAKE_VARIABLES = {"--data.root": "ROOT", "--root": "ROOT", "--ckpt": "CKPT"}
LIBRARY_FLAGS = {"--data.root": "--data.root", "--ckpt": "--ckpt"}


def users_words(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with the library's flags replaced by ``flags``, the names the typed
    command has for them (by :data:`MAKE_VARIABLES` under make)."""
    for flag, own in flags.items():
        own = MAKE_VARIABLES.get(own, own) if os.environ.get("MAKELEVEL") else own
        message = re.sub(rf"{re.escape(flag)}(?![\w.])", own, message)
    return message


@contextmanager
def one_line_errors(
    *kinds: type[Exception], flags: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Turn the user errors (:class:`AblationError`, and ``kinds``) into ``error: <message>``
    and exit code 1, naming ``flags`` (library flag -> the command's own) as the user
    typed them (:func:`users_words`)."""
    try:
        yield
    except (AblationError, *kinds) as err:
        if os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
            raise
        message = users_words(_root_cause(err), {**LIBRARY_FLAGS, **(flags or {})})
        code = getattr(err, "exit_code", None)  # one a caller acts on (ablation.run_lock)
        if code is not None:
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(code) from None
        raise SystemExit(f"error: {message}") from None
    except (OSError, RuntimeError) as err:
        message = storage_error(err)
        if message is None or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
            raise
        raise SystemExit(f"error: {message}") from None


# A full disk, a quota, a read-only or forbidden folder: the user's to fix, not a bug.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# What torch.save says when its writes fail (it does not keep the OSError).
TORCH_WRITE_FAILED = ("file write failed", "PytorchStreamWriter failed")


def storage_error(err: BaseException) -> str | None:
    """One line for an error of the storage (anywhere in ``err``'s chain); None otherwise."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
            where = f" writing {seen.filename}" if seen.filename else ""
            return (
                f"{seen.strerror or os.strerror(seen.errno)}{where}: expected room and write "
                f"access in the runs folder (--run.dir, --runs-dir), the cache ($ABLATION_CACHE) "
                f"and the output folder (--out). Free space or fix the permissions and run the "
                f"command again: files written before stay whole (writes are atomic) and an "
                f"interrupted run resumes from its last.ckpt."
            )
        if isinstance(seen, RuntimeError) and any(m in str(seen) for m in TORCH_WRITE_FAILED):
            return (
                "a checkpoint could not be written (torch.save: file write failed; a full disk?): "
                "free space in the runs folder and run the command again: the previous "
                "last.ckpt stays whole (checkpoints are written aside, then renamed) and the run "
                "resumes from it."
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _root_cause(err: BaseException) -> str:
    # jsonargparse wraps a class's ValueError in a report of every subtype it tried.
    while isinstance(err.__cause__, Exception):
        err = err.__cause__
    return " ".join(str(err).split())
