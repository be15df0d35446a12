"""LightningModules (lightning_modules) on the toy DataModule, on CPU, with tiny nets."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from ablation.checkpoint import load_net
from ablation.constants import MONITOR, SOURCES, TRAIN_LOSS, VAL_LOSS, VAL_MSE, VAL_SDR, val_sdr
from ablation.separate import separate
from datamodules import MUSDBDataModule
from lightning_modules import SeparationModule, SpecUNetModule, WaveUNetModule
from lightning_modules.callbacks import (
    EXAMPLES_AUDIO,
    EXAMPLES_SPECTROGRAM,
    PEAK_GPU_MEM,
    SAMPLES_PER_S,
    SEGMENTS_PER_S,
    NonFiniteError,
    spectrogram_image,
)

REPO = Path(__file__).resolve().parents[1]
SEGMENT = 1.0
TINY = {
    "1d": (WaveUNetModule, {"depth": 2, "filters": 4}),
    "2d": (
        SpecUNetModule,
        {"depth": 2, "filters": 4, "n_fft": 512, "hop_length": 128, "bins": 128},
    ),
}


def tiny_module(dimension: str, **kwargs) -> SeparationModule:
    cls, net = TINY[dimension]
    return cls(**net, segment=SEGMENT, example_every_n_epochs=0, **kwargs)


@pytest.fixture(scope="module")
def datamodule_factory(toy_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")

    def make(**kwargs) -> MUSDBDataModule:
        arguments = dict(
            root=str(toy_root), cache_dir=str(cache), segment=SEGMENT, batch_size=2,
            num_workers=0, segments_per_track=2, progress=False,
        )  # fmt: skip
        return MUSDBDataModule(**{**arguments, **kwargs})

    return make


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False,
        enable_model_summary=False, logger=False, enable_checkpointing=False,
    )  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def fitted_runs(datamodule_factory, tmp_path_factory) -> dict:
    """Per dimension: a module after ``fast_dev_run``, its Trainer and a saved checkpoint."""
    runs = {}
    for dimension in TINY:
        tmp = tmp_path_factory.mktemp(dimension)
        module = tiny_module(dimension)
        fit = trainer(tmp, fast_dev_run=True)
        fit.fit(module, datamodule=datamodule_factory())
        fit.save_checkpoint(tmp / "model.ckpt")
        runs[dimension] = (module, fit, tmp / "model.ckpt")
    return runs


@pytest.mark.parametrize("dimension", TINY)
def test_fast_dev_run_logs_losses_and_metrics_per_source(fitted_runs, dimension):
    _, fit, _ = fitted_runs[dimension]
    names = [TRAIN_LOSS, VAL_LOSS, VAL_MSE, VAL_SDR]
    names += [val_sdr(s) for s in SOURCES] + [f"{TRAIN_LOSS}/{s}" for s in SOURCES]
    names += [f"{VAL_LOSS}/{s}" for s in SOURCES]
    metrics = fit.callback_metrics
    assert set(names) <= set(metrics), sorted(set(names) - set(metrics))
    assert all(math.isfinite(metrics[name].item()) for name in names)
    per_source = np.mean([metrics[val_sdr(s)].item() for s in SOURCES])
    assert metrics[MONITOR].item() == pytest.approx(per_source, abs=1e-4)
    # With mse and equal weights the loss is the study's mse.
    assert metrics[VAL_LOSS].item() == pytest.approx(metrics[VAL_MSE].item(), rel=1e-5)


@pytest.mark.parametrize("dimension", TINY)
def test_checkpoint_round_trips_through_lightning_and_separate(fitted_runs, dimension):
    module, _, ckpt = fitted_runs[dimension]
    cls = TINY[dimension][0]
    reloaded = cls.load_from_checkpoint(ckpt, map_location="cpu")
    net = load_net(ckpt)
    assert net.source_names == SOURCES and net.segment_seconds == SEGMENT
    assert net.sample_rate == 44100
    mixture = torch.randn(2, 30_000, generator=torch.Generator().manual_seed(0))
    nets = (module.net, reloaded.net, net)
    outputs = [separate(n, mixture, segment_samples=22_050) for n in nets]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    assert dict(reloaded.hparams) == dict(module.hparams)


def test_checkpoints_load_without_lightning(fitted_runs):
    """ablation/ never imports Lightning: load_net must work where it is absent."""
    ckpts = [str(ckpt) for _, _, ckpt in fitted_runs.values()]
    script = textwrap.dedent(f"""
        import sys
        for name in ("lightning", "pytorch_lightning", "lightning_fabric"):
            sys.modules[name] = None  # any import of them now fails
        from ablation.checkpoint import load_net
        for ckpt in {ckpts!r}:
            net = load_net(ckpt)
            print(net.source_names, type(net).__name__)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "WaveUNet" in result.stdout and "SpecUNet" in result.stdout


