"""The ``ablation`` command: LightningCLI for fit/validate/test plus the suite's own
subcommands, each parsed here and calling a typed library function (DESIGN.md, style
rule 1); cells, variants and sweep parameters become configuration in
:mod:`ablation.arguments`. The top of the house: no module of the suite imports it.

A user error (bad data, argument or checkpoint) ends a command with one line on
stderr and exit code 1; ``ABLATION_DEBUG=1`` shows its traceback instead."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ablation.user_errors import one_line_errors


def _parser(name: str, detail: str = "") -> argparse.ArgumentParser:
    """Subcommand ``name``'s parser, described as ``ablation --help`` lists it."""
    description = (
        f"{SUMMARIES[name][0].upper()}{SUMMARIES[name][1:]}.{' ' + detail if detail else ''}"
    )
    return argparse.ArgumentParser(prog=f"ablation {name}", description=description)


def _dataset_parser(name: str, example: str, detail: str = "") -> argparse.ArgumentParser:
    """The arguments every generated dataset takes: where, how many tracks, how long."""
    parser = _parser(name, detail)
    parser.add_argument("out", help=f"folder to create, e.g. {example}")
    parser.add_argument("--train", type=int, default=10, help="tracks in train/ (default 10)")
    parser.add_argument("--test", type=int, default=4, help="tracks in test/ (default 4)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per track")
    parser.add_argument(
        "--test-duration", type=float, help="seconds per test track (default: --duration)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _toy_data(argv: Sequence[str]) -> None:
    parser = _dataset_parser("toy-data", "data/toy", "MUSDB18-HQ layout.")
    args = parser.parse_args(argv)
    from datamodules import make_toy_dataset

    with one_line_errors():
        out = make_toy_dataset(
            args.out, args.train, args.test, args.duration, seed=args.seed,
            test_duration=args.test_duration,
        )  # fmt: skip
    print(f"toy dataset written to {out} ({args.train} train, {args.test} test tracks)")


def _render_data(argv: Sequence[str]) -> None:
    parser = _dataset_parser(
        "render-data",
        "data/rendered (HQ layout)",
        "Composed songs, each stem rendered by FluidSynth with the General MIDI SoundFont "
        "FluidR3_GM (MUSDB18-HQ layout; --stems adds the .stem.mp4 layout).",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        metavar="F",
        help="MUSDB18's shape times F in (0, 1]: 100*F train and 50*F test tracks with "
        "MUSDB18's spread of durations (replaces --train, --test and the durations)",
    )
    parser.add_argument("--stems", metavar="DIR", help="also write the .stem.mp4 layout in DIR")
    parser.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    from datamodules.rendered import make_rendered_dataset, plan

    with one_line_errors():
        tracks = plan(args.train, args.test, args.duration, args.test_duration, args.scale)
        out = make_rendered_dataset(
            args.out, args.train, args.test, args.duration, seed=args.seed,
            test_duration=args.test_duration, scale=args.scale, stems_out=args.stems,
            jobs=args.jobs,
        )  # fmt: skip
    hours = sum(seconds for _, _, seconds in tracks) / 3600
    counts = {s: sum(t[0] == s for t in tracks) for s in ("train", "test")}
    where = f"{out}" + (f" and {args.stems}" if args.stems else "")
    print(f"rendered dataset written to {where} ({counts['train']} train, {counts['test']} "
          f"test tracks, {hours:.2f} h)")  # fmt: skip


def _bench(argv: Sequence[str]) -> None:
    from ablation.benchmarks import BENCHMARKS, ON_REQUEST, run

    parser = _parser("bench")
    parser.add_argument(
        "names", nargs="*", help=f"any of {sorted(BENCHMARKS)}; default all but {ON_REQUEST}"
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument(
        "--f90", metavar="PATH", help="train: a clone of f90/Wave-U-Net-Pytorch to compare with"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        metavar="F",
        help="scale: the rendered dataset at MUSDB18's size times F (default 1)",
    )
    args = parser.parse_args(argv)
    with one_line_errors():
        run(args.names, quick=args.quick, f90=args.f90, scale=args.scale)


def _gpu_list(value: str) -> list[str] | None:
    return [g for g in value.split(",") if g] or None


def _add_slurm_arguments(parser: argparse.ArgumentParser) -> None:
    slurm = parser.add_argument_group(
        "Slurm", "--slurm: submit the sweep as a job array, one task per cell (README, Sweeps)"
    )
    slurm.add_argument("--slurm", action="store_true", help="write and sbatch a job array")
    slurm.add_argument("--dry-run", action="store_true", help="only write the batch script")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--gpus-per-task", type=int, default=None, help="GPUs per node of a task")
    slurm.add_argument("--cpus-per-task", type=int, default=None)
    slurm.add_argument("--mem", default=None, help="memory per node, e.g. 32G")
    slurm.add_argument("--time", default=None, help="time limit per task, e.g. 04:00:00")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per task: one DDP run")
    slurm.add_argument("--max-parallel", type=int, default=None, help="tasks running at once")
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra #SBATCH line, repeatable: --sbatch=--qos=long",
    )
    slurm.add_argument("--sweep-id", default=None, help="online: an existing ENTITY/PROJECT/ID")


def _sweep(argv: Sequence[str]) -> None:
    from ablation.slurm import SlurmOptions, agent_task
    from ablation.sweep import (
        check_count,
        check_gpus,
        run_cell,
        run_sweep,
        submit_slurm,
        sweep_file,
        with_seeds,
    )

    parser = _parser("sweep")
    parser.add_argument(
        "sweep",
        nargs="?",
        default="depth_dimension",
        help="a sweep YAML, or the name of one in sweeps/ (default depth_dimension)",
    )
    parser.add_argument("--gpus", type=_gpu_list, default=None, help="e.g. 0,1,2,3")
    parser.add_argument("--count", type=int, default=None, help="run at most N cells")
    parser.add_argument("--root", default=None, help="MUSDB18 root (default: $MUSDB_PATH or toy)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--offline", action="store_true", help="never contact W&B")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="run every cell at seeds 0..N-1 (the data stream follows the seed); the sweep "
        "written with that axis goes to runs/<sweep>/sweep-seedsN.yaml",
    )
    parser.add_argument(
        "--only-index",
        type=int,
        default=None,
        metavar="I",
        help="train only cell I (from 0) of the offline grid, in this process (a Slurm task)",
    )
    parser.add_argument(
        "--fit-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="offline: append to every cell's `ablation fit`, e.g. --fit-arg=--trainer.devices=2",
    )
    parser.add_argument(
        "--agent-task",
        default=None,
        metavar="SWEEP_ID",
        help="inside an online Slurm array task (the batch script's line): take a cell with "
        "`wandb agent --count 1`, or after a requeue resume the run it took",
    )
    parser.add_argument("--task-records", default="runs", help="where --agent-task notes its run")
    _add_slurm_arguments(parser)
    args = parser.parse_args(argv)
    args.sweep = str(sweep_file(args.sweep))
    if args.only_index is not None and not args.offline:
        parser.error("--only-index runs one cell of the offline grid: add --offline")
    if args.dry_run and not args.slurm:
        parser.error("--dry-run writes a Slurm batch script: add --slurm")
    with one_line_errors(flags={"--data.root": "--root"}):
        # every flag is checked before anything is written
        check_count(args.count)
        options = SlurmOptions(
            args.partition,
            args.account,
            args.gpus_per_task,
            args.cpus_per_task,
            args.mem,
            args.time,
            args.nodes,
            args.max_parallel,
            args.sbatch,
        )
        if args.slurm:
            options.check()
        else:
            check_gpus(args.gpus)
        if args.root:
            os.environ["MUSDB_PATH"] = str(Path(args.root).resolve())
        if args.seeds is not None:
            args.sweep = str(with_seeds(args.sweep, args.seeds, args.runs_dir))
        if args.agent_task is not None:
            agent_task(args.agent_task, Path(args.task_records))
        if args.only_index is not None:
            raise SystemExit(run_cell(args.sweep, args.only_index, args.runs_dir, args.fit_arg))
        if args.slurm:
            from ablation.wandb_mode import wandb_online

            submit_slurm(
                args.sweep,
                options,
                args.runs_dir,
                args.root,
                offline=args.offline or not wandb_online(),
                count=args.count,
                write_only=args.dry_run,
                sweep_id=args.sweep_id,
                extra_args=args.fit_arg,
            )
            raise SystemExit(0)
        code = run_sweep(
            args.sweep,
            args.gpus,
            args.count,
            args.runs_dir,
            args.root,
            offline=True if args.offline else None,
            extra_args=args.fit_arg,
        )
    raise SystemExit(code)


