"""The benchmarks' own pieces: the Spleeter port, the layout switch, the GPU script."""

from __future__ import annotations

import json

import pytest
import torch

from ablation.benchmarks.spleeter_port import SpleeterPort
from ablation.benchmarks.train import fast_layouts
from ablation.nets import build
from ablation.nets.blocks import RowConv1d


@torch.no_grad()
def test_spleeter_port_separates_a_waveform_into_four_stereo_estimates():
    torch.manual_seed(0)
    port = SpleeterPort(depth=2, n_fft=512, hop=128, bins=128).eval()
    mixture = 0.3 * torch.randn(2, 2, 31 * 128)
    estimates = port(mixture)
    assert estimates.shape == (2, 4, 2, mixture.shape[-1]), estimates.shape
    # Ratio masks sum to one over the sources on the kept bins: the estimates add up
    # to the mixture low-passed at bin 128 of 257, far from the mixture itself.
    low_passed = estimates.sum(1)
    assert torch.isfinite(estimates).all()
    assert 0.2 < low_passed.norm() / mixture.norm() < 0.95


def test_fast_layouts_switch_is_restored():
    net = build("wave-unet-m6", depth=2, filters=4)
    with fast_layouts(net, False):
        assert RowConv1d.fast_layout is False
    assert RowConv1d.fast_layout is True


@pytest.mark.slow
def test_gpu_script_quick_form_measures_every_cell(tmp_path):
    from ablation.benchmarks import gpu

    out = tmp_path / "bench.json"
    gpu.main(quick=True, out=out)
    results = json.loads(out.read_text())
    assert [cell["cell"] for cell in results["cells"]] == [
        "1d-depth3",
        "1d-depth6",
        "2d-depth2",
        "2d-depth4",
        "2d-depth6",
    ]
    for cell in results["cells"]:
        assert cell["steps_per_second"] > 0, cell
        assert 0 <= cell["data_wait_share_workers"] < 1, cell
        assert cell["separation_seconds_per_minute"] > 0, cell
        assert cell["peak_memory_gib"] > 0, cell
    assert results["bsseval_seconds_per_minute"] > 0


@pytest.mark.slow
def test_scale_bench_quick_form_runs_every_stage(tmp_path, monkeypatch, capsys):
    from ablation.benchmarks import scale

    monkeypatch.setenv(scale.DATA_ENV, str(tmp_path))
    scale.main(quick=True)
    out = capsys.readouterr().out
    stages = ["dataset: render", "cache build, HQ wav", "cache build, .stem.mp4",
              "DataModule start-up, HQ wav", "DataModule start-up, .stem.mp4",
              "train 1d-depth6", "validation pass 1d-depth6", "evaluate 1d-depth6",
              "train 2d-depth4", "validation pass 2d-depth4", "evaluate 2d-depth4",
              "report", "On a GPU"]  # fmt: skip
    for stage in stages:
        assert stage in out, (stage, out)
    work = tmp_path / "quick"
    for cell in scale.CELLS:
        summary = json.loads((work / "runs" / "scale" / cell / "summary.json").read_text())
        assert summary["steps"] == 2, summary
    assert len(list(work.glob("runs/scale/*/checkpoints/*-eval-test/summary.json"))) == 2
    assert (work / "results" / "report" / "index.html").is_file()
