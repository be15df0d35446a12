"""Callbacks every separation run gets (see :func:`default_callbacks`).

- :class:`FiniteGuard`: a non-finite loss stops the run before the weights are
  touched, and no checkpoint with non-finite weights is ever written.
- :class:`Throughput`: training segments/s and audio samples/s, data loading
  included, validation excluded.
- :class:`PeakMemory`: peak GPU memory per epoch (0 on CPU).
- :class:`ExampleLogger`: every N epochs a few validation examples as audio
  and spectrogram images, on W&B only.
- Lightning's ``LearningRateMonitor`` for the learning rate.

and, when the module asks for them, :class:`lightning_modules.schedule.TimeCosine`
(the cosine schedule over the counted budget) and :class:`lightning_modules.ema.WeightEMA`
(validation, checkpoints and evaluation on an EMA of the weights).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger
from matplotlib import colormaps
from torch import Tensor

from ablation.errors import AblationError
from lightning_modules.ema import WeightEMA
from lightning_modules.schedule import TimeCosine

SAMPLES_PER_S = "train/samples_per_s"
SEGMENTS_PER_S = "train/segments_per_s"
PEAK_GPU_MEM = "perf/peak_gpu_mem_gb"
EXAMPLES_AUDIO = "examples/audio"
EXAMPLES_SPECTROGRAM = "examples/spectrogram"


class NonFiniteError(AblationError, RuntimeError):
    """Training met a NaN or infinite loss, or was about to save non-finite weights."""


def _log_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    # Straight to the loggers: these figures come from hooks where self.log is not
    # allowed, and nothing monitors them.
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


class FiniteGuard(Callback):
    """Stop on a non-finite training loss, and never write non-finite weights.

    The loss is checked before backward, so the optimizer never steps on it and
    the weights stay those of the last good step; checkpoints already on disk
    (``last.ckpt`` included) are left untouched because the run stops there.
    Every checkpoint is checked before it is written as a second line of
    defence (e.g. finite loss but overflowing weights).
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor):
        if not torch.isfinite(loss).all():
            raise NonFiniteError(
                f"non-finite training loss ({loss.detach().float().cpu().tolist()}) at global "
                f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch "
                f"{trainer.fit_loop.epoch_loop.batch_idx}): the run stops before this step "
                f"updates the weights; the last checkpoint on disk is untouched. Lower the "
                f"learning rate, keep gradient clipping on (trainer.gradient_clip_val) or "
                f"train in 32-bit precision, then resume from that checkpoint."
            )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        bad = [
            name
            for name, value in checkpoint["state_dict"].items()
            if value.is_floating_point() and not torch.isfinite(value).all()
        ]
        if bad:
            raise NonFiniteError(
                f"refusing to save a checkpoint at global step {trainer.global_step}: "
                f"non-finite values in {bad[:5]}{' ...' if len(bad) > 5 else ''}. The "
                f"checkpoints already on disk are untouched; resume from one of them with a "
                f"lower learning rate."
            )