def test_checkpoint_guard_refuses_non_finite_weights(fitted_runs, tmp_path):
    module, fit, _ = fitted_runs["1d"]
    path = tmp_path / "bad.ckpt"
    parameter = next(module.net.parameters())
    saved = parameter.detach().clone()
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
    try:
        with pytest.raises(NonFiniteError, match="refusing to save"):
            fit.save_checkpoint(path)
    finally:
        with torch.no_grad():
            parameter.copy_(saved)
    assert not path.exists()


class NanAtStep(Callback):
    """Turn the batch of one training step into NaN, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch.fill_(float("nan"))


def test_non_finite_loss_stops_the_run_and_keeps_last_checkpoint_finite(
    datamodule_factory, tmp_path
):
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    fit = trainer(
        tmp_path, max_steps=6, limit_val_batches=0, enable_checkpointing=True,
        callbacks=[checkpoints, NanAtStep(3)],
    )  # fmt: skip
    with pytest.raises(NonFiniteError, match="global step 3"):
        fit.fit(tiny_module("1d"), datamodule=datamodule_factory())
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 3
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


def test_describe_throughput_memory_and_lr_reach_the_logger(datamodule_factory, tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    fit = trainer(
        tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=logger,
        log_every_n_steps=1,
    )  # fmt: skip
    module = tiny_module("1d", scheduler="cosine")
    fit.fit(module, datamodule=datamodule_factory())
    metrics = pd.read_csv(Path(logger.log_dir) / "metrics.csv")
    rates = metrics[[SAMPLES_PER_S, SEGMENTS_PER_S]].dropna()
    assert len(rates) and (rates[SEGMENTS_PER_S] > 0).all()
    # Audio samples per segment: the ratio is the segment length exactly.
    np.testing.assert_allclose(rates[SAMPLES_PER_S] / rates[SEGMENTS_PER_S], SEGMENT * 44100)
    assert (metrics[PEAK_GPU_MEM].dropna() == 0).all() and len(metrics[PEAK_GPU_MEM].dropna())
    learning_rates = metrics["lr-AdamW"].dropna().to_numpy()
    # the cosine's warm-up starts at 0; past it the rate is falling towards its floor
    assert learning_rates[0] == 0 and 0 < learning_rates[-1] < 3e-4
    hparams = yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    assert hparams["net/parameters"] == sum(p.numel() for p in module.net.parameters())
    assert hparams["net/receptive_field_samples"] > 1 and hparams["net/macs_per_second"] > 0


class FakeClock(Callback):
    """A clock that advances 1 s per training batch and 100 s per validation batch."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_train_batch_end(self, *args):
        self.now += 1.0

    def on_validation_batch_end(self, *args):
        self.now += 100.0


def test_throughput_counts_training_time_only(datamodule_factory, tmp_path, monkeypatch):
    import lightning_modules.callbacks as callbacks

    clock = FakeClock()
    monkeypatch.setattr(callbacks, "time", clock)
    logger = CSVLogger(tmp_path, name="run")
    fit = trainer(
        tmp_path, max_epochs=1, limit_train_batches=4, val_check_interval=2,
        limit_val_batches=1, logger=logger, callbacks=[clock],
    )  # fmt: skip
    fit.fit(tiny_module("1d"), datamodule=datamodule_factory())
    rates = pd.read_csv(Path(logger.log_dir) / "metrics.csv")[SEGMENTS_PER_S].dropna()
    # Batches of 2 segments, 1 s each: validation (100 s) mid-epoch must not count.
    assert len(rates) and (rates == 2.0).all(), rates


