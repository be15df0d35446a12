"""The MUSDB18 DataModule: forms, splits, cache, augmentation, errors."""

from __future__ import annotations

import logging
import shutil

import musdb
import numpy as np
import pytest
import soundfile as sf
import torch
from tracks.helpers import noise_stems, write_hq_track

from ablation.constants import SOURCES
from ablation.tracks import decode_track, detect_is_wav, list_tracks
from datamodules import DataError, MUSDBDataModule, make_toy_dataset
from datamodules.cache import TrackCache


def make_dm(root, tmp_path, **kwargs) -> MUSDBDataModule:
    defaults = dict(
        cache_dir=str(tmp_path / "cache"),
        segment=0.5,
        batch_size=4,
        num_workers=0,
        segments_per_track=4,
        progress=False,
    )
    return MUSDBDataModule(root=str(root), **{**defaults, **kwargs})


# ---- forms -------------------------------------------------------------------
def test_both_forms_give_identical_stems(musdb_sample, tmp_path):
    track = musdb.DB(root=str(musdb_sample), subsets="train").tracks[0]
    hq = tmp_path / "hq"
    # musdb decodes 16-bit PCM, so a PCM_16 copy is the lossless HQ form of the same track
    write_hq_track(hq / "train" / track.name, {s: track.sources[s].audio for s in SOURCES})
    stems_dm = make_dm(musdb_sample, tmp_path, targets="4stems")
    wav_dm = make_dm(hq, tmp_path, targets="4stems")
    assert detect_is_wav(musdb_sample) is False and detect_is_wav(hq) is True
    from_stems = np.asarray(stems_dm.arrays("train")[0])
    from_wav = np.asarray(wav_dm.arrays("train")[0])
    assert from_stems.shape == (4, 2, 300032)
    np.testing.assert_array_equal(from_stems, from_wav)
    # and both equal what musdb itself decodes, in SOURCES order
    expected = np.stack([track.sources[s].audio.T for s in SOURCES]).astype(np.float32)
    np.testing.assert_array_equal(from_stems, expected)


def test_loader_shapes_and_targets(toy_root, tmp_path):
    dm = make_dm(toy_root, tmp_path, targets="2stems")
    dm.setup("fit")
    raw = next(iter(dm.train_dataloader()))
    assert raw[1] == [0, 1, 2, 3]  # stream positions travel with each training batch
    batch = dm.on_after_batch_transfer(raw, 0)
    assert dm.sources == ("vocals", "accompaniment")
    assert batch.shape == (4, 2, 2, dm.segment_samples) and batch.dtype == torch.float32
    dm.setup("test")
    stems, names = next(iter(dm.test_dataloader()))
    assert stems.shape[:3] == (1, 2, 2) and names[0].startswith("toy000")


def test_accompaniment_is_sum_of_other_stems(toy_root, tmp_path):
    four = make_dm(toy_root, tmp_path, targets="4stems")
    two = make_dm(toy_root, tmp_path, targets=["vocals", "accompaniment"])
    four.setup("validate"), two.setup("validate")
    s4, s2 = four.val_set[0], two.val_set[0]
    torch.testing.assert_close(s2[0], s4[3])
    torch.testing.assert_close(s2[1], s4[0] + s4[1] + s4[2])


def test_target_subset_gets_rest_and_overlap_is_refused(toy_root, tmp_path):
    dm = make_dm(toy_root, tmp_path, targets=["vocals", "drums"])
    assert dm.sources == ("vocals", "drums", "rest")
    dm.setup("validate")
    four = make_dm(toy_root, tmp_path)
    four.setup("validate")
    torch.testing.assert_close(dm.val_set[1].sum(0), four.val_set[1].sum(0))
    with pytest.raises(DataError, match="overlap"):
        make_dm(toy_root, tmp_path, targets=["vocals", "accompaniment", "bass"])
    with pytest.raises(DataError, match="unknown target"):
        make_dm(toy_root, tmp_path, targets=["voice"])


