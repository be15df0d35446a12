"""Finding MUSDB18 tracks on disk, in either form, and splitting them.

Two forms are served (DESIGN.md): the compressed stems form (``<subset>/<name>.stem.mp4``,
AAC streams: the mixture, then one per stem; MUSDB18's five are mixture, drums, bass,
other, vocals) and the MUSDB18-HQ form (``<subset>/<name>/{drums,bass,other,vocals}.wav``,
``mixture.wav`` optional). Any stem names work, so users can train on their own
multitrack data: an HQ folder ``<subset>/<name>/`` with ``mixture.wav`` and one
``<stem>.wav`` per stem, or a ``.stem.mp4`` whose streams are titled with the stem
names (as stempeg writes them). The stem names of a dataset are read from its files,
and every track must have the same ones.
"""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from ablation.constants import SOURCES
from ablation.errors import AblationError

SUBSETS = ("train", "test")
STEMS_SUFFIX = ".stem.mp4"
# Stream 0 of a .stem.mp4, and the optional mixture.wav of an HQ track folder; a MUSDB18
# .stem.mp4 holds SOURCES in streams 1 to 4 (musdb's mus.yaml `stem_ids`).
MIXTURE = "mixture"
# Stream titles that name no stem: ffmpeg's default handler and stempeg's default names.
GENERIC_TITLES = ("SoundHandler", "Stem ", "Stem_")


class DataError(AblationError):
    """A problem with the user's data, phrased for the user: path, expectation, remedy."""


class StemMismatchError(DataError):
    """The tracks of a dataset do not all have the same stems."""


def order_stems(names) -> tuple[str, ...]:
    """Stem names in the suite's order: MUSDB18's (drums, bass, other, vocals) first, in
    that order, then the others by name; so MUSDB18 keeps its order and any dataset gets
    one order whatever its files' order."""
    rank = {name: i for i, name in enumerate(SOURCES)}
    return tuple(sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n)))


@dataclass(frozen=True)
class TrackRef:
    """One track on disk, not yet decoded.

    Attributes:
        name: track name (file or folder name without suffix).
        subset: ``train`` or ``test``.
        path: the ``.stem.mp4`` file or the HQ track folder.
        is_wav: True for the HQ (wav) form.
        stems: the track's stem names, in the suite's order (:func:`order_stems`); for a
            ``.stem.mp4``, stem ``i`` of :attr:`streams` is audio stream ``i + 1``.
        streams: ``.stem.mp4`` only: the stem names in stream order.
    """

    name: str
    subset: str
    path: Path
    is_wav: bool
    stems: tuple[str, ...] = SOURCES
    streams: tuple[str, ...] = SOURCES

    def stem_files(self) -> dict[str, Path]:
        """HQ form only: stem name -> wav file."""
        return {stem: self.path / f"{stem}.wav" for stem in self.stems}

    def stream(self, stem: str) -> int:
        """``.stem.mp4`` only: the audio stream of ``stem`` (0 is the mixture)."""
        return 0 if stem == MIXTURE else 1 + self.streams.index(stem)

    def fingerprint(self) -> str:
        """Changes whenever a file of the track changes (size or modification time)."""
        files = list(self.stem_files().values()) if self.is_wav else [self.path]
        stamp = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()]
        return hashlib.sha1(repr(stamp).encode()).hexdigest()[:16]


def _hq_stems(folder: Path) -> tuple[str, ...]:
    """Stem names of an HQ track folder; empty for a folder that is not one.

    With ``mixture.wav``, every other wav is a stem, whatever its name. Without it (the
    mixture is optional in MUSDB18-HQ) a folder holding any of MUSDB18's stems is a
    MUSDB18 track, whose missing stems decoding then names; stray wav files without a
    mixture beside them make no track.
    """
    if not folder.is_dir():
        return ()
    names = {p.stem for p in folder.glob("*.wav")} - {MIXTURE}
    if (folder / f"{MIXTURE}.wav").exists():
        return order_stems(names)
    return SOURCES if names & set(SOURCES) else ()


def _is_hq_track(folder: Path) -> bool:
    return bool(_hq_stems(folder))


def _stream_titles(path: Path) -> tuple[str, ...]:
    """The stem names of a ``.stem.mp4`` in stream order: the titles of its streams after
    the mixture, or MUSDB18's names for a five-stream file without such titles."""
    import ffmpeg
    import stempeg

    try:
        streams = stempeg.Info(str(path)).audio_streams
    except ffmpeg.Error:
        return SOURCES  # decoding names the damage, with ffprobe's reason
    titles = [(s.get("tags") or {}) for s in streams[1:]]
    titles = [t.get("title") or t.get("handler_name") or "" for t in titles]
    named = all(t and not t.startswith(GENERIC_TITLES) for t in titles)
    if titles and named and len(set(titles)) == len(titles):
        return tuple(titles)
    return SOURCES


@cache
def _stem_streams(path: Path, size: int, mtime_ns: int) -> tuple[str, ...]:
    # keyed on size and time too: a file rewritten in place is probed again
    return _stream_titles(path)


def _stems_track(path: Path, subset: str) -> TrackRef:
    stat = path.stat()
    streams = _stem_streams(path, stat.st_size, stat.st_mtime_ns)
    name = path.name[: -len(STEMS_SUFFIX)]
    return TrackRef(name, subset, path, False, order_stems(streams), streams)


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
            f"folders (other stem names: <subset>/<name>/mixture.wav plus <stem>.wav per "
            f"stem). Convert your data to one of them (see README, 'Data layouts')."
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
    detected = is_wav is None
    if detected:
        is_wav = detect_is_wav(root)
    folder = root / subset
    if is_wav:
        found = ((p, _hq_stems(p)) for p in folder.glob("*"))
        tracks = [TrackRef(p.name, subset, p, True, stems, stems) for p, stems in found if stems]
    else:
        files = list(folder.glob(f"*{STEMS_SUFFIX}"))
        if files:
            require_ffmpeg([TrackRef(files[0].name, subset, files[0], False)])
        # ffprobe per file, a few at a time: MUSDB18 has 150 of them
        with ThreadPoolExecutor(8) as pool:
            tracks = list(pool.map(lambda p: _stems_track(p, subset), files))
    if not tracks:
        form = "HQ wav track folders" if is_wav else f"*{STEMS_SUFFIX} files"
        given = "" if detected else " and --data.is_wav"  # the form the user chose
        raise DataError(
            f"no tracks in {folder}: expected {form}. Check --data.root{given}, or that the "
            f"{subset} subset was downloaded."
        )
    return sorted(tracks, key=lambda t: t.name)


def dataset_stems(tracks: list[TrackRef]) -> tuple[str, ...]:
    """The stem names every track of ``tracks`` has (MUSDB18's four when empty).

    Raises:
        StemMismatchError: naming the first track whose stems differ from the first's.
    """
    if not tracks:
        return SOURCES
    expected = tracks[0].stems
    for track in tracks[1:]:
        if track.stems != expected:
            raise stem_mismatch(track, expected, str(tracks[0].path))
    return expected


def stem_mismatch(track: TrackRef, expected: tuple[str, ...], holder: str) -> StemMismatchError:
    """The one-line error for ``track``, whose stems are not ``expected``, those of ``holder``."""
    return StemMismatchError(
        f"track {track.path} has stems {list(track.stems)}, but {holder} has "
        f"{list(expected)}: expected the same stem names in every track of a dataset. "
        f"Add or rename the stem files so that every track has the same ones."
    )


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
