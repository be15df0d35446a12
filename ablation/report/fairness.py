"""Reading and checking the fairness records of a sweep's runs (``summary.json`` ->
``fairness``, written by :mod:`lightning_modules.fairness` and the budget), and the
report's fairness section.

Two runs of one sweep must share what the fairness rule fixes: the data they
trained on (fingerprint, data seed, segment, context) and the training budget.
:func:`fairness_problems` names every run that differs from the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from ablation.files import read_json
from ablation.report.markdown import readable
from ablation.runs import SUMMARY
from ablation.tables import markdown_table

# What every run of a sweep must share, with how the report names it.
SHARED = {
    "data_fingerprint": "data fingerprint",
    "budget_seconds": "budget (s)",
    "context_seconds": "context (s)",
    "segment_seconds": "segment (s)",
    "data_seed": "data seed",
}
# Of those, what runs share only with the runs of their own seed: seed k of every cell
# trains on data stream k.
PER_SEED = ("data_fingerprint", "data_seed")
# Shown beside them: what each run did with the shared setting.
SHOWN = {
    "train_seconds": "trained (s)",
    "excluded_seconds": "excluded (s)",
    "steps": "steps",
    "real_context_fraction": "real context",
    "weights": "weights",  # raw or an EMA of them
    "lr_schedule": "lr schedule",
}


def read_fairness(run_dir: Path) -> dict[str, Any]:
    """The ``fairness`` object of a run's ``summary.json`` ({} when absent)."""
    return read_json(Path(run_dir) / SUMMARY).get("fairness") or {}


def fairness_table(records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per run (index: run name), the shared settings and what each run did."""
    columns = {**SHARED, **SHOWN}
    rows = {
        run: {label: rec.get(key) for key, label in columns.items()} for run, rec in records.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns.values()))


def fairness_problems(
    records: dict[str, dict[str, Any]], seeds: dict[str, Any] | None = None
) -> list[str]:
    """One line per run and shared setting where the run differs from the majority,
    or has no fairness record at all. With ``seeds`` (each run's seed), the data
    (:data:`PER_SEED`) is compared among the runs of one seed only."""
    seeds = seeds or {}
    problems = [
        f"{run}: no fairness record (summary.json without 'fairness': trained before "
        f"records existed or not finished)"
        for run, rec in records.items()
        if not rec
    ]
    recorded = {run: rec for run, rec in records.items() if rec}
    shared = _common_batches(recorded.values())
    for key, label in SHARED.items():
        group = (lambda run: seeds.get(run)) if key in PER_SEED else (lambda run: None)
        for members in _groups(recorded, group).values():
            problems += _differing(members, key, label, shared)
    return problems


def _groups(recorded: dict[str, dict], key) -> dict[Any, dict[str, dict]]:
    groups: dict[Any, dict[str, dict]] = {}
    for run, rec in recorded.items():
        groups.setdefault(key(run), {})[run] = rec
    return groups


def _differing(recorded: dict[str, dict], key: str, label: str, shared: int | None) -> list:
    """The runs whose ``key`` differs from the majority of ``recorded``."""
    values = Counter(_comparable(rec, key, shared) for rec in recorded.values())
    if len(values) < 2:
        return []
    majority = values.most_common(1)[0][0]
    return [
        f"{run}: {label} {_shown(_comparable(rec, key, shared))} differs from the other "
        f"runs' {_shown(majority)}"
        for run, rec in recorded.items()
        if _comparable(rec, key, shared) != majority
    ]


def fairness_markdown(fairness: pd.DataFrame, problems: list[str]) -> str:
    """The fairness section: every run's record and what differs, if anything."""
    verdict = (
        ["**Not comparable as they stand:**", "", *(f"- {p}" for p in problems)]
        if problems
        else [
            "All runs share segment, context and budget, and the runs of each seed share "
            "the data fingerprint and data seed."
        ]
    )
    return "\n".join([*verdict, "", markdown_table(fairness_readable(fairness))])


def fairness_readable(fairness: pd.DataFrame) -> pd.DataFrame:
    """The fairness table formatted for reading, fingerprints shortened to 12 characters."""
    shown = readable(fairness)
    if "data fingerprint" in shown:
        shown["data fingerprint"] = fairness["data fingerprint"].map(lambda v: str(v)[:12])
    return shown


def _common_batches(records) -> int | None:
    """Batches every run hashed (a run may stop before 32), None if one lacks digests."""
    counts = [len(rec.get("batch_digests") or []) for rec in records]
    return min(counts) if counts and min(counts) > 0 else None


def _comparable(record: dict[str, Any], key: str, batches: int | None) -> Any:
    if key == "data_fingerprint" and batches is not None:
        return tuple(record["batch_digests"][:batches])
    value = record.get(key)
    # Durations are computed from samples and rates: equal settings agree to 1e-6 s.
    return round(value, 6) if isinstance(value, float) else value


def _shown(value: Any) -> str:
    if isinstance(value, tuple):  # per-batch digests: the first one names them
        return f"(batches {value[0]}…)" if value else "()"
    return repr(value)
