"""Issue 21, item 8: every user error below ends its command with one line saying what was
expected, what was found and what to do (on main: tracebacks, a division by zero, a 299 TB
allocation, or a wrong input taken as given)."""

from __future__ import annotations

import errno
import subprocess

import pytest
import yaml
from test_resume_and_errors import fit_args, fit_env  # noqa: F401 (a fixture)
from test_sweep import REPO, tiny_sweep

import ablation.sweep
from ablation.cli import main


def one_line(argv: list[str]) -> str:
    """The message a command ends with; fails unless it is one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message.strip(), message
    return message


# ---- damaged checkpoints ---------------------------------------------------------------------
def test_a_damaged_last_ckpt_says_what_to_do(fit_env, tmp_path):  # noqa: F811
    last = tmp_path / "runs" / "adhoc" / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")  # cut short by a full disk, say; on main: [Errno 22] Invalid argument
    message = one_line(fit_args(tmp_path, fit_env))
    assert "last.ckpt (0 bytes) is damaged" in message and "delete it" in message


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short", b"\x80\x02 not torch"])
def test_a_damaged_checkpoint_file_is_named_in_one_line(toy_root, tmp_path, content):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(content)
    message = one_line(["eval", "--ckpt", str(ckpt), "--root", str(toy_root), "--no-wandb"])
    assert f"checkpoint {ckpt} ({len(content)} bytes) is damaged" in message
    assert "mmap can only be used" not in message and "Errno" not in message


# ---- full disk, read-only folders --------------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "runs/adhoc/run/metrics.csv"),
        OSError(errno.EROFS, "Read-only file system", "runs/adhoc/run"),
        PermissionError(errno.EACCES, "Permission denied", "runs/adhoc/run"),
        RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                     "writing file data/0: file write failed"),
    ],
    ids=["full", "read-only", "forbidden", "torch-save"],
)  # fmt: skip
def test_storage_errors_of_a_run_are_one_line(fit_env, tmp_path, monkeypatch, error):  # noqa: F811
    import lightning_modules.lightning_cli as lightning_cli

    def fail(run_dir):
        raise error

    monkeypatch.setattr(lightning_cli, "remove_leftovers", fail)
    message = one_line(fit_args(tmp_path, fit_env))
    assert "run the command again" in message


def test_a_full_disk_under_evaluation_is_one_line(tmp_path, monkeypatch):
    import ablation.evaluation

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "eval" / "x.json"))

    monkeypatch.setattr(ablation.evaluation, "evaluate_checkpoint", fail)
    message = one_line(["eval", "--baseline=mixture", "--root", str(tmp_path), "--no-wandb"])
    assert "No space left on device writing" in message and "--out" in message


# ---- sweep files and flags --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, found",
    [("name: x\nparameters: [1,\n", "not valid YAML"), ("just a string\n", "holds a str"),
     ("", "holds nothing")],
    ids=["syntax", "string", "empty"],
)  # fmt: skip
def test_a_sweep_file_that_is_not_a_sweep_is_one_line(tmp_path, text, found):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert found in one_line(["sweep", str(path), "--offline", f"--runs-dir={tmp_path}"])


@pytest.fixture
def no_training(monkeypatch):
    def trained(*args, **kwargs):
        raise AssertionError("a cell was trained")

    monkeypatch.setattr(ablation.sweep, "run_offline", trained)


@pytest.mark.parametrize(
    "flag, found",
    [("--count=-1", "--count must be 1 or more"), ("--count=0", "--count must be 1 or more"),
     ("--gpus=0,0", "more than once"), ("--gpus=7", "GPU 7")],
)  # fmt: skip
def test_sweep_flags_are_checked_before_a_cell_runs(tmp_path, no_training, flag, found):
    path = tiny_sweep(tmp_path, ["1d-depth2"])
    assert found in one_line(["sweep", str(path), "--offline", f"--runs-dir={tmp_path}", flag])


@pytest.mark.parametrize(
    "flag, found",
    [("--sbatch=--qos=long\nrm -rf ~", "line break"), ("--time=abc", "not a Slurm time limit"),
     ("--nodes=0", "--nodes must be 1 or more"), ("--max-parallel=-3", "--max-parallel must")],
)  # fmt: skip
def test_slurm_flags_are_checked_before_a_script_is_written(tmp_path, flag, found):
    path = tiny_sweep(tmp_path, ["1d-depth2"])
    argv = ["sweep", str(path), "--offline", "--slurm", "--dry-run", f"--runs-dir={tmp_path}"]
    assert found in one_line([*argv, flag])
    assert not (tmp_path / "tiny").exists()  # nothing written


def test_valid_slurm_times_pass():
    from ablation.slurm import SlurmOptions

    for time in ("30", "30:00", "04:00:00", "2-00", "2-12:30", "1-00:00:00", "UNLIMITED"):
        SlurmOptions(time=time).check()


# ---- report, sizes, data arguments -------------------------------------------------------------
def test_a_report_on_runs_none_of_which_finished_is_one_line(tmp_path):
    run = tmp_path / "runs" / "tiny" / "1d-depth2-seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"seed_everything": 0}))
    (run / "metrics.csv").write_text("epoch,step,train/loss\n0,0,0.5\n")
    message = one_line(["report", "--runs", str(run), "--out", str(tmp_path / "r"), "--no-wandb"])
    assert "has finished" in message and str(run) in message


@pytest.mark.parametrize(
    "change, found",
    [("--cell=2d-depth40", "expected depth 5 at most"), ("--cell=1d-depth40", "2**40 samples"),
     ("--cell=2d-depth3 --model.filters=100000", "parameters"),
     ("--cell=1d-depth13 --data.batch_size=1000000", "GiB"),
     ("--data.sample_rate=0", "data.sample_rate must be"),
     ("--data.batch_size=0", "data.batch_size must be"),
     ("--data.segments_per_track=0", "data.segments_per_track must be")],
)  # fmt: skip
def test_impossible_sizes_are_refused_before_allocation(fit_env, tmp_path, change, found):  # noqa: F811
    message = one_line([*fit_args(tmp_path, fit_env), *change.split()])
    assert found in message


def test_toy_data_of_no_duration_is_one_line(tmp_path):
    message = one_line(["toy-data", str(tmp_path / "toy"), "--duration=0"])
    assert "durations > 0" in message and not (tmp_path / "toy").exists()


def test_make_eval_quotes_a_checkpoint_path_with_spaces(tmp_path):
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "eval", "CKPT=my runs/a b/last.ckpt",
         "ROOT=/data/mus db", "BIN=/bin"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    assert "--ckpt 'my runs/a b/last.ckpt'" in shown and "--root '/data/mus db'" in shown
