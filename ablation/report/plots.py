"""The report's four plots: validation loss, SDR boxes, SDR against depth and compute."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablation.constants import VAL_LOSS
from ablation.report.runs import Run
from ablation.report.tables import target_rank


def plot_all(
    runs: list[Run], table: pd.DataFrame, tracks: pd.DataFrame, order: list[str], out: Path
) -> list[Path]:
    """Every plot the data allows, as PNGs in ``out``; ``order``: the configurations' boxes."""
    made = (
        plot_val_loss(runs, out / "val_loss.png"),
        plot_boxes(tracks, order, out / "sdr_boxplot.png"),
        plot_depth(table, out / "sdr_vs_depth.png"),
        plot_compute(table, out / "sdr_vs_compute.png"),
    )
    return [p for p in made if p is not None]


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
