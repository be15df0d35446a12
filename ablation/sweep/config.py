"""A sweep YAML and its grid: reading and checking it, its cells in the order every
runner uses, and the checks run before anything trains (arguments, ``--count``,
``--gpus``)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ablation.arguments import command, model_variants, parse_cell, variant_arguments
from ablation.errors import AblationError
from ablation.files import write_text
from ablation.runs import SWEEP_COPY, run_name


class SweepError(AblationError):
    """A sweep YAML or environment problem, phrased for the user."""


# The suite's own sweeps, found by name from any working folder.
SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"


def sweep_file(sweep: str | Path) -> Path:
    """The YAML of a sweep given by path or by name: ``demo`` is ``sweeps/demo.yaml`` (in
    the working folder, else the suite's), so every make target takes ``SWEEP`` alike."""
    path = Path(sweep)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return path
    for folder in (Path("sweeps"), SWEEPS_DIR):
        if (folder / f"{sweep}.yaml").is_file():
            return folder / f"{sweep}.yaml"
    return path


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep YAML (a path, or a name :func:`sweep_file` finds) and check it with
    W&B's own schema."""
    import sweeps

    path = sweep_file(path)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml") if "base" not in p.stem))
        raise SweepError(
            f"sweep {path} not found: expected a W&B sweep YAML path or the name of one in "
            f"sweeps/ ({names}), e.g. SWEEP=depth_dimension."
        )
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise SweepError(
            f"{path} is not valid YAML ({problem}{at}): expected a W&B sweep YAML such as "
            f"sweeps/depth_dimension.yaml. Fix its syntax there."
        ) from None
    if not isinstance(config, dict):
        raise SweepError(
            f"{path} holds {'nothing' if config is None else f'a {type(config).__name__}'}, not a "
            f"sweep: expected a mapping with method, metric and parameters, as in "
            f"sweeps/depth_dimension.yaml."
        )
    violations = sweeps.schema_violations_from_proposed_config(config)
    if violations:
        raise SweepError(f"{path} is not a valid W&B sweep: {'; '.join(violations)}")
    nested = [k for k, v in config["parameters"].items() if "parameters" in v]
    if nested:
        raise SweepError(
            f"{path}: nested parameters {nested} are mishandled by the sweep "
            f"engine; write them flat with dotted names (model.depth)."
        )
    return config


SEED_PARAMETER = "seed_everything"


def with_seeds(path: str | Path, seeds: int, runs_dir: str | Path = "runs") -> Path:
    """The sweep YAML with every cell run at seeds ``0 .. seeds-1``, written beside the
    sweep's runs (``runs/<sweep>/sweep-seeds<N>.yaml``) so that offline runners, W&B and
    Slurm tasks all read one file. The data seed follows each run's seed (see
    ``MUSDBDataModule``): seed k of every cell trains on the same data stream."""
    if seeds < 1:
        raise SweepError(f"--seeds must be 1 or more, got {seeds}: e.g. --seeds 3.")
    config = load_sweep(path)
    config["parameters"][SEED_PARAMETER] = {"values": list(range(seeds))}
    config["name"] = sweep_name(path, config)
    seeded = Path(runs_dir) / config["name"] / f"sweep-seeds{seeds}.yaml"
    seeded.parent.mkdir(parents=True, exist_ok=True)
    write_text(seeded, yaml.safe_dump(config, sort_keys=False))
    return seeded


def sweep_name(path: str | Path, config: dict[str, Any]) -> str:
    return config.get("name") or Path(path).stem


def keep_sweep_copy(path: str | Path, runs_dir: str | Path) -> None:
    """Copy the sweep YAML beside its runs (``runs/<sweep>/sweep.yaml``): the report
    reads from it what the sweep varies, and checks every other setting is shared."""
    config = load_sweep(path)
    copy = Path(runs_dir) / sweep_name(path, config) / SWEEP_COPY
    write_text(copy, yaml.safe_dump(config, sort_keys=False))


def grid(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of a grid sweep as ``{parameter: value}``, listed by W&B's engine."""
    import sweeps

    if config.get("method") != "grid":
        raise SweepError(f"offline sweeps need method 'grid', found {config.get('method')!r}.")
    runs: list[sweeps.SweepRun] = []
    while (proposal := sweeps.next_run(config, runs)) is not None:
        runs.append(
            sweeps.SweepRun(
                name=f"run{len(runs)}", config=proposal.config, state=sweeps.RunState.finished
            )
        )
    return [{k: v["value"] for k, v in run.config.items()} for run in runs]


def check_cells(path: str | Path, cells: list[dict[str, Any]]) -> None:
    """Refuse a grid with a run that names no valid ``cell`` (the runner needs it to name
    the run folder, and ``ablation fit`` to choose the net)."""
    for params in cells:
        if "cell" not in params:
            raise SweepError(
                f"{path}: the grid has no 'cell' parameter (found {sorted(params)}): expected "
                f"one naming the runs' nets, e.g. `cell: {{values: [1d-depth6, 2d-depth4]}}`. "
                f"Check its spelling."
            )
        try:
            parse_cell(str(params["cell"]))
        except ValueError as err:
            raise SweepError(f"{path}: {err} Fix that value of its 'cell' parameter.") from None


# jsonargparse's most specific complaint in a nested error report.
_FIT_COMPLAINT = re.compile(r"unrecognized arguments|not accepted|Expected a|invalid choice")


def _fit_complaint(stderr: str) -> str:
    """One line from the error report of ``ablation fit`` (usage and nesting dropped)."""
    lines = [line.strip().lstrip("- ") for line in stderr.split("error:", 1)[-1].splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if _FIT_COMPLAINT.search(line) and "NoneType" not in line:
            key = lines[i - 1] if i and lines[i - 1].startswith("Parser key") else ""
            return f"{key} {line}".strip()
    return lines[0] if lines else "no message"


def dry_run(path: str | Path, cmd: list[str], params: dict[str, Any], env: dict) -> None:
    """Parse ``cmd`` (an ``ablation fit`` command) without training, so a misspelt
    parameter or a value of the wrong type stops the sweep before its first run instead
    of failing every run. A grid gives every run the same parameter names, so one run
    checks them all."""
    if "fit" not in cmd:
        return
    try:
        parsed = subprocess.run(
            [*cmd, "--print_config"], env=env, capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        print(f"{path}: the check of the first run's arguments timed out; running anyway.")
        return
    if parsed.returncode != 0:
        run = ", ".join(f"{k}={v}" for k, v in params.items())
        raise SweepError(
            f"{path}: `ablation fit` refuses the arguments of the run {run}: "
            f"{_fit_complaint(parsed.stderr)}. Fix that parameter's name or value."
        )


def cell_run_dir(runs_dir: Path, sweep: str, params: dict[str, Any]) -> Path:
    """The folder the CLI will give this run (same naming as ``ablation fit``)."""
    dimension, depth = parse_cell(str(params["cell"]))
    variants = model_variants(variant_arguments(params))
    name = run_name(dimension, depth, params.get("seed_everything", 0), variants)
    return runs_dir / sweep / name


def own_wandb_service(environ) -> dict[str, str]:
    """The environment for a run, without a W&B service token of this process.

    wandb keeps its service's address in ``WANDB_SERVICE``; a child that inherits it
    shares this process's service, which then holds a killed run's id "in use" and
    refuses its resume. Each run gets its own service instead.
    """
    return {k: v for k, v in environ.items() if k != "WANDB_SERVICE"}


def offline_command(
    config: dict[str, Any],
    name: str,
    params: dict[str, Any],
    runs_dir: str | Path,
    extra_args: list[str] | None = None,
) -> list[str]:
    """The ``ablation fit`` command of one cell of an offline sweep."""
    run_dir = cell_run_dir(Path(runs_dir), name, params)
    return [
        *command(config, params),
        f"--run.sweep={name}",
        f"--run.dir={runs_dir}",
        f"--run.name={run_dir.name}",
        *(extra_args or []),
    ]


def offline_env() -> dict[str, str]:
    return {**own_wandb_service(os.environ), "WANDB_MODE": "offline"}


def offline_cells(path: str | Path) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The sweep's config, name and cells in the order every offline runner uses."""
    config = load_sweep(path)
    cells = grid(config)
    check_cells(path, cells)
    return config, sweep_name(path, config), cells


def check_count(count: int | None) -> None:
    """Refuse a ``--count`` that is not a number of cells (``cells[:-1]`` drops the last)."""
    if count is not None and count < 1:
        raise SweepError(f"--count must be 1 or more cells, got {count}: e.g. --count 2.")


def check_gpus(gpus: list[str] | None) -> None:
    """Refuse a ``--gpus`` list naming one GPU twice, or a GPU this machine does not have
    (ids as ``CUDA_VISIBLE_DEVICES`` takes them; ``GPU-``/``MIG-`` UUIDs are not checked)."""
    if not gpus:
        return
    twice = sorted({g for g in gpus if gpus.count(g) > 1})
    if twice:
        raise SweepError(
            f"--gpus names GPU {', '.join(twice)} more than once ({','.join(gpus)}): two cells "
            f"would share it. Give each GPU once, e.g. --gpus 0,1."
        )
    numbers = [g for g in gpus if not g.upper().startswith(("GPU-", "MIG-"))]
    if not numbers:
        return
    import torch

    found = torch.cuda.device_count()
    wrong = [g for g in numbers if not g.isdigit() or int(g) >= found]
    if wrong:
        have = f"GPUs 0 to {found - 1}" if found else "no CUDA GPU"
        raise SweepError(
            f"--gpus names GPU {', '.join(wrong)}, but this machine has {have}: give ids of "
            f"`nvidia-smi -L`, or leave out --gpus."
        )