def test_resampling_and_mono_are_cached_apart(toy_root, tmp_path):
    full = make_dm(toy_root, tmp_path)
    half = make_dm(toy_root, tmp_path, sample_rate=22050, channels=1)
    assert full.cache.dir != half.cache.dir
    a, b = np.asarray(full.arrays("train")[0]), np.asarray(half.arrays("train")[0])
    assert b.shape == (4, 1, a.shape[-1] // 2)
    # a band-limited resampler keeps the energy of these (mostly low-frequency) stems
    np.testing.assert_allclose((b**2).mean(), (a.mean(1) ** 2).mean(), rtol=0.05)
    stereo = np.asarray(make_dm(toy_root, tmp_path, sample_rate=22050).arrays("train")[0])
    assert stereo.shape == (4, 2, a.shape[-1] // 2)
    np.testing.assert_allclose((stereo**2).mean(), (a**2).mean(), rtol=0.05)


# ---- splits and determinism ------------------------------------------------------
def test_seeded_split_is_independent_of_training_seed(toy_root, tmp_path):
    names = [make_dm(toy_root, tmp_path, seed=s).splits()["valid"] for s in (0, 1)]
    assert names[0] == names[1] and len(names[0]) == 1
    train = {t.name for t in make_dm(toy_root, tmp_path).splits()["train"]}
    assert not train & {t.name for t in names[0]} and len(train) == 2


def test_validation_is_deterministic_whatever_the_seed(toy_root, tmp_path):
    sets = []
    for seed in (0, 1):
        dm = make_dm(toy_root, tmp_path, seed=seed)
        dm.setup("validate")
        torch.manual_seed(seed)
        sets.append(torch.cat(list(dm.val_dataloader())))
    torch.testing.assert_close(sets[0], sets[1], rtol=0, atol=0)


def test_training_segments_are_reproducible_and_vary(toy_root, tmp_path):
    dm = make_dm(toy_root, tmp_path)
    dm.setup("fit")
    draws = []
    for torch_seed in (0, 1):
        # torch's global RNG (what a net's initialisation consumes) changes nothing
        torch.manual_seed(torch_seed)
        draws.append(dm.train_set[0])
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    assert not torch.equal(draws[0], dm.train_set[1])  # another position, another window
    other_seed = make_dm(toy_root, tmp_path, seed=1)
    other_seed.setup("fit")
    assert not torch.equal(draws[0], other_seed.train_set[0])


def test_remix_draws_sources_from_different_tracks(tmp_path):
    """Tracks of constant value k/10: an item's sources share a value iff they share a track."""
    for k in range(4):
        write_hq_track(
            tmp_path / "root" / "train" / f"t{k}",
            {s: np.full((4410, 2), (k + 1) / 10) for s in SOURCES},
        )
    for remix in (False, True):
        dm = make_dm(
            tmp_path / "root",
            tmp_path,
            remix=remix,
            segment=0.05,
            segments_per_track=8,
            val_fraction=0.0,
        )
        dm.setup("fit")
        torch.manual_seed(0)
        values = torch.stack([dm.train_set[i][:, 0, 0] for i in range(len(dm.train_set))])
        same_track = (values == values[:, :1]).all(1)
        assert same_track.all() if not remix else same_track.float().mean() < 0.2


# ---- augmentation -------------------------------------------------------------
def test_augmentation_runs_in_training_only_and_keeps_the_mixture_a_sum(toy_root, tmp_path):
    dm = make_dm(toy_root, tmp_path)
    batch = torch.randn(8, 4, 2, 1000)
    # validation and test batches are plain stems: untouched
    assert torch.equal(dm.on_after_batch_transfer(batch.clone(), 0), batch)
    # training batches carry their stream positions, the source of their draws
    augmented = dm.on_after_batch_transfer((batch.clone(), list(range(8))), 0)
    assert dm.last_positions == list(range(8))
    assert augmented.shape == batch.shape and not torch.equal(augmented, batch)
    swapped = flipped = 0
    for ref, out in zip(batch.flatten(0, 1), augmented.flatten(0, 1), strict=True):
        # each source must be g * (maybe swapped) (maybe negated) itself, with g in [0.25, 1.25]
        fits = {}
        for sw in (0, 1):
            base = ref.flip(0) if sw else ref
            gain = (out * base).sum() / (base * base).sum()  # signed: negative = sign flip
            fits[sw, bool(gain < 0)] = (gain, ((out - gain * base) ** 2).sum())
        (sw, fl), (gain, residual) = min(fits.items(), key=lambda kv: kv[1][1])
        assert residual < 1e-6 and 0.25 - 1e-5 <= abs(gain) <= 1.25 + 1e-5
        swapped, flipped = swapped + sw, flipped + fl
    assert 0 < swapped < 32 and 0 < flipped < 32  # both happen, neither always
    # the mixture a net sees is formed after augmentation, so it moves with the stems
    assert not torch.allclose(augmented.sum(1), batch.sum(1))


def test_augmentation_is_seeded_by_data_seed_and_position(toy_root, tmp_path):
    stems = torch.randn(4, 4, 2, 100)
    outs = [make_dm(toy_root, tmp_path, seed=s).augment(stems, [0, 1, 2, 3]) for s in (3, 3, 4)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    later = make_dm(toy_root, tmp_path, seed=3).augment(stems, [4, 5, 6, 7])
    assert not torch.equal(outs[0], later)
    # an item's draws depend on its own position only, not on its batch neighbours
    alone = make_dm(toy_root, tmp_path, seed=3).augment(stems[2:3], [2])
    assert torch.equal(alone[0], outs[0][2])


def test_worker_processes_map_the_cache(toy_root, tmp_path):
    dm = make_dm(toy_root, tmp_path, num_workers=2)
    dm.setup("fit")
    batches = [dm.on_after_batch_transfer(raw, 0) for raw in dm.train_dataloader()]
    assert len(batches) == 2 and all(b.abs().sum() > 0 for b in batches)  # 2 tracks x 4


# ---- cache ------------------------------------------------------------------------
def count_decodes(monkeypatch) -> list:
    calls = []
    original = decode_track

    def counting(track, *args):
        calls.append(track.name)
        return original(track, *args)

    monkeypatch.setattr("datamodules.cache.decode_track", counting)
    return calls


def test_cache_is_built_once_and_reused(toy_root, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    dm = make_dm(toy_root, tmp_path)
    dm.prepare_data()
    assert len(calls) == 4  # every track decoded exactly once
    for _ in range(2):  # two epochs, then a fresh run on the same cache
        dm.setup("fit")
        list(dm.train_dataloader())
    second_run = make_dm(toy_root, tmp_path)
    second_run.prepare_data(), second_run.setup("fit")
    list(second_run.train_dataloader())
    assert len(calls) == 4


@pytest.mark.parametrize("damage", ["truncate", "shape", "key", "sidecar"])
def test_damaged_cache_entry_is_rebuilt(toy_root, tmp_path, monkeypatch, damage):
    dm = make_dm(toy_root, tmp_path)
    track = dm.splits()["train"][0]
    dm.prepare_data()
    array_path, meta_path = dm.cache.paths(track)
    good = np.load(array_path).copy()
    if damage == "truncate":
        array_path.write_bytes(array_path.read_bytes()[:1000])
    elif damage == "shape":
        np.save(array_path, good[:, :, :100])
    elif damage == "key":
        meta_path.write_text(
            meta_path.read_text().replace('"sample_rate": 44100', '"sample_rate": 8000')
        )
    else:
        meta_path.unlink()
    calls = count_decodes(monkeypatch)
    fresh = make_dm(toy_root, tmp_path)
    fresh.prepare_data()
    assert calls == [track.name]
    np.testing.assert_array_equal(np.load(array_path), good)


def test_interrupted_build_leaves_no_trusted_entry(toy_root, tmp_path, monkeypatch):
    dm = make_dm(toy_root, tmp_path)
    track = dm.splits()["train"][0]

    def interrupted_save(f, array):
        f.write(b"\x93NUMPY partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("datamodules.cache.np.save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        dm.cache.build(track)
    array_path, meta_path = dm.cache.paths(track)
    assert not array_path.exists() and not meta_path.exists()
    assert list(array_path.parent.iterdir()) == []  # no temporary file left behind either
    monkeypatch.undo()
    assert dm.cache.load(track) is None


def test_cache_notices_changed_source_files(tmp_path):
    root = tmp_path / "root"
    write_hq_track(root / "train" / "a", noise_stems(0.2, seed=0))
    track = list_tracks(root, "train")[0]
    cache = TrackCache(tmp_path / "cache", root, 44100, 2)
    first = np.array(cache.ensure([track])["a"] and cache.load(track))
    shutil.rmtree(root / "train" / "a")
    write_hq_track(root / "train" / "a", noise_stems(0.3, seed=1))
    assert cache.load(track) is None
    cache.ensure([track], progress=False)
    assert cache.load(track).shape[-1] != first.shape[-1]


# ---- errors --------------------------------------------------------------------------
def test_short_track_is_padded_and_stated(tmp_path, caplog):
    write_hq_track(tmp_path / "root" / "train" / "long", noise_stems(1.0))
    write_hq_track(tmp_path / "root" / "train" / "short", noise_stems(0.1))
    dm = make_dm(tmp_path / "root", tmp_path, segment=0.5, remix=False, val_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "shorter than one segment" in caplog.text and "short" in caplog.text
    item = dm.train_set[4]  # tracks are sorted: items 4..7 come from "short"
    assert item.shape[-1] == dm.segment_samples
    assert item[..., 4410:].abs().max() == 0 and item[..., :4410].abs().max() > 0


def test_cache_dir_not_writable(toy_root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=r"not writable.*ABLATION_CACHE"):
        make_dm(toy_root, tmp_path, cache_dir=str(blocker)).prepare_data()


def test_bad_arguments():
    with pytest.raises(DataError, match="channels must be 1 or 2"):
        MUSDBDataModule(root="x", channels=3)
    with pytest.raises(DataError, match="unknown target set"):
        MUSDBDataModule(root="x", targets="5stems")


# ---- toy dataset --------------------------------------------------------------------
def test_toy_dataset_is_seeded(tmp_path):
    a = make_toy_dataset(tmp_path / "a", n_train=1, n_test=0, duration=1.0, progress=False)
    b = make_toy_dataset(tmp_path / "b", n_train=1, n_test=0, duration=1.0, progress=False)
    c = make_toy_dataset(tmp_path / "c", n_train=1, n_test=0, duration=1.0, seed=1, progress=False)
    read = lambda root: sf.read(next((root / "train").iterdir()) / "vocals.wav")[0]  # noqa: E731
    np.testing.assert_array_equal(read(a), read(b))
    assert not np.array_equal(read(a), read(c))


def test_toy_stems_are_distinct_like_real_stems(toy_root):
    folder = next((toy_root / "train").iterdir())
    stems = {s: sf.read(folder / f"{s}.wav")[0] for s in SOURCES}
    freqs = np.fft.rfftfreq(len(stems["bass"]), 1 / 44100)
    centroid = {
        s: (np.abs(np.fft.rfft(a.mean(1))) * freqs).sum() / np.abs(np.fft.rfft(a.mean(1))).sum()
        for s, a in stems.items()
    }
    assert centroid["bass"] < centroid["other"] < centroid["vocals"]
    # vocals have rests: a good share of 50 ms frames are (near) silent
    frames = (
        (stems["vocals"][: len(stems["vocals"]) // 2205 * 2205] ** 2).reshape(-1, 2205 * 2).mean(1)
    )
    assert (frames < 1e-3 * frames.max()).mean() > 0.1
    # drums are percussive: their envelope peaks far above its median
    envelope = np.abs(stems["drums"]).mean(1)
    assert np.percentile(envelope, 99.5) > 8 * np.median(envelope)
    # every stem is panned differently
    pans = {s: np.sqrt((a[:, 1] ** 2).sum() / (a[:, 0] ** 2).sum()) for s, a in stems.items()}
    assert len({round(p, 2) for p in pans.values()}) == 4
    # and the mixture file is their sum (within 16-bit quantization)
    mixture = sf.read(folder / "mixture.wav")[0]
    np.testing.assert_allclose(mixture, sum(stems.values()), atol=4 / 32768)
