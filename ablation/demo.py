"""``make demo``: the suite end to end on the rendered dataset, on the CPU, offline.

Runs ``sweeps/demo.yaml`` through exactly the code path of ``make sweep`` (offline),
evaluates every checkpoint on the rendered test tracks with the SiSEC evaluation of
``make eval``, and prints the comparison table, also written as
``results/demo/table.csv`` beside the report of ``make report SWEEP=demo``. Two
baselines bound the table: the mixture as every estimate, and the best constant gain
(the mixture scaled per source and track by ``<s, x> / <x, x>``), which a net can learn
without separating anything, since SDR is not scale-invariant. Other data (``--root``)
gets folders of its own, named after it (``runs/demo-<data>/``,
``results/demo-<data>/``), so that it never meets the runs or results of other data.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import yaml

from ablation.constants import ALL_STEMS, SOURCES
from ablation.errors import AblationError
from ablation.files import read_json, write_text
from ablation.report.tables import own_targets
from ablation.runs import CONFIG, SUMMARY, budget_checkpoints, last_checkpoint
from ablation.tracks import dataset_stems, list_tracks
from datamodules.generated import (
    MARKER,
    GeneratedDataError,
    foreign_files,
    read_marker,
    remove_generated,
)
from datamodules.rendered import RENDERER, make_rendered_dataset, rendered_recipe

DEMO_SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"
# The demo's own data, written when missing; other data names the demo's folders.
DEMO_ROOT = "data/rendered"
BASELINES = ("mixture", "gain")
# 8 test tracks, so that a Wilcoxon test of two configurations can reach p < 0.05 (the
# smallest p of 8 paired tracks is 0.0078); 3 s each, so that the demo evaluates as
# much audio as with its former 3 test tracks of 8 s.
TOY = dict(n_train=8, n_test=8, duration=8.0, test_duration=3.0)
# The demo's data: songs rendered from MIDI with sampled instruments (datamodules.rendered).
# The folder names of the toy generator, whose datasets the demo used before.
TOY_TRACK = re.compile(r"toy\d{3} - (train|test) song \d+")
# What rendered.json holds of the demo's own dataset: TOY, rendered by this renderer.
OWN = TOY | {"renderer": RENDERER}


class DemoError(AblationError):
    """The demo cannot go on (no cell trained), phrased for the user."""


def sdr_by_target(eval_dir: Path) -> dict[str, float]:
    """Median over tracks of the median SDR over frames, per target (``summary.json``)."""
    summary = json.loads((Path(eval_dir) / "summary.json").read_text())
    return {
        target: float(metrics["SDR"])
        for target, metrics in summary.items()
        if isinstance(metrics, dict) and "SDR" in metrics
    }


def _mean(scores: dict[str, float], targets: list[str]) -> float:
    return float(np.mean([scores[t] for t in targets]))


def evaluate_runs(
    sweep_dir: Path, root: Path, jobs: int | None, runs: list[Path] | None = None
) -> list[dict]:
    """One table row per finished run of the sweep (of ``runs``, default all), with both
    baselines beside it; the baselines are evaluated into the sweep's folder
    (``baseline-<name>/``), where the report of the sweep finds them."""
    from ablation.evaluation import evaluate_checkpoint

    def evaluate(ckpt, folder, baseline=None, wandb_log=True) -> dict[str, float]:
        return sdr_by_target(
            evaluate_checkpoint(
                str(ckpt) if ckpt else None,
                str(root),
                subset="test",
                out=str(folder) if folder else None,
                baseline=baseline,
                jobs=jobs,
                wandb_log=wandb_log and ckpt is not None,
            )
        )

    floors = {b: evaluate(None, sweep_dir / f"baseline-{b}", b) for b in BASELINES}
    rows = []
    for run_dir in (p for p in runs or _run_folders(sweep_dir) if (p / SUMMARY).exists()):
        summary = read_json(run_dir / SUMMARY)
        ckpt = summary.get("best_checkpoint") or last_checkpoint(run_dir)
        scores = evaluate(ckpt, None)  # beside the checkpoint, where `make report` looks
        for fraction_ckpt in budget_checkpoints(run_dir / "checkpoints" / "last.ckpt"):
            evaluate(fraction_ckpt, None, wandb_log=False)  # the report's SDR against budget
        # the mean is over the net's sources; a derived accompaniment is shown, not averaged
        targets = own_targets(scores)
        rows.append(
            {
                "run": run_dir.name,
                "dimension": summary["dimension"],
                "depth": summary["depth"],
                "params": summary["params"],
                "steps": summary["steps"],
                "val_loss": round(summary["val_loss"], 5) if summary.get("val_loss") else None,
                **{f"sdr_{t}": round(scores[t], 2) for t in sorted(scores)},
                "sdr_mean": round(_mean(scores, targets), 2),
                "mixture_sdr_mean": round(_mean(floors["mixture"], targets), 2),
                "gain_sdr_mean": round(_mean(floors["gain"], targets), 2),
            }
        )
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).rjust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _stale_toy(root: Path) -> bool:
    """True for a rendered dataset written with other arguments than :data:`TOY` or by
    another version of the renderer, or a toy dataset (the demo's former data); False for
    the demo's own dataset and any other data."""
    recipe = rendered_recipe(root)
    if recipe is not None:
        return {k: recipe.get(k) for k in OWN} != OWN
    if read_marker(root) is not None:  # another generated dataset, e.g. the former toy data
        return True
    tracks = [p for subset in ("train", "test") for p in (root / subset).glob("*")]
    return bool(tracks) and all(TOY_TRACK.fullmatch(p.name) for p in tracks)


def _prepare_toy(root: Path, sweep_runs: Path, out: Path, own: bool = True) -> None:
    """Write the demo's rendered dataset into ``root`` unless it is there already. At the
    demo's own root (``own``), a generated dataset of other arguments (or the former toy
    data) is replaced, only when its marker proves the suite wrote every file of ``root``
    (:mod:`datamodules.generated`); the demo's results of it go too. Each removal is
    printed; nothing else is ever removed. Data at any other root is the user's, trained
    on as it is (a toy dataset too)."""
    if not root.exists() or not any(root.iterdir()):
        make_rendered_dataset(root, **TOY)
        return
    if not own or not _stale_toy(root):
        return
    foreign = foreign_files(root)
    if foreign:
        raise GeneratedDataError(
            f"{root} holds a dataset that is not the demo's {OWN}, and files the suite did "
            f"not record writing ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}), "
            f"so the demo removes nothing there: give --root a new folder (e.g. data/demo-toy), "
            f"or empty {root} yourself."
        )
    results = [p for p in _demo_results(sweep_runs, out) if p.exists()]
    print(f"the dataset in {root} is not the demo's {OWN}: replacing it. Removing:")
    print(f"  the {len((read_marker(root) or {}).get('files', []))} files its marker lists "
          f"({root / MARKER})")  # fmt: skip
    for path in results:
        print(f"  {path} (the demo's results of the older dataset)")
    remove_generated(root)
    for path in results:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    make_rendered_dataset(root, **TOY)


def _demo_results(sweep_runs: Path, out: Path) -> list[Path]:
    """What the demo writes of the data: its sweep's run folders (those with a
    ``config.yaml``) and its baselines' evaluations, and in ``out`` the table, the report's
    text, page and listening excerpts (the report's other files are all written again),
    and the baselines and report the demo wrote there before; nothing else."""
    baselines = [sweep_runs / f"baseline-{b}" for b in BASELINES]  # as evaluate_runs writes
    written = ("table.csv", "report.md", "index.html", "listen", "baselines", "report")
    return [*_run_folders(sweep_runs), *baselines, *(out / name for name in written)]


def _run_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's run folders: those with a ``config.yaml`` (an evaluation folder beside
    them, such as a baseline's, has a ``summary.json`` too)."""
    return [p for p in sorted(sweep_dir.glob("*")) if (p / CONFIG).is_file()]


def _data_args(root: Path) -> list[str]:
    """The demo's data arguments: the root, and every stem as a target when the data's
    stems are not MUSDB18's (``sweeps/demo_base.yaml`` asks for MUSDB18's four)."""
    stems = dataset_stems(list_tracks(root, "train"))
    return [f"--data.root={root}", *([f"--data.targets={ALL_STEMS}"] if stems != SOURCES else [])]


def report_section(markdown: str, heading: str) -> str:
    """A section of ``report.md``: its heading up to the next heading or plot."""
    start = markdown.index(heading)
    ends = [markdown.find(mark, start + 3) for mark in ("\n## ", "\n![")]
    return markdown[start : min([e for e in ends if e > 0] or [len(markdown)])].strip()


def demo_name(root: str | Path) -> str:
    """The name of the demo's sweep, runs and results on ``root``: ``demo`` on its own data,
    else ``demo-<data folder>``, so that other data never meets their runs or results."""
    if Path(root).resolve() == Path(DEMO_ROOT).resolve():
        return "demo"
    return "demo-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", Path(root).resolve().name) or "data")


