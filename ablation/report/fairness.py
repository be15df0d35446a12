"""Reading and checking the fairness records of a sweep's runs (``summary.json`` ->
``fairness``, written by :mod:`lightning_modules.fairness` and the budget), and the
report's fairness section.

Two runs of one sweep must share what the fairness rule fixes: the data they
trained on (fingerprint, data seed, segment, context), the training budget (unit
and size), and every setting of the recipe and the machine the sweep does not vary
(learning rate, optimizer, precision, clipping, batch size, device, versions).
:func:`fairness_problems` names every run that differs from the rest.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ablation.files import read_json
from ablation.report.markdown import readable
from ablation.runs import SUMMARY, SWEEP_COPY
from ablation.tables import markdown_table

# What every run of a sweep must share, with how the report names it.
SHARED = {
    "data_fingerprint": "data fingerprint",
    "budget_unit": "budget unit",
    "budget_seconds": "budget (s)",
    "budget_steps": "budget (steps)",  # compared in the steps unit only
    "budget_flops": "budget (FLOPs)",
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
    "items_seen": "items seen",
    "train_flops": "training FLOPs",
    "real_context_fraction": "real context",
    "padded_items": "padded items",
    "weights": "weights",  # raw or an EMA of them
    "lr_schedule": "lr schedule",
}
# The recipe and the machine (the record's ``settings``), each named by the config key a
# sweep varies it by; every run must share those its sweep does not vary.
# Below this share of loss-region outputs with their whole receptive field in real
# audio, a run partly judged music by zero padding: the report flags it.
REAL_CONTEXT_FLOOR = 0.99
SETTINGS = {
    "model.lr": "learning rate",
    "model.weight_decay": "weight decay",
    "model.scheduler": "scheduler",
    "optimizer": "optimizer",
    "trainer.precision": "precision",
    "trainer.gradient_clip_val": "gradient clipping",
    "trainer.gradient_clip_algorithm": "clipping algorithm",
    "trainer.accumulate_grad_batches": "accumulated batches",
    "data.batch_size": "batch size",
    "world_size": "world size",
    "device": "device",
    "device_count": "devices",
    "cuda": "CUDA",
    "cudnn": "cuDNN",
    "torch": "torch",
    "lightning": "Lightning",
    "suite": "suite",
}


def read_fairness(run_dir: Path) -> dict[str, Any]:
    """The ``fairness`` object of a run's ``summary.json`` ({} when absent)."""
    return read_json(Path(run_dir) / SUMMARY).get("fairness") or {}


def varied_parameters(run_dirs) -> set[str]:
    """The parameters the sweeps of ``run_dirs`` vary: those with several ``values`` in
    the ``sweep.yaml`` the sweep runner keeps beside its runs (none for ad-hoc runs)."""
    varied: set[str] = set()
    for sweep in {Path(d).parent / SWEEP_COPY for d in run_dirs}:
        try:
            parameters = (yaml.safe_load(sweep.read_text()) or {}).get("parameters") or {}
        except (OSError, yaml.YAMLError):
            continue
        varied |= {k for k, v in parameters.items() if len((v or {}).get("values") or []) > 1}
    return varied


def fairness_table(records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per run (index: run name), the shared settings and what each run did; the
    data fingerprint is that of the batches every run hashed."""
    columns = {**SHARED, **SHOWN}
    shared = _common_batches([rec for rec in records.values() if rec])
    rows = {
        run: {label: rec.get(key) for key, label in columns.items()}
        | {"data fingerprint": _shared_fingerprint(rec, shared)}
        | {label: (rec.get("settings") or {}).get(key) for key, label in SETTINGS.items()}
        for run, rec in records.items()
    }
    labels = [*columns.values(), *SETTINGS.values()]
    return pd.DataFrame.from_dict(rows, orient="index", columns=labels)


def _shared_fingerprint(record: dict[str, Any], batches: int | None) -> str | None:
    """SHA-256 over the digests of the first ``batches`` batches: equal for runs that
    trained on the same data, whichever of them stopped earlier."""
    digests = record.get("batch_digests") or []
    if batches is None or len(digests) < batches:
        return record.get("data_fingerprint")
    return hashlib.sha256("".join(digests[:batches]).encode()).hexdigest()


def fairness_problems(
    records: dict[str, dict[str, Any]],
    seeds: dict[str, Any] | None = None,
    varied: set[str] | frozenset[str] = frozenset(),
) -> list[str]:
    """One line per run and shared setting where the run differs from the majority,
    or has no fairness record at all. With ``seeds`` (each run's seed), the data
    (:data:`PER_SEED`) is compared among the runs of one seed only. Of the
    :data:`SETTINGS`, those in ``varied`` (what the sweep varies) are not compared."""
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
    problems += [
        f"{run}: real context {rec['real_context_fraction']:.3f} below {REAL_CONTEXT_FLOOR}: "
        f"outputs near loss-region edges saw zeros; raise data.context to the deepest "
        f"cell's need, or use longer tracks"
        for run, rec in recorded.items()
        if rec.get("real_context_fraction") is not None
        and rec["real_context_fraction"] < REAL_CONTEXT_FLOOR
    ]
    settings = {run: rec.get("settings") or {} for run, rec in recorded.items()}
    for key, label in SETTINGS.items():
        if key not in varied and any(key in values for values in settings.values()):
            problems += _differing(settings, key, label, None)
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


ALL_FAIR = (
    "All runs share segment, context, budget (unit and size), the recipe (learning rate, "
    "optimizer, schedule, clipping, precision, batch size), the machine and the software, "
    "except what their sweep varies; the runs of each seed share the data fingerprint "
    "(of the batches all of them hashed) and data seed."
)


def fairness_markdown(fairness: pd.DataFrame, problems: list[str]) -> str:
    """The fairness section: every run's record and what differs, if anything."""
    verdict = (
        ["**Not comparable as they stand:**", "", *(f"- {p}" for p in problems)]
        if problems
        else [ALL_FAIR]
    )
    return "\n".join([*verdict, "", markdown_table(fairness_readable(fairness))])


def fairness_readable(fairness: pd.DataFrame) -> pd.DataFrame:
    """The fairness table formatted for reading, fingerprints shortened to 12 characters."""
    shown = readable(fairness)
    if "data fingerprint" in shown:
        shown["data fingerprint"] = fairness["data fingerprint"].map(lambda v: str(v)[:12])
    # A setting every run shares says nothing a row needs (fairness.csv keeps it); the
    # device stays, so a reader sees where the runs trained.
    same = [
        label
        for label in SETTINGS.values()
        if label != "device" and label in shown and shown[label].nunique(dropna=False) <= 1
    ]
    return shown.drop(columns=same)


def _common_batches(records) -> int | None:
    """Batches every run hashed (a run may stop before 32), None if one lacks digests."""
    counts = [len(rec.get("batch_digests") or []) for rec in records]
    return min(counts) if counts and min(counts) > 0 else None


def _comparable(record: dict[str, Any], key: str, batches: int | None) -> Any:
    if key == "data_fingerprint" and batches is not None:
        return tuple(record["batch_digests"][:batches])
    if key == "budget_steps" and record.get("budget_unit") != "steps":
        return None  # calibrated and flops budgets give each cell its own steps
    value = record.get(key)
    # Durations are computed from samples and rates: equal settings agree to 1e-6 s.
    return round(value, 6) if isinstance(value, float) else value


def _shown(value: Any) -> str:
    if isinstance(value, tuple):  # per-batch digests: the first one names them
        return f"(batches {value[0]}…)" if value else "()"
    return repr(value)
