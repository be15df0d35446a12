"""The controls a reviewer asks for (issue 22): a parameter-matched grid and a segment
grid, expanded as the sweep runner expands them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ablation.cli import expand_cell, model_arguments
from ablation.nets import build
from ablation.runs import model_variants, parse_cell
from ablation.separate import net_context
from ablation.sweep import cell_run_dir, command, grid, load_sweep

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"1d": "wave-unet-m6", "2d": "spleeter-4stems"}


def cell_net(params: dict):
    """The net `ablation fit` builds for a sweep run: its command, expanded."""
    argv = expand_cell(command(load_sweep(REPO / "sweeps" / "params_matched.yaml"), params))
    model = {k: v for k, v in (a[2:].split("=", 1) for a in argv if a.startswith("--model."))}
    dimension, _ = parse_cell(params["cell"])
    return build(PRESETS[dimension], sources=4, depth=int(model["model.depth"]),
                 filters=int(model["model.filters"]))  # fmt: skip


def test_every_parameter_matched_cell_has_the_same_parameters_within_10_percent():
    cells = grid(load_sweep(REPO / "sweeps" / "params_matched.yaml"))
    main = grid(load_sweep(REPO / "sweeps" / "depth_dimension.yaml"))
    assert sorted(parse_cell(c["cell"]) for c in cells) == sorted(
        parse_cell(c["cell"]) for c in main
    )
    counts = {c["cell"]: cell_net(c).num_parameters() for c in cells}
    assert max(counts.values()) <= 1.1 * min(counts.values()), counts
    # and the default filters would not: 0.12 M to 39 M
    default = [build(PRESETS[d], sources=4, depth=n).num_parameters()
               for d, n in map(parse_cell, (c["cell"] for c in main))]  # fmt: skip
    assert max(default) > 100 * min(default)


def test_parameter_matched_runs_are_named_after_their_filters_everywhere():
    config = load_sweep(REPO / "sweeps" / "params_matched.yaml")
    names = set()
    for params in grid(config):
        folder = cell_run_dir(Path("runs"), "params_matched", params).name
        argv = expand_cell(command(config, params))
        dimension, depth = parse_cell(params["cell"])
        assert folder.startswith(f"{dimension}-depth{depth}-filters")
        assert f"-{model_variants(model_arguments(argv))[0]}-" in folder  # the CLI's own name
        names.add(folder)
    assert len(names) == 9


def test_the_segment_grid_covers_both_regions_in_real_context_with_distinct_runs():
    config = load_sweep(REPO / "sweeps" / "segment.yaml")
    data = yaml.safe_load((REPO / "sweeps" / "base.yaml").read_text())["data"]
    runs = grid(config)
    assert {r["data.segment"] for r in runs} == {3.0, 12.0} and len(runs) == 18
    names = {cell_run_dir(Path("runs"), "segment", r).name for r in runs}
    assert len(names) == 18 and "2d-depth6-segment12.0-seed0" in names
    for run in runs:
        dimension, depth = parse_cell(run["cell"])
        net = build(PRESETS[dimension], sources=4, depth=depth, filters=2)
        segment = round(run["data.segment"] * data["sample_rate"])
        reads = max(net_context(net, segment), *net.reach_samples())
        assert reads <= round(data["context"] * data["sample_rate"]), run


@pytest.mark.parametrize("cell", ["1d-depth3-filters73", "2d-depth6-filters4"])
def test_a_cell_with_filters_expands_to_the_model_arguments(cell):
    argv = expand_cell([f"--cell={cell}", "--model.lr=0.001"])
    dimension, depth = parse_cell(cell)
    assert argv[1:3] == [f"--model.depth={depth}", f"--model.filters={cell.rsplit('filters')[1]}"]
    assert argv[-1] == "--model.lr=0.001" and dimension in ("1d", "2d")