def demo_sweep(name: str, runs_dir: str | Path) -> Path:
    """The demo's sweep YAML under ``name``: ``sweeps/demo.yaml`` itself for ``demo``, else
    a copy named ``name`` beside its runs (``runs/<name>/sweep.yaml``, which the runner keeps
    there anyway)."""
    from ablation.runs import SWEEP_COPY
    from ablation.sweep import load_sweep

    config = load_sweep(DEMO_SWEEP)
    if config["name"] == name:
        return DEMO_SWEEP
    path = Path(runs_dir) / name / SWEEP_COPY
    path.parent.mkdir(parents=True, exist_ok=True)
    own = f"--run.sweep={config['name']}"
    command = [f"--run.sweep={name}" if c == own else c for c in config["command"]]
    copy = {**config, "name": name, "command": command}
    write_text(path, yaml.safe_dump(copy, sort_keys=False))
    return path


def run_demo(
    root: str = DEMO_ROOT,
    runs_dir: str = "runs",
    out: str | None = None,
    jobs: int | None = None,
) -> list[dict]:
    """Rendered data (generated once), the demo sweep, evaluation, table and report, in
    ``runs/<name>/`` and ``out`` (default ``results/<name>/``, where ``make report
    SWEEP=<name>`` writes the same report), ``<name>`` from :func:`demo_name`. Returns the
    rows of the table."""
    from ablation.sweep import run_offline

    start = time.time()
    root_path, name = Path(root), demo_name(root)
    out = out or f"results/{name}"
    sweep_dir = Path(runs_dir) / name
    _prepare_toy(root_path, sweep_dir, Path(out), own=name == "demo")
    sweep = demo_sweep(name, runs_dir)
    outcome = run_offline(sweep, runs_dir=runs_dir, extra_args=_data_args(root_path))
    # a failed cell, e.g. one refused as trained on other data, is neither scored nor shown
    trained = sorted(sweep_dir / run for run in [*outcome.finished, *outcome.skipped])
    if not trained:
        raise DemoError(
            f"no cell of {name} trained on {root} (failed: {', '.join(outcome.failed)}): "
            f"expected at least one to evaluate; the lines above say why each failed. Fix "
            f"that and run the demo again (cells that finished are kept)."
        )
    rows = evaluate_runs(sweep_dir, root_path, jobs, trained)
    write_table(rows, Path(out) / "table.csv")
    from ablation.report import build_report

    baselines = [sweep_dir / f"baseline-{b}" for b in BASELINES]
    report = build_report([*trained, *baselines], Path(out), name, wandb_log=False)
    print("\nSDR in dB (museval v4: median over 1 s frames, then over the rendered test tracks);")
    print("sdr_mean beats gain_sdr_mean only if a net separates, not just turns the volume down:\n")
    print(format_table(rows))
    markdown = report.read_text()
    for heading in ("## Significance", "## The ranking at every budget"):
        print(f"\n{report_section(markdown, heading)}")
    print(
        f"\nwritten to {out}/table.csv, report in {report} (open {out}/index.html); runs in "
        f"{sweep_dir}/; "
        f"{time.time() - start:.0f} s in all"
    )
    if outcome.failed:
        print(f"failed cells: {outcome.failed}")
    return rows
