"""The controls a reviewer asks for (issue 22): a parameter-matched grid and a segment
grid, expanded as the sweep runner expands them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from ablation.arguments import expand_cell, model_arguments, model_variants, parse_cell
from ablation.nets import build
from ablation.nets.blocks import take
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


# ---- Spleeter's own recipe -------------------------------------------------------------------
def spleeter_module(**overrides):
    from lightning_modules import SpecUNetModule

    small = {"depth": 3, "filters": 4, "n_fft": 512, "hop_length": 128, "bins": 128}
    return SpecUNetModule(preset="spleeter-4stems-original", loss="spec-l1", segment=0.5,
                          example_every_n_epochs=0, **{**small, **overrides})  # fmt: skip


def test_the_spleeter_recipe_feeds_raw_magnitudes_into_its_unets():
    module = spleeter_module()
    net = module.net
    seen = []
    net.unets[0].encoder[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    mixture = torch.randn(2, 2, 22050)
    with torch.no_grad():
        net.eval()(mixture, 0)
    start, length = net._window(22050, 0)
    magnitudes = torch.stft(
        take(mixture, start, length).flatten(0, 1),
        512,
        128,
        window=torch.hann_window(512),
        return_complex=True,
        pad_mode="constant",
    ).abs()
    fed = seen[0][:, :, :128, :]  # bins padded to a multiple of 2**depth
    assert torch.allclose(fed.flatten(0, 1), magnitudes[:, :128], rtol=1e-4, atol=1e-5)


def test_the_spleeter_recipe_trains_l1_on_masked_magnitudes(monkeypatch):
    """With every U-Net output 0 each source's ratio mask is 1/4 exactly, so the loss is
    mean | |X| / 4 - |S_i| | over the window, computed here with torch.stft alone."""
    module = spleeter_module()
    net = module.net
    monkeypatch.setattr(net, "_run_unets", lambda features: torch.zeros(
        features.shape[0], 4 * 2, *features.shape[2:]))  # fmt: skip
    context = 4000
    stems = torch.randn(2, 4, 2, 22050 + 2 * context)
    loss, per_source, estimates, _ = module.model_step(stems, waveforms=False)
    assert estimates is None  # training computes no waveforms, as Spleeter

    def magnitudes(x):
        start, length = net._window(22050, context)
        frames = take(x, context + start, length)
        spec = torch.stft(frames.flatten(0, -2), 512, 128, window=torch.hann_window(512),
                          return_complex=True, pad_mode="constant").abs()  # fmt: skip
        return spec[:, :128].unflatten(0, x.shape[:-1])

    expected = (magnitudes(stems.sum(1)).unsqueeze(1) / 4 - magnitudes(stems)).abs()
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-4)
    assert per_source["vocals"].item() == pytest.approx(expected[:, 3].mean().item(), rel=1e-4)


def test_the_spleeter_recipe_wires_the_bottleneck_as_spleeter_and_its_sweep_says_so():
    net = spleeter_module().net
    deepest = net.unets[0].encoder[-1]
    assert isinstance(deepest[0], nn.Conv2d)
    assert isinstance(deepest[1], nn.Identity) and isinstance(deepest[2], nn.Identity)
    others = net.unets[0].encoder[0]
    assert isinstance(others[1], nn.BatchNorm2d) and not isinstance(others[2], nn.Identity)
    assert isinstance(net.input_norm, nn.Identity)
    suite = build("spleeter-4stems", depth=3, filters=4, n_fft=512, hop_length=128, bins=128)
    assert isinstance(suite.unets[0].encoder[-1][1], nn.BatchNorm2d)
    recipe = grid(load_sweep(REPO / "sweeps" / "spleeter_recipe.yaml"))[0]
    assert (recipe["model.loss"], recipe["model.lr"], recipe["data.batch_size"]) == (
        "spec-l1", 0.0001, 4)  # fmt: skip
    assert round(recipe["data.segment"] * 44100 / 1024) == 512


def test_a_waveform_net_refuses_the_spectral_loss_in_one_line():
    from lightning_modules import WaveUNetModule

    with pytest.raises(ValueError, match="2-D mask preset"):
        WaveUNetModule(depth=2, filters=4, loss="spec-l1", segment=0.5)
