"""What the user types, made configuration: the one place that parses cells, model
variants and sweep parameters.

A command line or a sweep cell names a grid cell (``--cell=2d-depth4``, W&B grids
cannot make depths depend on the dimension), model variants (``--model.X=V``) and named
data arguments (``--data.segment``). Here they become the ``ablation fit`` arguments
LightningCLI parses into the run's configuration (:func:`expand_cell`, :func:`command`)
and the parts a run is named after (:func:`model_arguments`, :func:`model_variants`).
Everything downstream (the Lightning layer, the sweep runner, resume and skip) reads
the parsed configuration or these functions' results, never the raw strings again.
Imports nothing of the training stack.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

DIMENSION_MODULES = {
    "1d": "lightning_modules.WaveUNetModule",
    "2d": "lightning_modules.SpecUNetModule",
}

# A grid cell: dimension and depth, and for parameter-matched grids the filters too.
CELL = re.compile(r"^(?P<dimension>[12]d)-depth(?P<depth>\d+)(?:-filters(?P<filters>\d+))?$")

# Data arguments that name a run's variant when a sweep varies them (a segment sweep).
NAMED_DATA = ("segment",)

VARIANT_ARGUMENT = re.compile(r"^--(cell|model\.[\w.]+|data\.segment)=(.*)$")


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


def expand_cell(argv: Sequence[str]) -> list[str]:
    """Replace ``--cell=2d-depth4`` by ``--model=...SpecUNetModule --model.depth=4``.

    A sweep grid names whole cells (dimension and depth together) because W&B grids
    cannot make the depth values depend on the dimension. The model class must come
    before any ``--model.*`` argument, so the expansion goes where the cell or the
    first of those stood, whichever is earlier.
    """
    args, cell, position, filters = [], None, None, None
    items = list(argv)
    while items:
        arg = items.pop(0)
        if arg == "--cell" and items:
            arg = f"--cell={items.pop(0)}"
        if arg.startswith("--cell="):
            cell = parse_cell(arg.split("=", 1)[1])
            filters = cell_filters(arg.split("=", 1)[1])
            position = len(args) if position is None else position
            continue
        if arg.startswith("--model.") and position is None:
            position = len(args)
        args.append(arg)
    if cell is None:
        return args
    dimension, depth = cell
    expansion = [f"--model={DIMENSION_MODULES[dimension]}", f"--model.depth={depth}"]
    expansion += [f"--model.filters={filters}"] if filters is not None else []
    args[position:position] = expansion
    return args


def model_arguments(argv: Sequence[str]) -> dict[str, str]:
    """The arguments a run is named after, from a command line: a cell's filters, the
    ``--model.X=V`` and the named data arguments (:data:`NAMED_DATA`), as
    ``{X: V}`` (what :func:`model_variants` names a run after)."""
    given = {m[1]: m[2] for m in map(VARIANT_ARGUMENT.match, argv) if m}
    return variant_arguments(given)


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


def command(config: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` would run for ``params`` (same macros, same flags)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    formats = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros = {
        "${env}": [],
        "${interpreter}": [sys.executable],
        "${program}": [config.get("program", "")],
    }
    macros.update(
        {f"${{{name}}}": value for name, value in formats.items() if isinstance(value, list)}
    )
    template = config.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    return [part for item in template for part in macros.get(item, [item])]
