"""A seeded dataset of songs rendered from MIDI with sampled instruments (Slakh2100's idea).

Each song is composed by :mod:`datamodules.compose` and each stem rendered on its own
by FluidSynth's library (:mod:`datamodules.synth`) with a General MIDI SoundFont
(Debian's ``fluid-soundfont-gm``, FluidR3_GM, MIT licence): drums from a sampled kit,
bass from a sampled bass, ``other`` from sampled pianos, guitars, organ, strings and
pads, ``vocals`` from the choir and voice patches. The stems are mixed with per-stem
gains and pans, in stereo at 44.1 kHz, and written in the MUSDB18-HQ layout (wav
folders) and, when asked, in the compressed MUSDB18 layout (``.stem.mp4``, five AAC
streams: mixture, drums, bass, other, vocals).

Rendering is deterministic: FluidSynth plays each stem in this process on one thread,
every MIDI message at its sample (no MIDI player, no clock), its reverb and chorus are
off, its output is float (no dither), and every choice of a track comes from a
generator seeded by the dataset seed, the subset and the track's index; so the same
seed writes the same bytes, under any load, and any number of parallel jobs writes the
same files. Track ``i`` of a dataset does not depend on how many tracks it has: a
fraction of MUSDB18's shape (``scale``) is a prefix of the whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ablation.constants import SAMPLE_RATE, SOURCES
from ablation.errors import AblationError
from ablation.files import write_text
from datamodules.compose import compose
from datamodules.generated import generated_dataset
from datamodules.synth import RendererMissing, library, render_part

SOUNDFONT_ENV = "ABLATION_SOUNDFONT"
# Where Debian's fluid-soundfont-gm puts FluidR3_GM (and other systems' usual places).
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
SUBSETS = ("train", "test")
# Written beside train/ and test/: the arguments that made the dataset.
RECIPE = "rendered.json"
# How tracks are made, in the recipe and every track.json: data made by another version
# is rendered again. 1: the fluidsynth program, songs that varied with PYTHONHASHSEED;
# 2: FluidSynth's library in-process, every message at its sample (datamodules.synth).
RENDERER = 2
# Level of each stem relative to the others (dB, before a per-track draw of +-3 dB) and
# the range of its pan (-1 left .. 1 right): drums, bass and vocals near the centre as
# in most mixes, the harmony to one side.
LEVELS_DB = {"drums": 0.0, "bass": -2.0, "other": -4.0, "vocals": -1.0}
PANS = {"drums": (-0.1, 0.1), "bass": (-0.05, 0.05), "other": (-0.6, 0.6), "vocals": (-0.15, 0.15)}
# MUSDB18's shape: 100 training tracks (14 of them validation) and 50 test tracks, about
# 10 hours; durations spread like MUSDB18's (median about 3 min 50 s, 2 to 10 min).
MUSDB18_TRACKS = {"train": 100, "test": 50}
MEDIAN_SECONDS, SPREAD, SHORTEST, LONGEST = 230.0, 0.3, 120.0, 600.0
STEMS_BITRATE = "256k"  # MUSDB18's AAC streams are about 256 kb/s


def soundfont() -> Path:
    """The General MIDI SoundFont: ``$ABLATION_SOUNDFONT``, else FluidR3_GM where Debian
    installs it; raises :class:`RendererMissing` in one line when there is none."""
    candidates = [os.environ[SOUNDFONT_ENV]] if SOUNDFONT_ENV in os.environ else SOUNDFONTS
    for candidate in candidates:
        if Path(candidate).is_file():
            return Path(candidate)
    raise RendererMissing(
        f"no General MIDI SoundFont at {', '.join(candidates)}: install Debian's "
        f"fluid-soundfont-gm (make install does, as root; or sudo apt-get install "
        f"fluid-soundfont-gm), or set {SOUNDFONT_ENV}=/path/to/a/GM.sf2."
    )


def render_track(
    seed: int,
    subset: str,
    index: int,
    seconds: float,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[dict[str, np.ndarray], dict]:
    """Compose and render one track: stems ``{source: (time, 2) float32}`` whose sum peaks
    at 0.9, and a description (title, tempo, key, instruments, gains and pans)."""
    rng = np.random.default_rng([seed, SUBSETS.index(subset), index])
    song = compose(rng, seconds)
    font = soundfont()
    n = round(seconds * sample_rate)
    stems, mix = {}, {}
    for source in SOURCES:  # n samples: the song goes on a bar longer (compose), cut here
        audio = render_part(song.parts[source], song.tempo_bpm, song.bars * 4.0, n,
                            sample_rate, font)  # fmt: skip
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) + 1e-9
        level_db = LEVELS_DB[source] + rng.uniform(-3, 3)
        pan = rng.uniform(*PANS[source])
        angle = (pan + 1) * np.pi / 4  # constant power: 0 = left, pi/2 = right
        gains = np.sqrt(2) * np.array([np.cos(angle), np.sin(angle)])
        stems[source] = audio * (0.1 * 10 ** (level_db / 20) / rms) * gains
        mix[source] = {"level_db": round(level_db, 2), "pan": round(pan, 3)}
    fade = min(n, int(0.05 * sample_rate))  # the song is cut at its length: no click
    ramp = np.linspace(1, 0, fade)[:, None]
    for audio in stems.values():
        audio[n - fade :] *= ramp
    peak = float(np.abs(sum(stems.values())).max()) + 1e-9
    stems = {s: (a * (0.9 / peak)).astype(np.float32) for s, a in stems.items()}
    info = {"title": song.title, "tempo_bpm": song.tempo_bpm, "seconds": seconds}
    info |= {"instruments": song.instruments, "mix": mix}
    return stems, info


def track_name(subset: str, index: int) -> str:
    """The folder (HQ) or file stem (``.stem.mp4``) of track ``index`` of a subset."""
    return f"Rendered {index:03d} - {subset} song {index}"


def musdb18_durations(subset: str, count: int, seed: int) -> list[float]:
    """Seconds of the first ``count`` tracks of a subset at MUSDB18's spread: log-normal
    around a median of 3 min 50 s, within 2 and 10 minutes; track ``i``'s duration does
    not depend on ``count``."""
    rng = np.random.default_rng([seed, SUBSETS.index(subset), 1_000_003])
    drawn = MEDIAN_SECONDS * np.exp(SPREAD * rng.standard_normal(max(count, 1)))
    return [float(np.round(d)) for d in np.clip(drawn, SHORTEST, LONGEST)[:count]]


def plan(
    n_train: int = 10,
    n_test: int = 4,
    duration: float = 8.0,
    test_duration: float | None = None,
    scale: float | None = None,
    seed: int = 0,
) -> list[tuple[str, int, float]]:
    """``(subset, index, seconds)`` of every track. With ``scale``, MUSDB18's shape: round(
    100 * scale) training and round(50 * scale) test tracks of MUSDB18's spread of durations
    (``n_train``, ``n_test`` and the durations are then ignored)."""
    if scale is not None:
        if not 0 < scale <= 1:
            raise AblationError(f"scale must be in (0, 1] (1 is MUSDB18's size), got {scale}.")
        counts = {s: max(1, round(n * scale)) for s, n in MUSDB18_TRACKS.items()}
        return [
            (subset, i, seconds)
            for subset, count in counts.items()
            for i, seconds in enumerate(musdb18_durations(subset, count, seed))
        ]
    test_duration = duration if test_duration is None else test_duration
    return [("train", i, duration) for i in range(n_train)] + [
        ("test", i, test_duration) for i in range(n_test)
    ]


def write_hq_track(folder: Path, stems: dict[str, np.ndarray], sample_rate: int) -> None:
    """One MUSDB18-HQ track folder: ``mixture.wav`` and one 16-bit wav per stem."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        sf.write(folder / f"{source}.wav", stems[source], sample_rate, subtype="PCM_16")
    mixture = sum(stems[s] for s in SOURCES)
    sf.write(folder / "mixture.wav", mixture, sample_rate, subtype="PCM_16")


