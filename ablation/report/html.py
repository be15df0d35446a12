"""``index.html``: the report as one page to look at and listen to, built from the same
DataFrames as ``report.md`` and the CSVs. It links only files beside it (the PNG plots,
``listen/``), so the folder opens from disk or travels as a zip."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pandas as pd

from ablation.files import write_text
from ablation.report.budgets import ranking_readable, ranking_statement
from ablation.report.fairness import ALL_FAIR, fairness_readable
from ablation.report.listening import REFERENCE, Excerpt
from ablation.report.markdown import (
    FLAGS_TITLE,
    TUNING_NOTE,
    WINNER_NOTE,
    configurations_readable,
    readable,
    significance_table,
    too_few_tracks,
    tuning_readable,
)
from ablation.report.significance import ONE_SEED

# Where the Wilcoxon signed-rank test cannot reach p < 0.05 whatever the data (n <= 5).
_PLOTS = {
    "sdr_vs_depth": "Mean test SDR over sources against depth, per dimension: line and bars "
    "are mean and std over seeds of the median over tracks; dots are single tracks.",
    "val_loss": "Validation loss against training steps and against training time (the "
    "budget axis); one colour per configuration, one line style per seed. Time of a step: "
    "linear interpolation over the run's counted training seconds (summary.json), which "
    "excludes validation, checkpoints and logging.",
    "sdr_vs_compute": "Mean test SDR against training compute: steps x the training FLOPs "
    "of one step (forward and backward on the real batch, measured with FlopCounterMode).",
    "sdr_vs_budget": "Mean test SDR of each configuration's budget-fraction checkpoints "
    "against the fraction of the budget they trained (mean over seeds).",
    "sdr_boxplot": "Per-track test SDR, one row per target (in the stems' order), one box "
    "per configuration in its colour.",
}
# Wide tables scroll inside their own box (.scroll), plots take the full width but are
# never scaled up (max-width), so nothing overflows a 1280 px window.
_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{margin-bottom:.2em} nav a{margin-right:1em} table{border-collapse:collapse;margin:.6em 0}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left} thead th{background:#f4f4f4}
tr.baseline td{color:#666;font-style:italic} td.best{font-weight:700;background:#e3f4e1}
td.bad,li.bad,.bad{color:#b00020;font-weight:600} .scroll{overflow-x:auto;max-width:100%}
.headline{font-size:18px;font-weight:600;margin:.6em 0} figure{margin:1em 0}
figure img{display:block;max-width:100%;height:auto} figcaption{font-size:13px;color:#555}
.listen td{vertical-align:top;text-align:center} .listen img{display:block;width:300px}
.listen audio{width:300px} .sdr{font-size:13px;color:#333} details{margin:.6em 0}
.note{color:#555;font-size:14px}
"""


@dataclass
class Page:
    """What the page shows: the report's DataFrames, plots and excerpts."""

    name: str
    table: pd.DataFrame
    configurations: pd.DataFrame
    baselines: list[str]
    targets: list[str]
    scores: pd.DataFrame
    pairs: pd.DataFrame
    fairness: pd.DataFrame
    problems: list[str]
    plots: list[Path] = field(default_factory=list)
    excerpts: list[Excerpt] = field(default_factory=list)
    listening_note: str = ""
    missing: list[str] = field(default_factory=list)
    ranking: pd.DataFrame | None = None
    tuning: pd.DataFrame | None = None
    tracks: pd.DataFrame | None = None  # per-track SDR (significance.per_track_sdr)
    headline: str = ""
    flags: list[str] = field(default_factory=list)


