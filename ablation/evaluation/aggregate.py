"""Aggregating an evaluation from its per-track files only: museval's frame table, the
per-track medians, the median and mean over tracks, and the files a reader opens
(results.csv, tracks.csv, summary.json, summary.md, sdr_boxplot.png)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import HOP_SECONDS, METRICS, WIN_SECONDS, scored_targets
from ablation.evaluation.results import read_scores
from ablation.files import write_text
from ablation.tables import markdown_table


@dataclass
class Results:
    """Everything aggregated from the per-track files of one evaluation.

    Attributes:
        frames: museval's frame table (track, target, metric, time, score).
        tracks: per (track, target): the median over frames of each metric, and MSE.
        median: per target: median over tracks of ``tracks`` (MSE: over all samples).
        mean: per target: mean over tracks of ``tracks`` (MSE: over all samples).
        nan_frames: per target: frames without a score, and all frames.
        seconds: audio evaluated, in seconds.
    """

    frames: pd.DataFrame
    tracks: pd.DataFrame
    median: pd.DataFrame
    mean: pd.DataFrame
    nan_frames: dict[str, tuple[int, int]]
    seconds: float


def aggregate(plan: Plan, names: Sequence[str]) -> Results:
    """Build the tables of an evaluation from its per-track JSON files."""
    from museval import EvalStore
    from museval.aggregate import json2df

    targets = scored_targets(plan.groups)
    store, mse_rows, samples = EvalStore(), [], 0
    for name in names:
        data = read_scores(plan.track_file(name))
        store.add_track(json2df(data, name))
        mse_rows += [(name, t, data["mse"][t], data["samples"]) for t in targets]
        samples += data["samples"]
    frames = store.df[["track", "target", "metric", "time", "score"]]
    per_track = store.agg_frames_scores().unstack("metric")[list(METRICS)]
    mse = pd.DataFrame(mse_rows, columns=["track", "target", "MSE", "samples"])
    tracks = per_track.reset_index().merge(mse, on=["track", "target"])
    # The MSE of the whole subset weighs each track by its length.
    pooled = mse.assign(se=mse.MSE * mse.samples).groupby("target")[["se", "samples"]].sum()
    pooled_mse = pooled.se / pooled.samples
    summary = {}
    for how in ("median", "mean"):
        table = tracks.groupby("target")[list(METRICS)].agg(how)
        summary[how] = table.assign(MSE=pooled_mse).reindex(list(targets))
    sdr = frames[frames.metric == "SDR"]
    nan_frames = {
        t: (int(sdr[sdr.target == t].score.isna().sum()), int((sdr.target == t).sum()))
        for t in targets
    }
    order = {t: i for i, t in enumerate(targets)}
    tracks = tracks.sort_values(
        ["track", "target"], key=lambda c: c.map(order) if c.name == "target" else c
    )
    return Results(
        frames=frames,
        tracks=tracks.drop(columns="samples").reset_index(drop=True),
        median=summary["median"],
        mean=summary["mean"],
        nan_frames=nan_frames,
        seconds=samples / plan.sample_rate,
    )


def number(value: float) -> float | None:
    """A score as JSON and W&B take it: None for NaN (a target without any scored frame)."""
    return None if value is None or math.isnan(value) else float(value)


def what(plan: Plan) -> str:
    """What was evaluated, in markdown: the checkpoint, the baseline, or both."""
    if plan.baseline and plan.ckpt:
        return f"baseline `{plan.baseline}` on the targets of `{plan.ckpt}`"
    return f"baseline `{plan.baseline}`" if plan.baseline else f"checkpoint `{plan.ckpt}`"


def summary_markdown(plan: Plan, results: Results, names: Sequence[str]) -> str:
    """The human-readable summary: tables, scoring groups, NaN frames, protocol."""
    form = "MUSDB18-HQ (wav)" if plan.is_wav else "MUSDB18 (compressed stems)"
    nan = "; ".join(f"{t}: {n} of {total}" for t, (n, total) in results.nan_frames.items())
    fmt = {"SDR": 2, "MSE": 6}
    median = results.median.copy()
    median.index.name = "target"
    mean = results.mean.copy()
    mean.index.name = "target"
    lines = [
        f"# Evaluation of {what(plan)}",
        "",
        f"- data: `{plan.root}`, {form}, subset `{plan.subset}`: {len(names)} tracks, "
        f"{results.seconds / 60:.2f} min of audio",
        f"- protocol: museval v4 (BSS Eval images), {WIN_SECONDS:g} s windows, "
        f"{HOP_SECONDS:g} s hop; median over frames per track; backend `{plan.metrics}`",
        "- scored together: " + "; ".join(g.describe() for g in plan.groups),
        f"- frames without a score (silent reference or estimate in the window; left out "
        f"of all medians): {nan}",
        "- MSE: mean squared error over all samples and channels of the subset",
        "",
        "## Median over tracks of the median over frames",
        "",
        markdown_table(median.drop(columns="MSE"), digits=fmt["SDR"]),
        "",
        "## Mean over tracks of the median over frames",
        "",
        markdown_table(mean.drop(columns="MSE"), digits=fmt["SDR"]),
        "",
        "## MSE per target (the study's metric)",
        "",
        markdown_table(median[["MSE"]], digits=fmt["MSE"]),
        "",
    ]
    return "\n".join(lines)


def boxplot(results: Results, path: Path, title: str) -> Path:
    """Box plot of per-track SDR per target, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(results.median.index)
    data = [results.tracks[results.tracks.target == t].SDR.dropna().to_numpy() for t in targets]
    fig, ax = plt.subplots(figsize=(1.2 * len(targets) + 2, 4))
    ax.boxplot(data, tick_labels=targets)
    ax.set_ylabel("SDR (dB), median over frames")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(plan: Plan, results: Results, names: Sequence[str]) -> None:
    """Write results.csv, tracks.csv, summary.json, summary.md and the box plot."""
    out = Path(plan.out)
    write_text(out / "results.csv", results.frames.to_csv(index=False))
    write_text(out / "tracks.csv", results.tracks.to_csv(index=False))
    summary = {
        target: {metric: number(row[metric]) for metric in (*METRICS, "MSE")}
        for target, row in results.median.iterrows()
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2))
    write_text(out / "summary.md", summary_markdown(plan, results, names))
    boxplot(results, out / "sdr_boxplot.png", f"{what(plan)}".replace("`", "")[-60:])


def score_table(out: str | Path) -> str:
    """The median scores per target of the evaluation in ``out`` (its ``summary.json``), as
    the table ``make eval`` ends with; MSE and the means are in ``summary.md``."""
    summary = json.loads((Path(out) / "summary.json").read_text())
    table = pd.DataFrame.from_dict(summary, orient="index")[list(METRICS)]
    table.index.name = "target"
    return markdown_table(table.astype(float), digits=2)
