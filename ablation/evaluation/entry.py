"""The entry point: evaluate a checkpoint or a baseline, end to end, resumably."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from ablation.constants import EVALUATION_MANIFEST
from ablation.evaluation import cache
from ablation.evaluation.aggregate import aggregate, write_results
from ablation.evaluation.plan import Plan
from ablation.evaluation.pool import (
    WORKER_BASE_BYTES,
    WORKER_BYTES_PER_SECOND,
    available_memory,
    default_jobs,
    run_tracks,
)
from ablation.evaluation.protocol import EvaluationError
from ablation.evaluation.request import default_device, prepare
from ablation.evaluation.results import pending_tracks
from ablation.evaluation.wandb_log import log_to_wandb
from ablation.tracks import list_tracks, track_seconds


def _memory_bound_jobs(plan, pending: Sequence[str]) -> int:
    """One worker per core, fewer when the memory would not hold them on the longest
    pending track (a 10-minute track takes a worker about 12 GB); says so when it caps."""
    by_name = {t.name: t for t in list_tracks(plan.root, plan.subset)}
    longest = max(track_seconds(by_name[name]) for name in pending)
    cores = os.cpu_count() or 1
    jobs = default_jobs(longest, cores, available_memory())
    if jobs < min(cores, len(pending)):
        warnings.warn(
            f"evaluating with {jobs} worker processes, not one per core ({cores}): each takes "
            f"about {(WORKER_BASE_BYTES + WORKER_BYTES_PER_SECOND * longest) / 1e9:.0f} GB "
            f"on the longest track ({longest / 60:.1f} min) and the memory available holds "
            f"{jobs}. Pass --jobs to choose.",
            stacklevel=3,
        )
    return jobs


def skipped_tracks(plan: Plan, names: Sequence[str], pending: Sequence[str]) -> str | None:
    """What an evaluation skips and why, in one line; None when it skips nothing."""
    done = len(names) - len(pending)
    if not done:
        return None
    out = Path(plan.out)
    shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
    which = f"all {done}" if not pending else f"{done} of {len(names)}"
    rest = f"scoring the other {len(pending)}" if pending else "delete it to score them again"
    return (
        f"skipped {which} {plan.subset} tracks of {shown}: scored already by this same "
        f"evaluation (checkpoint, data, targets, backend, shifts: its {EVALUATION_MANIFEST}); "
        f"{rest}"
    )


def evaluate_checkpoint(
    ckpt: str | None,
    root: str,
    subset: str = "test",
    out: str | None = None,
    baseline: str | None = None,
    jobs: int | None = None,
    metrics: str = "torch",
    device: str | None = None,
    wandb_log: bool = True,
    progress: bool = True,
    targets: str | Sequence[str] | None = None,
    shifts: int = 0,
) -> Path:
    """Evaluate a checkpoint or a baseline on a MUSDB18 subset with museval's v4 protocol.

    Args:
        ckpt: Lightning checkpoint of this suite; None with a baseline.
        root: MUSDB18 root in either form (detected).
        subset: ``test`` (SiSEC) or ``train``.
        out: output folder; default :func:`~ablation.evaluation.request.default_out`.
        baseline: ``mixture`` (every estimate is the mixture: the floor), ``gain``
            (the best constant gain of the mixture per target and track, the floor
            of a net that does not separate) or ``oracle-irm`` (ideal ratio mask on
            the 2-D family's STFT: the ceiling of a masking net); with ``ckpt`` too,
            on the checkpoint's targets.
        jobs: worker processes, one track each at a time; default one per core, fewer
            when the available memory would not hold them on the longest track. Each
            track is computed with one thread, so any ``jobs`` gives the same files.
            Workers are spawned: a script calling this with ``jobs > 1`` needs the
            ``if __name__ == "__main__":`` guard.
        metrics: BSS Eval backend, ``torch`` (ablation.bsseval) or ``museval``.
        device: ``cuda`` when available, else ``cpu``; used to separate and score.
        wandb_log: log to W&B (a failure there only warns: the files are complete).
        progress: show a progress bar over tracks.
        targets: a baseline's targets, a name of ``TARGET_SETS`` (``"2stems"``),
            ``"all"`` or names; default the checkpoint's sources, else every stem of
            the data (MUSDB18's four).
        shifts: Demucs' shift trick: average each separation over this many delays
            of the song in [0, 0.5 s), the same seeded delays for every checkpoint;
            0: one pass. Recorded in ``evaluation.json``.

    Returns:
        The output folder.

    Raises:
        EvaluationError: on a bad request, checkpoint, folder, or failed tracks
            (the scored tracks are kept; running again resumes).
        DataError: on a root without the subset or in neither MUSDB18 layout.
    """
    device = default_device(device)
    cache.clear()  # a serial run reuses this process: forget earlier datasets
    plan, names = prepare(ckpt, root, subset, out, baseline, metrics, device, targets, shifts)
    pending = pending_tracks(plan, names)
    skipped = skipped_tracks(plan, names, pending)
    if skipped:
        print(skipped, flush=True)
    if pending:
        jobs = max(1, min(jobs or _memory_bound_jobs(plan, pending), len(pending)))
        failures = run_tracks(plan, pending, jobs, progress)
        if failures:
            raise EvaluationError(
                f"{len(failures)} of {len(pending)} tracks failed ({failures[0]}"
                f"{'; ...' if len(failures) > 1 else ''}). The {len(names) - len(failures)} "
                f"scored tracks are kept in {plan.out}; fix the cause and run the same "
                f"command again to score only the missing ones."
            )
    results = aggregate(plan, names)
    write_results(plan, results, names)
    if wandb_log:
        try:
            log_to_wandb(plan, results)
        except Exception as error:  # logging is optional: the files are complete
            warnings.warn(
                f"W&B logging skipped ({type(error).__name__}: {error}); the results in "
                f"{plan.out} are complete. Log in (`wandb login`), set WANDB_MODE=offline, or "
                f"turn W&B logging off.",
                stacklevel=2,
            )
    return Path(plan.out)