def write_stems_track(folder: Path, path: Path) -> None:
    """One MUSDB18 ``.stem.mp4`` from an HQ track folder: five untitled AAC streams in
    MUSDB18's order (mixture, drums, bass, other, vocals), as MUSDB18's own files, written
    bit-exact (no encoder version or time in the file) and renamed into place. ffmpeg's
    fast AAC coder: 3.4x the default's speed, at MUSDB18's bitrate."""
    names = ["mixture", *SOURCES]
    command = ["ffmpeg", "-v", "error", "-y", "-nostdin"]
    for name in names:
        command += ["-i", str(folder / f"{name}.wav")]
    for i in range(len(names)):
        command += ["-map", f"{i}:a"]
    partial = path.with_name(path.name + ".partial.mp4")
    command += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", STEMS_BITRATE]
    command += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    command.append(str(partial))
    if shutil.which("ffmpeg") is None:
        raise RendererMissing(
            "ffmpeg is not on PATH: the .stem.mp4 layout needs it (make install installs it)."
        )
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AblationError(f"ffmpeg could not write {path}: {done.stderr.strip()}")
    partial.replace(path)


def _finished(folder: Path, made: dict) -> bool:
    """Whether ``folder`` holds the track that ``made`` (seed, rate, seconds, renderer)
    describes."""
    try:
        info = json.loads((folder / "track.json").read_text())
    except (OSError, ValueError):
        return False
    return (folder / "mixture.wav").is_file() and all(info.get(k) == v for k, v in made.items())


