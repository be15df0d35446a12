"""Full-track separation: load a checkpoint without Lightning, overlap-add over segments.

A net trained on short segments separates a song of any length: the song is cut
into segments that overlap by a fraction, each is separated (a batch of segments
at a time, on CPU or GPU), and the estimates are crossfaded back with a
triangular window normalized by the summed windows. As in training, each
segment is read with real audio of the song around it (as much context as the
net reads, zeros only before the song's start and after its end) and only the
segment itself is kept. The weights at each sample sum to one, so a net that
applies a constant gain reproduces its input exactly, seams included.

Checkpoints are read through :mod:`ablation.checkpoint` (the net carries its
source names, sample rate and training segment). This module, like all of
``ablation/``, never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import Tensor, nn

from ablation.checkpoint import load_net
from ablation.errors import AblationError
from ablation.nets.blocks import take
from ablation.tracks import resample


def output_folders(songs: Sequence[str | Path], out: str | Path | None) -> list[Path]:
    """One folder per song, never shared: ``out`` itself for one song given ``out``, else
    ``<out or separated>/<name>``, where ``name`` is the file's name without suffix, with
    as many parent folders before it (joined by ``-``) as needed to tell apart songs of
    the same name (``a/song.wav``, ``b/song.wav`` -> ``a-song``, ``b-song``).

    Raises:
        SeparationError: the same file given twice.
    """
    paths = [Path(song) for song in songs]
    seen: dict[Path, Path] = {}
    for path in paths:
        if path.resolve() in seen:
            raise SeparationError(
                f"{path} is given twice (also as {seen[path.resolve()]}): its stems would "
                f"overwrite each other; give each song once."
            )
        seen[path.resolve()] = path
    if out is not None and len(paths) == 1:
        return [Path(out)]
    parts = [path.resolve().with_suffix("").parts for path in paths]
    depth = 1
    while len({p[-depth:] for p in parts}) < len(parts):
        depth += 1
    return [Path(out or "separated") / "-".join(p[-depth:]) for p in parts]


class SeparationError(AblationError):
    """A user-facing problem with an audio file (the message says what to do)."""


# ---- overlap-add -----------------------------------------------------------------------


def segment_starts(length: int, segment: int, overlap: float) -> list[int]:
    """Start of every segment: a hop of ``segment * (1 - overlap)``, the last one
    ending exactly at ``length`` so no segment is padded (one segment if shorter)."""
    if length <= segment:
        return [0]
    hop = max(1, segment - round(overlap * segment))
    return [*range(0, length - segment, hop), length - segment]


def crossfade_window(segment: int) -> Tensor:
    """Triangular weights ``min(i + 1, segment - i)``: strictly positive, so every
    sample has weight, and smallest at the segment edges where context is missing."""
    index = torch.arange(segment)
    return torch.minimum(index + 1, segment - index).float()


def _batches(items: Sequence[int], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def net_context(net: nn.Module, segment: int) -> int:
    """Samples of real audio a net reads on each side of a ``segment``: a net of
    :mod:`ablation.nets` says (``context_samples``, ``reach_samples``); any other
    module is taken to need none."""
    if not hasattr(net, "context_samples"):
        return 0
    return max(net.context_samples(segment), *net.reach_samples())


@torch.no_grad()
def separate(
    net: nn.Module,
    mixture: Tensor,
    segment_samples: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: str | torch.device | None = None,
    context: int | None = None,
) -> Tensor:
    """Separate a mixture of any length by overlap-add over segments.

    The net is put in eval mode (and moved to ``device`` when given) and left
    there; estimates are accumulated on the CPU in float32.

    Args:
        net: ``forward(mixture (batch, channels, time)) -> (batch, sources, channels, time)``.
        mixture: ``(channels, time)``.
        segment_samples: segment length in samples.
        overlap: fraction of a segment shared with the next one, in ``[0, 1)``.
        batch_size: segments per forward call.
        device: where the net runs; ``None`` keeps the net where it is.
        context: samples of the song read on each side of a segment; ``None``:
            what the net reads (:func:`net_context`). Nets of :mod:`ablation.nets`
            are called as ``net(window, context)``, others as ``net(segment)``.

    Returns:
        ``(sources, channels, time)`` estimates on the CPU.
    """
    if mixture.dim() != 2:
        raise ValueError(f"expected a mixture (channels, time), got shape {tuple(mixture.shape)}.")
    if segment_samples < 1 or not 0 <= overlap < 1 or batch_size < 1:
        raise ValueError(
            f"expected segment_samples >= 1, 0 <= overlap < 1 and batch_size >= 1, got "
            f"segment_samples={segment_samples}, overlap={overlap}, batch_size={batch_size}."
        )
    if device is not None:
        net.to(device)
    parameter = next(net.parameters(), None)
    run_on = parameter.device if parameter is not None else torch.device("cpu")
    net.eval()
    length = mixture.shape[-1]
    segment = min(segment_samples, length)
    window = crossfade_window(segment)
    context = net_context(net, segment) if context is None else context
    total = torch.zeros(length)
    estimates = None
    for starts in _batches(segment_starts(length, segment, overlap), batch_size):
        chunks = torch.stack([take(mixture, s - context, segment + 2 * context) for s in starts])
        chunks = chunks.to(run_on)
        output = (net(chunks, context) if context else net(chunks)).float().cpu()
        assert output.shape[-2:] == (mixture.shape[0], segment), (output.shape, segment)
        if estimates is None:
            estimates = torch.zeros(*output.shape[1:-1], length)
        for start, chunk in zip(starts, output, strict=True):
            estimates[..., start : start + segment] += chunk * window
            total[start : start + segment] += window
    return estimates / total


# ---- files ------------------------------------------------------------------------------


def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """Read any file soundfile can, as ``((channels, time) float32, sample_rate)``.

    Raises:
        SeparationError: the file is missing, unreadable, empty or holds NaN or inf.
    """
    path = Path(path)
    if not path.is_file():
        raise SeparationError(f"audio file {path} not found: expected a path to a song.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as error:
        raise SeparationError(
            f"could not read {path} as audio ({error}): expected a format soundfile reads "
            f"(WAV, FLAC, OGG, MP3, ...); convert others first, e.g. "
            f"`ffmpeg -i {path.name} {path.stem}.wav`."
        ) from error
    if audio.shape[0] == 0:
        raise SeparationError(f"{path} holds no samples: expected a non-empty song.")
    audio = torch.from_numpy(audio.T.copy())
    # Refused, not cleaned: a NaN spreads over its whole window of the net and comes out
    # as NaN stems, and guessing the lost samples would hide a damaged file.
    bad = torch.nonzero(~torch.isfinite(audio).all(0)).flatten()
    if bad.numel():
        raise SeparationError(
            f"{path} holds {bad.numel()} non-finite samples (NaN or inf), the first at "
            f"{bad[0].item() / rate:.3f} s: expected finite audio. Re-export the song from "
            f"its source, or repair those samples, then separate again."
        )
    return audio, rate


def _match_channels(audio: Tensor, channels: int) -> Tensor:
    """Duplicate mono for a stereo net, downmix for a mono net."""
    if audio.shape[0] == channels:
        return audio
    if audio.shape[0] == 1:
        return audio.repeat(channels, 1)
    if channels == 1:
        return audio.mean(0, keepdim=True)
    raise SeparationError(
        f"the net separates {channels}-channel audio, the file has {audio.shape[0]} "
        f"channels: expected mono or {channels} channels; downmix the file first."
    )


# Demucs' shift trick offsets the song by up to half a second.
MAX_SHIFT_SECONDS = 0.5


def separate_shifted(
    net: nn.Module, mixture: Tensor, segment_samples: int, shifts: int = 0, seed: int = 0, **kw
) -> Tensor:
    """:func:`separate` averaged over ``shifts`` random time offsets (Demucs' shift trick).

    Each pass separates the song delayed by a number of samples drawn in ``[0, 0.5 s)``
    from a generator seeded with ``seed``, so every checkpoint sees the same delays
    (zeros after the song keep every pass equally long); its estimates are moved back
    before averaging, and the chunk edges fall elsewhere in every pass. ``shifts=0`` is
    one plain pass. ``kw`` goes to :func:`separate`.
    """
    if shifts < 0:
        raise ValueError(f"expected shifts >= 0 (0: no shift trick), got {shifts}.")
    if shifts == 0:
        return separate(net, mixture, segment_samples, **kw)
    length = mixture.shape[-1]
    most = max(1, round(MAX_SHIFT_SECONDS * net.sample_rate))
    total = None
    for delay in np.random.default_rng(seed).integers(0, most, size=shifts).tolist():
        delayed = torch.nn.functional.pad(mixture, (delay, most - delay))
        estimate = separate(net, delayed, segment_samples, **kw)[..., delay : delay + length]
        total = estimate if total is None else total + estimate
    return total / shifts


def separate_file(
    ckpt: str | Path,
    audio_path: str | Path,
    out_dir: str | Path | None = None,
    segment_seconds: float | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
) -> dict[str, Path]:
    """Separate a song file and write one wav per source.

    The song is resampled to the net's rate when it differs (torchaudio), and
    mono is duplicated for a stereo net. The stems are written at the song's own
    sample rate and length, as 32-bit float wav (estimates may exceed [-1, 1]),
    with ``min(song channels, net channels)`` channels: a mono song gives mono
    stems (the stereo estimates averaged).

    Args:
        ckpt: checkpoint written by ``ablation fit``.
        audio_path: the song, in any format soundfile reads.
        out_dir: folder for ``<source>.wav``; default ``separated/<song name>``.
        segment_seconds: segment length; default the checkpoint's training segment.
        overlap: fraction of a segment shared with the next one.
        batch_size: segments per forward call.
        device: where the net runs (``"cpu"``, ``"cuda"``, ...).

    Returns:
        ``{source: path of its wav}``.

    Raises:
        CheckpointError: bad checkpoint.
        SeparationError: bad audio file.
    """
    audio_path = Path(audio_path)
    net = load_net(ckpt, device)
    audio, rate = read_audio(audio_path)
    net_length = round(audio.shape[-1] * net.sample_rate / rate)
    mixture = resample(_match_channels(audio, net.channels), rate, net.sample_rate, net_length)
    segment = round((segment_seconds or net.segment_seconds) * net.sample_rate)
    estimates = separate(net, mixture, segment, overlap, batch_size)
    estimates = resample(estimates, net.sample_rate, rate, audio.shape[-1])
    if audio.shape[0] < estimates.shape[-2]:
        estimates = estimates.mean(-2, keepdim=True)
    out_dir = Path(out_dir) if out_dir is not None else Path("separated") / audio_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for source, estimate in zip(net.source_names, estimates, strict=True):
        paths[source] = out_dir / f"{source}.wav"
        sf.write(paths[source], estimate.T.numpy(), rate, subtype="FLOAT")
    return paths
