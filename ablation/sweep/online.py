"""The online runner: the sweep created on W&B (``wandb sweep``) and one ``wandb agent``
per GPU; other machines join with the printed agent line."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from ablation.children import die_with_parent, terminate_children_on_sigterm
from ablation.sweep.config import (
    SweepError,
    check_cells,
    check_count,
    grid,
    load_sweep,
    own_wandb_service,
)

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
        env = own_wandb_service(os.environ)
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
