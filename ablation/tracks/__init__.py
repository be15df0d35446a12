"""Reading MUSDB18 and HQ-layout tracks: the one reader of the suite (DESIGN.md).

The DataModule's decode-once cache and the test-set evaluation both read audio
here, so training and evaluation see the same samples. Modules: ``layout``
(finding tracks on disk in either form, their stem names, splits, :class:`DataError`), ``decode``
(decoding a track, with the checks that refuse bad audio), ``resample`` (matching
a sample rate and a channel count).
"""

from ablation.tracks.decode import (
    decode_mixture,
    decode_stems,
    decode_track,
    track_rate,
    track_seconds,
)
from ablation.tracks.layout import (
    MIXTURE,
    STEMS_SUFFIX,
    SUBSETS,
    DataError,
    StemMismatchError,
    TrackRef,
    dataset_stems,
    detect_is_wav,
    list_tracks,
    official_validation_tracks,
    order_stems,
    require_ffmpeg,
    split_train_valid,
)
from ablation.tracks.resample import resample, to_channels

__all__ = [
    "MIXTURE",
    "STEMS_SUFFIX",
    "SUBSETS",
    "DataError",
    "StemMismatchError",
    "TrackRef",
    "dataset_stems",
    "decode_mixture",
    "decode_stems",
    "decode_track",
    "detect_is_wav",
    "list_tracks",
    "official_validation_tracks",
    "order_stems",
    "require_ffmpeg",
    "resample",
    "split_train_valid",
    "to_channels",
    "track_rate",
    "track_seconds",
]