def _write_one(job: tuple) -> dict:
    out, stems_out, seed, subset, index, seconds, sample_rate = job
    name = track_name(subset, index)
    folder = out / subset / name
    path = None if stems_out is None else stems_out / subset / f"{name}.stem.mp4"
    made = {"seed": seed, "sample_rate": sample_rate, "seconds": seconds, "renderer": RENDERER}
    if not _finished(folder, made):  # a finished track is kept: an interrupted run resumes
        stems, info = render_track(seed, subset, index, seconds, sample_rate)
        partial = out / ".partial" / subset / name  # outside the subsets: never listed
        shutil.rmtree(partial, ignore_errors=True)
        write_hq_track(partial, stems, sample_rate)
        write_text(partial / "track.json", json.dumps(made | info, indent=2))
        shutil.rmtree(folder, ignore_errors=True)  # another recipe's track of that name
        if path is not None:
            path.unlink(missing_ok=True)
        partial.rename(folder)
    if path is not None:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_stems_track(folder, path)
    return json.loads((folder / "track.json").read_text())


def make_rendered_dataset(
    out: str | Path,
    n_train: int = 10,
    n_test: int = 4,
    duration: float = 8.0,
    sample_rate: int = SAMPLE_RATE,
    seed: int = 0,
    progress: bool = True,
    test_duration: float | None = None,
    scale: float | None = None,
    stems_out: str | Path | None = None,
    jobs: int | None = 1,
) -> Path:
    """Write the rendered dataset in the MUSDB18-HQ layout
    (``out/{train,test}/<name>/{mixture,drums,bass,other,vocals}.wav``) and its arguments
    as ``out/rendered.json``; with ``stems_out``, the same tracks as ``.stem.mp4`` too.

    Args:
        out: folder to create (the HQ root).
        n_train: tracks in ``train/``.
        n_test: tracks in ``test/``.
        duration: seconds of every training track.
        sample_rate: sample rate of the files.
        seed: the same seed writes the same files.
        progress: show a progress bar.
        test_duration: seconds of every test track; ``duration`` when None.
        scale: MUSDB18's shape (100 + 50 tracks, its spread of durations) times ``scale``
            in (0, 1]; overrides the counts and durations.
        stems_out: folder for the compressed layout (``<subset>/<name>.stem.mp4``).
        jobs: tracks rendered at once (processes); None: one per core.

    Returns:
        ``out`` as a Path.
    """
    soundfont(), library()  # one line now rather than a traceback from a worker
    out = Path(out)
    stems_path = Path(stems_out) if stems_out is not None else None
    tracks = plan(n_train, n_test, duration, test_duration, scale, seed)
    recipe = dict(n_train=n_train, n_test=n_test, duration=duration)
    recipe |= dict(test_duration=duration if test_duration is None else test_duration)
    recipe |= dict(sample_rate=sample_rate, seed=seed, scale=scale, renderer=RENDERER)
    # marked as the suite's (datamodules.generated); an interrupted rendering resumes
    with generated_dataset(out, "rendered", recipe, resume=True):
        for subset in SUBSETS:
            (out / subset).mkdir(parents=True, exist_ok=True)
        work = [(out, stems_path, seed, s, i, sec, sample_rate) for s, i, sec in tracks]
        _render_all(work, jobs or os.cpu_count() or 1, progress)
        shutil.rmtree(out / ".partial", ignore_errors=True)
        write_text(out / RECIPE, json.dumps(recipe, indent=2))
    return out


def _render_all(work: list, jobs: int, progress: bool) -> None:
    bar = tqdm(total=len(work), desc=f"rendering {len(work)} tracks", disable=not progress)
    if jobs == 1:
        for job in work:
            _write_one(job)
            bar.update()
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for _ in pool.map(_write_one, work):
                bar.update()
    bar.close()


def rendered_recipe(root: str | Path) -> dict | None:
    """The arguments that wrote the rendered dataset in ``root``; None for other data."""
    path = Path(root) / RECIPE
    return json.loads(path.read_text()) if path.is_file() else None
