"""The rendered dataset: deterministic, in both MUSDB18 layouts that the DataModule,
the evaluation and musdb read, with stems as distinct as instruments are."""

from __future__ import annotations

import ctypes.util
import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import stft

from ablation.constants import SOURCES
from ablation.errors import AblationError
from datamodules.generated import MARKER
from datamodules.rendered import (
    RENDERER,
    SOUNDFONT_ENV,
    SOUNDFONTS,
    RendererMissing,
    make_rendered_dataset,
    plan,
    render_track,
    rendered_recipe,
    soundfont,
)
from datamodules.synth import library

RATE = 44100
REPO = Path(__file__).resolve().parents[1]
needs_renderer = pytest.mark.skipif(
    ctypes.util.find_library("fluidsynth") is None
    or not any(Path(p).is_file() for p in SOUNDFONTS),
    reason="libfluidsynth or fluid-soundfont-gm not installed (make install installs them)",
)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")


def _digests(root: Path) -> dict[str, str]:
    """Every file's SHA-256 but the generated-data marker's (it records when it was written)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Two train and one test track of 4 s, in both layouts (serially)."""
    tmp = tmp_path_factory.mktemp("rendered")
    make_rendered_dataset(
        tmp / "hq", n_train=2, n_test=1, duration=4.0, progress=False, stems_out=tmp / "stems"
    )
    return {"hq": tmp / "hq", "stems": tmp / "stems"}


@needs_renderer
@needs_ffmpeg
def test_same_seed_same_bytes_whatever_the_jobs_and_another_seed_differs(rendered, tmp_path):
    again = make_rendered_dataset(
        tmp_path / "hq", n_train=2, n_test=1, duration=4.0, progress=False,
        stems_out=tmp_path / "stems", jobs=2,
    )  # fmt: skip
    first = _digests(rendered["hq"]) | _digests(rendered["stems"])
    second = _digests(again) | _digests(tmp_path / "stems")
    assert len(first) == 3 * 6 + 1 + 3  # 5 wavs and track.json per track, recipe, 3 mp4s
    assert first == second
    other = make_rendered_dataset(
        tmp_path / "seed1", n_train=1, n_test=0, duration=4.0, seed=1, progress=False
    )
    name = "train/Rendered 000 - train song 0/mixture.wav"
    assert _digests(other)[name] != first[name]
    assert rendered_recipe(rendered["hq"])["seed"] == 0
    assert rendered_recipe(rendered["hq"])["renderer"] == RENDERER


def _digest(stems: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(stems[s].tobytes() for s in SOURCES)).hexdigest()


def _fresh_processes(count: int) -> ProcessPoolExecutor:
    """Workers that start a new interpreter (nothing rendered, another PYTHONHASHSEED)."""
    return ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))


@needs_renderer
def test_a_track_renders_the_same_after_other_tracks_as_in_a_fresh_process():
    # tracks cut mid-block and mid-note before it: nothing of them may reach the next track
    for other in [(3, "test", 2, 2.3), (5, "train", 7, 1.01)]:
        render_track(*other)
    after_others = _digest(render_track(0, "train", 1, 3.0)[0])
    with _fresh_processes(1) as fresh:
        assert _digest(fresh.submit(render_track, 0, "train", 1, 3.0).result()[0]) == after_others


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@needs_renderer
@pytest.mark.timeout(60)
def test_rendering_is_the_same_under_load():
    track = (2, "test", 3, 3.0)
    serial = _digest(render_track(*track)[0])
    busy = [_busy(), _busy()]  # with two renders at once: four processes on two cores here
    try:
        with _fresh_processes(2) as pool:
            renders = [pool.submit(render_track, *track) for _ in range(2)]
            both = [_digest(render.result()[0]) for render in renders]
        assert both == [serial, serial]
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_songs_do_not_depend_on_string_hashing():
    # a set of section names once decided the order of the song's draws
    code = (
        "import hashlib, numpy as np; from datamodules.compose import compose, midi_bytes; "
        "s = [compose(np.random.default_rng([0, 0, i]), 8.0) for i in range(8)]; "
        "print(hashlib.sha256(b''.join(midi_bytes(p, x.tempo_bpm, x.bars * 4.0) "
        "for x in s for p in x.parts.values())).hexdigest())"
    )
    songs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, cwd=REPO).stdout
        for seed in ("0", "1", "4")
    }  # fmt: skip
    assert len(songs) == 1, songs


