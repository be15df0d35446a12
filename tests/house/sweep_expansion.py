"""Every cell of every sweep YAML in ``sweeps/`` as ``ablation fit`` parses it.

``expand_all`` runs each cell's command (the one ``wandb agent`` and the offline runner
build) through ``ablation fit ... --print_config`` in this process and keeps the parsed
configuration: the net, data, training and run settings the cell would train with.
``sweep_configs.json`` holds what the main branch of 2026-12-03 (commit 2c04a71, before
the command line was reshaped) printed, written by ``python tests/house/sweep_expansion.py``
at that commit.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("sweep_configs.json")
NOT_SWEEPS = {"base.yaml", "demo_base.yaml"}  # the fit configs the sweeps point at


def cell_label(params: dict) -> str:
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


def parsed(argv: list[str]) -> dict:
    from ablation.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        try:
            main([*argv, "--print_config"])
        except SystemExit as done:
            assert not done.code, f"{argv}: exit {done.code}"
    return yaml.safe_load(out.getvalue())


def settings(config: dict) -> dict:
    """What a cell trains with: everything but the trainer's unset (null) options."""
    trainer = {k: v for k, v in config.pop("trainer", {}).items() if v is not None}
    return {**config, "trainer": trainer}


def expand_all() -> dict[str, dict[str, dict]]:
    from ablation.sweep import command, grid, load_sweep

    found: dict[str, dict[str, dict]] = {}
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        if path.name in NOT_SWEEPS:
            continue
        config = load_sweep(path)
        cells = {}
        for params in grid(config):
            argv = command(config, params)
            cells[cell_label(params)] = settings(parsed(argv[argv.index("fit") :]))
        found[path.name] = cells
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    GOLDEN.write_text(json.dumps(expand_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
