"""Matching audio to a sample rate and a channel count: what every reader of tracks (and
every net working at its own rate) does the same way."""

from __future__ import annotations

import torch
import torchaudio

from ablation.tracks.layout import DataError


def resample(
    audio: torch.Tensor, rate: int, target: int, length: int | None = None
) -> torch.Tensor:
    """Resample the time axis (torchaudio's band-limited resampler) from ``rate`` to ``target``.

    Args:
        audio: ``(..., time)``; returned as it is when the rates agree and no length is given.
        rate: the rate of ``audio``.
        target: the rate wanted.
        length: when given, the result is cropped or zero-padded to this many samples.
    """
    if rate != target:
        audio = torchaudio.functional.resample(audio.contiguous(), rate, target)
    if length is not None:
        audio = torch.nn.functional.pad(audio, (0, max(0, length - audio.shape[-1])))
        audio = audio[..., :length]
    return audio


def to_channels(audio: torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """Match the channel axis of ``audio`` ``(sources, channels, time)`` to ``channels``.

    Mono is the channel average; a mono file is duplicated to stereo.

    Raises:
        DataError: for a channel count that cannot be matched; ``what`` names the audio.
    """
    if audio.shape[1] == channels:
        return audio
    if channels == 1:
        return audio.mean(1, keepdim=True)
    if audio.shape[1] == 1:
        return audio.expand(-1, channels, -1).contiguous()
    raise DataError(
        f"{what} has {audio.shape[1]} channels, but {channels} were asked for: "
        f"expected mono or stereo audio. Set --data.channels to 1 or 2."
    )
