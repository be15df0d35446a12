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


@pytest.mark.parametrize(
    "sweep, name",
    [("demo", "demo"), ("sweeps/demo.yaml", "demo"), ("demo-my.data", "demo-my.data")],
)
def test_a_report_takes_the_sweep_by_name_or_path(tmp_path, reported, sweep, name):
    (tmp_path / name / "1d-depth2-seed0").mkdir(parents=True)
    main(["report", "--sweep", sweep, f"--runs-dir={tmp_path}", "--no-wandb"])
    assert reported["out"] == Path("results") / name
    assert reported["folders"] == [tmp_path / name / "1d-depth2-seed0"]


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

    seen: dict = {"outcome": ablation.sweep.Outcome(finished=["1d-depth2-seed0"])}

    def trained(path, runs_dir, extra_args):
        seen.update(sweep=load_sweep(path), extra_args=extra_args)
        return seen["outcome"]

    def evaluated(sweep_dir, root, jobs, runs):
        seen.update(evaluated=sweep_dir, evaluated_runs=runs)
        (sweep_dir / "baseline-mixture").mkdir(parents=True, exist_ok=True)
        return [{"run": run.name, "sdr_mean": 1.0} for run in runs]

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


def test_the_demo_table_has_a_row_per_run_not_per_baseline_beside_them(tmp_path, monkeypatch):
    """The baselines' evaluations sit in the sweep's folder, with a summary.json of their
    own: they are the table's bounds, not runs."""
    import json

    import ablation.evaluation
    from ablation.demo import evaluate_runs

    def evaluated(ckpt, root, subset, out, baseline, jobs, wandb_log, progress=True):
        folder = Path(out or Path(ckpt).with_name("eval"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "evaluation.json").write_text("{}")
        (folder / "summary.json").write_text(json.dumps({"vocals": {"SDR": 1.0}}))
        return folder

    monkeypatch.setattr(ablation.evaluation, "evaluate_checkpoint", evaluated)
    run = tmp_path / "demo-mine" / "1d-depth2-seed0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    summary = {"dimension": "1d", "depth": 2, "params": 10, "steps": 5}
    (run / "summary.json").write_text(json.dumps(summary))
    rows = evaluate_runs(tmp_path / "demo-mine", tmp_path / "data", jobs=1)
    assert [row["run"] for row in rows] == ["1d-depth2-seed0"]
    assert (tmp_path / "demo-mine" / "baseline-gain" / "summary.json").is_file()


def test_the_demo_trains_on_a_generated_dataset_given_as_root_as_it_is(tmp_path, demo_steps):
    """The demo rewrites stale generated data only at its own root (data/rendered); a toy
    dataset the user gives as ROOT is what they want trained on."""
    from datamodules import make_toy_dataset

    mine = make_toy_dataset(tmp_path / "mine", n_train=1, n_test=1, duration=0.5, progress=False)
    before = sorted(p.relative_to(mine) for p in mine.rglob("*"))
    main(["demo", "--root", str(mine)])
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    assert (mine / "toy.json").is_file() and not (mine / "rendered.json").exists()
    assert f"--data.root={mine}" in demo_steps["extra_args"]


def test_the_demo_scores_and_reports_no_cell_that_failed(tmp_path, demo_steps):
    """A cell refused (e.g. trained on other data in the same folder) keeps its old
    checkpoint: the demo must not score it on this data nor show it."""
    from test_stems import write_dataset

    mine = write_dataset(tmp_path / "mine", n_train=1, n_test=1, seconds=0.2)
    outcome = demo_steps["outcome"]
    outcome.failed.append("2d-depth2-seed0")
    main(["demo", "--root", str(mine)])
    assert demo_steps["evaluated_runs"] == [Path("runs/demo-mine/1d-depth2-seed0")]
    assert Path("runs/demo-mine/2d-depth2-seed0") not in demo_steps["folders"]
    outcome.finished.clear()
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--root", str(mine)])
    assert str(exit_info.value.code).startswith("error: no cell of demo-mine trained on")