def test_examples_go_to_wandb_as_audio_and_spectrograms(datamodule_factory, tmp_path, monkeypatch):
    calls = []
    for method in ("log_audio", "log_image"):
        original = getattr(WandbLogger, method)

        def spy(self, key, items, step=None, _original=original, **kwargs):
            calls.append((key, items, kwargs))
            return _original(self, key, items, step=step, **kwargs)

        monkeypatch.setattr(WandbLogger, method, spy)
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), mode="disabled")
    fit = trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1,
        num_sanity_val_steps=0, logger=logger,
    )  # fmt: skip
    module = TINY["1d"][0](**TINY["1d"][1], segment=SEGMENT, example_every_n_epochs=1, examples=1)
    fit.fit(module, datamodule=datamodule_factory())
    assert [key for key, _, _ in calls] == [EXAMPLES_AUDIO, EXAMPLES_SPECTROGRAM]
    (_, audios, audio_kwargs), (_, images, _) = calls
    per_item = 1 + 2 * len(SOURCES)  # mixture, then estimate and reference per source
    assert len(audios) == len(images) == per_item
    assert audio_kwargs["caption"][:3] == [
        "item 0 mixture",
        "item 0 drums estimate",
        "item 0 drums reference",
    ]
    assert audio_kwargs["sample_rate"][0] == 44100
    assert audios[0].shape == (44100, 2)
    assert images[0].dtype == np.uint8 and images[0].shape[0] == 1025 and images[0].shape[2] == 3


def test_spectrogram_image_puts_a_tone_at_its_frequency():
    rate, freq, n_fft = 44100, 2756.25, 2048  # exactly bin 128
    t = torch.arange(rate) / rate
    image = spectrogram_image(torch.sin(2 * np.pi * freq * t)[None].repeat(2, 1), n_fft=n_fft)
    brightness = image.astype(float).sum(axis=(1, 2))
    # Row 0 is the top (highest bin): bin 128 is row n_fft // 2 - 128.
    assert brightness.argmax() == n_fft // 2 - 128


def test_cosine_schedule_without_a_step_count_says_what_to_set(datamodule_factory, tmp_path):
    fit = trainer(tmp_path, max_epochs=-1, max_time={"minutes": 1}, limit_val_batches=0)
    with pytest.raises(ValueError, match="max_epochs nor max_steps"):
        fit.fit(tiny_module("1d", scheduler="cosine"), datamodule=datamodule_factory())


def test_modules_reject_the_other_family_and_wrong_source_counts():
    with pytest.raises(ValueError, match="trains 1d nets"):
        WaveUNetModule(preset="spleeter-4stems", depth=2, filters=4)
    config = {"dimension": "1d", "sources": 2, "depth": 2, "filters": 4}
    with pytest.raises(ValueError, match="estimates 2 sources, but 4 are named"):
        SeparationModule(config, sources=SOURCES)
    with pytest.raises(ValueError, match="2-channel audio, the data has 1"):
        SeparationModule({**config, "sources": 4}, sources=SOURCES, channels=1)


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 on GPU needs CUDA")


# bf16 autocast on CPU is slow (no fast kernels): the CPU runs are kept out of the default run.
@pytest.mark.parametrize(
    "accelerator", [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("gpu", marks=GPU)]
)
@pytest.mark.parametrize("dimension", TINY)
def test_bf16_mixed_precision_step_is_finite(dimension, accelerator, datamodule_factory, tmp_path):
    fit = trainer(tmp_path, fast_dev_run=True, precision="bf16-mixed", accelerator=accelerator)
    module = tiny_module(dimension, loss={"mse": 1.0, "mrstft": 0.1}, loss_weights="balanced")
    fit.fit(module, datamodule=datamodule_factory())
    assert math.isfinite(fit.callback_metrics[TRAIN_LOSS].item())
    assert math.isfinite(fit.callback_metrics[VAL_SDR].item())


# ---- learning (slow) ------------------------------------------------------------------


def constant_gain_estimates(stems: torch.Tensor) -> torch.Tensor:
    """The best estimate a net can give without separating: the mixture scaled per
    source by the least-squares gain ``<s, x> / <x, x>``.

    Args:
        stems: ``(sources, channels, time)`` of one track.

    Returns:
        ``(sources, channels, time)``.
    """
    mixture = stems.sum(0)
    gains = (stems * mixture).sum(dim=(-2, -1)) / mixture.square().sum()
    return gains[:, None, None] * mixture


