"""The plan of one evaluation: everything a worker needs to score a track."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablation.evaluation.protocol import Group


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs to score one track; picklable for worker processes."""

    root: str
    is_wav: bool
    subset: str
    out: str
    ckpt: str | None
    baseline: str | None
    sources: tuple[str, ...]
    stems: tuple[str, ...]  # of the dataset, which the sources are or derive from
    groups: tuple[Group, ...]
    sample_rate: int  # of the dataset: scoring windows are 1 s of it
    net_rate: int  # where the estimator works; mixtures are resampled to it and back
    segment_samples: int | None  # at net_rate: the checkpoint's training segment
    metrics: str
    device: str
    shifts: int = 0  # Demucs' shift trick: separations averaged over this many delays

    def track_file(self, name: str) -> Path:
        """Per-track JSON, where museval's ``eval_mus_track`` puts it."""
        return Path(self.out) / self.subset / f"{name}.json"
