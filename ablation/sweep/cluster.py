"""Cluster submission: a sweep as a Slurm job array (:mod:`ablation.slurm` writes the
script), each task one offline cell or one ``wandb agent``."""

from __future__ import annotations

from pathlib import Path

from ablation.slurm import (
    SlurmOptions,
    agent_task_command,
    batch_script,
    how_to_watch,
    offline_task_command,
    submit,
    write_script,
)
from ablation.sweep.config import (
    SweepError,
    check_cells,
    check_count,
    dry_run,
    grid,
    keep_sweep_copy,
    load_sweep,
    offline_cells,
    offline_command,
    offline_env,
    sweep_name,
)
from ablation.sweep.online import create_sweep

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
