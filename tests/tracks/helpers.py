"""Writing small tracks in the HQ layout for the tests of the readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ablation.constants import SOURCES
from ablation.tracks import TrackRef


def write_hq_track(folder: Path, stems: dict[str, np.ndarray], rate: int = 44100) -> None:
    folder.mkdir(parents=True)
    for source, audio in stems.items():
        sf.write(folder / f"{source}.wav", audio, rate, subtype="PCM_16")


def noise_stems(seconds: float = 1.0, rate: int = 44100, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {s: 0.1 * rng.standard_normal((int(seconds * rate), 2)) for s in SOURCES}


def hq_track(root: Path, stems: dict[str, np.ndarray] | None = None, rate: int = 8000) -> TrackRef:
    """One HQ track of 1 s of noise per source (float wav, so NaN and inf survive)."""
    folder = root / "train" / "song"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for source in SOURCES:
        audio = (stems or {}).get(source)
        if audio is None:
            audio = 0.1 * rng.standard_normal((rate, 2)).astype(np.float32)
        sf.write(folder / f"{source}.wav", audio, rate, subtype="FLOAT")
    return TrackRef("song", "train", folder, True)