# Per dimension: net arguments and training steps of the learning check. The toy set is
# generated at 11.025 kHz, a quarter of the samples, so a CPU trains the nets in
# minutes; the 2-D net's STFT is scaled from 4096/1024 at 44.1 kHz to keep the same
# window in seconds, and dropout is off for so short a training.
LEARNING_RATE_HZ = 11025
LEARNING = {
    "1d": (WaveUNetModule, {}, 400),
    "2d": (SpecUNetModule, {"n_fft": 1024, "hop_length": 256, "bins": 512, "dropout": 0.0}, 150),
}


def learning_check(
    root: Path, depth: int = 3, threads: int = 2, seed: int = 0, step_scale: float = 1.0
) -> dict[str, dict[str, float]]:
    """Train each dimension at ``depth`` on CPU on a generated toy set (8 train, 3
    held-out test tracks of 8 s) and score the held-out tracks.

    Each dimension trains from its default preset for the steps of :data:`LEARNING`
    (times ``step_scale``): a few minutes on 2 cores, and the same result on any
    machine. The held-out tracks are separated whole
    (:func:`ablation.separate.separate`) and scored with the whole-track SDR of
    :func:`ablation.metrics.sdr`, averaged over tracks, as are the two baselines:
    the mixture as every estimate, and :func:`constant_gain_estimates`.

    Returns:
        ``{"mixture" | "gain" | "1d" | "2d": {source: mean SDR in dB}}``, plus
        ``{"seconds": {dimension: training wall time}}``.
    """
    import time

    from ablation.metrics import sdr
    from datamodules import make_toy_dataset

    torch.set_num_threads(threads)
    rate = LEARNING_RATE_HZ
    toy = make_toy_dataset(
        root / "toy", n_train=8, n_test=3, duration=8.0, sample_rate=rate, seed=1, progress=False
    )
    datamodule = MUSDBDataModule(
        root=str(toy), cache_dir=str(root / "cache"), sample_rate=rate, segment=1.0,
        batch_size=4, num_workers=0, segments_per_track=64, progress=False,
    )  # fmt: skip
    datamodule.setup("test")
    tracks = [stems[0] for stems, _ in datamodule.test_dataloader()]
    estimators = {
        "mixture": lambda stems: stems.sum(0).expand_as(stems),
        "gain": constant_gain_estimates,
    }
    seconds = {}
    for dimension, (cls, net, steps) in LEARNING.items():
        L.seed_everything(seed)
        module = cls(
            depth=depth, **net, sample_rate=rate, segment=1.0, lr=1e-3, example_every_n_epochs=0
        )
        fit = L.Trainer(
            accelerator="cpu", max_steps=round(steps * step_scale), limit_val_batches=0,
            num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        start = time.perf_counter()
        fit.fit(module, datamodule=datamodule)
        seconds[dimension] = time.perf_counter() - start
        estimators[dimension] = lambda stems, net=module.net: separate(net, stems.sum(0), rate)
    scores = {
        name: torch.stack([sdr(estimate(t), t) for t in tracks]).mean(0).tolist()
        for name, estimate in estimators.items()
    }
    return {name: dict(zip(SOURCES, v, strict=True)) for name, v in scores.items()} | {
        "seconds": seconds
    }


@pytest.mark.slow
def test_both_families_separate_better_than_the_best_constant_gain(tmp_path):
    """Run alone: ``pytest -m slow tests/test_modules.py -k constant_gain -s``."""
    results = learning_check(tmp_path)
    print({k: {s: round(v, 2) for s, v in scores.items()} for k, scores in results.items()})
    gain = np.array(list(results["gain"].values()))
    mixture = np.array(list(results["mixture"].values()))
    for dimension in LEARNING:
        scores = np.array(list(results[dimension].values()))
        assert (scores - mixture).mean() >= 1.0, (dimension, results)
        assert (scores - gain).mean() >= 1.0, (dimension, results)


def test_spec_stft_keeps_its_duration_at_other_sample_rates():
    from lightning_modules import SpecUNetModule

    quarter = SpecUNetModule(depth=2, filters=4, sample_rate=11025).net.config
    assert (quarter["n_fft"], quarter["hop_length"]) == (4096 // 4, 1024 // 4)
    assert quarter["bins"] == 1024 // 2 + 1  # same bin width: all bins up to Nyquist
    explicit = SpecUNetModule(depth=2, filters=4, sample_rate=11025, n_fft=512).net.config
    assert explicit["n_fft"] == 512 and explicit["bins"] == 257
    assert SpecUNetModule(depth=2, filters=4).net.config["n_fft"] == 4096
