"""EMA of the weights (lightning_modules/ema.py): validation, last.ckpt, the best
checkpoint and evaluation (ablation.checkpoint.load_net) use the average; the raw
weights travel in the checkpoint, and a resume continues the average."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import lightning as L
import pytest
import test_modules
import torch
from lightning.pytorch.callbacks import Callback
from test_modules import tiny_module, trainer

from ablation.checkpoint import load_net, read_checkpoint
from lightning_modules.ema import EMADecayError, WeightEMA
from lightning_modules.lightning_cli import RunCheckpoint
from lightning_modules.run_record import fairness_record

# The toy DataModule of test_modules.py, shared rather than written again.
datamodule_factory = test_modules.datamodule_factory

DECAY = 0.5  # strong enough that a few steps leave average and raw weights apart


def net_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k.removeprefix("net."): v.detach().clone() for k, v in state.items() if k.startswith("net.")
    }


class WeightLog(Callback):
    """The raw weights after every step, the weights each validation ran with, and the
    weights a resumed run starts from, by global step."""

    def __init__(self):
        self.raw: dict[int, dict[str, torch.Tensor]] = {}
        self.validated: dict[int, dict[str, torch.Tensor]] = {}
        self.start: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = net_weights(pl_module.state_dict())

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.raw[trainer.global_step] = net_weights(pl_module.state_dict())

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:
        if not trainer.sanity_checking:
            self.validated.setdefault(trainer.global_step, net_weights(pl_module.state_dict()))


def expected_average(raw: dict[int, dict], start: dict | None = None) -> dict[int, dict]:
    """The EMA written out: the first step's weights, then decay x old + (1 - decay) x new."""
    averages, average = {}, start
    for step in sorted(raw):
        if average is None:
            average = raw[step]
        else:
            average = {k: DECAY * average[k] + (1 - DECAY) * raw[step][k] for k in average}
        averages[step] = average
    return averages


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7, msg=key)


def differs(a: dict, b: dict) -> bool:
    return any(not torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-6) for k in a)


def fit_ema(
    folder: Path, datamodule, steps: int, ckpt_path=None, val_every: int = 1
) -> tuple[L.Trainer, WeightLog]:
    log = WeightLog()
    fit = trainer(
        folder, max_steps=steps, limit_val_batches=1, num_sanity_val_steps=0,
        val_check_interval=val_every, check_val_every_n_epoch=None, enable_checkpointing=True,
        callbacks=[log, RunCheckpoint(folder / "checkpoints")],
    )  # fmt: skip
    L.seed_everything(0)
    module = tiny_module("1d", ema_decay=DECAY, lr=1e-2)
    fit.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return fit, log


def test_validation_checkpoints_and_evaluation_use_the_average(datamodule_factory, tmp_path):
    fit, log = fit_ema(tmp_path, datamodule_factory(), steps=4)
    averages = expected_average(log.raw)
    assert sorted(log.validated) == [1, 2, 3, 4]
    for step, weights in log.validated.items():
        assert_same(weights, averages[step])  # val/sdr judged the average
    last = tmp_path / "checkpoints" / "last.ckpt"
    evaluated = net_weights({f"net.{k}": v for k, v in load_net(last).state_dict().items()})
    assert_same(evaluated, averages[4])
    assert differs(evaluated, log.raw[4])
    checkpoint = read_checkpoint(last)
    assert_same(net_weights(checkpoint["current_model_state"]), log.raw[4])
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 4
    best = Path(next(c for c in fit.callbacks if isinstance(c, RunCheckpoint)).best_model_path)
    assert best.name.startswith("best-")
    step = read_checkpoint(best)["global_step"]
    best_net = {k: v for k, v in load_net(best).state_dict().items()}
    assert_same(best_net, averages[step])
    record = fairness_record(fit, fit.lightning_module)
    assert record["weights"] == "ema" and record["ema_decay"] == DECAY
    assert record["ema_updates"] == 4


