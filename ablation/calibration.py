"""Calibration tables: a time budget turned once into a step count per cell.

A table is a JSON file kept with its sweep (``runs/<sweep>/calibration.json``) or
given by path (``sweeps/demo_calibration.json``, measured once on a 2-core CPU)::

    {"cells": {"2d-depth3": {"device": "...", "seconds_per_step": 0.12,
                             "batch_size": 8, "window_samples": 30870,
                             "precision": "32-true", "world_size": 1,
                             "warmup_steps": 3, "timed_steps": 40, "measured": "..."}}}

Every seed, resume and rerun of a cell reads the same entry, so the cell trains the
same number of steps wherever and whenever it runs: ``budget seconds / seconds per
step``, rounded. An entry only fits runs with the batch, window, precision and world
size it was measured with; anything else is refused with the fix.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablation.arguments import model_variants
from ablation.errors import AblationError
from ablation.files import write_json

CALIBRATION_FILE = "calibration.json"
# What the step time depends on besides the net: an entry fits only runs that agree.
MEASURED_WITH = ("batch_size", "window_samples", "precision", "world_size")
# Arguments that change no step's cost.
COST_FREE = ("lr", "weight_decay")


class CalibrationError(AblationError):
    """A calibration table that does not fit the run, phrased for the user."""


def cell_key(dimension: str, depth: int, arguments: Mapping[str, object]) -> str:
    """The table key of a run: its cell and the variants that can change a step's cost
    (``2d-depth3``, ``1d-depth6-ema-decay0.999``), not its seed or its rates, so every
    seed and every learning rate of a cell (a tuning grid) shares one entry and trains
    the same steps.

    Args:
        dimension, depth: the cell.
        arguments: the run's naming arguments (:func:`ablation.arguments.variant_arguments`).
    """
    costly = {k: v for k, v in arguments.items() if k.removeprefix("init_args.") not in COST_FREE}
    return "-".join([f"{dimension}-depth{depth}", *model_variants(costly)])


def read_table(path: str | Path) -> dict[str, Any]:
    """The table in ``path`` (an empty one when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {"cells": {}}
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CalibrationError(
            f"calibration table {path} is not readable JSON ({error}): expected "
            f'{{"cells": {{...}}}}; remove it to calibrate again.'
        ) from None
    if not isinstance(table, dict) or not isinstance(table.get("cells"), dict):
        raise CalibrationError(
            f"calibration table {path} has no 'cells' object: expected "
            f'{{"cells": {{"<cell>": {{"seconds_per_step": ...}}}}}}; remove it to calibrate again.'
        )
    return table


def find_entry(path: str | Path, key: str, run: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of ``key`` if the table has one, checked against the run's
    :data:`MEASURED_WITH` figures; None when the table has no such cell."""
    entry = read_table(path)["cells"].get(key)
    if entry is None:
        return None
    differing = [
        f"{name} {entry.get(name)!r} (run: {run[name]!r})"
        for name in MEASURED_WITH
        if name in run and name in entry and entry[name] != run[name]
    ]
    if differing:
        raise CalibrationError(
            f"calibration table {path} measured {key} with other settings: "
            f"{', '.join(differing)}; the step time would not hold. Give another table "
            f"(--run.calibration=new.json) to calibrate this setting, or run with the "
            f"table's settings."
        )
    if not entry.get("seconds_per_step", 0) > 0:
        raise CalibrationError(
            f"calibration table {path}: {key} has no positive seconds_per_step "
            f"({entry.get('seconds_per_step')!r}); remove the entry to calibrate again."
        )
    return entry


@contextmanager
def _locked(path: Path):
    # Several agents of one sweep may calibrate at once: one writer at a time, each
    # reading the table as the last one left it. flock works on local and NFS mounts.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_entry(path: str | Path, key: str, entry: dict[str, Any]) -> None:
    """Add (or replace) the entry of ``key`` in the table at ``path``."""
    path = Path(path)
    with _locked(path):
        table = read_table(path)
        table["cells"][key] = entry
        table["cells"] = dict(sorted(table["cells"].items()))
        write_json(path, table)


def budget_steps(seconds: float, entry: dict[str, Any]) -> int:
    """The step count of a ``seconds`` budget at the entry's step time (at least 1)."""
    return max(1, round(seconds / entry["seconds_per_step"]))
