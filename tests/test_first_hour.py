"""Issue 24, items 4 and 5: progress where people wait, and mistakes caught early in the
words of the command the user typed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_resume_and_errors import fit_args, fit_env  # noqa: F401 (a fixture)
from test_sweep import REPO
from test_user_errors import one_line

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


# ---- item 4: a training run says how far it is, a few lines a run ------------------------------
def test_training_prints_a_line_per_tenth_of_its_budget(fit_env, tmp_path, capsys):  # noqa: F811
    # a step budget: how many tenths a time budget of a few steps shows depends on the machine
    steps = ("--run.budget_unit=steps", "--run.budget_steps=4")
    main(fit_args(tmp_path, fit_env, *steps, "--trainer.enable_progress_bar=true"))
    captured = capsys.readouterr()
    # not a terminal: Lightning's bar, a line redrawn at every batch, is left out of the log
    assert "it/s" not in captured.out + captured.err
    lines = [line for line in captured.out.splitlines() if "of the budget" in line]
    assert [line.split(", loss ")[0] for line in lines] == [
        f"run: {25 * k}% of the budget ({k} of 4 steps), step {k}" for k in (1, 2, 3, 4)
    ]
    assert all(", loss " in line and "loss n/a" not in line for line in lines), lines


def test_on_a_terminal_the_line_is_redrawn_between_those_that_stay(
    fit_env,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    import lightning_modules.progress as progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the demo's config: no Lightning bar
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)  # redraw at every step
    monkeypatch.setattr(progress, "LINES", 2)  # lines that stay at 50% and 100%
    main(fit_args(tmp_path, fit_env, "--run.budget_unit=steps", "--run.budget_steps=4"))
    out = capsys.readouterr().out
    drawn = [part.split(", loss ")[0] for part in out.split("\r\033[K")[1:]]
    assert drawn == [
        "run: 25% of the budget (1 of 4 steps), step 1",
        "run: 50% of the budget (2 of 4 steps), step 2",
        "run: 75% of the budget (3 of 4 steps), step 3",
        "run: 100% of the budget (4 of 4 steps), step 4",
    ]
    kept = [part.split("\n")[0] for part in out.split("\r\033[K")[1:] if "\n" in part]
    assert [line.split(", loss ")[0][-6:] for line in kept] == ["step 2", "step 4"]


# ---- item 5: mistakes caught early ----------------------------------------------------------
def test_a_run_without_a_budget_is_warned_about(fit_env, tmp_path, monkeypatch, caplog):  # noqa: F811
    import lightning_modules.lightning_cli as lightning_cli

    monkeypatch.setattr(lightning_cli.AblationCLI, "fit", lambda *args, **kwargs: None)
    main(fit_args(tmp_path, fit_env, "--trainer.max_time=null"))
    warned = [r.getMessage() for r in caplog.records if "no training budget" in r.getMessage()]
    assert len(warned) == 1 and "--trainer.max_time=" in warned[0], caplog.text


def test_fit_help_documents_cell(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "--cell CELL" in capsys.readouterr().out


@pytest.mark.parametrize("make, flag", [(False, "--root="), (True, "ROOT=")])
def test_a_wrong_root_is_named_as_the_typed_command_names_it(tmp_path, monkeypatch, make, flag):
    # `make eval` sets MAKELEVEL for its recipe: its users pass ROOT=, not --data.root=
    if make:
        monkeypatch.setenv("MAKELEVEL", "1")
    else:
        monkeypatch.delenv("MAKELEVEL", raising=False)
    argv = ["eval", "--baseline=mixture", f"--root={tmp_path / 'nowhere'}", "--no-wandb"]
    message = one_line(argv)
    assert f"Pass {flag}/path/to/musdb18" in message and "--data.root" not in message


def test_a_run_folder_passed_as_a_checkpoint_names_its_checkpoints(toy_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MAKELEVEL", raising=False)  # under make the flags read CKPT=...
    run = tmp_path / "runs" / "demo" / "1d-depth3-seed0"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("last.ckpt", "best-epoch0-step8.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    message = one_line(["eval", f"--ckpt={run}", f"--root={toy_root}", "--no-wandb"])
    assert f"{run} is a folder, not a checkpoint" in message
    assert f"--ckpt={run}/checkpoints/best-epoch0-step8.ckpt or" in message
    assert f"--ckpt={run}/checkpoints/last.ckpt" in message


def test_a_file_that_is_no_checkpoint_is_not_called_damaged(toy_root, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("seed_everything: 0\n")
    message = one_line(["eval", f"--ckpt={config}", f"--root={toy_root}", "--no-wandb"])
    assert f"{config} is not a readable PyTorch checkpoint but another kind of file" in message
    assert "(it begins 'seed_everything: 0'" in message
    assert "damaged" not in message and "mmap" not in message


@pytest.mark.parametrize(
    "cell, held, largest",
    [("2d-depth6", "43 frames and 513 bins", 5), ("1d-depth14", "11025 samples", 13)],
)
def test_a_depth_deeper_than_the_segment_names_the_largest(fit_env, tmp_path, cell, held, largest):  # noqa: F811
    # the demo's data: 1 s segments at 11025 Hz (2-D: hop 256, 513 bins)
    message = one_line(fit_args(tmp_path, fit_env, f"--cell={cell}"))
    assert f"a 1 s segment at 11025 Hz holds {held}: expected depth {largest} at most" in message
    assert not (tmp_path / "runs" / "adhoc" / "run" / "checkpoints").exists()


def test_make_test_names_its_slowest_tests():
    import tomllib

    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--durations=15" in addopts["addopts"].split()


def test_a_cell_in_a_config_file_is_refused_not_ignored(fit_env, tmp_path):  # noqa: F811
    config = tmp_path / "cell.yaml"
    config.write_text("cell: 2d-depth3\n")
    message = one_line(fit_args(tmp_path, fit_env, f"--config={config}"))
    assert "cell: 2d-depth3" in message and "--cell is read on the command line only" in message
