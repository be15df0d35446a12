"""The report's listening excerpts: for a few test tracks, the same excerpt of the
mixture, each reference and every configuration's estimate per target, as 16-bit wavs
with spectrograms (one colour scale per track) under ``listen/``.

The excerpt is the window where the quietest target is loudest (the maximum over
windows of the minimum over targets of the reference RMS), so every target is heard.
Each net separates the excerpt with real audio around it (up to
:data:`CONTEXT_SECONDS` each side, through :func:`ablation.separate.separate`) from
the checkpoint its evaluation scored; tracks are read through :mod:`ablation.tracks`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ablation.report.runs import Run
from ablation.report.tables import target_rank

EXCERPT_SECONDS = 10.0
CONTEXT_SECONDS = 5.0
LISTEN_TRACKS = 3
HOP_SECONDS = 0.25
FOLDER = "listen"
AUDIO = ".flac"
MIXTURE, REFERENCE = "mixture", "reference"
# Spectrograms: log-magnitude, log-frequency rows, a fixed dynamic range below the
# track's loudest bin.
_N_FFT, _COLUMNS, _ROWS, _LOWEST_HZ, _RANGE_DB = 2048, 320, 160, 40.0, 80.0


@dataclass
class Clip:
    """One player: a wav and its spectrogram PNG, as paths relative to the report folder."""

    audio: str
    image: str


@dataclass
class Excerpt:
    """The excerpt of one track: ``rows[label][target]`` for the references (label
    :data:`REFERENCE`) and each configuration; the mixture apart."""

    track: str
    start_seconds: float
    seconds: float
    targets: list[str]
    mixture: Clip | None = None
    rows: dict[str, dict[str, Clip]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # configuration -> run heard


def listening_cells(runs: list[Run]) -> dict[str, Run]:
    """One evaluated run per configuration (the first given: usually seed 0) whose
    evaluated checkpoint is still on disk."""
    cells: dict[str, Run] = {}
    for run in runs:
        ckpt = run.evaluation.manifest.get("checkpoint") if run.evaluation else None
        if ckpt and Path(ckpt).is_file() and run.configuration not in cells:
            cells[run.configuration] = run
    return cells


def write_listening(
    runs: list[Run], out: Path, tracks: int = LISTEN_TRACKS, seconds: float = EXCERPT_SECONDS
) -> list[Excerpt]:
    """Write the excerpts of the first ``tracks`` evaluated test tracks under ``out/listen``.

    Raises:
        AblationError: when the evaluated data or a checkpoint cannot be read
            (:class:`~ablation.tracks.DataError`, :class:`~ablation.checkpoint.CheckpointError`).
    """
    from ablation.checkpoint import load_net
    from ablation.tracks import list_tracks

    cells = listening_cells(runs)
    if not cells:
        return []
    manifest = next(iter(cells.values())).evaluation.manifest
    scored = {t for r in cells.values() for t in r.evaluation.track_sdr.index}
    refs = list_tracks(manifest["root"], manifest.get("subset") or "test")
    nets = {label: load_net(r.evaluation.manifest["checkpoint"]) for label, r in cells.items()}
    targets = sorted({s for net in nets.values() for s in net.source_names}, key=target_rank)
    excerpts = []
    for ref in [r for r in refs if r.name in scored][:tracks]:
        excerpt = _excerpt(ref, nets, targets, seconds, out)
        excerpt.runs = {label: run.name for label, run in cells.items()}
        excerpts.append(excerpt)
    return excerpts


def excerpt_start(references: list[np.ndarray], rate: int, samples: int) -> int:
    """Start (samples) of the ``samples``-long window maximizing the minimum over
    ``references`` ``(time, channels)`` of their RMS, on a :data:`HOP_SECONDS` grid."""
    length = references[0].shape[0]
    if length <= samples:
        return 0
    starts = np.arange(0, length - samples + 1, max(1, int(HOP_SECONDS * rate)))
    rms = []
    for ref in references:
        energy = np.concatenate([[0.0], np.cumsum(np.mean(ref.astype(np.float64) ** 2, axis=1))])
        rms.append(energy[starts + samples] - energy[starts])
    return int(starts[np.argmax(np.min(rms, axis=0))])


def _excerpt(ref, nets: dict, targets: list[str], seconds: float, out: Path) -> Excerpt:
    from ablation.evaluation.tracks import decode, references

    track = decode(ref)
    rate, mixture = track.rate, track.mixture
    refs = references(track, targets, targets)
    samples = min(int(seconds * rate), mixture.shape[0])
    start = excerpt_start(list(refs.values()), rate, samples)
    audio = {(MIXTURE, MIXTURE): mixture[start : start + samples].T}
    audio |= {(REFERENCE, t): refs[t][start : start + samples].T for t in targets}
    for label, net in nets.items():
        estimates = _separate(net, mixture, rate, start, samples)
        audio |= {(label, t): estimates[t] for t in targets if t in estimates}
    excerpt = Excerpt(ref.name, start / rate, samples / rate, targets)
    for (label, target), clip in _write_clips(audio, rate, out, ref.name).items():
        if label == MIXTURE:
            excerpt.mixture = clip
        else:
            excerpt.rows.setdefault(label, {})[target] = clip
    return excerpt


def _separate(net, mixture: np.ndarray, rate: int, start: int, samples: int) -> dict:
    """The net's estimates ``{source: (channels, samples)}`` of the excerpt at ``start``,
    separated from the excerpt with real context on each side, at the track's rate."""
    from ablation.separate import separate
    from ablation.tracks import resample, to_channels

    context = int(CONTEXT_SECONDS * rate)
    begin, end = max(0, start - context), min(mixture.shape[0], start + samples + context)
    region = torch.as_tensor(mixture[begin:end].T, dtype=torch.float32)
    region = to_channels(region[None], net.channels, "the excerpt's mixture")[0]
    with torch.inference_mode():
        at_net = resample(region, rate, net.sample_rate)
        segment = int(net.segment_seconds * net.sample_rate)
        estimates = separate(net, at_net, segment_samples=segment)
        estimates = resample(estimates, net.sample_rate, rate, end - begin)
    crop = estimates[..., start - begin : start - begin + samples].numpy()
    return {name: crop[i] for i, name in enumerate(net.source_names)}


