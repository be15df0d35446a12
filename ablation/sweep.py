"""``make sweep`` / ``ablation sweep``: one W&B sweep YAML, online or offline.

Online (W&B credentials, ``WANDB_MODE`` not offline) the YAML goes to W&B as it is
(``wandb sweep``) and one ``wandb agent`` runs per GPU; other machines join with the
printed ``wandb agent ENTITY/PROJECT/ID`` line. Offline, W&B's own sweep engine
(the ``sweeps`` package) expands the same YAML into the same runs, which are
executed here one after another (or one per GPU at a time), each logging an offline
W&B run. Either way each run writes ``runs/<sweep>/<run-name>/``; a finished run is
skipped and an interrupted one resumes from ``last.ckpt`` when the sweep is
started again.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ablation.children import die_with_parent, terminate_children_on_sigterm
from ablation.errors import AblationError
from ablation.files import write_text
from ablation.run_lock import IN_USE_EXIT_CODE, RunLock
from ablation.runs import (
    SUMMARY,
    SWEEP_COPY,
    is_done,
    model_variants,
    parse_cell,
    run_name,
    variant_arguments,
)
from ablation.slurm import (
    SlurmOptions,
    agent_task_command,
    batch_script,
    how_to_watch,
    offline_task_command,
    submit,
    write_script,
)
from ablation.wandb_mode import wandb_online


class SweepError(AblationError):
    """A sweep YAML or environment problem, phrased for the user."""


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep YAML and check it with W&B's own schema."""
    import sweeps

    path = Path(path)
    if not path.is_file():
        raise SweepError(
            f"sweep file {path} not found: expected a W&B sweep YAML, e.g. "
            f"sweeps/depth_dimension.yaml."
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


def command(config: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` would run for ``params`` (same macros, same flags)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    formats = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros = {
        "${env}": [],
        "${interpreter}": [sys.executable],
        "${program}": [config.get("program", "")],
    }
    macros.update(
        {f"${{{name}}}": value for name, value in formats.items() if isinstance(value, list)}
    )
    template = config.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    return [part for item in template for part in macros.get(item, [item])]


def cell_run_dir(runs_dir: Path, sweep: str, params: dict[str, Any]) -> Path:
    """The folder the CLI will give this run (same naming as ``ablation fit``)."""
    dimension, depth = parse_cell(str(params["cell"]))
    variants = model_variants(variant_arguments(params))
    name = run_name(dimension, depth, params.get("seed_everything", 0), variants)
    return runs_dir / sweep / name


def _own_wandb_service(environ) -> dict[str, str]:
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
    return {**_own_wandb_service(os.environ), "WANDB_MODE": "offline"}


def offline_cells(path: str | Path) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The sweep's config, name and cells in the order every offline runner uses."""
    config = load_sweep(path)
    cells = grid(config)
    check_cells(path, cells)
    return config, sweep_name(path, config), cells


def run_cell(
    path: str | Path,
    index: int,
    runs_dir: str | Path = "runs",
    extra_args: list[str] | None = None,
) -> int:
    """Train cell ``index`` of the offline expansion in this very process (a Slurm array
    task): the process becomes ``ablation fit``, so the signals Slurm sends before a
    time limit reach Lightning (and skips a cell finished earlier with the same
    arguments and data). Waits while another process trains the cell."""
    config, name, cells = offline_cells(path)
    if not 0 <= index < len(cells):
        raise SweepError(
            f"{path}: cell index {index} is out of range: the grid has {len(cells)} cells "
            f"(0 to {len(cells) - 1}). Submit an array of {len(cells)} tasks."
        )
    params = cells[index]
    run_dir = cell_run_dir(Path(runs_dir), name, params)
    label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
    run_lock = RunLock(run_dir)
    if not run_lock.is_free():
        print(f"{label}: waiting for {run_lock.holder()}, which trains it", flush=True)
        run_lock.acquire(wait=True)
        run_lock.release()
    # a finished run is skipped by `ablation fit` itself, once it compared arguments and data
    cmd = offline_command(config, name, params, runs_dir, extra_args)
    print(f"{label}: {' '.join(cmd)}", flush=True)
    os.execvpe(cmd[0], cmd, offline_env())
    raise AssertionError("unreachable: exec returns only by raising")


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _summary_stamp(run_dir: Path) -> tuple[int, int] | None:
    """The summary's modification time (ns) and size; None without a summary."""
    try:
        stat = (Path(run_dir) / SUMMARY).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


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


def run_offline(
    path: str | Path,
    gpus: list[str] | None = None,
    count: int | None = None,
    runs_dir: str | Path = "runs",
    extra_args: list[str] | None = None,
) -> Outcome:
    """Run every cell of a grid sweep here, offline; see the module docstring.

    Args:
        path: the sweep YAML.
        gpus: GPU ids to spread cells over (one cell per GPU at a time); None: one
            cell at a time on whatever the config selects.
        count: run at most this many cells (in grid order).
        runs_dir: parent of the sweep's run folders.
        extra_args: appended to every run's command (e.g. ``--data.root=...``).

    Returns:
        Which runs finished, were skipped as done, or failed (a failure does not
        stop the other cells).

    A cell with a ``summary.json`` is skipped only once ``ablation fit`` found its
    arguments and data the recorded ones (else it fails, saying what changed). A cell
    another process trains (its run folder is locked, :mod:`ablation.run_lock`) is left
    for later while free cells remain, then waited for.
    """
    check_count(count)
    config, name, cells = offline_cells(path)
    cells = cells[:count]
    outcome, lock = Outcome(), threading.Lock()
    running: set[subprocess.Popen] = set()

    def cell_command(params: dict[str, Any]) -> list[str]:
        return offline_command(config, name, params, runs_dir, extra_args)

    env = offline_env()
    pending = [p for p in cells if not is_done(cell_run_dir(Path(runs_dir), name, p))]
    if pending:
        dry_run(path, cell_command(pending[0]), pending[0], env)
    keep_sweep_copy(path, runs_dir)  # once the grid is known to run
    todo = collections.deque(enumerate(cells))
    deferred: collections.deque = collections.deque()  # cells another process trains

    def train(index: int, params: dict[str, Any], gpu: str | None) -> str:
        """Run the cell's `ablation fit` (which also decides whether a finished run may be
        skipped); returns finished, skipped, failed or in use."""
        run_dir = cell_run_dir(Path(runs_dir), name, params)
        label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
        before = _summary_stamp(run_dir)
        try:
            cmd = cell_command(params)
            cell_env = dict(env)
            if gpu is not None:
                cell_env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            if before is not None:
                print(f"{label}: summary.json present: checking its arguments and data", flush=True)
            else:
                print(f"{label}: {' '.join(cmd)}", flush=True)
            started_ns = time.time_ns()
            # This thread waits for the child, so it outlives it, as die_with_parent needs.
            child = subprocess.Popen(
                cmd, env=cell_env, preexec_fn=functools.partial(die_with_parent, os.getpid())
            )
            with lock:
                running.add(child)
            code = child.wait()
            with lock:
                running.discard(child)
        except OSError as err:  # the command could not start: a failed cell, not a lost one
            print(f"{label}: FAILED to start ({err})", flush=True)
            return "failed"
        if code == IN_USE_EXIT_CODE:
            return "in use"
        after = _summary_stamp(run_dir)
        # unchanged, or written before the child started (by another process, while we waited)
        kept = after == before if before is not None else after and after[0] < started_ns
        if code == 0 and after is not None and kept:
            print(f"{label}: done earlier, skipped", flush=True)
            return "skipped"
        ok = code == 0 and is_done(run_dir)
        print(f"{label}: {'finished' if ok else f'FAILED (exit code {code})'}", flush=True)
        return "finished" if ok else "failed"

    def worker(gpu: str | None) -> None:
        while True:
            with lock:
                if not todo and not deferred:
                    return
                wait = not todo  # every cell left is another process's: wait for them
                index, params = todo.popleft() if todo else deferred.popleft()
            run_dir = cell_run_dir(Path(runs_dir), name, params)
            label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
            run_lock = RunLock(run_dir)
            if wait:
                print(f"{label}: waiting for {run_lock.holder()}, which trains it", flush=True)
                run_lock.acquire(wait=True)
                run_lock.release()
            elif not run_lock.is_free():
                print(
                    f"{label}: {run_lock.holder()} trains it now: taking the next free cell, "
                    "back to this one later",
                    flush=True,
                )
                with lock:
                    deferred.append((index, params))
                continue
            result = train(index, params, gpu)
            with lock:
                if result == "in use":  # another process took it between our look and its start
                    print(f"{label}: taken by another process: back to it later", flush=True)
                    deferred.append((index, params))
                else:
                    getattr(outcome, result).append(run_dir.name)

    # daemons: one waiting for another process's lock must not keep an interrupted runner
    threads = [threading.Thread(target=worker, args=(gpu,), daemon=True) for gpu in gpus or [None]]
    with terminate_children_on_sigterm(lambda: list(running)):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(
        f"\nsweep {name}: {len(outcome.finished)} finished, {len(outcome.skipped)} skipped "
        f"(done earlier), {len(outcome.failed)} failed {outcome.failed or ''}"
    )
    print(
        f"sync the offline W&B runs later with: wandb sync {runs_dir}/{name}/*/wandb/offline-run-*"
    )
    return outcome


AGENT_LINE = re.compile(r"wandb agent (\S+/\S+/\S+)")


def _wandb() -> str:
    wandb = shutil.which("wandb")
    if wandb is None:
        raise SweepError("the `wandb` command is not on PATH: run `make install` first.")
    return wandb


def create_sweep(path: str | Path, project: str | None = None, entity: str | None = None) -> str:
    """``wandb sweep`` the YAML; returns ``ENTITY/PROJECT/ID``."""
    config = load_sweep(path)
    if config.get("method") == "grid":
        check_cells(path, grid(config))
    cmd = [
        _wandb(),
        "sweep",
        *(["--project", project] if project else []),
        *(["--entity", entity] if entity else []),
        str(path),
    ]
    created = subprocess.run(cmd, capture_output=True, text=True)
    match = AGENT_LINE.search(created.stdout + created.stderr)
    if created.returncode != 0 or match is None:
        raise SweepError(
            f"`{' '.join(cmd)}` failed (exit code {created.returncode}):\n"
            f"{created.stderr.strip()}\nCheck `wandb login` and the YAML."
        )
    sweep_id = match.group(1)
    print(
        f"sweep created. To add machines, run on each (in this repository, data in place):\n"
        f"    wandb agent {sweep_id}\n",
        flush=True,
    )
    return sweep_id


def run_online(
    path: str | Path,
    gpus: list[str] | None = None,
    count: int | None = None,
    project: str | None = None,
    entity: str | None = None,
) -> str:
    """Create the sweep on W&B and run one agent per GPU; returns ``ENTITY/PROJECT/ID``."""
    check_count(count)
    sweep_id = create_sweep(path, project, entity)
    wandb = _wandb()
    agents = []
    for gpu in gpus or [None]:
        env = _own_wandb_service(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        agent = [wandb, "agent", *(["--count", str(count)] if count else []), sweep_id]
        print(f"starting {' '.join(agent)}" + (f" on GPU {gpu}" if gpu is not None else ""))
        agents.append(
            subprocess.Popen(
                agent, env=env, preexec_fn=functools.partial(die_with_parent, os.getpid())
            )
        )
    with terminate_children_on_sigterm(lambda: agents):
        for agent in agents:
            agent.wait()
    return sweep_id


PLACEHOLDER_SWEEP_ID = "ENTITY/PROJECT/SWEEP_ID"


def submit_slurm(
    path: str | Path,
    options: SlurmOptions,
    runs_dir: str | Path = "runs",
    root: str | None = None,
    offline: bool = True,
    count: int | None = None,
    write_only: bool = False,
    sweep_id: str | None = None,
    extra_args: list[str] | None = None,
) -> tuple[Path, str | None]:
    """Write the sweep's job-array script into ``runs/<sweep>/slurm/`` and ``sbatch`` it
    (see :mod:`ablation.slurm`). Returns the script and the job id (None: only written).

    Args:
        path: the sweep YAML.
        options: what each task asks Slurm for.
        runs_dir: parent of the sweep's run folders.
        root: MUSDB18 root the tasks read.
        offline: one task per cell of the offline expansion; else ``wandb agent``s.
        count: submit at most this many tasks (online non-grid sweeps need it).
        write_only: write the script, submit nothing (``--dry-run``).
        sweep_id: online: an existing ``ENTITY/PROJECT/ID`` instead of a new sweep.
        extra_args: appended to every offline cell's ``ablation fit`` command.
    """
    check_count(count)
    options.check()  # before anything is written
    config = load_sweep(path)
    name = sweep_name(path, config)
    runs_dir = Path(runs_dir).resolve()
    root = str(Path(root).resolve()) if root else None
    log_dir = runs_dir / name / "slurm"
    keep_sweep_copy(path, runs_dir)
    fit_args = [*options.fit_args(), *(extra_args or [])]
    if offline:
        _, _, cells = offline_cells(path)
        tasks = len(cells[:count])
        task = offline_task_command(Path(path).resolve(), runs_dir, root, fit_args)
        if not write_only:
            # Checked once here rather than failing in every task of the array.
            env = {**offline_env(), **({"MUSDB_PATH": root} if root else {})}
            dry_run(
                path, offline_command(config, name, cells[0], runs_dir, fit_args), cells[0], env
            )
    else:
        if config.get("method") == "grid":
            cells = grid(config)
            check_cells(path, cells)
            tasks = len(cells[:count])
        elif count is None:
            raise SweepError(
                f"{path}: method {config.get('method')!r} has no fixed number of runs: "
                f"give --count N to submit an array of N tasks."
            )
        else:
            tasks = count
        if sweep_id is None:
            sweep_id = PLACEHOLDER_SWEEP_ID if write_only else create_sweep(path)
        task = agent_task_command(sweep_id, log_dir)
    script = write_script(
        batch_script(name, tasks, task, log_dir, options),
        log_dir,
        name,
        "offline" if offline else "online",
    )
    print(f"batch script for {tasks} array tasks written to {script}")
    if write_only:
        note = (
            f" (it names {PLACEHOLDER_SWEEP_ID}: give --sweep-id or submit without --dry-run)"
            if sweep_id == PLACEHOLDER_SWEEP_ID
            else ""
        )
        print(f"dry run: nothing submitted{note}; submit it with: sbatch {script}")
        return script, None
    job_id = submit(script)
    print(how_to_watch(job_id, log_dir))
    return script, job_id


def run_sweep(
    path: str | Path,
    gpus: list[str] | None = None,
    count: int | None = None,
    runs_dir: str | Path = "runs",
    root: str | None = None,
    offline: bool | None = None,
    extra_args: list[str] | None = None,
) -> int:
    """``make sweep``: online when W&B credentials exist, else offline. Returns an exit code."""
    check_count(count)
    if root:
        os.environ["MUSDB_PATH"] = str(Path(root).resolve())  # read by MUSDBDataModule
    if offline is None:
        offline = not wandb_online()
    if not offline:
        keep_sweep_copy(path, runs_dir)
        run_online(path, gpus, count)
        return 0
    outcome = run_offline(path, gpus, count, runs_dir, extra_args)
    return 1 if outcome.failed else 0
