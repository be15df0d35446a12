"""Configurations: runs that differ only in their seed form one, and are aggregated.

A configuration is named by dimension, depth and whatever else the runs' configs
vary; its figures are the mean and standard deviation over its seeds.
"""

from __future__ import annotations

import json

import pandas as pd

from ablation.report.runs import Run, seed_keys

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


def assign_configurations(runs: list[Run]) -> None:
    """Name each run's configuration: ``<dimension> depth<N>`` plus the config values
    that vary across runs, leaving out seeds, places and names, and values that
    dimension and depth already determine (the model class, the preset of a family).

    Runs with equal names are seeds of one configuration.
    """
    keys = sorted({k for run in runs for k in run.config})
    seeds = {k for run in runs for k in seed_keys(run.config)}
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


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: number of seeds, and mean and std over seeds of every figure."""
    numeric = table.drop(columns=["run", "seed", "depth"]).select_dtypes("number").columns
    grouped = table.groupby("configuration", sort=False)
    out = grouped[list(numeric)].agg(["mean", "std"])
    out.columns = [f"{column} {how}" for column, how in out.columns]
    out.insert(0, "seeds", grouped.size())
    first = grouped[["dimension", "depth", "preset"]].first()
    return pd.concat([first, out], axis=1)


def _is_noise(key: str) -> bool:
    parts = key.lower().replace("/", ".").split(".")
    return any(part == noise or part.endswith(f"_{noise}") for part in parts for noise in _NOISE)


def _value(run: Run, key: str) -> str:
    return json.dumps(run.config.get(key), default=str)


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
