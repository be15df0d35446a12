"""Finding MUSDB18 tracks on disk, in either form, and splitting them.

Two forms are served (DESIGN.md): the compressed stems form (``<subset>/<name>.stem.mp4``,
five AAC streams: mixture, drums, bass, other, vocals) and the MUSDB18-HQ form
(``<subset>/<name>/{drums,bass,other,vocals}.wav``, ``mixture.wav`` optional). Any
folder in the HQ layout works, so users can train on their own multitrack data.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ablation.constants import SOURCES
from ablation.errors import AblationError

SUBSETS = ("train", "test")
STEMS_SUFFIX = ".stem.mp4"
# Stream order inside a MUSDB18 .stem.mp4 (musdb's mus.yaml `stem_ids`).
STEM_STREAM = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}


class DataError(AblationError):
    """A problem with the user's data, phrased for the user: path, expectation, remedy."""


@dataclass(frozen=True)
class TrackRef:
    """One track on disk, not yet decoded.

    Attributes:
        name: track name (file or folder name without suffix).
        subset: ``train`` or ``test``.
        path: the ``.stem.mp4`` file or the HQ track folder.
        is_wav: True for the HQ (wav) form.
    """

    name: str
    subset: str
    path: Path
    is_wav: bool

    def stem_files(self) -> dict[str, Path]:
        """HQ form only: source name -> wav file."""
        return {source: self.path / f"{source}.wav" for source in SOURCES}

    def fingerprint(self) -> str:
        """Changes whenever a file of the track changes (size or modification time)."""
        files = list(self.stem_files().values()) if self.is_wav else [self.path]
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()]
        return hashlib.sha1(repr(stamp).encode()).hexdigest()[:16]


def _is_hq_track(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f"{s}.wav").exists() for s in SOURCES)


def detect_is_wav(root: str | Path) -> bool:
    """Tell which MUSDB18 form ``root`` holds.

    Returns:
        True for the HQ (wav) layout, False for compressed stems.

    Raises:
        DataError: when ``root`` is missing, empty, or in neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist: expected a MUSDB18 folder with train/ and "
            f"test/ subfolders. Pass --data.root=/path/to/musdb18, or generate the toy "
            f"dataset with `ablation toy-data {root}`."
        )
    subset_dirs = [root / s for s in SUBSETS if (root / s).is_dir()]
    if not subset_dirs:
        found = sorted(p.name for p in root.iterdir())[:5]
        what = f"found {found}" if found else "it is empty"
        raise DataError(
            f"dataset root {root} has no train/ or test/ subfolder ({what}): expected MUSDB18 "
            f"(<root>/train/<name>.stem.mp4) or MUSDB18-HQ (<root>/train/<name>/vocals.wav). "
            f"Point --data.root at the folder that contains train/ and test/."
        )
    has_stems = any(any(d.glob(f"*{STEMS_SUFFIX}")) for d in subset_dirs)
    has_wav = any(any(_is_hq_track(t) for t in d.iterdir()) for d in subset_dirs)
    if has_stems and has_wav:
        raise DataError(
            f"dataset root {root} mixes both forms (.stem.mp4 files and wav track folders): "
            f"expected one form. Keep one of them, or pass --data.is_wav to choose."
        )
    if not (has_stems or has_wav):
        raise DataError(
            f"dataset root {root} is in neither MUSDB18 layout: expected "
            f"<subset>/<name>.stem.mp4 files or <subset>/<name>/{{{','.join(SOURCES)}}}.wav "
            f"folders. Convert your data to one of them (see README, 'Data layouts')."
        )
    return has_wav


def list_tracks(root: str | Path, subset: str, is_wav: bool | None = None) -> list[TrackRef]:
    """List the tracks of ``root/subset`` in name order.

    Args:
        root: dataset root holding ``train/`` and/or ``test/``.
        subset: ``train`` or ``test``.
        is_wav: the form; detected when None.

    Raises:
        DataError: on a missing subset or a root in neither layout.
    """
    root = Path(root)
    if is_wav is None:
        is_wav = detect_is_wav(root)
    folder = root / subset
    if is_wav:
        tracks = [TrackRef(p.name, subset, p, True) for p in folder.glob("*") if _is_hq_track(p)]
    else:
        tracks = [
            TrackRef(p.name[: -len(STEMS_SUFFIX)], subset, p, False)
            for p in folder.glob(f"*{STEMS_SUFFIX}")
        ]
    if not tracks:
        form = "HQ wav track folders" if is_wav else f"*{STEMS_SUFFIX} files"
        raise DataError(
            f"no tracks in {folder}: expected {form}. Check --data.root and --data.is_wav, "
            f"or that the {subset} subset was downloaded."
        )
    return sorted(tracks, key=lambda t: t.name)


def require_ffmpeg(tracks: list[TrackRef]) -> None:
    """Stop early, with a remedy, when compressed stems cannot be decoded."""
    if any(not t.is_wav for t in tracks) and shutil.which("ffmpeg") is None:
        raise DataError(
            f"{tracks[0].path.parent} holds .stem.mp4 files, which need the ffmpeg binary to "
            f"decode, but ffmpeg is not on PATH. Install it (`apt-get install ffmpeg`, "
            f"`conda install ffmpeg` or `brew install ffmpeg`), or use MUSDB18-HQ (wav)."
        )


def official_validation_tracks() -> list[str]:
    """Names of musdb's official validation tracks (from musdb's own ``mus.yaml``)."""
    import musdb

    config = Path(musdb.__file__).parent / "configs" / "mus.yaml"
    return list(yaml.safe_load(config.read_text())["validation_tracks"])


def split_train_valid(
    tracks: list[TrackRef], val_fraction: float, split_seed: int
) -> tuple[list[TrackRef], list[TrackRef]]:
    """Split the train subset into training and validation tracks.

    The official musdb split is used when the root holds any of its validation
    tracks. Otherwise (toy or custom data) a seeded split: ``round(val_fraction *
    n)`` tracks, at least one when there are two or more, drawn by a permutation
    of the sorted names seeded with ``split_seed``, so it never depends on the
    training seed.
    """
    official = set(official_validation_tracks())
    if any(t.name in official for t in tracks):
        return [t for t in tracks if t.name not in official], [
            t for t in tracks if t.name in official
        ]
    n_valid = max(1, round(val_fraction * len(tracks))) if val_fraction > 0 else 0
    n_valid = min(n_valid, len(tracks) - 1)
    order = np.random.default_rng(split_seed).permutation(len(tracks))
    chosen = {tracks[i].name for i in order[:n_valid]}
    return [t for t in tracks if t.name not in chosen], [t for t in tracks if t.name in chosen]
