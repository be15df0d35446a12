"""Decode-once cache: one memory-mappable ``.npy`` per track holding all its stems.

The first use decodes every track once; later runs and every worker process
memory-map the arrays, so random segments cost a memory copy, not an ffmpeg call.
An entry is trusted only if its sidecar JSON matches the cache key (source root,
sample rate, channels, stem names), the source files' fingerprint and the array's shape; both
files are written to a temporary name and renamed, so an interrupted build never
leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ablation.constants import SOURCES
from ablation.files import atomic_write
from ablation.tracks import DataError, TrackRef, decode_track
from ablation.tracks.layout import stem_mismatch

# 2: entries are checked on the way in (non-finite, empty, truncated, silent); an entry
# of an earlier version may hold a truncated file's silence, so it is decoded again.
# 3: the key names the stems (any dataset's, not only MUSDB18's four).
FORMAT_VERSION = 3


def default_cache_dir() -> Path:
    """``$ABLATION_CACHE``, else ``$XDG_CACHE_HOME/unet-ablation``, else ``~/.cache/...``."""
    if "ABLATION_CACHE" in os.environ:
        return Path(os.environ["ABLATION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unet-ablation"


class TrackCache:
    """Decoded stems of one dataset root at one sample rate and channel count.

    Args:
        cache_dir: parent folder of all caches; created when missing.
        root: the dataset root the tracks come from (part of the key).
        sample_rate: rate the stems are stored at (part of the key).
        channels: channel count stored (part of the key).
        stems: the dataset's stem names, the order of an entry's first axis (part of the key).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        root: str | Path,
        sample_rate: int,
        channels: int,
        stems: tuple[str, ...] = SOURCES,
    ):
        self.key = {
            "root": str(Path(root).resolve()),
            "sample_rate": int(sample_rate),
            "channels": int(channels),
            "stems": list(stems),
            "format": FORMAT_VERSION,
        }
        digest = hashlib.sha1(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.dir = Path(cache_dir) / digest
        self.decoded = 0  # tracks decoded by this object: lets tests prove reuse
        self._check_writable()

    def _check_writable(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=self.dir).close()
        except OSError as err:
            raise DataError(
                f"cache directory {self.dir} is not writable ({err.strerror}): the decoded "
                f"stems are cached there. Pass --data.cache_dir=/a/writable/folder or set "
                f"ABLATION_CACHE."
            ) from err

    def paths(self, track: TrackRef) -> tuple[Path, Path]:
        """The array and sidecar JSON of a track's entry."""
        folder = self.dir / track.subset
        return folder / f"{track.name}.npy", folder / f"{track.name}.json"

    def load(self, track: TrackRef) -> np.ndarray | None:
        """Memory-map a valid entry, or return None when it is missing or not trusted."""
        array_path, meta_path = self.paths(track)
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(array_path, mmap_mode="r")
        except (OSError, ValueError):
            return None
        expected = {**self.key, "fingerprint": track.fingerprint(), "shape": list(array.shape)}
        valid_shape = array.ndim == 3 and array.shape[:2] == (
            len(self.key["stems"]),
            self.key["channels"],
        )
        if meta != expected or not valid_shape or array.dtype != np.float32:
            return None
        return array

    def build(self, track: TrackRef) -> np.ndarray:
        """Decode ``track`` and write its entry atomically; returns the memory map.

        Raises:
            StemMismatchError: when the track's stems are not the cache's.
        """
        if list(track.stems) != self.key["stems"]:
            raise stem_mismatch(track, tuple(self.key["stems"]), f"the cache {self.dir}")
        audio = decode_track(track, self.key["sample_rate"], self.key["channels"])
        array_path, meta_path = self.paths(track)
        array_path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.key, "fingerprint": track.fingerprint(), "shape": list(audio.shape)}
        # Array first, sidecar last: an entry without a matching sidecar is rebuilt.
        atomic_write(array_path, lambda f: np.save(f, audio))
        atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode()))
        self.decoded += 1
        return np.load(array_path, mmap_mode="r")

    def ensure(self, tracks: list[TrackRef], progress: bool = True) -> dict[str, Path]:
        """Make every track's entry valid, decoding only those that are not.

        Returns:
            track name -> array path, in the order given.
        """
        missing = [t for t in tracks if self.load(t) is None]
        for track in tqdm(
            missing,
            desc=f"decoding {len(missing)} tracks into {self.dir}",
            unit="track",
            disable=not progress or not missing,
        ):
            self.build(track)
        return {t.name: self.paths(t)[0] for t in tracks}