def _demo(argv: Sequence[str]) -> None:
    from ablation.demo import DEMO_ROOT, run_demo

    parser = _parser("demo")
    parser.add_argument(
        "--root",
        default=DEMO_ROOT,
        help="rendered dataset (created if missing), or your own data: then runs/demo-<data>/ "
        "and results/demo-<data>/",
    )
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument(
        "--out", default=None, help="table and report (default results/demo[-<data>]/)"
    )
    parser.add_argument("--jobs", type=int, default=None, help="evaluation processes")
    args = parser.parse_args(argv)
    with one_line_errors(flags={"--data.root": "--root"}):
        run_demo(args.root, args.runs_dir, args.out, args.jobs)


def _separate(argv: Sequence[str]) -> None:
    parser = _parser("separate")
    parser.add_argument("songs", nargs="+", help="audio files soundfile reads (wav, flac, ...)")
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `ablation fit`")
    parser.add_argument("--out", default=None, help="folder (default: separated/<song>/)")
    parser.add_argument("--segment", type=float, default=None, help="seconds (default: training)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    import torch

    from ablation.separate import output_folders, separate_file

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with one_line_errors():
        folders = output_folders(args.songs, args.out)
    for song, out in zip(args.songs, folders, strict=True):
        with one_line_errors():
            paths = separate_file(
                args.ckpt, song, out, args.segment, args.overlap, args.batch_size, device
            )
        print(f"{song}: " + ", ".join(str(p) for p in paths.values()))


def _eval(argv: Sequence[str]) -> None:
    # The choices without the evaluation itself: `--help` starts without torch.
    from ablation.constants import EVALUATION_BACKENDS as BACKENDS
    from ablation.constants import EVALUATION_BASELINES as BASELINES

    parser = _parser("eval")
    parser.add_argument("--ckpt", default=None, help="checkpoint of `ablation fit`")
    parser.add_argument(
        "--root",
        default=None,
        help="MUSDB18 in either form (default: the data the checkpoint's run trained on, "
        "else $MUSDB_PATH)",
    )
    parser.add_argument("--subset", default="test", choices=("test", "train"))
    parser.add_argument("--out", default=None, help="default: beside the checkpoint")
    parser.add_argument("--baseline", default=None, choices=BASELINES)
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all)")
    parser.add_argument(
        "--metrics",
        default="torch",
        choices=BACKENDS,
        help="BSS Eval backend: this suite's exact torch port or museval itself",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--shifts",
        type=int,
        default=0,
        metavar="N",
        help="average each separation over N seeded delays in [0, 0.5 s) (Demucs' shift "
        "trick; the same for every checkpoint; default 0: one pass)",
    )
    parser.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    parser.add_argument(
        "--budgets",
        action="store_true",
        help="also evaluate the run's budget-fraction checkpoints (checkpoints/budget-*.ckpt "
        "beside --ckpt), each beside its checkpoint, for the report's SDR against budget",
    )
    args = parser.parse_args(argv)
    from ablation.evaluation import evaluate_checkpoint, score_table
    from ablation.runs import budget_checkpoints

    root = _eval_root(args.root, args.ckpt)
    if root is None or (args.ckpt is None and args.baseline is None):
        parser.error("give --root (or set MUSDB_PATH) and --ckpt and/or --baseline")
    with one_line_errors(flags={"--data.root": "--root"}):
        out = evaluate_checkpoint(
            args.ckpt,
            root,
            args.subset,
            args.out,
            args.baseline,
            args.jobs,
            args.metrics,
            args.device,
            not args.no_wandb,
            shifts=args.shifts,
        )
        print(f"evaluation written to {out}\n\nmedian over tracks (summary.md: means, MSE):")
        print(score_table(out))
        for ckpt in budget_checkpoints(args.ckpt) if args.budgets and args.ckpt else ():
            # Never into the run's W&B summary: the keys are the full checkpoint's.
            done = evaluate_checkpoint(
                str(ckpt), root, args.subset, None, None, args.jobs, args.metrics,
                args.device, wandb_log=False, shifts=args.shifts,
            )  # fmt: skip
            print(f"evaluation written to {done}")


