"""Issue 24, items 4 and 5: progress where people wait, and mistakes caught early in the
words of the command the user typed."""

from __future__ import annotations

import subprocess
import sys

from test_resume_and_errors import fit_args, fit_env  # noqa: F401 (a fixture)
from test_sweep import REPO

from ablation.cli import main

SUBCOMMANDS = ("fit", "validate", "test", "sweep", "eval", "report", "demo", "separate",
               "toy-data", "render-data", "bench")  # fmt: skip


# ---- item 5: `ablation --help` says what each subcommand does ---------------------------------
def test_ablation_help_gives_one_line_per_subcommand(capsys):
    main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    for name in SUBCOMMANDS:
        described = [line for line in lines if line.split()[:1] == [name]]
        assert len(described) == 1 and len(described[0].split()) > 3, (name, lines)


# ---- item 4: commands that train nothing start without the training stack ----------------------
PROBE = """
import sys
from ablation.cli import main
for argv in ({commands}):
    try:
        main(argv)
    except SystemExit:
        pass
loaded = [name for name in ("torch", "lightning") if name in sys.modules]
print("LOADED", loaded, file=sys.stderr)
"""


def test_help_and_report_start_without_torch_or_lightning():
    commands = [["--help"], ["eval", "--help"], ["sweep", "--help"], ["report", "--help"]]
    probe = PROBE.format(commands=", ".join(map(repr, commands)))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "LOADED []" in done.stderr, done.stderr


def test_an_evaluation_in_a_log_says_how_far_it_is(toy_root, tmp_path, capsys):
    from ablation.evaluation import evaluate_checkpoint

    evaluate_checkpoint(None, str(toy_root), "test", str(tmp_path / "mixture"), "mixture",
                        jobs=1, wandb_log=False)  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert [
        line
        for line in lines
        if line.startswith("evaluating baseline mixture on test: 1/1 tracks scored")
    ], lines
