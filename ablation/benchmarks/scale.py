"""The whole pipeline rehearsed at MUSDB18's size on the rendered dataset, on the CPU.

Every stage runs as its own process, the way a user runs it (``ablation render-data``,
``ablation fit``, ``ablation validate``, ``ablation eval``, ``ablation report``, or a
DataModule in a fresh interpreter), so its wall time and peak memory (the largest
resident set of the stage's process tree, from ``wait4``) are its own:

1. the dataset: 100 training and 50 test tracks of MUSDB18's spread of durations
   (``--scale`` a fraction), both layouts, and the disk they take (kept between runs);
2. cache building from each layout (cold), and its size on disk;
3. DataModule start-up on each layout with a warm cache (listing, probing each
   ``.stem.mp4``, checking each entry) and the first training batch through the workers;
4. training steps of ``1d-depth6`` and ``2d-depth4`` at 44.1 kHz through the loader
   workers at the main grid's batch, segment and context (``sweeps/base.yaml``);
5. one validation pass over the 14 validation tracks (``val_fraction`` 0.14 of 100);
6. evaluation of the test tracks with the suite's BSS Eval in parallel workers;
7. the report of both runs.

The quick form (``--quick``) runs the same stages on 4 + 2 tracks of 12 s at batch 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from datamodules.cache import default_cache_dir

BASE = Path(__file__).resolve().parents[2] / "sweeps" / "base.yaml"
CELLS = ("1d-depth6", "2d-depth4")
DATA_ENV = "ABLATION_SCALE_DATA"
VAL_FRACTION = 0.14  # 14 of MUSDB18's 100 training tracks, as its official split
# The DataModule in a fresh interpreter: set-up (listing, probing, cache) and first batch.
START_UP = """
import json, sys, time
t0 = time.perf_counter()
from datamodules import MUSDBDataModule
options = json.loads(sys.argv[1])
t1 = time.perf_counter()
dm = MUSDBDataModule(**options)
dm.setup("fit")
t2 = time.perf_counter()
batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "setup_s": t2 - t1, "first_batch_s": t3 - t2,
                  "batch": list(batch.shape), "tracks": len(dm.splits()["train"]),
                  "valid": len(dm.splits()["valid"])}))
"""


def run_stage(command: list[str], env: dict | None = None) -> dict:
    """Run ``command``; its wall seconds, peak memory (GiB, the largest process of its
    tree) and the last line of its output when that is JSON."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})},
    )  # fmt: skip
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage failed: {' '.join(command)}\n{output[-4000:]}")
    lines = [line for line in output.splitlines() if line.startswith("{")]
    result = {"seconds": seconds, "peak_gib": usage.ru_maxrss / 2**20}
    return result | ({"out": json.loads(lines[-1])} if lines else {})


def disk_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**30


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _print(stage: str, result: dict, note: str = "") -> None:
    print(
        f"{stage:44} {result['seconds']:9.1f} s {result['peak_gib']:8.2f} GiB  {note}", flush=True
    )


@dataclass(frozen=True)
class Setting:
    """What one rehearsal runs on: its folder, the data's size, the loader and the steps."""

    work: Path
    shape: tuple[str, ...]  # ablation render-data's size arguments
    batch: int
    segment: float
    context: float
    steps: int
    val_segments: int
    jobs: int = os.cpu_count() or 1

    @property
    def workers(self) -> int:
        return min(self.jobs, 8)

    @property
    def hq(self) -> Path:
        return self.work / "musdb18hq"

    @property
    def stems(self) -> Path:
        return self.work / "musdb18"

    @property
    def cache(self) -> Path:
        return self.work / "cache"


def setting(quick: bool, scale: float | None) -> Setting:
    """The quick form (4 + 2 tracks of 12 s, batch 2) or MUSDB18's shape times ``scale`` at
    the main grid's batch, segment and context (``sweeps/base.yaml``)."""
    scale = 1.0 if scale is None else scale
    name = "quick" if quick else f"scale{scale:g}"
    work = Path(os.environ.get(DATA_ENV) or default_cache_dir() / "scale-bench") / name
    if quick:
        return Setting(work, ("--train=4", "--test=2", "--duration=12"), 2, 1.0, 1.0, 2, 2)
    return Setting(work, (f"--scale={scale}",), 16, 3.0, 7.0, 3, 8)


def main(quick: bool = False, scale: float | None = None) -> None:
    """Run every stage and print its time and peak memory, then what a GPU changes."""
    s = setting(quick, scale)
    print(f"rehearsal of the pipeline on the rendered dataset in {s.work}; CPU, {s.jobs} "
          f"cores, {s.workers} loader workers, batch {s.batch}, segment {s.segment} s, "
          f"context {s.context} s, 44.1 kHz stereo")  # fmt: skip
    print(f"{'stage':44} {'time':>11} {'peak memory':>12}")
    hours, tracks = _dataset(s)
    _data_module(s)
    for folder in (s.work / "runs", s.work / "results"):
        shutil.rmtree(folder, ignore_errors=True)
    for cell in CELLS:
        _cell(s, cell, tracks)
    runs = [str(s.work / "runs" / "scale" / c) for c in CELLS]
    out = f"--out={s.work / 'results' / 'report'}"
    report = run_stage(_python("-m", "ablation", "report", "--runs", *runs, out, "--no-wandb"))
    _print("report (tables, plots, tests, listening page)", report)
    _gpu_note(hours)


