"""The LightningModule both U-Net families share: one step, losses, optimizer, logging."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ablation.checkpoint import NET_ATTRIBUTE, contract
from ablation.constants import (
    MONITOR,
    MONITOR_MODE,
    SAMPLE_RATE,
    SOURCES,
    TRAIN_LOSS,
    VAL_LOSS,
    VAL_MSE,
    VAL_SDR,
    val_sdr,
)
from ablation.losses import build_loss
from ablation.metrics import sdr
from ablation.nets import build
from ablation.nets.blocks import take
from ablation.nets.presets import check_depth
from ablation.separate import separate
from lightning_modules.callbacks import default_callbacks

Scheduler = Literal["constant", "cosine", "plateau"]
# A net's build config, or what makes it from the data's (sources, channels, sample
# rate): each family's module passes the latter, so it names only its net's arguments.
NetConfig = dict[str, Any] | Callable[[Sequence[str], int, int], dict[str, Any]]
# The loss of Spleeter's recipe: L1 on masked magnitudes (2-D mask nets only).
SPECTRAL_L1 = "spec-l1"
# Prefix of the figures of ``net.describe()`` among the logged hyper-parameters.
NET_PREFIX = NET_ATTRIBUTE
TEST = "test"


def loss_name(stage_loss: str, source: str) -> str:
    """Name of a per-source loss, e.g. ``train/loss/vocals``."""
    return f"{stage_loss}/{source}"


class SeparationModule(L.LightningModule):
    """Trains any separation net of :mod:`ablation.nets` on stems batches.

    Batches are stems ``(batch, sources, channels, window)``: a loss region of
    ``segment`` seconds with the same real-audio context on both sides; the
    mixture is their sum. The net reads the context it needs and estimates the
    loss region, where losses and metrics are computed.
    ``training_step`` and ``validation_step`` share :meth:`model_step`.
    Logged: ``train/loss`` and ``val/loss`` (and per source, ``.../<source>``),
    ``val/mse`` (the seed study's figure, whatever the training loss),
    ``val/sdr/<source>`` and their mean ``val/sdr``, the checkpoint monitor.
    :func:`lightning_modules.callbacks.default_callbacks` are added to the
    Trainer (non-finite guard, throughput, GPU memory, learning rate, examples).

    The hyper-parameters hold ``net_config``, the net's complete
    :func:`ablation.nets.build` config, so ``ablation.separate.load_separator``
    rebuilds the net without Lightning.

    Args:
        net_config: what :func:`ablation.nets.build` builds the net from (its
            number of sources must match ``sources``), or a function of the data's
            ``(sources, channels, sample_rate)`` returning it.
        sources: source names, in the order of the stems' sources axis.
        channels: audio channels of the data, checked against the net's.
        sample_rate: sample rate of the audio, in Hz.
        segment: length of the loss region of a batch item, in seconds (the
            default separation segment of the checkpoint); the context of a
            batch is whatever its items hold around it.
        loss: ``"mse"``, ``"l1"``, ``"si-sdr"``, ``"mrstft"`` or a dict of them to
            coefficients (see :func:`ablation.losses.build_loss`), all on waveforms; or
            ``"spec-l1"``, Spleeter's: L1 between a 2-D mask net's masked magnitudes and
            the stems' magnitudes over the window the net reads (validation still
            scores waveforms: ``val/mse``, ``val/sdr``).
        loss_weights: per-source weights: None (equal), one number per source,
            or ``"balanced"``.
        lr: learning rate of AdamW.
        weight_decay: decoupled weight decay of AdamW.
        scheduler: ``"constant"``; ``"cosine"``: linear warm-up, then cosine down to
            its floor at the end of the counted training-time budget (or of
            max_steps / max_epochs without one), see :mod:`lightning_modules.schedule`;
            ``"plateau"``: halve the rate when ``val/sdr`` stalls for
            ``plateau_patience`` validations.
        plateau_patience: validations without improvement before halving.
        ema_decay: above 0, validation, checkpoints and evaluation use an exponential
            moving average of the weights with this decay (e.g. 0.999), see
            :mod:`lightning_modules.ema`; 0: the weights as trained.
        example_every_n_epochs: epochs between audio/spectrogram examples on W&B
            (0: never).
        examples: validation items per example log.
    """

    dimension: str | None = None  # "1d" or "2d" in the subclass of each dimension

    def __init__(
        self,
        net_config: NetConfig,
        # Data
        sources: Sequence[str] = SOURCES,
        channels: int = 2,
        sample_rate: int = SAMPLE_RATE,
        segment: float = 3.0,
        # Loss
        loss: str | dict[str, float] = "mse",
        loss_weights: list[float] | str | None = None,
        # Optimization
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        scheduler: Scheduler = "constant",
        plateau_patience: int = 5,
        ema_decay: float = 0.0,
        # Logging
        example_every_n_epochs: int = 5,
        examples: int = 2,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.sources = tuple(sources)
        self.segment_samples = round(segment * sample_rate)
        if callable(net_config):
            net_config = net_config(self.sources, channels, sample_rate)
        check_depth(dict(net_config), segment, sample_rate)  # before any allocation
        self.net = build(dict(net_config))
        self._check_net(channels)
        self.net.set_training_audio(self.sources, sample_rate, segment)
        # The complete config (presets resolved) is what rebuilds this net later.
        self._set_hparams_everywhere(
            **contract(self.net.config, self.sources, sample_rate, segment)
        )
        # Spleeter's loss: L1 between masked and target magnitudes, not on waveforms.
        self.spectral = loss == SPECTRAL_L1
        self.loss = build_loss("l1" if self.spectral else loss, self.sources, loss_weights)
        if self.spectral and not hasattr(self.net, "masked_magnitudes"):
            raise ValueError(
                f"loss={SPECTRAL_L1!r} trains masked spectrogram magnitudes, which a "
                f"{self.net.dimension} net has none of: use it with a 2-D mask preset "
                f"(e.g. spleeter-4stems-original)."
            )

    def _set_hparams_everywhere(self, **values: Any) -> None:
        # Lightning logs the hparams as first saved (_hparams_initial), and writes
        # the current ones to checkpoints: both must agree.
        self.hparams.update(values)
        self._hparams_initial.update(values)

    def _check_net(self, channels: int) -> None:
        if self.dimension is not None and self.net.dimension != self.dimension:
            raise ValueError(
                f"{type(self).__name__} trains {self.dimension} nets, but the config builds a "
                f"{self.net.dimension} net: pick a {self.dimension} preset or the other module."
            )
        if self.net.channels != channels:
            raise ValueError(
                f"the net takes {self.net.channels}-channel audio, the data has {channels} "
                f"channels: build it with channels={channels}."
            )

    def forward(self, mixture: Tensor) -> Tensor:
        """mixture ``(batch, channels, time)`` -> ``(batch, sources, channels, time)``."""
        return self.net(mixture)

    # ---- steps ------------------------------------------------------------------------
    def context_of(self, stems: Tensor) -> int:
        """Context samples per side of a batch: what its window holds beyond the loss region."""
        extra = stems.shape[-1] - self.segment_samples
        if extra < 0 or extra % 2:
            raise ValueError(
                f"expected batch items of {self.segment_samples} loss-region samples plus the "
                f"same context on both sides, got {stems.shape[-1]} samples: the module's "
                f"segment and sample_rate must be the data's (they are linked in the CLI)."
            )
        return extra // 2

    def model_step(
        self, stems: Tensor, waveforms: bool = True
    ) -> tuple[Tensor, dict[str, Tensor], Tensor | None, Tensor]:
        """stems ``(batch, sources, channels, window)`` -> ``(loss, per-source loss,
        estimates, references)``, the last two ``(batch, sources, channels, segment)``
        on the loss region; with the spectral loss, estimates only when ``waveforms``."""
        context = self.context_of(stems)
        references = stems[..., context : context + self.segment_samples]
        if self.spectral:
            total, per_source = self.loss(*self._magnitudes(stems, context))
            estimates = self.net(stems.sum(1), context) if waveforms else None
            return total, per_source, estimates, references
        estimates = self.net(stems.sum(1), context)
        assert estimates.shape == references.shape, (estimates.shape, references.shape)
        total, per_source = self.loss(estimates, references)
        return total, per_source, estimates, references

    def _magnitudes(self, stems: Tensor, context: int) -> tuple[Tensor, Tensor]:
        """Masked magnitudes and the stems' own, over the window the net reads, as
        ``(batch, sources, channels, bins * frames)`` (the shape the losses take)."""
        estimates, start, length = self.net.masked_magnitudes(stems.sum(1), context)
        batch, sources = stems.shape[:2]
        window = take(stems.flatten(0, 1), start, length)
        targets = self.net.stft(window)[:, :, : estimates.shape[-2]].abs()
        targets = targets.unflatten(0, (batch, sources))
        assert estimates.shape == targets.shape, (estimates.shape, targets.shape)
        return estimates.flatten(-2), targets.flatten(-2)

    def _log_loss(self, name: str, total: Tensor, per_source: dict[str, Tensor], n: int) -> None:
        stage_val = name == VAL_LOSS
        self.log(name, total, prog_bar=True, batch_size=n, sync_dist=stage_val)
        for source, value in per_source.items():
            self.log(loss_name(name, source), value, batch_size=n, sync_dist=stage_val)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        total, per_source, _, _ = self.model_step(batch, waveforms=False)
        self._log_loss(TRAIN_LOSS, total, per_source, batch.shape[0])
        return total

    def validation_step(self, batch: Tensor, batch_idx: int) -> dict[str, Tensor]:
        total, per_source, estimates, references = self.model_step(batch)
        n = batch.shape[0]
        self._log_loss(VAL_LOSS, total, per_source, n)
        self.log(
            VAL_MSE,
            F.mse_loss(estimates.float(), references.float()),
            batch_size=n,
            sync_dist=True,
        )
        scores = sdr(estimates, references).mean(0)
        for source, score in zip(self.sources, scores, strict=True):
            self.log(val_sdr(source), score, batch_size=n, sync_dist=True)
        self.log(VAL_SDR, scores.mean(), prog_bar=True, batch_size=n, sync_dist=True)
        return {"estimates": estimates.detach(), "references": references}

    def test_step(self, batch: tuple[Tensor, list[str]], batch_idx: int) -> None:
        """A whole test track, separated by overlap-add as ``ablation separate`` does."""
        stems = batch[0][0]
        estimates = separate(self.net, stems.sum(0), self.segment_samples)[None]
        references = stems.float().cpu()[None]
        self.log(f"{TEST}/mse", F.mse_loss(estimates, references), batch_size=1)
        scores = sdr(estimates, references).mean(0)
        for source, score in zip(self.sources, scores, strict=True):
            self.log(f"{TEST}/sdr/{source}", score, batch_size=1)
        self.log(f"{TEST}/sdr", scores.mean(), batch_size=1)

    # ---- optimization -----------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        # TimeCosine (added in configure_callbacks) sets the cosine rate before each step.
        if hp.scheduler in ("constant", "cosine"):
            return optimizer
        if hp.scheduler == "plateau":
            schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=MONITOR_MODE, factor=0.5, patience=hp.plateau_patience
            )
            # Not strict: epochs without validation simply leave the rate alone.
            config = {
                "scheduler": schedule,
                "monitor": MONITOR,
                "interval": "epoch",
                "strict": False,
            }
            return {"optimizer": optimizer, "lr_scheduler": config}
        raise ValueError(
            f"unknown scheduler {hp.scheduler!r}: expected 'constant', 'cosine' or 'plateau'."
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._checkpoint_lr = checkpoint.get("hyper_parameters", {}).get("lr")

    def on_train_start(self) -> None:
        """A resume restores the checkpoint's learning rate with the optimizer state;
        a newly configured one wins, so "lower the learning rate, then resume" works."""
        old, new = getattr(self, "_checkpoint_lr", None), self.hparams.lr
        if old is None or old == new:
            return
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] = new
        for config in self.trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "base_lrs"):
                config.scheduler.base_lrs = [new] * len(config.scheduler.base_lrs)
        rank_zero_info(f"resumed with the configured learning rate {new:g} (checkpoint: {old:g})")

    # ---- logging ------------------------------------------------------------------------
    def configure_callbacks(self) -> list[Callback]:
        hp = self.hparams
        return default_callbacks(
            self._trainer, hp.example_every_n_epochs, hp.examples, hp.scheduler, hp.ema_decay
        )

    def on_fit_start(self) -> None:
        figures = self.net.describe(self.hparams.sample_rate)
        for logger in self.loggers:
            logger.log_hyperparams({f"{NET_PREFIX}/{key}": value for key, value in figures.items()})