def _eval_root(root: str | None, ckpt: str | None) -> str | None:
    """``--root``, else the data the checkpoint's run trained on (said in one line), else
    ``$MUSDB_PATH``."""
    from ablation.runs import trained_root

    trained = trained_root(ckpt) if ckpt and not root else None
    if trained is not None:
        print(f"ROOT (--root) not given: evaluating on {trained[0]}, the data {trained[1].name} "
              f"trained on (its data.json or config.yaml)")  # fmt: skip
        return trained[0]
    return root or os.environ.get("MUSDB_PATH")


def _report(argv: Sequence[str]) -> None:
    parser = _parser("report")
    parser.add_argument(
        "--sweep",
        default=None,
        help="sweep name or YAML path: every run in runs/<sweep>/ (default depth_dimension "
        "without --runs)",
    )
    parser.add_argument("--runs", nargs="*", default=[], help="run or baseline-eval folders")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument(
        "--out", default=None, help="default: results/<sweep>/, or results/runs-<a>+<b>/ for --runs"
    )
    parser.add_argument("--no-wandb", action="store_true")
    args = parser.parse_args(argv)
    from ablation.report import build_report, report_name

    if not args.sweep and not args.runs:
        args.sweep = "depth_dimension"
    name = report_name(args.sweep, args.runs)
    folders = [Path(r) for r in args.runs]
    if args.sweep:
        folders += sorted(p for p in (Path(args.runs_dir) / name).glob("*") if p.is_dir())
    with one_line_errors():
        path = build_report(folders, Path(args.out or f"results/{name}"), name, not args.no_wandb)
    print(f"report written to {path}")


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "toy-data": _toy_data,
    "render-data": _render_data,
    "bench": _bench,
    "sweep": _sweep,
    "demo": _demo,
    "separate": _separate,
    "eval": _eval,
    "report": _report,
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")
# What each subcommand does, in one line: `ablation --help` lists them in this order.
SUMMARIES = {
    "fit": "train one run (a grid cell: --cell=2d-depth4) in its budget; resumes, skips finished",
    "validate": "score a run's checkpoint on the validation split (--ckpt_path)",
    "test": "run Lightning's test loop on a run's checkpoint (--ckpt_path)",
    "sweep": "train every cell of a sweep YAML (W&B online, or offline), skipping finished runs",
    "eval": "SiSEC 2018 evaluation (museval v4) of a checkpoint or a baseline on MUSDB18",
    "report": "comparison table, plots, significance tests and an HTML page for a sweep's runs",
    "demo": "the whole pipeline on a generated dataset, on the CPU, offline",
    "separate": "separate whole songs with a checkpoint into one wav per source",
    "toy-data": "write the seeded toy dataset the tests use",
    "render-data": "write the seeded rendered dataset (FluidSynth) the demo uses",
    "bench": "side-by-side benchmarks that print ratios",
}


def usage() -> str:
    """The command's usage: one line per subcommand saying what it does."""
    width = max(map(len, SUMMARIES))
    lines = [f"  {name:<{width}}  {summary}" for name, summary in SUMMARIES.items()]
    return "\n".join(
        ["usage: ablation SUBCOMMAND [ARGS] (`ablation SUBCOMMAND --help` for its arguments)",
         "", "subcommands:", *lines]
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``ablation`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        SUBCOMMANDS[argv[0]](argv[1:])
        return
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        from lightning_modules.lightning_cli import (
            run_lightning_cli,  # Lightning only when training
        )

        # ValueError covers DataError and every argument a module or net refuses.
        with one_line_errors(ValueError):
            run_lightning_cli(argv)
        return
    if argv[:1] in (["--help"], ["-h"]):
        print(usage())
        return
    raise SystemExit(usage())


if __name__ == "__main__":
    main()