def test_a_resume_continues_the_average_from_last_ckpt(datamodule_factory, tmp_path):
    """Killed after 3 steps (last.ckpt written at the end, after the last validation),
    resumed to 5: the raw weights restart where they were, the average continues from
    the saved one, and both match a run that was never killed."""
    _, whole = fit_ema(tmp_path / "whole", datamodule_factory(), steps=5)
    _, first = fit_ema(tmp_path / "run", datamodule_factory(), steps=3, val_every=2)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(last)
    assert checkpoint["global_step"] == 3 and sorted(first.validated) == [2]
    saved_average = net_weights(checkpoint["state_dict"])
    assert_same(saved_average, expected_average(first.raw)[3])
    assert_same(net_weights(checkpoint["current_model_state"]), first.raw[3])
    resumed_fit, resumed = fit_ema(tmp_path / "run", datamodule_factory(), 5, ckpt_path=str(last))
    assert_same(resumed.start, first.raw[3])  # training goes on from the raw weights
    assert sorted(resumed.raw) == [4, 5]
    continued = expected_average(resumed.raw, start=saved_average)[5]
    final = net_weights(read_checkpoint(last)["state_dict"])
    assert_same(final, continued)
    assert_same(final, expected_average(whole.raw)[5])
    ema = next(c for c in resumed_fit.callbacks if isinstance(c, WeightEMA))
    assert ema.record()["ema_updates"] == 5


def test_no_ema_by_default_and_a_decay_outside_0_1_is_refused(datamodule_factory, tmp_path):
    fit = trainer(tmp_path, fast_dev_run=True)
    fit.fit(tiny_module("1d"), datamodule=datamodule_factory())
    assert not any(isinstance(c, WeightEMA) for c in fit.callbacks)
    assert fairness_record(fit, fit.lightning_module)["weights"] == "raw"
    with pytest.raises(EMADecayError, match="strictly between 0 and 1"):
        trainer(tmp_path).fit(tiny_module("1d", ema_decay=1.0), datamodule=datamodule_factory())


def test_ddp_ranks_share_rates_and_average_and_the_checkpoint_holds_it(toy_root, tmp_path):
    """Two CPU ranks with cosine and EMA: every step's rate (from rank 0's broadcast
    count) and the final average agree on both ranks, and last.ckpt holds that average."""
    from ddp_train_probe import weights_digest
    from test_distributed import REPO, TESTS, _fit_command

    env = {
        **os.environ, "WANDB_MODE": "offline", "ABLATION_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    command = [
        *_fit_command(), "--config=sweeps/demo_base.yaml", "--cell=1d-depth2",
        "--model.filters=4", "--model.scheduler=cosine", "--model.ema_decay=0.5",
        f"--data.root={toy_root}", "--data.batch_size=2", f"--run.dir={tmp_path / 'runs'}",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
        "--trainer.max_steps=4", "--trainer.callbacks=ddp_train_probe.RateAndWeightProbe",
        f"--trainer.callbacks.out={tmp_path / 'probe'}",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["rates"]) == 4 and ranks[0]["rates"] == ranks[1]["rates"]
    assert ranks[0]["average"] == ranks[1]["average"] != ranks[0]["raw"] == ranks[1]["raw"]
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    assert weights_digest(load_net(last)) == ranks[0]["average"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the average's device needs CUDA")
def test_the_average_lives_on_the_training_device(datamodule_factory, tmp_path):
    """Lightning builds the average before the module moves: it must follow it, or every
    step would copy all weights to the CPU."""
    fit = trainer(tmp_path, accelerator="gpu", devices=1, max_steps=2, limit_val_batches=0)
    fit.fit(tiny_module("1d", ema_decay=0.9), datamodule=datamodule_factory())
    ema = next(c for c in fit.callbacks if isinstance(c, WeightEMA))
    assert {p.device.type for p in ema.average.parameters()} == {"cuda"}