class Throughput(Callback):
    """Log training throughput every ``window`` batches and at the end of each epoch.

    ``train/segments_per_s`` counts training items, ``train/samples_per_s`` audio
    samples (items x segment length). Wall time between batches is measured, so
    data loading counts; validation time does not. CUDA is synchronized only
    when a figure is logged.

    Args:
        window: batches per logged figure.
    """

    def __init__(self, window: int = 50):
        self.window = window
        self._reset()

    def _reset(self) -> None:
        self._items = self._samples = self._batches = 0
        self._elapsed = 0.0
        self._since: float | None = None

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def _pause(self, pl_module: L.LightningModule) -> None:
        if self._since is not None:
            self._elapsed += self._now(pl_module) - self._since
            self._since = None

    def _flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause(pl_module)
        if self._batches and self._elapsed > 0:
            _log_metrics(
                trainer,
                {
                    SEGMENTS_PER_S: self._items / self._elapsed,
                    SAMPLES_PER_S: self._samples / self._elapsed,
                },
            )
        self._reset()
        self._since = self._now(pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._reset()
        self._since = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Tensor, batch_idx: int):
        self._items += batch.shape[0]
        self._samples += batch.shape[0] * batch.shape[-1]
        self._batches += 1
        if self._batches >= self.window:
            self._flush(trainer, pl_module)

    # Validation inside fit runs between training batches: its time is not training's.
    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._since = self._now(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._flush(trainer, pl_module)


class PeakMemory(Callback):
    """Log the peak GPU memory allocated by tensors during each training epoch, in GB."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        peak = 0.0
        if pl_module.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(pl_module.device) / 1e9
        _log_metrics(trainer, {PEAK_GPU_MEM: peak})


def spectrogram_image(signal: Tensor, n_fft: int = 2048, top_db: float = 80.0) -> np.ndarray:
    """A colour image of the dB magnitude spectrogram of ``signal (channels, time)``
    (channels averaged), low frequencies at the bottom: ``(bins, frames, 3)`` uint8."""
    mono = signal.float().mean(0)
    # A short training segment would be shorter than the window (torch.stft refuses).
    n_fft = min(n_fft, 2 ** int(math.log2(max(mono.shape[-1], 4))))
    window = torch.hann_window(n_fft, device=mono.device)
    spectrum = torch.stft(mono, n_fft, n_fft // 4, window=window, return_complex=True).abs()
    db = 20 * torch.log10(spectrum.clamp(min=1e-8))
    db = db.clamp(min=db.max() - top_db)
    scaled = ((db - db.min()) / (db.max() - db.min()).clamp(min=1e-8)).flip(0).cpu().numpy()
    return (colormaps["magma"](scaled)[..., :3] * 255).astype(np.uint8)


def example_items(
    mixture: Tensor, estimates: Tensor, references: Tensor, sources: Sequence[str], count: int
) -> list[tuple[str, Tensor]]:
    """``(caption, signal (channels, time))`` for the first ``count`` items of a batch:
    the mixture, then estimate and reference of each source.

    Args:
        mixture: ``(batch, channels, time)``.
        estimates: ``(batch, sources, channels, time)``.
        references: ``(batch, sources, channels, time)``.
        sources: source names.
        count: number of items.
    """
    items = []
    for i in range(min(count, mixture.shape[0])):
        items.append((f"item {i} mixture", mixture[i]))
        for s, name in enumerate(sources):
            items.append((f"item {i} {name} estimate", estimates[i, s]))
            items.append((f"item {i} {name} reference", references[i, s]))
    return items


class ExampleLogger(Callback):
    """Every ``every_n_epochs`` validation epochs, log the first ``count`` items of the
    first validation batch to W&B as audio and spectrogram images (mixture, and
    estimate and reference per source). Loggers other than W&B get nothing.

    The module's ``validation_step`` must return ``{"estimates": ..., "references":
    ...}``, both ``(batch, sources, channels, time)`` on the loss region, and the
    module must have ``sources`` and ``hparams.sample_rate``.

    Args:
        every_n_epochs: epochs between two logs; 0 disables.
        count: items logged each time.
    """

    def __init__(self, every_n_epochs: int = 5, count: int = 2):
        self.every_n_epochs = every_n_epochs
        self.count = count

    def _due(self, trainer: L.Trainer) -> bool:
        return (
            self.every_n_epochs > 0
            and not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
        )

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch: Tensor, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if batch_idx != 0 or not loggers or not self._due(trainer):
            return
        references = outputs["references"]
        items = example_items(
            references.sum(1), outputs["estimates"], references, pl_module.sources, self.count
        )
        captions = [caption for caption, _ in items]
        rate = pl_module.hparams.sample_rate
        # the validation's own step (Lightning's, one below global_step inside training):
        # at global_step the examples would push the validation's row to the next step
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        audios = [signal.float().T.cpu().numpy() for _, signal in items]
        images = [spectrogram_image(signal) for _, signal in items]
        for logger in loggers:
            logger.log_audio(
                EXAMPLES_AUDIO,
                audios,
                step=step,
                caption=captions,
                sample_rate=[rate] * len(items),
            )
            logger.log_image(EXAMPLES_SPECTROGRAM, images, step=step, caption=captions)


def default_callbacks(
    trainer: L.Trainer | None,
    example_every_n_epochs: int = 5,
    examples: int = 2,
    scheduler: str = "constant",
    ema_decay: float = 0.0,
) -> list[Callback]:
    """The callbacks a separation module adds to its Trainer.

    Args:
        trainer: the Trainer; ``LearningRateMonitor`` is added only when it has a logger.
        example_every_n_epochs: see :class:`ExampleLogger`.
        examples: items per example log.
        scheduler: ``"cosine"`` adds :class:`TimeCosine`, unless the Trainer has one
            configured already (with its own warm-up and floor).
        ema_decay: above 0, validation, checkpoints and evaluation use an EMA of the
            weights with this decay (:class:`WeightEMA`); 0 uses the weights as trained.
    """
    callbacks = [
        FiniteGuard(),
        Throughput(),
        PeakMemory(),
        ExampleLogger(example_every_n_epochs, examples),
    ]
    configured = trainer.callbacks if trainer is not None else []
    if scheduler == "cosine" and not any(isinstance(c, TimeCosine) for c in configured):
        callbacks.append(TimeCosine())
    if ema_decay != 0.0:
        callbacks.append(WeightEMA(ema_decay))
    if trainer is not None and trainer.loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks
