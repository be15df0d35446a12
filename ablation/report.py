"""One comparison table, significance tests and plots for the runs of a sweep.

A run folder (``runs/<sweep>/<run>/``, see :mod:`ablation.runs`) is read
defensively: whatever of these it has is used, and what is missing shows as an
empty cell.

- ``config.yaml``: the run's configuration (its seed and what the sweep varied);
- ``checkpoints/last.ckpt`` (else any ``.ckpt``): the net, rebuilt from its
  ``net_config`` to count parameters, receptive field and MACs; epochs and steps;
- ``summary.json``, written when training ended inside its budget: epochs and
  steps done, training wall time, peak GPU memory (preferred to the checkpoint's);
- ``metrics.csv`` (the CSV log): the validation loss curve, its lowest value;
- evaluation folders of :mod:`ablation.evaluate` below the run (found by their
  ``evaluation.json``; ``best*`` checkpoints preferred, then ``last``): test SDR
  and MSE per source, per-track SDR. Baseline evaluations found there, or
  passed directly as folders, become the bounds at the bottom of the table.

Runs that differ only in their seed form one configuration, named by dimension,
depth and whatever else the runs' configs vary; configurations are aggregated
(mean and standard deviation over seeds) and compared pairwise with the
Wilcoxon signed-rank test on per-track SDR, as SiSEC 2018 did.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ablation.constants import EVALUATION_MANIFEST as MANIFEST
from ablation.constants import SAMPLE_RATE, SOURCES, VAL_LOSS, WANDB_PROJECT
from ablation.errors import AblationError
from ablation.fairness import fairness_problems, fairness_table, read_fairness
from ablation.runs import SUMMARY
from ablation.tables import markdown_table

PEAK_GPU_MEM = "perf/peak_gpu_mem_gb"
TARGET_ORDER = (*SOURCES, "accompaniment")
# Config keys that never make two runs different configurations: places, names, logging.
_NOISE = (
    "sweep",
    "dir",
    "path",
    "root",
    "logger",
    "callbacks",
    "name",
    "version",
    "project",
    "entity",
    "group",
    "tags",
    "num_workers",
    "devices",
    "accelerator",
    "ckpt",
    "id",
)
# Preferred evaluation of a run, by the checkpoint file name it starts with.
_CHECKPOINT_PREFERENCE = ("best", "last")


class ReportError(AblationError):
    """A problem with the runs given to the report, phrased for the user."""


@dataclass
class Evaluation:
    """One evaluation folder: its manifest, summary and per-track SDR."""

    folder: Path
    manifest: dict
    summary: dict[str, dict[str, float | None]]
    track_sdr: pd.DataFrame  # index track, columns target

    @property
    def label(self) -> str:
        """``baseline <name>`` or the checkpoint's file stem."""
        if self.manifest.get("baseline"):
            return f"baseline {self.manifest['baseline']}"
        return Path(self.manifest.get("checkpoint") or self.folder.name).stem


@dataclass
class Run:
    """What the report knows of one run; None where the run folder does not say."""

    name: str
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    seed: Any = None
    dimension: str | None = None
    depth: int | None = None
    preset: str | None = None
    parameters: int | None = None
    receptive_field_s: float | None = None
    macs_per_second: float | None = None
    segment_s: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    steps: int | None = None
    wall_time_s: float | None = None
    peak_gpu_mem_gb: float | None = None
    val_loss: float | None = None
    val_curve: pd.DataFrame | None = None
    evaluation: Evaluation | None = None
    configuration: str = ""

    @property
    def training_macs(self) -> float | None:
        """Steps x forward MACs of one training batch (``macs_per_second`` x segment x batch)."""
        if None in (self.steps, self.macs_per_second, self.segment_s):
            return None
        return self.steps * self.macs_per_second * self.segment_s * (self.batch_size or 1)


# ---------------------------------------------------------------- reading


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b.c": leaf}``; lists are leaves (as strings when nested)."""
    if not isinstance(tree, dict):
        return {prefix: tree if not isinstance(tree, list | dict) else json.dumps(tree)}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        warnings.warn(f"{path} skipped: {error}", stacklevel=2)
        return None


def read_evaluation(folder: Path) -> Evaluation | None:
    """An evaluation folder of :func:`ablation.evaluate.evaluate_checkpoint`, if complete."""
    manifest = _read_json(folder / MANIFEST)
    summary = _read_json(folder / "summary.json")
    if manifest is None or summary is None or not (folder / "tracks.csv").exists():
        return None
    tracks = pd.read_csv(folder / "tracks.csv")
    track_sdr = tracks.pivot(index="track", columns="target", values="SDR")
    return Evaluation(folder, manifest, summary, track_sdr)


