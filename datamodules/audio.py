"""Decoding one track of either form into a ``(sources, channels, time)`` array.

Every failure becomes a :class:`DataError` naming the file, what was expected and
what to do, instead of a traceback from deep inside soundfile or ffmpeg.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ablation.constants import SOURCES
from datamodules.layout import STEM_STREAM, DataError, TrackRef, require_ffmpeg


def _read_wav(path) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise DataError(
            f"{path} is missing: an HQ track folder needs {', '.join(s + '.wav' for s in SOURCES)}."
            f" Add the file or remove the track folder."
        )
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise DataError(
            f"{path} could not be decoded ({err}): expected a readable audio file. "
            f"Re-export or re-download it."
        ) from err
    return audio, rate


def _check_consistent(track: TrackRef, stems: dict[str, tuple[np.ndarray, int]]) -> None:
    rates = {source: rate for source, (_, rate) in stems.items()}
    lengths = {source: len(audio) for source, (audio, _) in stems.items()}
    channels = {source: audio.shape[1] for source, (audio, _) in stems.items()}
    for what, values in (("sample rate", rates), ("length", lengths), ("channels", channels)):
        if len(set(values.values())) > 1:
            raise DataError(
                f"stems of track {track.path} disagree in {what}: {values}. Expected every "
                f"stem of a track to share sample rate, length and channel count: re-export "
                f"the stems together."
            )


def _read_stems_mp4(track: TrackRef) -> dict[str, tuple[np.ndarray, int]]:
    import stempeg

    require_ffmpeg([track])
    try:
        # One ffmpeg call for all streams; s16le is what musdb itself decodes with,
        # so both forms give identical samples.
        audio, rate = stempeg.read_stems(
            str(track.path), dtype=np.float32, ffmpeg_format="s16le", always_3d=True
        )
    except Exception as err:  # stempeg re-raises ffmpeg/ffprobe failures as bare errors
        raise DataError(
            f"{track.path} could not be decoded ({type(err).__name__}: {err}): expected a "
            f"MUSDB18 .stem.mp4 with 5 streams. The file may be truncated: download it again."
        ) from err
    if audio.shape[0] != len(STEM_STREAM):
        raise DataError(
            f"{track.path} has {audio.shape[0]} audio streams: expected {len(STEM_STREAM)} "
            f"(mixture, drums, bass, other, vocals) as in MUSDB18. Use a MUSDB18 stems file."
        )
    return {source: (audio[STEM_STREAM[source]], int(rate)) for source in SOURCES}


def decode_track(track: TrackRef, sample_rate: int, channels: int) -> np.ndarray:
    """Decode the four sources of a track.

    Args:
        track: the track to decode.
        sample_rate: output rate; resampled with torchaudio when the file differs.
        channels: 1 (mono, channel average) or 2 (a mono file is duplicated).

    Returns:
        float32 array ``(len(SOURCES), channels, time)`` in ``SOURCES`` order.

    Raises:
        DataError: for missing, corrupt, truncated or inconsistent files.
    """
    if track.is_wav:
        stems = {source: _read_wav(path) for source, path in track.stem_files().items()}
    else:
        stems = _read_stems_mp4(track)
    _check_consistent(track, stems)
    rate = next(iter(stems.values()))[1]
    audio = torch.from_numpy(np.stack([stems[s][0].T for s in SOURCES]))  # (S, C, T)
    audio = _to_channels(audio, channels, track)
    if rate != sample_rate:
        audio = torchaudio.functional.resample(audio.contiguous(), rate, sample_rate)
    return audio.numpy().astype(np.float32, copy=False)


def _to_channels(audio: torch.Tensor, channels: int, track: TrackRef) -> torch.Tensor:
    if audio.shape[1] == channels:
        return audio
    if channels == 1:
        return audio.mean(1, keepdim=True)
    if audio.shape[1] == 1:
        return audio.expand(-1, channels, -1).contiguous()
    raise DataError(
        f"track {track.path} has {audio.shape[1]} channels, but {channels} were asked for: "
        f"expected mono or stereo audio. Set --data.channels to 1 or 2."
    )
