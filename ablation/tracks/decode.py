"""Decoding one track of either form: its stems (and its mixture as stored), with
every check, at the file's rate or matched to a rate and channel count.

Training (the DataModule's cache) and evaluation both read tracks here, so they see
the same samples. Every failure becomes a :class:`DataError` naming the file, what was expected and
what to do, instead of a traceback from deep inside soundfile or ffmpeg.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ablation.tracks.layout import MIXTURE, DataError, TrackRef, require_ffmpeg
from ablation.tracks.resample import resample, to_channels

# A whole AAC file decodes a frame or two *longer* than its container says (priming
# and padding), never shorter; a decode this much shorter was cut off.
TRUNCATION_TOLERANCE_SECONDS = 0.1


def _check_samples(where: str, audio: np.ndarray, rate: int) -> None:
    """Refuse an empty decode or non-finite samples of one file or stream ``(time, channels)``.

    Checked before resampling, which would spread a NaN over its neighbours and
    fail on an empty array with an error naming no file.
    """
    if audio.shape[0] == 0:
        raise DataError(
            f"{where} decodes to no samples: expected audio. The file is empty or truncated: "
            f"re-export it or download it again."
        )
    bad = np.flatnonzero(~np.isfinite(audio).all(axis=1))
    if bad.size:
        raise DataError(
            f"{where} holds {bad.size} non-finite samples (NaN or inf), the first at "
            f"{bad[0] / rate:.3f} s: expected finite audio. Re-export the file from its "
            f"source, or remove the track from the data set."
        )


def _read_wav(path, stems: tuple[str, ...]) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise DataError(
            f"{path} is missing: an HQ track folder needs {', '.join(s + '.wav' for s in stems)}."
            f" Add the file or remove the track folder."
        )
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise DataError(
            f"{path} could not be decoded ({err}): expected a readable audio file. "
            f"Re-export or re-download it."
        ) from err
    _check_samples(str(path), audio, rate)
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


def _check_not_silent(track: TrackRef, stems: dict[str, tuple[np.ndarray, int]]) -> None:
    # One silent stem is music (the vocals of an instrumental); all of them is a fault.
    if not any(np.any(audio) for audio, _ in stems.values()):
        raise DataError(
            f"every stem of track {track.path} is silent (all samples zero): expected music. "
            f"Re-export or download the track again, or remove it from the data set."
        )


def _ffprobe_reason(err: Exception, path) -> str:
    """The last lines of ffprobe's complaint, without its banner, stream address or path."""
    stderr = getattr(err, "stderr", None) or b""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [
        re.sub(r"^\[[^\]]*\]\s*", "", line).removeprefix(f"{path}: ") for line in lines if line
    ]
    return "; ".join(lines[-2:]) or f"{type(err).__name__}: {err}"


def _probe_stems(track: TrackRef):
    import ffmpeg
    import stempeg

    try:
        info = stempeg.Info(str(track.path))
    except ffmpeg.Error as err:
        reason = _ffprobe_reason(err, track.path)
        raise DataError(
            f"{track.path} cannot be read by ffprobe ({reason}): expected a MUSDB18 "
            f".stem.mp4. The file is damaged or truncated: download it again."
        ) from err
    expected = 1 + len(track.streams)
    if info.nb_audio_streams != expected:
        raise DataError(
            f"{track.path} has {info.nb_audio_streams} audio streams: expected {expected} "
            f"({', '.join((MIXTURE, *track.streams))}) as in MUSDB18, or streams titled with "
            f"their stem names. Use such a stems file, or download it again if it is truncated."
        )
    return info


def _check_not_truncated(track: TrackRef, info, stream: int, source: str, samples: int) -> None:
    promised = info.audio_streams[stream].get("duration") or info.info["format"].get("duration")
    if promised is None:  # nothing to compare with
        return
    rate, promised = int(info.rate(stream)), float(promised)
    if samples < (promised - TRUNCATION_TOLERANCE_SECONDS) * rate:
        raise DataError(
            f"{track.path} could not be decoded in full: its {source} stream ends at "
            f"{samples / rate:.2f} s, but the container promises {promised:.2f} s, so the file "
            f"is truncated. Download it again."
        )


