"""``make sweep SLURM=1`` / ``ablation sweep SWEEP --slurm``: a sweep as a Slurm job array.

One array task per cell of the grid. Offline, task ``i`` trains cell ``i`` of the same
expansion :func:`ablation.sweep.run_offline` uses (``ablation sweep SWEEP --offline
--only-index $SLURM_ARRAY_TASK_ID``); online, each task takes one cell of the W&B
sweep (:func:`agent_task`: ``wandb agent --count 1``). The script lands in
``runs/<sweep>/slurm/`` with the tasks' logs.

Preemption and time limits: Slurm sends ``SIGUSR1`` 90 s before it stops a task;
Lightning's :class:`~lightning.fabric.plugins.environments.SLURMEnvironment` (added by
the CLI under Slurm) then saves a checkpoint and requeues the task, and the requeued
task resumes the run from it with the budget counted once (the counted time is part of
the checkpoint). Online, the requeued task resumes the run its agent had started (the
run records itself, :func:`write_task_record`) instead of taking a new cell. ``srun``
starts the task so that the training process is a job step, which is what Slurm signals.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ablation.errors import AblationError
from ablation.files import read_json, write_text
from ablation.runs import is_done

REPO = Path(__file__).resolve().parents[1]
# Seconds of warning before a time limit or preemption: enough to write last.ckpt.
WARNING_SECONDS = 90
JOB_ID = re.compile(r"^(\d+)")
# sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (or unlimited)
SLURM_TIME = re.compile(
    r"\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|(?i:unlimited|infinite)"
)


class SlurmError(AblationError):
    """A Slurm option or submission problem, phrased for the user."""


@dataclass
class SlurmOptions:
    """What each array task asks Slurm for (None: the cluster's default).

    Args:
        partition: ``--partition``.
        account: ``--account``.
        gpus_per_task: GPUs per node of a task (``--gpus-per-node``).
        cpus_per_task: ``--cpus-per-task`` (data loader workers + 1 is a good start).
        mem: memory per node, e.g. ``32G``.
        time: time limit, e.g. ``04:00:00``: the budget plus validation and start-up.
        nodes: nodes per task; with ``gpus_per_task`` G, one cell trains as N x G DDP ranks.
        max_parallel: run at most this many tasks at once (``--array=...%N``).
        extra: further ``#SBATCH`` options, e.g. ``--qos=long`` or ``--constraint=a100``.
    """

    partition: str | None = None
    account: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    nodes: int = 1
    max_parallel: int | None = None
    extra: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Refuse options sbatch would reject or misread, before any script is written.

        Raises:
            SlurmError: naming the option, what it holds and an example.
        """
        for name, value in (("nodes", self.nodes), ("max-parallel", self.max_parallel),
                            ("gpus-per-task", self.gpus_per_task),
                            ("cpus-per-task", self.cpus_per_task)):  # fmt: skip
            if value is not None and value < 1:
                raise SlurmError(f"--{name} must be 1 or more, got {value}: e.g. --{name} 2.")
        if self.time is not None and not SLURM_TIME.fullmatch(self.time):
            raise SlurmError(
                f"--time {self.time!r} is not a Slurm time limit: expected minutes, MM:SS, "
                f"HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, e.g. --time 04:00:00."
            )
        texts = [("partition", self.partition), ("account", self.account), ("mem", self.mem)]
        texts += [("sbatch", option) for option in self.extra]
        for name, value in texts:
            if value is not None and ("\n" in value or "\r" in value):
                raise SlurmError(
                    f"--{name} {value!r} holds a line break, which would add a line to the "
                    f"batch script: give one option per --{name}, without line breaks."
                )

    def ranks_per_node(self) -> int:
        return max(1, self.gpus_per_task or 1)

    def sbatch_lines(self) -> list[str]:
        lines = [
            ("partition", self.partition),
            ("account", self.account),
            ("nodes", self.nodes),
            ("ntasks-per-node", self.ranks_per_node()),
            ("gpus-per-node", self.gpus_per_task),
            ("cpus-per-task", self.cpus_per_task),
            ("mem", self.mem),
            ("time", self.time),
        ]
        out = [f"#SBATCH --{name}={value}" for name, value in lines if value is not None]
        for option in self.extra:
            option = option.strip().removeprefix("#SBATCH").strip()
            if not option.startswith("-"):
                raise SlurmError(
                    f"extra #SBATCH line {option!r} is not an sbatch option: expected e.g. "
                    f"'--qos=long'; pass it as --sbatch=--qos=long."
                )
            out.append(f"#SBATCH {option}")
        return out

    def fit_args(self) -> list[str]:
        """``ablation fit`` arguments that make a task's ranks one DDP run (Lightning
        reads the ranks from Slurm)."""
        if self.nodes * self.ranks_per_node() == 1:
            return []
        return [
            f"--trainer.num_nodes={self.nodes}",
            f"--trainer.devices={self.ranks_per_node()}",
            "--trainer.strategy=ddp",
        ]


def batch_script(
    name: str, tasks: int, task_command: list[str], log_dir: Path, options: SlurmOptions
) -> str:
    """The text of an ``sbatch`` script running ``task_command`` once per array task.

    ``$SLURM_ARRAY_TASK_ID`` in ``task_command`` is left for the shell to expand."""
    if tasks < 1:
        raise SlurmError(f"sweep {name} has no cells to submit: expected a grid with one or more.")
    array = f"0-{tasks - 1}" + (f"%{options.max_parallel}" if options.max_parallel else "")
    command = " ".join(
        part if "$SLURM_ARRAY_TASK_ID" in part else shlex.quote(part) for part in task_command
    )
    return "\n".join(
        [
            "#!/bin/bash",
            f"#SBATCH --job-name={name}",
            f"#SBATCH --array={array}",
            f"#SBATCH --chdir={REPO}",
            f"#SBATCH --output={log_dir}/%x-%A_%a.out",
            # a requeued task appends to its log instead of overwriting it
            "#SBATCH --open-mode=append",
            # preemption and time limits: a warning signal, then Lightning requeues
            f"#SBATCH --signal=SIGUSR1@{WARNING_SECONDS}",
            "#SBATCH --requeue",
            *options.sbatch_lines(),
            "",
            'echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname)'
            ' (restart ${SLURM_RESTART_COUNT:-0})"',
            f"srun {command}",
            "",
        ]
    )


def offline_task_command(
    sweep: Path, runs_dir: Path, root: str | None, fit_args: list[str]
) -> list[str]:
    """Array task ``i`` trains cell ``i`` of the offline expansion."""
    return [
        sys.executable,
        "-m",
        "ablation",
        "sweep",
        str(sweep),
        "--offline",
        "--only-index",
        "$SLURM_ARRAY_TASK_ID",
        f"--runs-dir={runs_dir}",
        *([f"--root={root}"] if root else []),
        *[f"--fit-arg={arg}" for arg in fit_args],
    ]


def write_script(script: str, log_dir: Path, name: str, mode: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}-{mode}.sbatch"
    path.write_text(script)
    path.chmod(0o755)
    return path


def submit(path: Path) -> str:
    """``sbatch`` the script; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SlurmError(
            f"`sbatch` is not on PATH: expected a Slurm login node. The script is written "
            f"at {path}; submit it there with `sbatch {path}`, or use --dry-run."
        )
    done = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True)
    match = JOB_ID.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        raise SlurmError(
            f"`sbatch {path}` failed (exit code {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}. Check the partition, account and limits."
        )
    return match.group(1)


def how_to_watch(job_id: str, log_dir: Path) -> str:
    return (
        f"submitted job array {job_id}\n"
        f"  watch:  squeue -j {job_id}    (finished tasks: sacct -j {job_id} "
        f"--format=JobID,State,Elapsed,Restarts)\n"
        f"  logs:   {log_dir}/*-{job_id}_*.out\n"
        f"  cancel: scancel {job_id}    (one task: scancel {job_id}_<index>)"
    )


# ---- online array tasks that survive a requeue -----------------------------------------
# Where the `ablation fit` an agent starts records what it trains (set by agent_task).
TASK_RECORD = "ABLATION_TASK_RECORD"


def agent_task_command(sweep_id: str, records: Path) -> list[str]:
    """Each online array task takes one cell from the W&B sweep, or resumes its own."""
    command = [sys.executable, "-m", "ablation", "sweep", "--agent-task", sweep_id]
    return [*command, f"--task-records={records}"]


def write_task_record(run_dir: Path) -> None:
    """Under :func:`agent_task`, note the run this task trains and how it was started
    (once: a resumed run keeps the first record)."""
    path = os.environ.get(TASK_RECORD)
    if not path or Path(path).exists():
        return
    record = {
        "command": [sys.executable, "-m", "ablation", *sys.argv[1:]],
        "run_dir": str(Path(run_dir).resolve()),
        "sweep_id": os.environ.get("WANDB_SWEEP_ID"),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=2))


def agent_task(sweep_id: str, records: Path) -> None:
    """One online array task: ``wandb agent --count 1`` the first time; after a requeue
    (preemption or time limit) the run the agent started is resumed from its
    ``last.ckpt`` under the same W&B run, instead of taking a new cell and leaving that
    one crashed. Replaces this process (exec)."""
    try:
        key = f"{os.environ['SLURM_ARRAY_JOB_ID']}-{os.environ['SLURM_ARRAY_TASK_ID']}"
    except KeyError:
        raise SlurmError(
            "--agent-task runs inside a Slurm array task: expected SLURM_ARRAY_JOB_ID and "
            "SLURM_ARRAY_TASK_ID, found neither. Submit with `ablation sweep --slurm`."
        ) from None
    path = Path(records) / f"task-{key}.json"
    env = {**os.environ, TASK_RECORD: str(path)}
    record = read_json(path)
    if not record:
        wandb = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
        os.execvpe(wandb, [wandb, "agent", "--count", "1", sweep_id], env)
    run_dir = Path(record["run_dir"])
    if is_done(run_dir):
        print(f"task {key}: its run {run_dir} finished earlier; nothing to do", flush=True)
        raise SystemExit(0)
    # Outside an agent the run resumes as any run does: its W&B run id from
    # wandb_run.json, history rewound to last.ckpt; the run stays in its sweep.
    for name in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_RESUME"):
        env.pop(name, None)
    print(f"task {key} requeued: resuming {run_dir} rather than taking a new cell", flush=True)
    os.execvpe(record["command"][0], record["command"], env)
