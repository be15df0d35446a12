"""The ``ablation`` command: LightningCLI for fit/validate/test plus the suite's own
subcommands. This is the only module of the suite that parses arguments
(DESIGN.md, style rule 1); every subcommand calls a typed library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def _toy_data(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="ablation toy-data",
        description="Write the seeded toy dataset (MUSDB18-HQ layout) that the demo and tests use.",
    )
    parser.add_argument("out", help="folder to create, e.g. data/toy")
    parser.add_argument("--train", type=int, default=10, help="tracks in train/ (default 10)")
    parser.add_argument("--test", type=int, default=4, help="tracks in test/ (default 4)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per track")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from datamodules import make_toy_dataset

    out = make_toy_dataset(args.out, args.train, args.test, args.duration, seed=args.seed)
    print(f"toy dataset written to {out} ({args.train} train, {args.test} test tracks)")


def _bench(argv: Sequence[str]) -> None:
    from ablation.benchmarks import BENCHMARKS, run

    parser = argparse.ArgumentParser(
        prog="ablation bench",
        description="Side-by-side benchmarks that print ratios (see README, 'Benchmarks').",
    )
    parser.add_argument("names", nargs="*", help=f"any of {sorted(BENCHMARKS)}; default all")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    args = parser.parse_args(argv)
    run(args.names, quick=args.quick)


def _gpu_list(value: str) -> list[str] | None:
    return [g for g in value.split(",") if g] or None


def _sweep(argv: Sequence[str]) -> None:
    from ablation.sweep import SweepError, run_sweep

    parser = argparse.ArgumentParser(
        prog="ablation sweep",
        description="Run a W&B sweep YAML: online with W&B credentials (one agent per GPU), "
        "else offline through W&B's own sweep engine. Finished runs are skipped, "
        "interrupted ones resume from last.ckpt.",
    )
    parser.add_argument("sweep", nargs="?", default="sweeps/depth_dimension.yaml")
    parser.add_argument("--gpus", type=_gpu_list, default=None, help="e.g. 0,1,2,3")
    parser.add_argument("--count", type=int, default=None, help="run at most N cells")
    parser.add_argument("--root", default=None, help="MUSDB18 root (default: $MUSDB_PATH or toy)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--offline", action="store_true", help="never contact W&B")
    args = parser.parse_args(argv)
    try:
        code = run_sweep(
            args.sweep,
            args.gpus,
            args.count,
            args.runs_dir,
            args.root,
            offline=True if args.offline else None,
        )
    except SweepError as err:
        raise SystemExit(f"error: {err}") from None
    raise SystemExit(code)


def _demo(argv: Sequence[str]) -> None:
    from ablation.demo import run_demo

    parser = argparse.ArgumentParser(
        prog="ablation demo",
        description="Toy dataset, sweeps/demo.yaml offline, evaluation and comparison table.",
    )
    parser.add_argument("--root", default="data/toy", help="toy dataset (created if missing)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", default="results/demo")
    parser.add_argument("--jobs", type=int, default=None, help="evaluation processes")
    args = parser.parse_args(argv)
    run_demo(args.root, args.runs_dir, args.out, args.jobs)


def _separate(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="ablation separate",
        description="Separate whole songs with a checkpoint (overlap-add); one wav per source.",
    )
    parser.add_argument("songs", nargs="+", help="audio files soundfile reads (wav, flac, ...)")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `ablation fit`")
    parser.add_argument("--out", default=None, help="folder (default: separated/<song>/)")
    parser.add_argument("--segment", type=float, default=None, help="seconds (default: training)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    import torch

    from ablation.separate import SeparationError, separate_file

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    for song in args.songs:
        out = args.out
        if out is not None and len(args.songs) > 1:
            out = f"{args.out}/{Path(song).stem}"
        try:
            paths = separate_file(
                args.ckpt, song, out, args.segment, args.overlap, args.batch_size, device
            )
        except SeparationError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"{song}: " + ", ".join(str(p) for p in paths.values()))


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "toy-data": _toy_data,
    "bench": _bench,
    "sweep": _sweep,
    "demo": _demo,
    "separate": _separate,
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``ablation`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        SUBCOMMANDS[argv[0]](argv[1:])
        return
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from lightning_modules.cli import run_lightning_cli  # Lightning only when training

        run_lightning_cli(argv)
        return
    names = ", ".join([*LIGHTNING_SUBCOMMANDS, *SUBCOMMANDS])
    raise SystemExit(f"usage: ablation {{{names}}} ...\n(run `ablation SUBCOMMAND --help`)")


if __name__ == "__main__":
    main()
