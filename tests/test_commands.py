"""Issue 24, items 1-3: commands that mean one thing (``SWEEP`` a name or a path for every
target, a report of chosen runs in its own folder, a demo on other data in its own
folders) and an evaluation that tells its result."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_sweep import REPO

import ablation.report
import ablation.sweep
from ablation.cli import main


def make_line(*variables: str) -> str:
    """The command ``make`` would run for a target and variables (``make -n``)."""
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", *variables, "BIN=/bin"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shown.stdout.splitlines()[-1]


@pytest.fixture
def reported(monkeypatch) -> dict:
    """What ``ablation report`` would build: its folders, output folder and name."""
    seen: dict = {}

    def build(folders, out, name, wandb_log=True):
        seen.update(folders=folders, out=out, name=name, wandb_log=wandb_log)
        return out / "report.md"

    monkeypatch.setattr(ablation.report, "build_report", build)
    return seen


# ---- item 1: SWEEP and RUNS -------------------------------------------------------------------
def test_make_report_of_chosen_runs_passes_no_sweep():
    assert "--sweep" not in make_line("report", "RUNS=runs/a runs/b")


def test_a_report_of_chosen_runs_goes_to_a_folder_named_after_them(tmp_path, reported):
    runs = [tmp_path / "runs" / "a", tmp_path / "runs" / "b"]
    main(["report", "--runs", *map(str, runs), "--no-wandb"])
    assert reported["out"] == Path("results/runs-a+b") and reported["name"] == "runs-a+b"
    assert reported["folders"] == runs


def test_many_chosen_runs_get_a_short_folder_that_tells_sets_apart(tmp_path):
    from ablation.report import report_name

    many = [tmp_path / f"2d-depth{d}-seed0" for d in range(12)]
    name = report_name(None, many)
    assert name.startswith("runs-2d-depth0-seed0+2d-depth1-seed0+10more-") and len(name) <= 64
    assert report_name(None, many[:-1]) != name  # another set, another folder


@pytest.mark.parametrize("sweep", ["demo", "sweeps/demo.yaml"])
def test_a_report_takes_the_sweep_by_name_or_path(tmp_path, reported, sweep):
    (tmp_path / "demo" / "1d-depth2-seed0").mkdir(parents=True)
    main(["report", "--sweep", sweep, f"--runs-dir={tmp_path}", "--no-wandb"])
    assert reported["out"] == Path("results/demo")
    assert reported["folders"] == [tmp_path / "demo" / "1d-depth2-seed0"]


def test_make_sweep_takes_a_sweep_by_name(tmp_path, monkeypatch):
    given = []

    def trained(path, *args, **kwargs):
        given.append(path)
        return ablation.sweep.Outcome()

    monkeypatch.setattr(ablation.sweep, "run_offline", trained)
    with pytest.raises(SystemExit):
        main(["sweep", "demo", "--offline", f"--runs-dir={tmp_path}"])
    assert Path(given[0]).resolve() == REPO / "sweeps" / "demo.yaml"


def test_an_unknown_sweep_name_lists_the_sweeps(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "dmeo", "--offline", f"--runs-dir={tmp_path}"])
    message = str(exit_info.value.code)
    assert message.startswith("error: sweep dmeo not found") and "depth_dimension" in message


@pytest.mark.parametrize("target", ["eval", "report", "sweep"])
def test_wandb_can_be_turned_off_from_make(target):
    off = {"eval": "--no-wandb", "report": "--no-wandb", "sweep": "--offline"}[target]
    assert off in make_line(target, "CKPT=x.ckpt", "WANDB=0")
    assert off not in make_line(target, "CKPT=x.ckpt")


# ---- item 2: the demo on other data ------------------------------------------------------------
@pytest.fixture
def demo_steps(monkeypatch, tmp_path) -> dict:
    """What ``make demo`` would train, evaluate and report: the sweep YAML it runs, the
    sweep folder it evaluates and the report's folders, output folder and name."""
    import ablation.demo
    from ablation.sweep import load_sweep

    seen: dict = {}

    def trained(path, runs_dir, extra_args):
        seen.update(sweep=load_sweep(path), extra_args=extra_args)
        return ablation.sweep.Outcome()

    def evaluated(sweep_dir, root, jobs):
        seen["evaluated"] = sweep_dir
        (sweep_dir / "1d-depth2-seed0").mkdir(parents=True, exist_ok=True)
        (sweep_dir / "baseline-mixture").mkdir(exist_ok=True)
        return [{"run": "1d-depth2-seed0", "sdr_mean": 1.0}]

    def reported(folders, out, name, wandb_log=True):
        seen.update(folders=folders, out=out, name=name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("## Significance\n\nx\n\n## The ranking at every budget\n")
        return out / "report.md"

    monkeypatch.setattr(ablation.sweep, "run_offline", trained)
    monkeypatch.setattr(ablation.demo, "evaluate_runs", evaluated)
    monkeypatch.setattr(ablation.report, "build_report", reported)
    monkeypatch.chdir(tmp_path)
    return seen


def test_the_demo_on_other_data_trains_evaluates_and_reports_in_its_own_folders(
    tmp_path, demo_steps
):
    from test_stems import write_dataset

    mine = write_dataset(tmp_path / "data" / "mine", n_train=1, n_test=1, seconds=0.2)
    main(["demo", "--root", str(mine)])
    assert demo_steps["sweep"]["name"] == "demo-mine"
    assert "--run.sweep=demo-mine" in demo_steps["sweep"]["command"]
    assert f"--data.root={mine}" in demo_steps["extra_args"]
    assert demo_steps["evaluated"] == Path("runs/demo-mine")
    assert demo_steps["out"] == Path("results/demo-mine") and demo_steps["name"] == "demo-mine"
    # one report per sweep: where `make report SWEEP=demo-mine` writes it, baselines included
    assert Path("runs/demo-mine/baseline-mixture") in demo_steps["folders"]
    assert (tmp_path / "results" / "demo-mine" / "table.csv").is_file()
    assert not any((tmp_path / folder / "demo").exists() for folder in ("runs", "results"))


def test_the_demo_on_its_own_data_keeps_its_names():
    from ablation.demo import DEMO_ROOT, demo_name

    assert demo_name(DEMO_ROOT) == "demo" and demo_name(Path(DEMO_ROOT).resolve()) == "demo"
    assert demo_name("data/mine") == "demo-mine" and demo_name("/x/my data") == "demo-my-data"
