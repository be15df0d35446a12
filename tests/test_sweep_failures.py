"""A sweep whose grid cannot run fails before its first run: non-zero exit, the cause in
one line, no run folder written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_sweep import REPO, tiny_sweep

from ablation.sweep import SweepError, run_sweep


def write_sweep(tmp_path: Path, **parameters) -> Path:
    """The tests' tiny grid over two cells with ``parameters`` changed (None removes one)."""
    path = tiny_sweep(tmp_path, ["1d-depth2", "2d-depth2"])
    config = yaml.safe_load(path.read_text())
    config["parameters"].update(parameters)
    config["parameters"] = {k: v for k, v in config["parameters"].items() if v is not None}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    return tmp_path / "runs"


def refusal(path: Path, runs: Path) -> str:
    with pytest.raises(SweepError) as info:
        run_sweep(path, runs_dir=runs, offline=True)
    assert not runs.exists()  # refused before any run started
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_misspelt_cell_key_exits_non_zero_in_one_line(tmp_path, offline):
    path = write_sweep(tmp_path, cell=None, cel={"values": ["1d-depth2"]})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ablation",
            "sweep",
            str(path),
            "--offline",
            f"--runs-dir={offline}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert result.returncode != 0
    # one line of our own (libraries may add warnings of theirs), no traceback
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no 'cell' parameter" in errors[0] and "'cel'" in errors[0]
    assert "0 finished" not in result.stdout
    assert not offline.exists()


def test_invalid_cell_value_is_refused(tmp_path, offline):
    path = write_sweep(tmp_path, cell={"values": ["1d-depth2", "1d-depht3"]})
    message = refusal(path, offline)
    assert "'1d-depht3'" in message and "<1d|2d>-depth<N>" in message


@pytest.mark.parametrize(
    ("parameter", "value", "named"),
    [("model.dpeth", 3, "dpeth"), ("model.lr", "fast", "fast")],
    ids=["misspelt-name", "wrong-type"],
)
def test_argument_the_fit_command_refuses_stops_the_sweep(
    tmp_path, offline, parameter, value, named
):
    path = write_sweep(tmp_path, **{parameter: {"value": value}})
    message = refusal(path, offline)
    assert named in message and "ablation fit" in message
