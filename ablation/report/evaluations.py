"""Reading the evaluation folders of ``ablation eval`` that a report compares.

An evaluation folder is marked by its manifest (:data:`EVALUATION_MANIFEST`) and
holds ``summary.json`` (per target: SDR, MSE) and ``tracks.csv`` (per track and
target: SDR). The report reads these documented files only, never the code that
wrote them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ablation.constants import EVALUATION_MANIFEST as MANIFEST
from ablation.files import read_json

# The documented files of an evaluation folder, beside its manifest.
EVALUATION_SUMMARY = "summary.json"
EVALUATION_TRACKS = "tracks.csv"
# Preferred evaluation of a run, by the checkpoint file name it starts with.
_CHECKPOINT_PREFERENCE = ("best", "last")


@dataclass
class Evaluation:
    """One evaluation folder: its manifest, summary and per-track SDR."""

    folder: Path
    manifest: dict
    summary: dict[str, dict[str, float | None]]
    track_sdr: pd.DataFrame  # index track, columns target

    @property
    def label(self) -> str:
        """``baseline <name>`` or the checkpoint's file stem."""
        if self.manifest.get("baseline"):
            return f"baseline {self.manifest['baseline']}"
        return Path(self.manifest.get("checkpoint") or self.folder.name).stem


def read_object(path: Path) -> dict | None:
    """The JSON object in ``path``: None when absent, and a warning too when unreadable."""
    if not path.exists():
        return None
    data = read_json(path)
    if not data:
        warnings.warn(f"{path} skipped: not a readable JSON object", stacklevel=2)
        return None
    return data


def read_evaluation(folder: Path) -> Evaluation | None:
    """An evaluation folder of ``ablation eval``, if complete."""
    manifest = read_object(folder / MANIFEST)
    summary = read_object(folder / EVALUATION_SUMMARY)
    if manifest is None or summary is None or not (folder / EVALUATION_TRACKS).exists():
        return None
    tracks = pd.read_csv(folder / EVALUATION_TRACKS)
    track_sdr = tracks.pivot(index="track", columns="target", values="SDR")
    return Evaluation(folder, manifest, summary, track_sdr)


def is_evaluation(folder: Path) -> bool:
    """Whether ``folder`` is an evaluation folder (it holds the manifest)."""
    return (folder / MANIFEST).exists()


def find_evaluations(folder: Path) -> list[Evaluation]:
    """Every complete evaluation folder at or below ``folder``, sorted by path."""
    found = [read_evaluation(p.parent) for p in sorted(folder.rglob(MANIFEST))]
    return [e for e in found if e is not None]


def pick_evaluation(evaluations: list[Evaluation]) -> Evaluation | None:
    """A run's evaluation: of a model, not a baseline; on the test set if there is one;
    of a ``best*`` checkpoint, else of ``last``, else the first."""
    models = [e for e in evaluations if not e.manifest.get("baseline")]
    models = [e for e in models if e.manifest.get("subset") == "test"] or models
    for prefix in _CHECKPOINT_PREFERENCE:
        for evaluation in models:
            if Path(evaluation.manifest.get("checkpoint") or "").name.startswith(prefix):
                return evaluation
    return models[0] if models else None


def unique_baselines(evaluations: list[Evaluation]) -> list[Evaluation]:
    """One evaluation per baseline, data root, subset and targets, sorted by label."""
    unique = {_baseline_key(e): e for e in evaluations}
    return sorted(unique.values(), key=lambda e: e.label)


def _baseline_key(evaluation: Evaluation) -> str:
    m = evaluation.manifest
    return json.dumps([m.get("baseline"), m.get("root"), m.get("subset"), m.get("targets")])
