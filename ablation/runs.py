"""Where a run lives and what it is called: shared by the CLI, the sweep runner and
the report, so that all three agree without importing Lightning.

A run folder ``runs/<sweep>/<run-name>/`` holds ``config.yaml`` (the resolved
LightningCLI config), ``checkpoints/last.ckpt`` and ``checkpoints/best-*.ckpt``,
``metrics.csv`` (every logged value), ``wandb/`` (the W&B run files, offline or
online), ``wandb_run.json`` (the W&B run's id, project and entity, so a resumed run
and a later evaluation log into the same W&B run) and, once training has ended
inside its budget, ``summary.json`` (final figures; its presence marks the run done);
``checkpoints/budget-<f>.ckpt`` are the run at fractions ``f`` of its budget. Beside a
sweep's run folders, ``sweep.yaml`` is the sweep as it ran and ``calibration.json`` the
step times of its ``calibrated`` budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ablation.files import read_json  # noqa: F401 (re-exported for the CLI and the demo)

DIMENSION_MODULES = {
    "1d": "lightning_modules.WaveUNetModule",
    "2d": "lightning_modules.SpecUNetModule",
}
# A grid cell: dimension and depth, and for parameter-matched grids the filters too.
CELL = re.compile(r"^(?P<dimension>[12]d)-depth(?P<depth>\d+)(?:-filters(?P<filters>\d+))?$")
# Data arguments that name a run's variant when a sweep varies them (a segment sweep).
NAMED_DATA = ("segment",)
SUMMARY = "summary.json"
WANDB_RUN = "wandb_run.json"
LAST = "last.ckpt"
# The sweep YAML as the runner ran it, kept beside the sweep's runs (runs/<sweep>/).
SWEEP_COPY = "sweep.yaml"


def parse_cell(cell: str) -> tuple[str, int]:
    """``"2d-depth4"`` -> ``("2d", 4)`` (a ``-filters<F>`` suffix allowed)."""
    match = _match_cell(cell)
    return match["dimension"], int(match["depth"])


def cell_filters(cell: str) -> int | None:
    """The filters a cell names (``"1d-depth3-filters73"`` -> 73), else None."""
    filters = _match_cell(cell)["filters"]
    return None if filters is None else int(filters)


def _match_cell(cell: str) -> re.Match:
    match = CELL.match(cell)
    if not match:
        raise ValueError(
            f"cell {cell!r} is not a grid cell: expected '<1d|2d>-depth<N>', e.g. '1d-depth6' "
            f"(or '1d-depth3-filters73' with the first level's filters)."
        )
    return match


def variant_arguments(params: Mapping[str, object]) -> dict[str, object]:
    """The arguments that name a run's variant, from dotted parameters (a sweep's, or a
    command line's): a cell's filters, then ``model.*``, then :data:`NAMED_DATA`, each
    without its prefix (what :func:`model_variants` turns into name parts)."""
    filters = cell_filters(str(params["cell"])) if "cell" in params else None
    named: dict[str, object] = {} if filters is None else {"filters": filters}
    for key, value in params.items():
        prefix, _, name = key.partition(".")
        if prefix == "model" or (prefix == "data" and name in NAMED_DATA):
            named[name] = value
    return named


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def run_name(dimension: str, depth: int, seed: int, variants: Sequence[object] = ()) -> str:
    """A name that says what the run is, e.g. ``2d-depth5-complex-seed0``."""
    parts = [f"{dimension}-depth{depth}", *(_slug(v) for v in variants), f"seed{seed}"]
    return "-".join(p for p in parts if p)


def model_variants(arguments: Mapping[str, object]) -> list[str]:
    """The model arguments that name a variant (not the depth), in the order given:
    a word value stands alone (``complex``), a number keeps its name (``filters8``).

    ``arguments`` maps the names given after ``--model.`` (``init_args.`` allowed)
    to their values as written.
    """
    variants = []
    for key, value in arguments.items():
        key, value = key.removeprefix("init_args."), str(value)
        if key not in ("depth", "class_path"):
            variants.append(value if re.match(r"^[A-Za-z]", value) else f"{key}{value}")
    return variants


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / SUMMARY).exists()


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / LAST
    return path if path.exists() else None


def budget_checkpoints(ckpt: str | Path) -> list[Path]:
    """The budget-fraction checkpoints (``budget-<f>.ckpt``) in the folder of ``ckpt``,
    smallest fraction first."""
    found = Path(ckpt).parent.glob("budget-*.ckpt")
    return sorted(found, key=lambda p: float(p.stem.removeprefix("budget-")))
