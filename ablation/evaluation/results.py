"""Per-track result files: museval's JSON plus "mse", "samples", "scored_together" and
"silent". A file is trusted only when it holds every scored target, so an interrupted
evaluation resumes with the tracks that have none."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import simplejson

from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import scored_targets


def read_scores(path: Path) -> dict:
    """A per-track JSON as museval writes it (NaN for unscored frames)."""
    return simplejson.loads(path.read_text(), allow_nan=True)


def read_track_file(path: Path, targets: Sequence[str]) -> dict | None:
    """A finished per-track JSON with all ``targets``, or None when absent or unusable."""
    if not path.exists():
        return None
    try:
        data = read_scores(path)
    except ValueError:
        warnings.warn(f"{path} is not valid JSON; the track is scored again.", stacklevel=2)
        return None
    names = {t.get("name") for t in data.get("targets", [])}
    if names != set(targets) or set(data.get("mse", {})) != set(targets):
        warnings.warn(
            f"{path} holds targets {sorted(names)}, expected {sorted(targets)}; "
            f"the track is scored again.",
            stacklevel=2,
        )
        return None
    return data


def pending_tracks(plan: Plan, names: Sequence[str]) -> list[str]:
    """The tracks of ``names`` without a finished result file, in order."""
    targets = scored_targets(plan.groups)
    return [n for n in names if read_track_file(plan.track_file(n), targets) is None]