@needs_renderer
def test_tracks_have_their_length_and_their_stems_sum_to_the_mixture(rendered):
    for folder in sorted((rendered["hq"] / "train").iterdir()):
        stems = {s: sf.read(folder / f"{s}.wav")[0] for s in SOURCES}
        mixture, rate = sf.read(folder / "mixture.wav")
        assert rate == RATE and mixture.shape == (4 * RATE, 2)
        # 16-bit files: each holds its float signal to half a step of 2**-15
        assert np.abs(sum(stems.values()) - mixture).max() <= 5 * 2**-15
        for source, audio in stems.items():
            assert np.sqrt(np.mean(audio**2)) > 0.005, (folder.name, source)


@needs_renderer
@needs_ffmpeg
@pytest.mark.parametrize("layout", ["hq", "stems"])
def test_the_datamodule_and_musdb_read_both_layouts(rendered, layout, tmp_path):
    import musdb

    from datamodules import MUSDBDataModule

    root = rendered[layout]
    db = musdb.DB(root=str(root), subsets="train", is_wav=layout == "hq")
    assert [t.name for t in db.tracks] == [f"Rendered 00{i} - train song {i}" for i in (0, 1)]
    track = db.tracks[0]
    assert track.rate == RATE and track.audio.shape[1] == 2
    assert abs(track.audio.shape[0] - 4 * RATE) <= 2048  # AAC keeps the length closely
    reference = sf.read(rendered["hq"] / "train" / track.name / "drums.wav")[0]
    drums = track.targets["drums"].audio[: len(reference)]
    assert np.corrcoef(drums[:, 0], reference[: len(drums), 0])[0, 1] > 0.95

    dm = MUSDBDataModule(
        root=str(root), cache_dir=str(tmp_path / "cache"), segment=1.0, context=0.5,
        segments_per_track=2, val_fraction=0.5, batch_size=2, num_workers=0,
        pin_memory=False, progress=False,
    )  # fmt: skip
    dm.setup("fit")
    stems = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert stems.shape == (2, 4, 2, 2 * RATE), stems.shape  # 1 s loss region, 0.5 s context
    assert dm.stems == tuple(SOURCES)
    assert (stems.square().mean((0, 2, 3)) > 0).all()  # every stem sounds in the batch


