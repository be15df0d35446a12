"""The report's plots: validation loss, SDR boxes, SDR against depth, compute and budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablation.constants import VAL_LOSS
from ablation.report.budgets import by_configuration, fraction_label
from ablation.report.runs import Run
from ablation.report.tables import own_targets, target_rank


def plot_all(
    runs: list[Run],
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    order: list[str],
    out: Path,
    budgets: pd.DataFrame | None = None,
) -> list[Path]:
    """Every plot the data allows, as PNGs in ``out``; ``order``: the configurations' boxes;
    ``budgets``: :func:`ablation.report.budgets.budget_table`."""
    made = (
        plot_val_loss(runs, out / "val_loss.png"),
        plot_boxes(tracks, order, out / "sdr_boxplot.png"),
        plot_depth(table, tracks, out / "sdr_vs_depth.png"),
        plot_compute(table, out / "sdr_vs_compute.png"),
        plot_budget(budgets, out / "sdr_vs_budget.png") if budgets is not None else None,
    )
    return [p for p in made if p is not None]


def plot_val_loss(runs: list[Run], path: Path) -> Path | None:
    """Validation loss curves of all runs against steps and against training time.

    The time of a step is interpolated linearly over the run's counted training seconds
    (``summary.json``): the budget axis, without validation or checkpoint time.
    """
    curves = [r for r in runs if r.val_curve is not None and len(r.val_curve)]
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for run in curves:
        axes[0].plot(run.val_curve.step, run.val_curve.val_loss, marker=".", label=run.name)
        if run.wall_time_s and run.steps:
            seconds = run.val_curve.step * run.wall_time_s / run.steps
            axes[1].plot(seconds, run.val_curve.val_loss, marker=".", label=run.name)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training time (s, counted by the budget; interpolated)")
    axes[0].set_ylabel(VAL_LOSS)
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_boxes(tracks: pd.DataFrame, configurations: list[str], path: Path) -> Path | None:
    """Per-track test SDR per target, one box per configuration (seeds averaged per track)."""
    if tracks.empty:
        return None
    plt = _pyplot()
    targets = sorted(set(tracks.target), key=target_rank)
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


def plot_depth(table: pd.DataFrame, tracks: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR over sources against depth, one line per dimension (std over seeds),
    with each track's SDR (mean over the run's own targets, then over seeds) as dots."""
    rows = table.dropna(subset=["depth", "test SDR mean"])
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    spread = _per_track(rows, tracks)
    for dimension, part in rows.groupby("dimension"):
        stats = part.groupby("depth")["test SDR mean"].agg(["mean", "std"]).sort_index()
        line = ax.errorbar(
            stats.index,
            stats["mean"],
            yerr=stats["std"].fillna(0),
            marker="o",
            capsize=3,
            label=dimension,
        )
        dots = spread[spread.dimension == dimension]
        offset = 0.08 if str(dimension) == "2d" else -0.08  # side by side, not on top
        ax.scatter(dots.depth + offset, dots.SDR, s=10, alpha=0.5, color=line[0].get_color())
    ax.set_xlabel("depth (levels)")
    ax.set_xticks(sorted(rows["depth"].unique()))  # levels are whole numbers
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(title="dimension")
    return _save(fig, path)


def _per_track(rows: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and track: SDR averaged over the run's own targets, then seeds."""
    if tracks.empty:
        return pd.DataFrame(columns=["dimension", "depth", "SDR"])
    own = tracks.groupby("run").target.transform(lambda t: t.isin(own_targets(set(t))))
    per_run = tracks[own].groupby(["run", "track"]).SDR.mean().reset_index()
    per_run = per_run.merge(rows[["run", "configuration", "dimension", "depth"]], on="run")
    return (
        per_run.groupby(["configuration", "dimension", "depth", "track"]).SDR.mean().reset_index()
    )


def plot_compute(table: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR against measured training compute (steps x FLOPs of a step)."""
    rows = table.dropna(subset=["training FLOPs", "test SDR mean"])
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for dimension, part in rows.groupby("dimension"):
        ax.scatter(part["training FLOPs"], part["test SDR mean"], label=dimension)
        for _, row in part.iterrows():
            ax.annotate(
                str(row["run"]), (row["training FLOPs"], row["test SDR mean"]), fontsize="x-small"
            )
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (measured: steps x forward and backward of a step)")
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(title="dimension")
    return _save(fig, path)


def plot_budget(table: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR against the budget fraction, one line per configuration."""
    wide = by_configuration(table)
    if wide.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for configuration, scores in wide.iterrows():
        scores = scores.dropna()
        ax.plot(scores.index, scores.to_numpy(), marker="o", label=configuration)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(wide.columns), [fraction_label(f) for f in wide.columns])
    ax.set_xlabel("fraction of the budget")
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path