def find_evaluations(folder: Path) -> list[Evaluation]:
    """Every complete evaluation folder at or below ``folder``, sorted by path."""
    found = [read_evaluation(p.parent) for p in sorted(folder.rglob(MANIFEST))]
    return [e for e in found if e is not None]


def _pick_evaluation(evaluations: list[Evaluation]) -> Evaluation | None:
    models = [e for e in evaluations if not e.manifest.get("baseline")]
    models = [e for e in models if e.manifest.get("subset") == "test"] or models
    for prefix in _CHECKPOINT_PREFERENCE:
        for evaluation in models:
            if Path(evaluation.manifest.get("checkpoint") or "").name.startswith(prefix):
                return evaluation
    return models[0] if models else None


def _checkpoint_file(folder: Path) -> Path | None:
    checkpoints = sorted((folder / "checkpoints").glob("*.ckpt")) if folder.is_dir() else []
    last = [c for c in checkpoints if c.name == "last.ckpt"]
    return (last or checkpoints or [None])[0]


def _read_checkpoint(run: Run) -> None:
    import torch

    from ablation.nets import build

    path = _checkpoint_file(run.folder)
    if path is None:
        return
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        hparams = checkpoint.get("hyper_parameters", {})
        net = build(dict(hparams["net_config"]))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as error:
        warnings.warn(f"{path}: net figures skipped ({error})", stacklevel=2)
        return
    rate = int(hparams.get("sample_rate") or SAMPLE_RATE)
    figures = net.describe(rate)
    run.dimension = figures["family"]
    run.depth = figures["depth"]
    run.parameters = figures["parameters"]
    run.receptive_field_s = figures["receptive_field_samples"] / rate
    run.macs_per_second = figures["macs_per_second"]
    run.segment_s = hparams.get("segment")
    # A checkpoint written at the end of epoch e holds epoch=e (0-based): e + 1 done.
    run.epochs = checkpoint.get("epoch", -1) + 1 if "epoch" in checkpoint else None
    run.steps = checkpoint.get("global_step")


def _metrics_csv(folder: Path) -> pd.DataFrame | None:
    paths = sorted(folder.rglob("metrics.csv"))
    if not paths:
        return None
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def _read_logs(run: Run) -> None:
    metrics = _metrics_csv(run.folder)
    if metrics is not None and VAL_LOSS in metrics:
        x = "step" if "step" in metrics else metrics.columns[0]
        curve = metrics[[x, VAL_LOSS]].dropna().rename(columns={x: "step", VAL_LOSS: "val_loss"})
        run.val_curve = curve.sort_values("step").reset_index(drop=True)
        run.val_loss = float(curve.val_loss.min()) if len(curve) else None
    if metrics is not None and PEAK_GPU_MEM in metrics:
        run.peak_gpu_mem_gb = float(metrics[PEAK_GPU_MEM].max())
    summary = _read_json(run.folder / SUMMARY) or {}
    run.wall_time_s = _first(summary, "train_seconds", "wall_time_s")
    for name in ("peak_gpu_mem_gb", "epochs", "steps", "preset", "dimension", "depth"):
        value = summary.get(name)
        if value is not None:
            setattr(run, name, value)
    if run.val_loss is None:
        run.val_loss = summary.get("val_loss")


