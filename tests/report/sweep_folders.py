"""Tiny run and evaluation folders, laid out as the sweep runner and ``ablation eval`` write
them, for the report's tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

TRACKS = [f"track{i}" for i in range(8)]
# Per-track SDR of each target for each run: depth 3 is better than depth 2 on most tracks.
RNG = np.random.default_rng(0)
SDR = {
    "1d-depth2-seed0": RNG.normal(3.0, 1.0, size=(len(TRACKS), 2)),
    "1d-depth2-seed1": RNG.normal(3.2, 1.0, size=(len(TRACKS), 2)),
    "1d-depth3-seed0": RNG.normal(4.5, 1.0, size=(len(TRACKS), 2)),
}
TARGETS = ("vocals", "accompaniment")
STEPS = 30
BATCH = 4
SEGMENT = 1.0
FLOPS_PER_STEP = 3.5e9  # what the run measured (lightning_modules.run_budget)


def write_checkpoint(path: Path, depth: int):
    """A checkpoint as Lightning writes it for WaveUNetModule; returns the module."""
    from lightning_modules import WaveUNetModule

    module = WaveUNetModule(
        depth=depth, filters=4, segment=SEGMENT, sources=TARGETS, preset="wave-unet-m4"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "epoch": 2,
            "global_step": STEPS,
            "hyper_parameters": dict(module.hparams),
            "state_dict": module.state_dict(),
        },
        path,
    )
    return module


def write_evaluation(
    folder: Path,
    sdr: np.ndarray,
    baseline: str | None = None,
    root="/data",
    tracks=TRACKS,
    checkpoint: str = "last.ckpt",
) -> None:
    """The files of an ``ablation eval`` folder that the report reads."""
    folder.mkdir(parents=True)
    manifest = {"baseline": baseline, "subset": "test", "root": str(root), "targets": list(TARGETS)}
    manifest["checkpoint"] = None if baseline else str(folder.parent / checkpoint)
    (folder / "evaluation.json").write_text(json.dumps(manifest))
    summary = {
        t: {"SDR": float(np.median(sdr[:, i])), "MSE": 0.01 * (i + 1)}
        for i, t in enumerate(TARGETS)
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [(track, t, sdr[k, i]) for k, track in enumerate(tracks) for i, t in enumerate(TARGETS)]
    pd.DataFrame(rows, columns=["track", "target", "SDR"]).to_csv(
        folder / "tracks.csv", index=False
    )


def write_run(sweep: Path, name: str, depth: int, seed: int, evaluated: bool = True, **evaluation):
    """A finished run folder: checkpoint, config, metrics.csv, summary.json and (when
    ``evaluated``) its evaluation, written by :func:`write_evaluation` with ``evaluation``."""
    run = sweep / name
    module = write_checkpoint(run / "checkpoints" / "last.ckpt", depth)
    config = {
        "seed_everything": seed,
        "model": {"class_path": "lightning_modules.WaveUNetModule", "init_args": {"depth": depth}},
        "data": {"batch_size": BATCH, "root": "/data"},
        "run": {"dir": "runs", "sweep": sweep.name, "name": name},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    steps = np.arange(10, STEPS + 1, 10)
    log = pd.DataFrame({"step": steps, "val/loss": 0.01 / (steps * (depth + seed))})
    log.to_csv(run / "metrics.csv", index=False)
    summary = {
        "preset": "wave-unet-m4",
        "epochs": 3,
        "steps": STEPS,
        "train_seconds": 90.0,
        "train_flops": STEPS * FLOPS_PER_STEP,
        "peak_gpu_mem_gb": 0.5,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    if evaluated:
        write_evaluation(run / "checkpoints" / "last-eval-test", SDR[name], **evaluation)
    return run, module
