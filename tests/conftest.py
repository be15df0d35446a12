"""Shared fixtures: the generated toy dataset and the real MUSDB18 preview in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MUSDB_SAMPLE = SHARED_DATA / "musdb18-sample"
SAMPLE_TRACK = "Music Delta - 80s Rock"


@pytest.fixture(autouse=True)
def _musdb_path_restored(monkeypatch):
    """``run_sweep(root=...)`` sets MUSDB_PATH for the runs it starts, as the CLI does;
    each test gets the variable back as it was, so no later DataModule reads that root."""
    if "MUSDB_PATH" in os.environ:
        monkeypatch.setenv("MUSDB_PATH", os.environ["MUSDB_PATH"])
    else:
        monkeypatch.delenv("MUSDB_PATH", raising=False)


@pytest.fixture(scope="session")
def musdb_sample() -> Path:
    """Root of the real MUSDB18 preview (compressed stems, train subset, one track)."""
    if not (MUSDB_SAMPLE / "train" / f"{SAMPLE_TRACK}.stem.mp4").exists():
        pytest.skip(f"real MUSDB18 preview not found at {MUSDB_SAMPLE} (the checkout's ../shared)")
    return MUSDB_SAMPLE


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """A small toy dataset in the MUSDB18-HQ layout: 3 train and 1 test track of 3 s."""
    from datamodules import make_toy_dataset

    return make_toy_dataset(
        tmp_path_factory.mktemp("toy"), n_train=3, n_test=1, duration=3.0, progress=False
    )
