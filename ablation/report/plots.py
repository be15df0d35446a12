"""The report's plots: validation loss, SDR boxes, SDR against depth, compute and budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablation.constants import VAL_LOSS
from ablation.report.budgets import by_configuration, fraction_label
from ablation.report.palette import configuration_colours, dimension_colour
from ablation.report.runs import Run
from ablation.report.significance import per_track_mean
from ablation.report.tables import target_rank

# Every plot as wide as the page shows it (FIGURE_WIDTH x DPI = 1260 px): full width,
# never scaled up; a taller figure where a plot needs room, never a wider one.
FIGURE_WIDTH, DPI = 10.5, 120


def plot_all(
    runs: list[Run],
    table: pd.DataFrame,
    tracks: pd.DataFrame,
    order: list[str],
    out: Path,
    budgets: pd.DataFrame | None = None,
) -> list[Path]:
    """Every plot the data allows, as PNGs in ``out``; ``order``: the configurations' boxes;
    ``budgets``: :func:`ablation.report.budgets.budget_table`. Every plot takes its
    colours from :mod:`ablation.report.palette`."""
    colours = configuration_colours(table)
    made = (
        plot_val_loss(runs, out / "val_loss.png", colours),
        plot_boxes(tracks, order, out / "sdr_boxplot.png", colours),
        plot_depth(table, tracks, out / "sdr_vs_depth.png"),
        plot_compute(table, out / "sdr_vs_compute.png"),
        plot_budget(budgets, out / "sdr_vs_budget.png", colours) if budgets is not None else None,
    )
    return [p for p in made if p is not None]


def plot_val_loss(runs: list[Run], path: Path, colours: dict[str, str]) -> Path | None:
    """Validation loss curves of all runs against steps and against training time: one
    colour per configuration (``colours``), one line style per seed, one legend entry per
    configuration.

    The time of a step is interpolated linearly over the run's counted training seconds
    (``summary.json``): the budget axis, without validation or checkpoint time.
    """
    curves = [r for r in runs if r.val_curve is not None and len(r.val_curve)]
    if not curves:
        return None
    plt = _pyplot()
    # constrained: the legend goes below both axes, in full-size type
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_WIDTH, 5), sharey=True, layout="constrained")
    labelled, styles = set(), ["-", "--", ":", "-."]
    for run in curves:
        seed = sum(r.configuration == run.configuration for r in curves[: curves.index(run)])
        style = {"color": colours.get(run.configuration), "ls": styles[seed % len(styles)]}
        label = None if run.configuration in labelled else run.configuration
        labelled.add(run.configuration)
        axes[0].plot(run.val_curve.step, run.val_curve.val_loss, marker=".", label=label, **style)
        if run.wall_time_s and run.steps:
            seconds = run.val_curve.step * run.wall_time_s / run.steps
            axes[1].plot(seconds, run.val_curve.val_loss, marker=".", **style)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training time (s, counted by the budget; interpolated)")
    axes[0].set_ylabel(VAL_LOSS)
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, len(labelled)), title="line style: seed")
    return _save(fig, path)


def plot_boxes(
    tracks: pd.DataFrame, configurations: list[str], path: Path, colours: dict[str, str]
) -> Path | None:
    """Per-track test SDR per target, one box per configuration (seeds averaged per
    track) in its colour; one full-width row per target, in the stems' order."""
    if tracks.empty:
        return None
    plt = _pyplot()
    targets = sorted(set(tracks.target), key=target_rank)
    means = tracks.groupby(["target", "configuration", "track"]).SDR.mean()
    fig, axes = plt.subplots(
        len(targets), 1, figsize=(FIGURE_WIDTH, 1.5 + 3 * len(targets)), squeeze=False
    )
    for ax, target in zip(axes[:, 0], targets, strict=True):
        data = [
            means.get((target, c), pd.Series(dtype=float)).dropna().to_numpy()
            for c in configurations
        ]
        # black medians: orange is the 2-D family's colour
        boxes = ax.boxplot(
            data, tick_labels=configurations, patch_artist=True, medianprops={"color": "k"}
        )
        for box, configuration in zip(boxes["boxes"], configurations, strict=True):
            box.set(facecolor=colours.get(configuration, "white"), alpha=0.8)
        ax.set_title(target)
        ax.set_ylabel("test SDR (dB)")
        ax.tick_params(axis="x", labelrotation=20)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_depth(table: pd.DataFrame, tracks: pd.DataFrame, path: Path) -> Path | None:
    """Mean test SDR over sources against depth, one line per dimension (std over seeds),
    with each track's SDR (mean over the run's own targets, then over seeds) as dots."""
    rows = table.dropna(subset=["depth", "test SDR mean"])
    if rows.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
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
            color=dimension_colour(dimension),
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
    per_run = per_track_mean(tracks)[["run", "track", "SDR"]]
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
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
    for dimension, part in rows.groupby("dimension"):
        colour = dimension_colour(dimension)
        ax.scatter(part["training FLOPs"], part["test SDR mean"], label=dimension, color=colour)
        for _, row in part.iterrows():
            point = (row["training FLOPs"], row["test SDR mean"])
            # offset in points and clipped: a label never leaves the axes
            ax.annotate(str(row["run"]), point, xytext=(4, 4), textcoords="offset points",
                        fontsize="small", annotation_clip=True, clip_on=True)  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.15)  # room for the labels of the outermost points
    _sparse_log_ticks(ax.xaxis)
    ax.set_xlabel("training FLOPs (measured: steps x forward and backward of a step)")
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend(title="dimension")
    return _save(fig, path)


def plot_budget(table: pd.DataFrame, path: Path, colours: dict[str, str]) -> Path | None:
    """Mean test SDR against the budget fraction, one line per configuration."""
    wide = by_configuration(table)
    if wide.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
    for configuration, scores in wide.iterrows():
        scores = scores.dropna()
        colour = colours.get(configuration)
        ax.plot(scores.index, scores.to_numpy(), marker="o", label=configuration, color=colour)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(wide.columns), [fraction_label(f) for f in wide.columns])
    ax.set_xlabel("fraction of the budget")
    ax.set_ylabel("test SDR (dB), mean over sources")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _sparse_log_ticks(axis) -> None:
    """At most a few labelled ticks on a log axis (1, 2 and 5 per decade, no minor
    labels), so that labels of a narrow range do not run into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1, 2, 5), numticks=6))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))
    axis.set_minor_formatter(NullFormatter())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path
