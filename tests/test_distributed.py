"""Many processes: DDP on the CPU (gloo) and Slurm job arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BATCH = 2
STEPS = 4


def _fit_command() -> list[str]:
    # The console script, as a user types it: Lightning then restarts it by path.
    script = Path(sys.executable).with_name("ablation")
    return [str(script), "fit"] if script.exists() else [sys.executable, "-m", "ablation", "fit"]


@pytest.fixture(scope="module")
def ddp_run(toy_root, tmp_path_factory):
    """Two CPU ranks train the demo config under DDP for a few steps, validating after
    every step; returns the run's outputs and each rank's probe record."""
    tmp = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "ABLATION_CACHE": str(tmp / "cache"),  # empty: the run builds its cache
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        *_fit_command(),
        "--config=sweeps/demo_base.yaml",
        "--cell=1d-depth2",
        "--model.filters=4",
        f"--data.root={toy_root}",
        f"--data.batch_size={BATCH}",
        f"--run.dir={tmp / 'runs'}",
        "--run.val_every_seconds=0.000001",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        f"--trainer.max_steps={STEPS}",
        "--trainer.callbacks=ddp_probe.RankProbe",
        f"--trainer.callbacks.out={tmp / 'probe'}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    seconds = time.perf_counter() - start
    print(f"DDP run of {STEPS} steps on 2 CPU ranks: {seconds:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    return tmp / "runs", ranks


def test_ddp_writes_one_run_that_separate_loads(ddp_run, toy_root, tmp_path):
    from ablation.checkpoint import load_net
    from ablation.separate import separate_file

    runs, _ = ddp_run
    summaries = list(runs.rglob("summary.json"))
    checkpoints = list(runs.rglob("last.ckpt"))
    assert len(summaries) == 1 and len(checkpoints) == 1, (summaries, checkpoints)
    assert len(list(runs.rglob("metrics.csv"))) == 1
    assert len(list(runs.rglob("offline-run-*"))) == 1  # one W&B run, from rank 0
    summary = json.loads(summaries[0].read_text())
    assert summary["steps"] == STEPS
    assert summary["fairness"]["validations"] == STEPS
    assert summary["last_val_sdr"] is not None  # val/sdr, synced over both ranks
    assert load_net(checkpoints[0]).sources
    mixture = next(toy_root.glob("test/*/mixture.wav"))
    stems = separate_file(checkpoints[0], mixture, tmp_path / "sep", None, 0.25, 2, "cpu")
    assert all(path.is_file() for path in stems.values())


def test_ddp_ranks_train_on_their_own_part_of_the_stream(ddp_run):
    _, ranks = ddp_run
    assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
    for rank in ranks:
        # StreamSampler's interleaving: batch k of rank r holds (2k + r) * B ... + B - 1
        expected = [
            list(range((2 * k + rank["rank"]) * BATCH, (2 * k + rank["rank"] + 1) * BATCH))
            for k in range(STEPS)
        ]
        assert rank["positions"] == expected
    # different items, so different augmented batches (draws follow the position)
    assert not set(ranks[0]["digests"]) & set(ranks[1]["digests"])


def test_ddp_cache_once_and_one_budget_for_all_ranks(ddp_run):
    runs, ranks = ddp_run
    assert ranks[0]["decoded"] > 0 and ranks[1]["decoded"] == 0  # rank 0 built, rank 1 read
    summary = json.loads(next(runs.rglob("summary.json")).read_text())
    assert ranks[0]["train_seconds"] == ranks[1]["train_seconds"]
    assert ranks[0]["train_seconds"] == summary["fairness"]["train_seconds"]
    assert {r["global_step"] for r in ranks} == {STEPS}
    assert {r["validations"] for r in ranks} == {STEPS}


def test_budget_takes_logging_inside_a_validation_out_once():
    """Lightning logs validation metrics before on_validation_end; counting that time
    twice moved the budget's clock backwards and skipped due validations (seen under
    DDP, where rank 0 logs and the steps are short)."""
    from types import SimpleNamespace

    from lightning_modules.budget import TrainingBudget

    now = [0.0]
    budget = TrainingBudget(100, val_every_seconds=1, clock=lambda: now[0])
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        should_stop=False,
        strategy=SimpleNamespace(broadcast=lambda value: value),
    )
    budget.on_train_batch_start(trainer, None, None, 0)
    now[0] += 1.0  # one training step
    budget.on_train_batch_end(trainer, None, None, None, 0)
    budget.on_validation_start(trainer, None)
    now[0] += 5.0  # validation, 3 s of which log its metrics
    budget.exclude("logging", 3.0)
    budget.on_validation_end(trainer, None)
    budget.on_train_batch_start(trainer, None, None, 1)
    now[0] += 1.0
    budget.on_train_batch_end(trainer, None, None, None, 1)
    assert budget.train_seconds == 2.0 and budget.excluded_seconds == 5.0
    assert budget.excluded["validation"] == 2.0 and budget._validate_now