@needs_renderer
@needs_ffmpeg
@pytest.mark.parametrize("layout", ["hq", "stems"])
def test_the_evaluation_scores_both_layouts(rendered, layout, tmp_path):
    import json

    from ablation.evaluation import evaluate_checkpoint

    out = evaluate_checkpoint(
        None, str(rendered[layout]), "test", str(tmp_path / "eval"), baseline="gain",
        jobs=1, wandb_log=False, progress=False,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    for source in SOURCES:
        # the best constant gain of a four-instrument mixture separates nothing
        assert -25 < summary[source]["SDR"] < 5, (source, summary[source])


def _character(audio: np.ndarray) -> dict[str, float]:
    """Median spectral centroid and flatness over the active frames, onsets per second
    (peaks of the mean rise of the log spectrum, 3 nepers above its median) and the
    share of active frames (within 30 dB of the loudest)."""
    _, _, spectrum = stft(audio.mean(1), RATE, nperseg=2048, noverlap=1536)
    power = np.abs(spectrum) ** 2
    energy = power.sum(0)
    active = energy > 1e-3 * energy.max()
    freqs = np.fft.rfftfreq(2048, 1 / RATE)[:, None]
    centroid = (freqs * power).sum(0) / (energy + 1e-20)
    flatness = np.exp(np.log(power + 1e-12).mean(0)) / (power.mean(0) + 1e-12)
    rise = np.maximum(np.diff(np.log(power + 1e-10), axis=1), 0).mean(0)
    middle = rise[1:-1]
    peaks = (middle > np.median(rise) + 3) & (middle >= rise[:-2]) & (middle >= rise[2:])
    return {
        "centroid": float(np.median(centroid[active])),
        "flatness": float(np.median(flatness[active])),
        "onsets": float(peaks.sum() / (len(audio) / RATE)),
        "active": float(active.mean()),
    }


@needs_renderer
@pytest.mark.parametrize("index", range(3))
def test_each_stem_has_its_instruments_character(index):
    stems, info = render_track(7, "test", index, 6.0)
    c = {s: _character(a) for s, a in stems.items()}
    others = lambda s: [c[o] for o in SOURCES if o != s]  # noqa: E731
    # drums: sampled kit hits, the most onsets and the noisiest (flattest) spectrum
    assert c["drums"]["onsets"] > 0.5, (info, c)
    assert all(c["drums"]["onsets"] > o["onsets"] for o in others("drums")), (info, c)
    assert all(c["drums"]["flatness"] > 10 * o["flatness"] for o in others("drums")), (info, c)
    # bass: the lowest centroid, below every other stem's by far
    assert all(c["bass"]["centroid"] * 2 < o["centroid"] for o in others("bass")), (info, c)
    # vocals sing in phrases with breaths; the harmony never stops
    assert c["vocals"]["active"] < c["other"]["active"], (info, c)
    assert info["instruments"]["vocals"][0] in ("Choir Aahs", "Voice Oohs")


def test_musdb18_shape_and_its_fractions():
    full = plan(scale=1.0)
    train = [s for subset, _, s in full if subset == "train"]
    test = [s for subset, _, s in full if subset == "test"]
    assert (len(train), len(test)) == (100, 50)
    assert min(train + test) >= 120 and max(train + test) <= 600
    assert 200 < np.median(train + test) < 260  # MUSDB18: about 3 min 50 s
    assert 8.5 < sum(train + test) / 3600 < 11.5  # MUSDB18: about 10 h
    tenth = plan(scale=0.1)
    assert [t[0] for t in tenth].count("train") == 10 and len(tenth) == 15
    assert set(tenth) <= set(full)  # a fraction is a prefix of the whole
    with pytest.raises(AblationError, match="scale must be in"):
        plan(scale=1.5)


def test_a_missing_soundfont_or_fluidsynth_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(SOUNDFONT_ENV, str(tmp_path / "none.sf2"))
    with pytest.raises(RendererMissing, match="fluid-soundfont-gm") as err:
        soundfont()
    assert "\n" not in str(err.value)
    (tmp_path / "gm.sf2").touch()
    monkeypatch.setenv(SOUNDFONT_ENV, str(tmp_path / "gm.sf2"))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    library.cache_clear()  # found before in this process
    with pytest.raises(RendererMissing, match="libfluidsynth is not installed.*make install"):
        make_rendered_dataset(tmp_path / "out", n_train=1, n_test=0, duration=1.0)
    assert not (tmp_path / "out").exists()


@needs_renderer
def test_data_of_the_former_renderer_is_rendered_again(tmp_path):
    import json

    root = make_rendered_dataset(tmp_path / "r", n_train=1, n_test=0, duration=0.5, progress=False)
    mixture = next((root / "train").iterdir()) / "mixture.wav"
    ours = mixture.read_bytes()
    # as the fluidsynth program wrote it: other audio, no renderer in recipe or track.json
    sf.write(mixture, np.zeros((RATE // 2, 2)), RATE, subtype="PCM_16")
    for path in [root / MARKER, root / "rendered.json", mixture.parent / "track.json"]:
        written = json.loads(path.read_text())
        (written.get("recipe") or written).pop("renderer")
        path.write_text(json.dumps(written))
    make_rendered_dataset(root, n_train=1, n_test=0, duration=0.5, progress=False)
    assert mixture.read_bytes() == ours and rendered_recipe(root)["renderer"] == RENDERER


@needs_renderer
def test_render_data_command(tmp_path, capsys):
    from ablation.cli import main

    main(["render-data", str(tmp_path / "r"), "--train=1", "--test=1", "--duration=1",
          "--test-duration=0.5", "--jobs=1"])  # fmt: skip
    test_track = next((tmp_path / "r" / "test").iterdir())
    assert sf.info(test_track / "vocals.wav").frames == RATE // 2
    assert "1 train, 1 test tracks" in capsys.readouterr().out
    # written again with another length: the tracks of the older recipe are not kept
    train_track = next((tmp_path / "r" / "train").iterdir())
    make_rendered_dataset(tmp_path / "r", n_train=1, n_test=0, duration=0.25, progress=False)
    assert sf.info(train_track / "mixture.wav").frames == RATE // 4
    with pytest.raises(SystemExit, match="error: scale must be in"):
        main(["render-data", str(tmp_path / "s"), "--scale=2"])