def _first(mapping: dict, *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def _seed_keys(config: dict[str, Any]) -> list[str]:
    return [k for k in config if k.rsplit(".", 1)[-1] in ("seed", "seed_everything")]


def _by_last_key(config: dict[str, Any], name: str) -> Any:
    return next((v for k, v in config.items() if k.rsplit(".", 1)[-1] == name), None)


def read_run(folder: Path) -> Run:
    """Read what a run folder holds (see the module docstring)."""
    run = Run(name=folder.name, folder=folder)
    if (folder / "config.yaml").exists():
        run.config = flatten(yaml.safe_load((folder / "config.yaml").read_text()) or {})
    seeds = _seed_keys(run.config)
    run.seed = run.config[seeds[0]] if seeds else None
    run.preset = _by_last_key(run.config, "preset")
    run.batch_size = _by_last_key(run.config, "batch_size")
    _read_checkpoint(run)
    _read_logs(run)
    run.evaluation = _pick_evaluation(find_evaluations(folder))
    return run


# ---------------------------------------------------------------- configurations


def _is_noise(key: str) -> bool:
    parts = key.lower().replace("/", ".").split(".")
    return any(part == noise or part.endswith(f"_{noise}") for part in parts for noise in _NOISE)


def _value(run: Run, key: str) -> str:
    return json.dumps(run.config.get(key), default=str)


def assign_configurations(runs: list[Run]) -> None:
    """Name each run's configuration: ``<dimension> depth<N>`` plus the config values
    that vary across runs, leaving out seeds, places and names, and values that
    dimension and depth already determine (the model class, the preset of a family).

    Runs with equal names are seeds of one configuration.
    """
    keys = sorted({k for run in runs for k in run.config})
    seeds = {k for run in runs for k in _seed_keys(run.config)}
    cells: dict[tuple, list[Run]] = {}
    for run in runs:
        cells.setdefault((run.dimension, run.depth), []).append(run)
    varying = [
        k
        for k in keys
        if k not in seeds
        and not _is_noise(k)
        and len({_value(r, k) for r in runs}) > 1
        and any(len({_value(r, k) for r in cell}) > 1 for cell in cells.values())
    ]
    short = _short_names(varying)
    for run in runs:
        depth = "?" if run.depth is None else run.depth
        parts = [f"{run.dimension or '?'} depth{depth}"]
        parts += [f"{short[k]}={run.config.get(k)}" for k in varying]
        run.configuration = ", ".join(parts)


def _short_names(keys: list[str]) -> dict[str, str]:
    # The last key component, lengthened only where two keys would read the same.
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if sum(k.split(".")[-n:] == parts[-n:] for k in keys) == 1 or n == len(parts):
                short[key] = name
                break
    return short


# ---------------------------------------------------------------- tables


def _targets(runs: list[Run], baselines: list[Evaluation]) -> list[str]:
    found = {t for r in runs if r.evaluation for t in r.evaluation.summary}
    found |= {t for b in baselines for t in b.summary}
    return [t for t in TARGET_ORDER if t in found] + sorted(found - set(TARGET_ORDER))


def _test_columns(evaluation: Evaluation | None, targets: list[str]) -> dict[str, float]:
    row: dict[str, float] = {}
    summary = evaluation.summary if evaluation else {}
    for metric in ("MSE", "SDR"):
        for target in targets:
            value = summary.get(target, {}).get(metric)
            row[f"test {metric} {target}"] = math.nan if value is None else value
    # The mean is over the estimator's own targets: a four-stem model's derived
    # accompaniment would count its stems twice.
    scored = list(summary)
    own = [t for t in scored if t != "accompaniment" or not set(SOURCES) <= set(scored)]
    values = [row[f"test SDR {t}"] for t in own if f"test SDR {t}" in row]
    values = [v for v in values if not math.isnan(v)]
    row["test SDR mean"] = float(np.mean(values)) if values else math.nan
    return row


RUN_COLUMNS = (
    "run",
    "configuration",
    "seed",
    "dimension",
    "depth",
    "preset",
    "parameters",
    "receptive field (s)",
    "epochs",
    "steps",
    "wall time (min)",
    "peak GPU mem (GB)",
    "training MACs",
    "val loss",
)


def runs_table(runs: list[Run], baselines: list[Evaluation], targets: list[str]) -> pd.DataFrame:
    """One row per run (then per baseline): the columns the issue asks for."""
    rows = []
    for run in runs:
        rows.append(
            {
                "run": run.name,
                "configuration": run.configuration,
                "seed": run.seed,
                "dimension": run.dimension,
                "depth": run.depth,
                "preset": run.preset,
                "parameters": run.parameters,
                "receptive field (s)": run.receptive_field_s,
                "epochs": run.epochs,
                "steps": run.steps,
                "wall time (min)": None if run.wall_time_s is None else run.wall_time_s / 60,
                "peak GPU mem (GB)": run.peak_gpu_mem_gb,
                "training MACs": run.training_macs,
                "val loss": run.val_loss,
                **_test_columns(run.evaluation, targets),
            }
        )
    for baseline in baselines:
        rows.append(
            {"run": baseline.label, "configuration": baseline.label}
            | _test_columns(baseline, targets)
        )
    columns = [*RUN_COLUMNS, *_test_columns(None, targets)]
    return pd.DataFrame(rows).reindex(columns=columns)


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: number of seeds, and mean and std over seeds of every figure."""
    numeric = table.drop(columns=["run", "seed", "depth"]).select_dtypes("number").columns
    grouped = table.groupby("configuration", sort=False)
    out = grouped[list(numeric)].agg(["mean", "std"])
    out.columns = [f"{column} {how}" for column, how in out.columns]
    out.insert(0, "seeds", grouped.size())
    first = grouped[["dimension", "depth", "preset"]].first()
    return pd.concat([first, out], axis=1)


def per_track_sdr(runs: list[Run], baselines: list[Evaluation]) -> pd.DataFrame:
    """Long table: configuration, run, track, target, SDR (median over frames)."""
    frames = []
    for label, run_name, evaluation in [
        *((r.configuration, r.name, r.evaluation) for r in runs if r.evaluation),
        *((b.label, b.label, b) for b in baselines),
    ]:
        long = evaluation.track_sdr.reset_index().melt(
            id_vars="track", var_name="target", value_name="SDR"
        )
        frames.append(long.assign(configuration=label, run=run_name))
    if not frames:
        return pd.DataFrame(columns=["configuration", "run", "track", "target", "SDR"])
    return pd.concat(frames, ignore_index=True)[["configuration", "run", "track", "target", "SDR"]]


def wilcoxon_pairs(tracks: pd.DataFrame, configurations: list[str]) -> pd.DataFrame:
    """Wilcoxon signed-rank test for each pair of configurations and each target.

    Per-track SDR is averaged over a configuration's seeds first; the test pairs
    the tracks both configurations scored (NaN tracks left out).

    Returns:
        Columns ``a``, ``b``, ``target``, ``tracks``, ``median difference`` (a - b, dB),
        ``p``.
    """
    from scipy.stats import wilcoxon

    means = tracks.groupby(["configuration", "target", "track"]).SDR.mean()
    rows = []
    for a, b in itertools.combinations(configurations, 2):
        for target in sorted(set(tracks.target), key=_target_rank):
            try:
                paired = pd.concat([means[a][target], means[b][target]], axis=1).dropna()
            except KeyError:
                continue
            diff = paired.iloc[:, 0] - paired.iloc[:, 1]
            p = math.nan
            if len(diff) and np.any(diff != 0):
                p = float(wilcoxon(paired.iloc[:, 0], paired.iloc[:, 1]).pvalue)
            rows.append(
                (a, b, target, len(diff), float(diff.median()) if len(diff) else math.nan, p)
            )
    return pd.DataFrame(rows, columns=["a", "b", "target", "tracks", "median difference", "p"])


def _target_rank(target: str) -> int:
    return TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER)


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_val_loss(runs: list[Run], path: Path) -> Path | None:
    """Validation loss curves of all runs on one axis."""
    curves = [r for r in runs if r.val_curve is not None and len(r.val_curve)]
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in curves:
        ax.plot(run.val_curve.step, run.val_curve.val_loss, marker=".", label=run.name)
    ax.set_xlabel("training step")
    ax.set_ylabel(VAL_LOSS)
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_boxes(tracks: pd.DataFrame, configurations: list[str], path: Path) -> Path | None:
    """Per-track test SDR per target, one box per configuration (seeds averaged per track)."""
    if tracks.empty:
        return None
    plt = _pyplot()
    targets = sorted(set(tracks.target), key=_target_rank)
    means = tracks.groupby(["target", "configuration", "track"]).SDR.mean()
    fig, axes = plt.subplots(
        1, len(targets), figsize=(3 + 1.1 * len(configurations) * len(targets), 4.5), squeeze=False
    )
    for ax, target in zip(axes[0], targets, strict=True):
        data = [
            means.get((target, c), pd.Series(dtype=float)).dropna().to_numpy()
            for c in configurations
        ]
        ax.boxplot(data, tick_labels=configurations)
        ax.set_title(target)
        ax.tick_params(axis="x", labelrotation=60, labelsize="small")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test SDR (dB) per track")
    return _save(fig, path)


def plot_depth(table: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR over sources against depth, one line per dimension (std over seeds)."""
    rows = table.dropna(subset=["depth", "test SDR mean"])
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for dimension, part in rows.groupby("dimension"):
        stats = part.groupby("depth")["test SDR mean"].agg(["mean", "std"]).sort_index()
        ax.errorbar(
            stats.index,
            stats["mean"],
            yerr=stats["std"].fillna(0),
            marker="o",
            capsize=3,
            label=dimension,
        )
    ax.set_xlabel("depth (levels)")
    ax.set_xticks(sorted(rows["depth"].unique()))  # levels are whole numbers
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(title="dimension")
    return _save(fig, path)


def plot_compute(table: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR against training compute (steps x MACs of a training batch)."""
    rows = table.dropna(subset=["training MACs", "test SDR mean"])
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for dimension, part in rows.groupby("dimension"):
        ax.scatter(part["training MACs"], part["test SDR mean"], label=dimension)
        for _, row in part.iterrows():
            ax.annotate(
                str(row["run"]), (row["training MACs"], row["test SDR mean"]), fontsize="x-small"
            )
    ax.set_xscale("log")
    ax.set_xlabel("training compute: steps x forward MACs of a training batch")
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(title="dimension")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


# ---------------------------------------------------------------- report


def _significance_markdown(pairs: pd.DataFrame) -> str:
    if pairs.empty:
        return "Fewer than two evaluated configurations: nothing to compare."
    wide = pairs.pivot_table(index=["a", "b"], columns="target", values="p", sort=False)
    tracks = pairs.groupby(["a", "b"], sort=False).tracks.max()
    wide.index = [f"{a} vs {b} (n={tracks[a, b]})" for a, b in wide.index]
    wide.index.name = "pair: p-value over n paired tracks"
    return markdown_table(wide[[t for t in TARGET_ORDER if t in wide] or list(wide)], digits=4)


def _fmt(value: Any, decibels: bool = False) -> str:
    """Numbers for reading: dB to 0.01 as SiSEC reports them, counts whole, large ones
    in powers of ten, others to 3 significant digits."""
    if not isinstance(value, int | float | np.number) or isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "–"
    if decibels:
        return f"{value:.2f}"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    out = df.astype(object)
    for column in out:
        decibels = str(column).startswith("test SDR")
        out[column] = [_fmt(v, decibels) if v is not None else "–" for v in out[column]]
    return out


def _configurations_markdown(configurations: pd.DataFrame) -> str:
    figures = [c[: -len(" mean")] for c in configurations.columns if c.endswith(" mean")]
    shown = _readable(configurations[["seeds", "dimension", "depth", "preset"]])
    for figure in figures:
        mean, std = configurations[f"{figure} mean"], configurations[f"{figure} std"]
        if mean.isna().all():
            continue
        db = figure.startswith("test SDR")
        shown[figure] = [
            _fmt(m, db) if math.isnan(m) or math.isnan(s) else f"{_fmt(m, db)} ± {_fmt(s, db)}"
            for m, s in zip(mean, std, strict=True)
        ]
    return markdown_table(shown)


def _runs_markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["configuration", "training MACs"]).set_index("run")
    return markdown_table(_readable(shown.dropna(axis=1, how="all")))


def fairness_markdown(fairness: pd.DataFrame, problems: list[str]) -> str:
    """The fairness section: every run's record and what differs, if anything."""
    verdict = (
        ["**Not comparable as they stand:**", "", *(f"- {p}" for p in problems)]
        if problems
        else ["All runs share the data fingerprint, data seed, segment, context and budget."]
    )
    shown = fairness.copy()
    if "data fingerprint" in shown:
        shown["data fingerprint"] = shown["data fingerprint"].map(lambda v: str(v)[:12])
    return "\n".join([*verdict, "", markdown_table(_readable(shown))])


def write_report(
    out: Path,
    name: str,
    table: pd.DataFrame,
    configurations: pd.DataFrame,
    pairs: pd.DataFrame,
    plots: list[Path],
    missing: list[str],
    fairness: str = "",
) -> Path:
    """Write ``report.md`` (tables, fairness, significance, plots) beside the CSVs."""
    lines = [
        f"# Report: {name}",
        "",
        "Test figures: museval v4 (SiSEC 2018) on the test set, SDR in dB as the median "
        "over tracks of the median over 1 s frames; MSE over all test samples; "
        "val loss: the lowest logged; training MACs = steps x forward MACs of a batch.",
        "",
        "## Runs",
        "",
        _runs_markdown(table),
        "",
        "## Fairness",
        "",
        fairness,
        "",
        "## Configurations (mean ± std over seeds)",
        "",
        _configurations_markdown(configurations),
        "",
        "## Significance: Wilcoxon signed-rank test on per-track SDR",
        "",
        _significance_markdown(pairs),
        "",
    ]
    if missing:
        lines += ["## Not evaluated", "", *(f"- {m}" for m in missing), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _log_report(
    name: str, table: pd.DataFrame, pairs: pd.DataFrame, plots: list[Path], report: Path
) -> None:
    from ablation.wandb_mode import wandb_online

    if not wandb_online():
        return
    try:
        import wandb

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            name=f"report-{name}",
            job_type="report",
        )
        run.log(
            {
                "report/runs": wandb.Table(dataframe=table.astype(str)),
                "report/significance": wandb.Table(dataframe=pairs.astype(str)),
                **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots},
            }
        )
        run.finish()
    except Exception as error:  # logging is optional: the files are complete
        warnings.warn(f"W&B logging of the report skipped ({error}); see {report}.", stacklevel=2)


def _collect(folders: list[Path]) -> tuple[list[Run], list[Evaluation]]:
    """Runs, and the baselines passed directly or found in the run folders."""
    given = {f for f in folders if (f / MANIFEST).exists()}
    runs = [read_run(f) for f in folders if f not in given]
    baselines = [e for e in (read_evaluation(f) for f in sorted(given)) if e is not None]
    for run in runs:
        baselines += [e for e in find_evaluations(run.folder) if e.manifest.get("baseline")]
    assign_configurations(runs)
    return runs, _unique_baselines(baselines)


def _plots(runs: list[Run], table: pd.DataFrame, tracks: pd.DataFrame, order: list[str], out: Path):
    made = (
        plot_val_loss(runs, out / "val_loss.png"),
        plot_boxes(tracks, order, out / "sdr_boxplot.png"),
        plot_depth(table, out / "sdr_vs_depth.png"),
        plot_compute(table, out / "sdr_vs_compute.png"),
    )
    return [p for p in made if p is not None]


def build_report(runs: list[Path], out: Path, name: str, wandb_log: bool = True) -> Path:
    """Build the comparison report of ``runs`` into ``out``.

    Args:
        runs: run folders (``runs/<sweep>/<run>``), or evaluation folders of
            baselines (any folder holding ``evaluation.json``).
        out: folder for ``report.md``, ``runs.csv``, ``configurations.csv``,
            ``significance.csv``, ``tracks.csv``, ``fairness.csv`` and the PNG plots.
        name: title of the report (the sweep name).
        wandb_log: also log the tables and plots to a new W&B run ``report-<name>``
            when W&B is online (a failure there only warns).

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: when no folder is given or one does not exist.
    """
    folders = [Path(r) for r in runs]
    absent = [str(f) for f in folders if not f.is_dir()]
    if not folders or absent:
        raise ReportError(
            f"nothing to report on (missing: {', '.join(absent) or 'no folders given'}): "
            f"expected run folders such as runs/<sweep>/<run>. Pass SWEEP=<name> or "
            f"RUNS='dir1 dir2'."
        )
    run_list, baselines = _collect(folders)
    targets = _targets(run_list, baselines)
    table = runs_table(run_list, baselines, targets)
    configurations = aggregate_seeds(table)
    tracks = per_track_sdr(run_list, baselines)
    models = list(dict.fromkeys(r.configuration for r in run_list if r.evaluation))
    pairs = wilcoxon_pairs(tracks[tracks.configuration.isin(models)], models)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "runs.csv", index=False)
    configurations.to_csv(out / "configurations.csv")
    pairs.to_csv(out / "significance.csv", index=False)
    tracks.to_csv(out / "tracks.csv", index=False)
    plots = _plots(run_list, table, tracks, models + [b.label for b in baselines], out)
    records = {r.name: read_fairness(r.folder) for r in run_list}
    fairness, problems = fairness_table(records), fairness_problems(records)
    fairness.to_csv(out / "fairness.csv", index_label="run")
    fairness_section = fairness_markdown(fairness, problems)
    print(f"Fairness of {name}:\n{fairness_section}")
    missing = [
        f"{r.name}: no test evaluation; run `make eval CKPT={_checkpoint_file(r.folder)}`"
        for r in run_list
        if r.evaluation is None
    ]
    report = write_report(out, name, table, configurations, pairs, plots, missing, fairness_section)
    if wandb_log:
        _log_report(name, table, pairs, plots, report)
    return report


def _baseline_key(evaluation: Evaluation) -> str:
    m = evaluation.manifest
    return json.dumps([m.get("baseline"), m.get("root"), m.get("subset"), m.get("targets")])


def _unique_baselines(evaluations: list[Evaluation]) -> list[Evaluation]:
    unique = {_baseline_key(e): e for e in evaluations}
    return sorted(unique.values(), key=lambda e: e.label)
