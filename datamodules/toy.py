"""A seeded generator of a small MUSDB18-HQ-layout dataset with learnable stems.

The four stems are built to be distinct in the ways real stems are, so a net has
something to learn and a constant gain does not suffice: drums are percussive
bursts on a beat grid, bass is low pitched notes, vocals are a voiced harmonic
line with vibrato, formants and rests, other is sustained mid-register chords.
Each stem has its own pan. It is the suite's embedded default (demo and tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ablation.constants import SAMPLE_RATE, SOURCES
from ablation.errors import AblationError
from ablation.files import write_text
from datamodules.generated import generated_dataset

# Vowel formants (Hz) and bandwidths, from Peterson & Barney's averages.
VOWELS = {
    "a": ((730, 1090, 2440), (90, 110, 160)),
    "e": ((530, 1840, 2480), (60, 100, 150)),
    "i": ((270, 2290, 3010), (60, 90, 150)),
    "o": ((570, 840, 2410), (70, 90, 150)),
    "u": ((300, 870, 2240), (60, 90, 140)),
}
MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])
# Pan angle ranges per stem (radians, 0 = left, pi/2 = right): different by design.
PANS = {"drums": (0.6, 0.9), "bass": (0.75, 0.82), "other": (0.15, 0.45), "vocals": (1.0, 1.3)}


def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2 ** ((np.asarray(note, dtype=float) - 69) / 12)


def _decay(n: int, seconds: float, rate: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * rate))


def _place(signal: np.ndarray, event: np.ndarray, start: int) -> None:
    end = min(len(signal), start + len(event))
    signal[start:end] += event[: end - start]


def _drums(rng, n, rate, beat):
    out = np.zeros(n)
    t = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * np.cumsum(45 + 90 * np.exp(-t * 30)) / rate) * np.exp(-t * 18)
    snare = (rng.standard_normal(len(t)) * 0.6 + np.sin(2 * np.pi * 185 * t)) * np.exp(-t * 25)
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 90) * 0.25
    for i, start in enumerate(np.arange(0, n, beat / 2).astype(int)):
        _place(out, hat * rng.uniform(0.6, 1.0), start)
        if i % 4 == 0 or (i % 8 == 7 and rng.random() < 0.5):
            _place(out, kick, start)
        if i % 4 == 2:
            _place(out, snare, start)
    return out


def _notes(rng, n, length, pitches, rate, harmonics, attack=0.01):
    """A line of notes of ``length`` samples each: additive synthesis, 1/k harmonics."""
    out = np.zeros(n)
    for start, pitch in zip(range(0, n, length), pitches, strict=False):
        t = np.arange(min(length, n - start)) / rate
        envelope = np.minimum(t / attack, 1) * np.exp(-t * rng.uniform(1.0, 3.0))
        tone = sum(np.sin(2 * np.pi * k * _midi_hz(pitch) * t) / k for k in range(1, harmonics + 1))
        out[start : start + len(t)] += (
            tone * envelope * np.minimum((len(t) - np.arange(len(t))) / (0.01 * rate), 1)
        )
    return out


def _chords(rng, n, rate, bar, key):
    out = np.zeros(n)
    for start in range(0, n, bar):
        degree = rng.choice([0, 3, 4, 5])
        triad = key + 12 + MINOR_SCALE[(degree + np.array([0, 2, 4])) % 7]
        t = np.arange(min(bar, n - start)) / rate
        envelope = np.minimum(t / 0.15, 1) * np.minimum(
            (len(t) - np.arange(len(t))) / (0.05 * rate), 1
        )
        for note in triad:
            for detune in (-0.08, 0.08):  # slight chorus, as sustained pads have
                out[start : start + len(t)] += (
                    np.sin(2 * np.pi * _midi_hz(note + detune) * t) * envelope
                )
    return out


def _vocals(rng, n, rate, beat, key):
    """Voiced line: per-sample f0 with vibrato, harmonics shaped by vowel formants, rests."""
    f0 = np.zeros(n)
    gate = np.zeros(n)
    vowel_of = np.empty(n, dtype="<U1")
    position = 0
    while position < n:
        length = int(beat * rng.choice([0.5, 1, 1, 2]))
        note = key + 24 + MINOR_SCALE[rng.integers(7)] + 12 * rng.integers(0, 2)
        f0[position : position + length] = _midi_hz(note)
        gate[position : position + length] = rng.random() > 0.3  # rests
        vowel_of[position : position + length] = rng.choice(list(VOWELS))
        position += length
    t = np.arange(n) / rate
    f0 = f0 * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * t))
    gate = np.convolve(gate, np.hanning(int(0.04 * rate)) / (0.02 * rate), mode="same")
    phase = 2 * np.pi * np.cumsum(f0) / rate
    out = np.zeros(n)
    for k in range(1, 25):
        gain = np.zeros(n)
        for vowel, (freqs, widths) in VOWELS.items():
            mask = vowel_of == vowel
            fk = k * f0[mask]
            gain[mask] = sum(
                np.exp(-0.5 * ((fk - f) / w) ** 2) for f, w in zip(freqs, widths, strict=True)
            )
        out += (gain + 0.05 / k) * np.sin(k * phase)
    return out * gate


def make_track(rng: np.random.Generator, duration: float, rate: int = SAMPLE_RATE) -> dict:
    """Four stereo stems ``{source: (time, 2) float32}`` of one toy track."""
    n = int(duration * rate)
    beat = 60 / rng.uniform(90, 140) * rate
    key = 33 + int(rng.integers(12))
    bass_line = key + MINOR_SCALE[rng.integers(7, size=int(n // beat) + 1)]
    mono = {
        "drums": _drums(rng, n, rate, beat),
        "bass": _notes(rng, n, int(beat), bass_line, rate, harmonics=6),
        "other": _chords(rng, n, rate, int(4 * beat), key),
        "vocals": _vocals(rng, n, rate, beat, key),
    }
    stems = {}
    for source, signal in mono.items():
        level = 10 ** (rng.uniform(-3, 3) / 20) * 0.1 / (np.sqrt(np.mean(signal**2)) + 1e-9)
        angle = rng.uniform(*PANS[source])
        stems[source] = signal[:, None] * level * np.array([np.cos(angle), np.sin(angle)])
    peak = np.abs(sum(stems.values())).max()
    return {s: (a * 0.9 / peak).astype(np.float32) for s, a in stems.items()}


class ToyDataError(AblationError):
    """Toy dataset arguments that cannot make a dataset."""


# Written beside train/ and test/: the arguments that made the dataset, so a caller can
# tell whether a folder is the toy dataset it asks for.
RECIPE = "toy.json"


def make_toy_dataset(
    out: str | Path,
    n_train: int = 10,
    n_test: int = 4,
    duration: float = 8.0,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    progress: bool = True,
    test_duration: float | None = None,
) -> Path:
    """Write a toy dataset in the MUSDB18-HQ layout (``out/{train,test}/<name>/*.wav``),
    and its arguments as ``out/toy.json`` (:func:`toy_recipe`), marked as the suite's
    (:mod:`datamodules.generated`): ``out`` must be missing, empty or an earlier
    generated dataset (which this one replaces).

    Args:
        out: folder to create.
        n_train: tracks in ``train/``.
        n_test: tracks in ``test/``.
        duration: length of every training track in seconds.
        sample_rate: sample rate of the wav files.
        seed: the same seed writes the same files.
        progress: show a progress bar.
        test_duration: length of every test track in seconds; ``duration`` when None.

    Returns:
        ``out`` as a Path.

    Raises:
        GeneratedDataError: ``out`` holds files the suite did not write.
        ToyDataError: a negative track count or a duration that is not positive.
    """
    out = Path(out)
    test_seconds = duration if test_duration is None else test_duration
    if min(n_train, n_test) < 0 or not duration > 0 or not test_seconds > 0:
        raise ToyDataError(
            f"a toy dataset needs track counts >= 0 and durations > 0 seconds, got {n_train} "
            f"train and {n_test} test tracks of {duration} s (test: {test_duration}): "
            f"e.g. --train 10 --test 4 --duration 8."
        )
    rng = np.random.default_rng(seed)
    test_duration = duration if test_duration is None else test_duration
    recipe = dict(n_train=n_train, n_test=n_test, duration=duration, test_duration=test_duration)
    recipe |= dict(sample_rate=sample_rate, seed=seed)
    jobs = [("train", i, duration) for i in range(n_train)]
    jobs += [("test", i, test_duration) for i in range(n_test)]
    with generated_dataset(out, "toy", recipe):
        for subset, i, seconds in tqdm(
            jobs, desc=f"writing toy dataset to {out}", disable=not progress
        ):
            stems = make_track(rng, seconds, sample_rate)
            folder = out / subset / f"toy{i:03d} - {subset} song {i}"
            folder.mkdir(parents=True, exist_ok=True)
            for source in SOURCES:
                sf.write(folder / f"{source}.wav", stems[source], sample_rate, subtype="PCM_16")
            sf.write(folder / "mixture.wav", sum(stems.values()), sample_rate, subtype="PCM_16")
        write_text(out / RECIPE, json.dumps(recipe, indent=2))
    return out


def toy_recipe(root: str | Path) -> dict | None:
    """The arguments that wrote the toy dataset in ``root``; None for other data (or a toy
    dataset of a version that did not record them)."""
    path = Path(root) / RECIPE
    return json.loads(path.read_text()) if path.is_file() else None
