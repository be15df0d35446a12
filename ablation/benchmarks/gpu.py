"""One-call GPU measurements of the main grid, ready for a bare machine.

``python ablation/benchmarks/gpu.py [--quick] [--out FILE]`` from a checkout:
it first installs the project with pip (``pip install -e .``, from
pyproject.toml) when its packages are missing, then measures, for the cells
of ``sweeps/depth_dimension.yaml`` at depth 3, 6 (1-D) and 2, 4, 6 (2-D),
with the presets the sweep trains (``wave-unet-m6``, ``spleeter-4stems``)
and the sweep's batch, segment and context:

- bf16 (autocast) training steps per second on synthetic batches;
- the share of each step spent waiting for data, through the DataModule's
  worker path on a generated toy dataset, and through its device-resident
  path when the DataModule has one (``resident``), else "n/a";
- evaluation seconds per minute of audio: full-track separation
  (overlap-add) and BSS Eval (``ablation.bsseval`` on the same device);
- peak memory (GPU: ``max_memory_allocated`` per cell; CPU: the process's
  peak resident size so far).

It prints a table and writes JSON. Without a GPU it runs on the CPU;
``--quick`` is the smoke form (small batches, short segments, no context).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
NEEDED = ("torch", "torchaudio", "lightning", "museval", "einops", "threadpoolctl")
CELLS = (("1d", 3), ("1d", 6), ("2d", 2), ("2d", 4), ("2d", 6))
PRESETS = {"1d": "wave-unet-m6", "2d": "spleeter-4stems"}


def _install_if_missing() -> None:
    """``pip install -e`` the checkout when a package it needs is missing, then re-run."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if not missing:
        return
    if os.environ.get("ABLATION_GPU_BENCH_INSTALLED"):
        raise SystemExit(f"still missing {missing} after pip install -e {ROOT}: install them.")
    print(f"installing {ROOT} with pip (missing {missing})", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
    os.environ["ABLATION_GPU_BENCH_INSTALLED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])


def settings(quick: bool) -> dict:
    """Batch, segment, context and step counts: the sweep's (sweeps/base.yaml) or a smoke run's."""
    if quick:
        return dict(
            batch=2,
            segment=0.5,
            context=0.0,
            warmup=1,
            steps=2,
            workers=1,
            eval_seconds=2.0,
            toy_tracks=2,
            toy_seconds=3.0,
        )
    return dict(
        batch=16,
        segment=3.0,
        context=7.0,
        warmup=5,
        steps=20,
        workers=8,
        eval_seconds=60.0,
        toy_tracks=8,
        toy_seconds=20.0,
    )


def main(quick: bool = False, out: str | Path = "results/bench_gpu.json") -> dict:
    """Measure every cell, print the table and write ``out``; returns the results."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = settings(quick)
    with tempfile.TemporaryDirectory() as scratch:
        toy = _toy_dataset(Path(scratch), config)
        results = {
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "quick": quick,
            "settings": config,
            "cells": [
                _measure_cell(dimension, depth, config, device, toy, Path(scratch))
                for dimension, depth in CELLS
            ],
            "bsseval_seconds_per_minute": _bsseval_rate(config, device),
        }
    _print_table(results)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out}")
    return results


def _toy_dataset(scratch: Path, config: dict) -> Path:
    from datamodules.toy import make_toy_dataset

    return make_toy_dataset(
        scratch / "toy",
        n_train=config["toy_tracks"],
        n_test=1,
        duration=config["toy_seconds"],
        progress=False,
    )


def _measure_cell(dimension, depth, config, device, toy: Path, scratch: Path) -> dict:
    import torch

    from ablation.nets import build

    torch.manual_seed(0)
    net = build(PRESETS[dimension], depth=depth).to(device)
    region = int(config["segment"] * 44100)
    context = min(net.context_samples(region), int(config["context"] * 44100))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cell = {"cell": f"{dimension}-depth{depth}", "context_samples": context}
    stems = 0.1 * torch.randn(config["batch"], 4, 2, region + 2 * context, device=device)
    step = _train_step(net, context, device)
    cell["steps_per_second"] = _steps_per_second(step, lambda: stems, config, device)
    for path in ("workers", "resident"):
        try:
            cell[f"data_wait_share_{path}"] = _data_wait_share(
                step, net, context, config, device, toy, scratch, path
            )
        except Exception as error:  # noqa: BLE001 - a measurement left out, with its reason
            cell[f"data_wait_share_{path}"] = f"n/a: {type(error).__name__}: {error}"[:200]
    cell["separation_seconds_per_minute"] = _separation_rate(net, region, config, device)
    cell["peak_memory_gib"] = _peak_memory_gib(device)
    print(f"  measured {cell['cell']}", flush=True)
    return cell


def _train_step(net, context: int, device):
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step(stems) -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            estimates = net(stems.sum(1), context)
        target = stems[..., context : stems.shape[-1] - context] if context else stems
        F.mse_loss(estimates.float(), target).backward()
        optimizer.step()

    return step


def _steps_per_second(step, batches, config, device) -> float:
    for _ in range(config["warmup"]):
        step(batches())
    _sync(device)
    start = time.perf_counter()
    for _ in range(config["steps"]):
        step(batches())
    _sync(device)
    return config["steps"] / (time.perf_counter() - start)


def _data_wait_share(step, net, context, config, device, toy, scratch, path) -> float:
    """Seconds waiting for the next batch over seconds per step, through the DataModule."""
    import inspect

    from datamodules.musdb import MUSDBDataModule

    options = {}
    if path == "resident":
        if "resident" not in inspect.signature(MUSDBDataModule.__init__).parameters:
            raise NotImplementedError("this DataModule has no device-resident path")
        options["resident"] = True
    data = MUSDBDataModule(
        root=str(toy),
        is_wav=True,
        segment=config["segment"],
        context=config["context"],
        batch_size=config["batch"],
        num_workers=config["workers"],
        cache_dir=str(scratch / "cache"),
        progress=False,
        **options,
    )
    # What a Trainer tells the DataModule: where batches go, and a stream from its start.
    data.trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=device),
        global_rank=0,
        world_size=1,
        global_step=0,
        accumulate_grad_batches=1,
    )
    data.read_at_most(context)
    data.setup("fit")
    batches = iter(data.train_dataloader())
    waited = total = 0.0
    for index in range(config["warmup"] + config["steps"]):
        start = time.perf_counter()
        batch = next(batches)
        arrived = time.perf_counter()
        batch = data.on_after_batch_transfer(_to(batch, device), 0)
        step(batch)
        _sync(device)
        if index >= config["warmup"]:
            waited += arrived - start
            total += time.perf_counter() - start
    return waited / total


def _to(batch, device):
    import torch

    if isinstance(batch, tuple | list):
        return type(batch)(_to(item, device) for item in batch)
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def _separation_rate(net, region, config, device) -> float:
    import torch

    from ablation.separate import separate

    mixture = 0.1 * torch.randn(2, int(config["eval_seconds"] * 44100))
    _sync(device)
    start = time.perf_counter()
    separate(net, mixture, region, batch_size=config["batch"])
    _sync(device)
    return (time.perf_counter() - start) * 60 / config["eval_seconds"]


def _bsseval_rate(config, device) -> float:
    from ablation.benchmarks.bsseval import synthetic_sources
    from ablation.bsseval import evaluate

    references, estimates = synthetic_sources(config["eval_seconds"])
    start = time.perf_counter()
    evaluate(references, estimates, device=device)
    return (time.perf_counter() - start) * 60 / config["eval_seconds"]


def _peak_memory_gib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _print_table(results: dict) -> None:
    config = results["settings"]
    print(
        f"\n{results['device']}, torch {results['torch']}, bf16 autocast, batch "
        f"{config['batch']}, segment {config['segment']:g} s, context up to "
        f"{config['context']:g} s per side, {config['steps']} timed steps"
    )
    header = ("cell", "steps/s", "wait workers", "wait resident", "sep s/min", "peak GiB")
    print("  " + " ".join(f"{h:>13}" for h in header))
    for cell in results["cells"]:
        values = [
            cell["cell"],
            cell["steps_per_second"],
            cell["data_wait_share_workers"],
            cell["data_wait_share_resident"],
            cell["separation_seconds_per_minute"],
            cell["peak_memory_gib"],
        ]
        print("  " + " ".join(_cell_text(value) for value in values))
    print(f"  BSS Eval: {results['bsseval_seconds_per_minute']:.2f} s per minute of 4-stem audio")


def _cell_text(value) -> str:
    if isinstance(value, float):
        return f"{value:>13.3f}"
    return f"{str(value)[:13]:>13}"


if __name__ == "__main__":
    _install_if_missing()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and short")
    parser.add_argument("--out", default="results/bench_gpu.json", help="JSON file to write")
    arguments = parser.parse_args()
    main(quick=arguments.quick, out=arguments.out)