def _dataset(s: Setting) -> tuple[float, dict[str, int]]:
    """Render (or keep) the dataset in both layouts: its hours and tracks per subset."""
    command = ["-m", "ablation", "render-data", str(s.hq), *s.shape, f"--stems={s.stems}"]
    render = run_stage(_python(*command, f"--jobs={s.jobs}"))
    hours = sum(_seconds(p) for p in s.hq.glob("*/*/mixture.wav")) / 3600
    tracks = {subset: len(list((s.hq / subset).iterdir())) for subset in ("train", "test")}
    _print(
        "dataset: render (kept between runs)",
        render,
        f"{tracks['train']} + {tracks['test']} tracks, {hours:.2f} h; HQ {disk_gib(s.hq):.2f} "
        f"GiB, .stem.mp4 {disk_gib(s.stems):.2f} GiB",
    )
    return hours, tracks


def _data_module(s: Setting) -> None:
    """Cache building (cold) and start-up with the first batch (warm), on each layout."""
    shutil.rmtree(s.cache, ignore_errors=True)
    options = dict(segment=s.segment, context=s.context, batch_size=s.batch,
                   num_workers=s.workers, val_fraction=VAL_FRACTION, pin_memory=False,
                   progress=False)  # fmt: skip
    for layout, root, store in (("HQ wav", s.hq, "hq"), (".stem.mp4", s.stems, "stems")):
        dm = json.dumps(options | dict(root=str(root), cache_dir=str(s.cache / store)))
        cold = run_stage(_python("-c", START_UP, dm))
        _print(
            f"cache build, {layout} (cold set-up)",
            cold,
            f"{cold['out']['setup_s']:.1f} s in set-up, cache {disk_gib(s.cache / store):.2f} "
            f"GiB on disk for {cold['out']['tracks'] + cold['out']['valid']} tracks",
        )
        warm = run_stage(_python("-c", START_UP, dm))
        out = warm["out"]
        _print(
            f"DataModule start-up, {layout} (warm cache)",
            warm,
            f"set-up {out['setup_s']:.1f} s (listing, probing, checks), first batch "
            f"{out['first_batch_s']:.1f} s {out['batch']}, imports {out['import_s']:.1f} s",
        )


def _cell(s: Setting, cell: str, tracks: dict[str, int]) -> None:
    """Train a few steps through the workers, one validation pass, evaluation of the test set."""
    runs = s.work / "runs"
    fit = [
        "-m", "ablation", "fit", f"--config={BASE}", f"--cell={cell}",
        f"--data.root={s.hq}", f"--data.cache_dir={s.cache / 'hq'}",
        f"--data.num_workers={s.workers}", f"--data.batch_size={s.batch}",
        f"--data.segment={s.segment}", f"--data.context={s.context}",
        f"--data.val_fraction={VAL_FRACTION}",
        f"--data.val_segments_per_track={s.val_segments}", "--data.progress=false",
        "--trainer.accelerator=cpu", "--trainer.precision=32-true",
        f"--trainer.max_steps={s.steps}", "--trainer.enable_progress_bar=false",
        "--run.val_every_seconds=1e9", f"--run.dir={runs}", "--run.sweep=scale",
        f"--run.name={cell}",
    ]  # fmt: skip
    trained = run_stage(_python(*fit))
    run_dir = runs / "scale" / cell
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary.get("fairness", {}).get("train_seconds", float("nan")) / summary["steps"]
    _print(
        f"train {cell}: {summary['steps']} steps (whole run)",
        trained,
        f"{step:.1f} s per counted step (batch {s.batch}, {s.workers} workers)",
    )
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    config = f"--config={run_dir / 'config.yaml'}"
    valid = run_stage(
        _python(
            "-m", "ablation", "validate", config, f"--ckpt_path={ckpt}", "--trainer.logger=false"
        )
    )
    val_tracks = round(VAL_FRACTION * tracks["train"])
    _print(
        f"validation pass {cell} (whole command)",
        valid,
        f"{val_tracks} tracks, {val_tracks * s.val_segments} windows",
    )
    # the default workers: one per core, as many as the memory holds on the longest track
    evaluate = ["-m", "ablation", "eval", f"--ckpt={ckpt}", f"--root={s.hq}"]
    scored = run_stage(_python(*evaluate, "--no-wandb", "--device=cpu"))
    per_track = scored["seconds"] * min(s.jobs, tracks["test"]) / tracks["test"]
    _print(
        f"evaluate {cell}: {tracks['test']} test tracks, {s.jobs} workers",
        scored,
        f"{per_track:.1f} s per track per worker; peak = largest worker",
    )


def _seconds(path: Path) -> float:
    import soundfile as sf

    return sf.info(path).duration


def _gpu_note(hours: float) -> None:
    print(
        "\nOn a GPU: cache building, start-up and the report do not change (CPU and disk);\n"
        "training and validation steps run on the GPU while the workers only cut int16\n"
        "windows from the memory-mapped cache (see `make bench BENCH=data`: >1000 batches/s\n"
        "per worker, far above a GPU's step rate), and evaluation separates on the GPU while\n"
        "BSS Eval stays on the CPU workers (`ablation/benchmarks/gpu.py` measures both).\n"
        f"Figures above are for {hours:.2f} h of audio; MUSDB18 is about 10 h."
    )