def _write_clips(audio: dict, rate: int, out: Path, track: str) -> dict:
    """Wavs and spectrograms of one track's clips, all on the track's colour scale."""
    import matplotlib.pyplot as plt
    import soundfile as sf

    folder = out / FOLDER / track_folder(track)
    folder.mkdir(parents=True, exist_ok=True)
    spectra = {key: _spectrogram(np.mean(a, axis=0), rate) for key, a in audio.items()}
    top = max(float(s.max()) for s in spectra.values())
    clips = {}
    for (label, target), signal in audio.items():
        stem = _slug(target if label in (MIXTURE, REFERENCE) else f"{label}-{target}")
        stem = stem if label != REFERENCE else f"reference-{stem}"
        # FLAC: lossless, about half of a wav, and every browser plays it
        sf.write(folder / f"{stem}{AUDIO}", np.clip(signal.T, -1, 1), rate, subtype="PCM_16")
        image = spectra[label, target][::-1]
        plt.imsave(folder / f"{stem}.png", image, cmap="magma", vmin=top - _RANGE_DB, vmax=top)
        relative = f"{FOLDER}/{folder.name}/{stem}"
        clips[label, target] = Clip(f"{relative}{AUDIO}", f"{relative}.png")
    return clips


def _spectrogram(signal: np.ndarray, rate: int) -> np.ndarray:
    """dB magnitude ``(rows, columns)``: log-spaced frequency rows from 40 Hz up."""
    x = torch.as_tensor(signal, dtype=torch.float32)
    hop = max(1, x.shape[-1] // _COLUMNS)
    n_fft = min(_N_FFT, max(16, x.shape[-1]))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True).abs()[:, :_COLUMNS]
    freqs = np.linspace(0, rate / 2, spec.shape[0])
    rows = np.geomspace(_LOWEST_HZ, rate / 2, _ROWS)
    picked = spec.numpy()[np.clip(np.searchsorted(freqs, rows), 0, len(freqs) - 1)]
    return 20 * np.log10(picked + 1e-8)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "clip"


def track_folder(name: str) -> str:
    """The folder of a track's clips: its name where that is a safe file name, else its
    slug and a digest of the name, so that "Song A", "Song A!" and "Song A?" (one slug)
    never share a folder."""
    slug = _slug(name)
    return slug if slug == name else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