def _read_stems_mp4(track: TrackRef, names) -> dict[str, tuple[np.ndarray, int]]:
    import stempeg

    require_ffmpeg([track])
    info = _probe_stems(track)
    stems = {}
    for source in names:
        stream = track.stream(source)
        try:
            # Stream by stream: stempeg runs one ffmpeg per stream anyway, and reading them
            # together fails inside stempeg itself (`warnings.warning`) when a truncated file
            # gives streams of unequal length. s16le is what musdb decodes with, so both
            # forms give identical samples.
            audio, rate = stempeg.read_stems(
                str(track.path),
                stem_id=stream,
                info=info,
                dtype=np.float32,
                ffmpeg_format="s16le",
                always_3d=True,
            )
        except Exception as err:  # stempeg re-raises ffmpeg failures as bare errors
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise DataError(
                f"{track.path} could not be decoded ({type(err).__name__}: {reason}): "
                f"expected a .stem.mp4 with {1 + len(track.streams)} streams. Download it again."
            ) from err
        audio = audio[0]
        _check_not_truncated(track, info, stream, source, len(audio))
        _check_samples(f"{track.path} ({source} stream)", audio, int(rate))
        stems[source] = (audio, int(rate))
    return stems


def decode_stems(track: TrackRef) -> tuple[np.ndarray, int]:
    """Decode the stems of a track at the rate of its files.

    Returns:
        float32 array ``(len(track.stems), channels, time)`` in ``track.stems`` order, and
        the rate.

    Raises:
        DataError: for missing, corrupt, empty, truncated or inconsistent files, non-finite
            samples, or a track whose every stem is silent.
    """
    if track.is_wav:
        files = track.stem_files().items()
        stems = {source: _read_wav(path, track.stems) for source, path in files}
    else:
        stems = _read_stems_mp4(track, track.stems)
    _check_consistent(track, stems)
    _check_not_silent(track, stems)
    rate = next(iter(stems.values()))[1]
    return np.stack([stems[s][0].T for s in track.stems]), rate


def decode_mixture(track: TrackRef) -> np.ndarray | None:
    """The mixture as the track stores it, ``(channels, time)`` float32 at the file's rate.

    The mixture stream of a ``.stem.mp4`` (not the sum of its sources: each stream is coded
    apart), or an HQ folder's ``mixture.wav``; None when an HQ folder has none.
    """
    if track.is_wav:
        path = track.path / f"{MIXTURE}.wav"
        return _read_wav(path, track.stems)[0].T if path.exists() else None
    return _read_stems_mp4(track, (MIXTURE,))[MIXTURE][0].T


def track_rate(track: TrackRef) -> int:
    """The sample rate of a track, read from its file headers without decoding."""
    if not track.is_wav:
        return int(_probe_stems(track).rate(track.stream(MIXTURE)))
    path = next((p for p in track.stem_files().values() if p.exists()), Path())
    try:
        return int(sf.info(path).samplerate)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise DataError(
            f"{path} could not be read ({err}): expected a readable audio file. "
            f"Re-export or re-download it."
        ) from err


def track_seconds(track: TrackRef) -> float:
    """The length of a track in seconds, read from its file headers without decoding."""
    if not track.is_wav:
        return float(_probe_stems(track).duration(track.stream(MIXTURE)))
    path = next((p for p in track.stem_files().values() if p.exists()), Path())
    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise DataError(
            f"{path} could not be read ({err}): expected a readable audio file."
        ) from err


def decode_track(track: TrackRef, sample_rate: int, channels: int) -> np.ndarray:
    """Decode the stems of a track at ``sample_rate`` with ``channels``.

    Args:
        track: the track to decode.
        sample_rate: output rate; resampled with torchaudio when the file differs.
        channels: 1 (mono, channel average) or 2 (a mono file is duplicated).

    Returns:
        float32 array ``(len(track.stems), channels, time)`` in ``track.stems`` order.

    Raises:
        DataError: as :func:`decode_stems`, or for a channel count that cannot be matched.
    """
    stems, rate = decode_stems(track)
    audio = to_channels(torch.from_numpy(stems), channels, f"track {track.path}")
    audio = resample(audio, rate, sample_rate)
    return audio.numpy().astype(np.float32, copy=False)