def write_page(out: Path, page: Page) -> Path:
    """Write ``out/index.html`` and return its path."""
    sections = [
        ("results", "Results", _headline(page)),
        ("plots", "Plots", _plots(page.plots)),
        ("budgets", "At every budget", _budgets(page.ranking)),
        ("tuning", "Learning rates", _tuning(page.tuning)),
        ("listening", "Listening", _listening(page)),
        ("fairness", "Fairness", _fairness(page.fairness, page.problems)),
        ("significance", "Significance", _significance(page.pairs) + _seeds_note(page)),
    ]
    if page.missing:
        items = "".join(f"<li>{escape(m)}</li>" for m in page.missing)
        sections.append(("missing", "Not evaluated", f"<ul>{items}</ul>"))
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{t}</h2>{html}</section>' for k, t, html in sections)
    path = out / "index.html"
    write_text(
        path,
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Report: {escape(page.name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Report: {escape(page.name)}</h1><p class=headline>{escape(page.headline)}</p>"
        f"{_flags(page.flags)}<p class=note>Test figures: museval v4 (SiSEC "
        f"2018), SDR in dB as the median over tracks of the median over 1 s frames.</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n",
    )
    return path


def html_table(
    df: pd.DataFrame,
    marked: set[tuple[str, str]] = frozenset(),
    mark: str = "best",
    row_class: dict[str, str] | None = None,
    table_id: str = "",
) -> str:
    """``df`` (already formatted) as a table; cells ``(index, column)`` in ``marked`` get
    the class ``mark``, rows the classes of ``row_class``."""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in [df.index.name or "", *df.columns])
    rows = []
    for index, row in df.iterrows():
        cells = [f"<td>{escape(str(index))}</td>"]
        for column, value in row.items():
            cls = f' class="{mark}"' if (index, column) in marked else ""
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        cls = (row_class or {}).get(index)
        rows.append(f"<tr{f' class={cls!r}' if cls else ''}>{''.join(cells)}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    table = f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f"<div class=scroll>{table}</div>"


def _flags(flags: list[str]) -> str:
    """The cells whose scores mean little, under the headline."""
    if not flags:
        return ""
    items = "".join(f"<li class=bad>{escape(f)}</li>" for f in flags)
    return f"<p class=bad>{escape(FLAGS_TITLE)}:</p><ul id=flags>{items}</ul>"


def _headline(page: Page) -> str:
    """One row per configuration, then the baselines; the best SDR of each column marked
    (steps and parameters are what a cell cost, not what it achieved: unmarked)."""
    sdr = [f"test SDR {t}" for t in page.targets] + ["test SDR mean"]
    figures = [*sdr, "steps", "parameters"]
    conf = page.configurations
    shown = configurations_readable(conf, figures)
    shown = shown.drop(columns=[c for c in ("preset",) if c in shown])
    shown = shown.rename(columns={c: c.replace("test SDR ", "SDR ") for c in shown})
    cells = [c for c in conf.index if c not in page.baselines]
    marked = set()
    for figure in sdr:
        values = conf.loc[cells, f"{figure} mean"].dropna() if cells else pd.Series(dtype=float)
        if len(values) > 1:
            marked.add((values.idxmax(), figure.replace("test SDR ", "SDR ")))
    kinds = {b: "baseline" for b in page.baselines}
    details = html_table(readable(page.table.set_index("run").dropna(axis=1, how="all")))
    scores = html_table(readable(page.scores)) if not page.scores.empty else ""
    return (
        html_table(shown, marked, row_class=kinds, table_id="headline")
        + "<p class=note>SDR in dB, mean ± std over seeds; steps done in the time budget; "
        "marked: the best configuration in each SDR column. Baselines in italics.</p>"
        + f"<details><summary>Every run (MSE, wall time, memory, MACs)</summary>{details}"
        + "</details><details><summary>Every test figure (SDR, ISR, SIR, SAR, MSE)</summary>"
        + f"{scores}</details>"
    )


def _budgets(ranking: pd.DataFrame | None) -> str:
    """Whether the ranking holds as the budget grows, and the winner at each fraction."""
    if ranking is None:
        return ""
    table = "" if ranking.empty else html_table(ranking_readable(ranking), table_id="budgets")
    return f"<p>{escape(ranking_statement(ranking))}</p>{table}"


def _tuning(tuning: pd.DataFrame | None) -> str:
    """The tuning stage's table, or where the rates came from without one."""
    if tuning is None:
        return "<p>Every run trained at its configured learning rate (no tuning runs given).</p>"
    return f"<p>{escape(TUNING_NOTE)}</p>" + html_table(tuning_readable(tuning), table_id="tuning")


def _plots(plots: list[Path]) -> str:
    """Each plot at full width, linked to its full-size image."""
    figures = [
        f'<figure><a href="{escape(p.name)}"><img src="{escape(p.name)}" alt="{escape(p.stem)}">'
        f"</a><figcaption>{escape(_PLOTS.get(p.stem, p.stem))}</figcaption></figure>"
        for p in sorted(plots, key=lambda p: list(_PLOTS).index(p.stem) if p.stem in _PLOTS else 9)
    ]
    return "".join(figures) or "<p>No figures: nothing was evaluated or logged.</p>"


def _listening(page: Page) -> str:
    if not page.excerpts:
        return f"<p>{escape(page.listening_note or 'No evaluated checkpoint to listen to.')}</p>"
    parts = [
        "<p class=note>The same excerpt of each track: where the quietest target is loudest. "
        "Each net separated it with real audio around it. One colour scale per track "
        "(80 dB below its loudest bin); log frequency, 40 Hz at the bottom.</p>"
    ]
    sdr = _track_sdr(page.tracks)
    for excerpt in page.excerpts:
        head = "".join(f"<th>{escape(t)}</th>" for t in excerpt.targets)
        rows = [
            f"<tr><td>{escape(_row_label(label, excerpt))}</td>"
            + "".join(
                _player(clips.get(t), sdr.get((excerpt.runs.get(label), excerpt.track, t)))
                for t in excerpt.targets
            )
            + "</tr>"
            for label, clips in excerpt.rows.items()
        ]
        start = excerpt.start_seconds
        parts.append(
            f"<h3>{escape(excerpt.track)} <small>({start:.1f}–{start + excerpt.seconds:.1f} s)"
            f"</small></h3><div class=scroll><table class=listen><tr><td>mixture</td>"
            f"{_player(excerpt.mixture)}</tr><tr><th></th>{head}</tr>{''.join(rows)}</table></div>"
        )
    return "".join(parts)


def _track_sdr(tracks: pd.DataFrame | None) -> dict[tuple, float]:
    """SDR by (run, track, target): what each estimate scored on the whole track."""
    if tracks is None or tracks.empty:
        return {}
    return tracks.set_index(["run", "track", "target"]).SDR.to_dict()


def _row_label(label: str, excerpt: Excerpt) -> str:
    if label == REFERENCE:
        return "reference"
    run = excerpt.runs.get(label)
    return f"{label} ({run})" if run else label


def _player(clip, sdr: float | None = None) -> str:
    """A player and its spectrogram; ``sdr``: the estimate's SDR on the whole track."""
    if clip is None:
        return "<td>–</td>"
    score = "" if sdr is None else f"<div class=sdr>SDR {sdr:.2f} dB (whole track)</div>"
    return (
        f'<td><audio controls preload="metadata" src="{escape(clip.audio)}"></audio>'
        f'<img src="{escape(clip.image)}" alt="spectrogram" loading="eager">{score}</td>'
    )


def _fairness(fairness: pd.DataFrame, problems: list[str]) -> str:
    """Every run's record; each setting where a run differs from the rest in red."""
    shown = fairness_readable(fairness)
    bad = {
        (run, column)
        for run in shown.index
        for column in shown.columns
        for problem in problems
        if problem.startswith(f"{run}: {column} ")
    }
    rows = {run: "bad" for run in shown.index if any(p.startswith(f"{run}: ") for p in problems)}
    verdict = (
        "<ul>" + "".join(f"<li class=bad>{escape(p)}</li>" for p in problems) + "</ul>"
        if problems
        else f"<p>{escape(ALL_FAIR)}</p>"
    )
    return verdict + html_table(shown, bad, mark="bad", row_class=rows, table_id="fairness")


def _seeds_note(page: Page) -> str:
    """Whether training variance is known: one seed per configuration leaves it open."""
    seeds = page.configurations.get("seeds")
    return f"<p class=bad>{escape(ONE_SEED)}</p>" if seeds is not None and seeds.max() <= 1 else ""


def _significance(pairs: pd.DataFrame) -> str:
    """One table: per pair and target the difference, its interval, p and the winner."""
    if pairs.empty:
        return "<p>Fewer than two evaluated configurations: nothing to compare.</p>"
    few = too_few_tracks(pairs)
    return (
        f"<p class=note>{escape(WINNER_NOTE)}</p>"
        + (f"<p class=bad>{escape(few)}</p>" if few else "")
        + html_table(significance_table(pairs), table_id="significance")
    )
