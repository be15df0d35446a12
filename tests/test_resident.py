"""The data paths that keep a GPU fed: the worker path's compact ring and the
device-resident stems give exactly today's batches (DESIGN.md, fairness rule)."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import pytest
import test_fairness
import torch
from lightning.pytorch.callbacks import Callback

from ablation.tracks import DataError
from datamodules import MUSDBDataModule
from datamodules.compact import RingSlot, compact_dtype, decode, exactly_int16
from datamodules.resident import RESIDENT
from lightning_modules.fairness import FairnessRecord

# The fairness tests' cells (a 1d and a 2d net) and DataModule factory (a fixture): a toy
# set of 2 training tracks, 0.5 s loss regions with 0.1 s (4410 samples) of context.
CELLS, SEGMENT, make_dm = test_fairness.CELLS, test_fairness.SEGMENT, test_fairness.make_dm
STEPS = 4


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (``torch.equal`` takes -0.0 for +0.0)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def float_path_batches(dm: MUSDBDataModule, steps: int) -> list[torch.Tensor]:
    """The batches as the loader built them before the compact paths: float32 targets
    summed in the worker, augmented after transfer."""
    size = dm.hparams.batch_size  # one rank: batch k holds stream positions k*size .. +size-1
    parts = [list(range(k * size, (k + 1) * size)) for k in range(steps)]
    return [dm.augment(dm.train_set.__getitems__(part)[0], part) for part in parts]


class BatchCapture(Callback):
    """Whole training batches (context included) as the net sees them, by step."""

    def __init__(self):
        self.batches: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[trainer.global_step] = batch.detach().clone()


def fit(module, dm, root) -> tuple[dict[int, torch.Tensor], str]:
    capture, record = BatchCapture(), FairnessRecord()
    trainer = L.Trainer(
        accelerator="cpu", default_root_dir=root, enable_progress_bar=False,
        enable_model_summary=False, logger=False, enable_checkpointing=False,
        max_steps=STEPS, limit_val_batches=0, callbacks=[capture, record],
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return capture.batches, record.record(module, dm)["data_fingerprint"]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_resident_and_worker_paths_train_on_identical_batches(cell, make_dm, tmp_path):
    """Same seed: the same bytes from the resident stems, from one worker process and
    from the float path of before, with remix and augmentation on; so the same
    data fingerprint."""
    net = CELLS[cell]().net
    need = max(net.context_samples(round(SEGMENT * 44100)), *net.reach_samples())
    runs, dms = {}, {}
    for name, options in {"workers": dict(num_workers=1), "resident": dict(resident=True)}.items():
        dms[name] = dm = make_dm(**options)
        dm.read_at_most(need)  # as the CLI does: each cell's own window
        runs[name] = fit(CELLS[cell](), dm, tmp_path / name)
    assert dms["resident"]._resident is not None and dms["workers"]._resident is None
    assert dms["workers"].compact_dtype() == torch.int16  # the toy set is 16-bit PCM
    (workers, print_w), (resident, print_r) = runs["workers"], runs["resident"]
    before = make_dm()
    before.read_at_most(need)
    before.setup("fit")
    reference = float_path_batches(before, STEPS)
    assert sorted(workers) == sorted(resident) == list(range(STEPS))
    assert reference[0].shape[-1] == round(SEGMENT * 44100) + 2 * need  # the cell's window
    for step in range(STEPS):
        assert same_bytes(workers[step], reference[step]), step
        assert same_bytes(resident[step], reference[step]), step
    assert print_w == print_r is not None
    # the comparison could fail: consecutive batches differ
    assert not torch.equal(reference[0], reference[1])


@pytest.mark.parametrize("rate, dtype", [(44100, torch.int16), (22050, torch.float32)])
def test_paths_agree_on_summed_targets_in_either_compact_form(rate, dtype, make_dm):
    """Accompaniment is a sum of three stems, formed on the device from int16 or, for
    resampled audio that int16 does not hold exactly, from float32: the same bytes."""
    options = dict(sample_rate=rate, targets="2stems", segments_per_track=4)
    worker, resident = make_dm(**options), make_dm(**options, resident=True)
    for dm in (worker, resident):
        dm.setup("fit")
    assert worker.compact_dtype() == dtype
    batches = [
        [dm.on_after_batch_transfer(raw, 0) for raw in dm.train_dataloader()]
        for dm in (worker, resident)
    ]
    reference = float_path_batches(worker, len(batches[0]))
    assert len(batches[0]) == len(batches[1]) == 4 and reference[0].shape[1] == 2
    for ours, theirs, ref in zip(*batches, reference, strict=True):
        assert same_bytes(ours, ref) and same_bytes(theirs, ref)


def test_resident_falls_back_to_workers_in_one_line_when_it_does_not_fit(
    make_dm, monkeypatch, caplog
):
    monkeypatch.setattr("datamodules.resident.available_bytes", lambda device: 1000)
    dm = make_dm(resident=True)
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="datamodules.resident"):
        batches = list(dm.train_dataloader())
    lines = [r.getMessage() for r in caplog.records if r.name == "datamodules.resident"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "needs" in lines[0] and "0.00 GB free" in lines[0] and "falling back" in lines[0]
    assert dm._resident is None and isinstance(batches[0][0], RingSlot)
    # and the resident path is taken when the memory is there
    monkeypatch.undo()
    assert next(iter(dm.train_dataloader()))[0] == RESIDENT


def test_a_batch_read_after_its_slot_was_reused_fails_loudly(make_dm):
    dm = make_dm(segments_per_track=20)
    dm.setup("fit")
    raw = list(dm.train_dataloader())  # never decoded: the ring wraps around
    assert len(raw) > dm._ring.slots
    with pytest.raises(DataError, match="overwritten in loader slot"):
        dm.on_after_batch_transfer(raw[0], 0)
    assert dm.on_after_batch_transfer(raw[-1], 0).dtype == torch.float32


def test_int16_exactness():
    steps = np.arange(-32768, 32768, dtype=np.float32) / 32768
    assert exactly_int16(steps.reshape(1, 1, -1))
    assert exactly_int16(np.array([[[-0.0, 0.0]]], np.float32))
    assert not exactly_int16(np.array([[[1.0]]], np.float32))  # 32768 overflows int16
    assert not exactly_int16(np.array([[[0.5 / 32768]]], np.float32))
    late = np.zeros((1, 1, 3 << 20), np.float32)
    late[..., -1] = 1e-7  # in the last chunk the check reads
    assert not exactly_int16(late)


def test_exactness_verdict_is_remembered_until_the_entry_changes(tmp_path, monkeypatch):
    path = tmp_path / "track.npy"
    np.save(path, np.zeros((4, 2, 10), np.float32))
    calls = []
    monkeypatch.setattr("datamodules.compact.exactly_int16", lambda array: calls.append(1) or True)
    assert compact_dtype([path], progress=False) == torch.int16
    assert compact_dtype([path], progress=False) == torch.int16
    assert len(calls) == 1
    np.save(path, np.full((4, 2, 11), 0.3, np.float32))  # another size: checked again
    monkeypatch.undo()
    assert compact_dtype([path], progress=False) == torch.float32


@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
def test_decode_sums_from_zero_as_the_worker_path_does(dtype):
    values = [[0.0, -0.0, 3.0, -2.0], [-0.0, -0.0, 1.0, 5.0], [-0.0, 0.0, -1.0, 7.0]]
    raw = torch.tensor(values).reshape(1, 3, 1, 4)
    raw = (raw * 1024).to(dtype) if dtype == torch.int16 else raw
    scale = 1024 / 32768 if dtype == torch.int16 else 1.0
    out = decode(raw, [[1], [0, 2]])
    # the worker path: a target of zeros, its stems added one by one, in float32
    stems = np.array(values, np.float32) * np.float32(scale)
    expected = np.stack(
        [np.zeros(4, np.float32) + stems[1], np.zeros(4, np.float32) + stems[0] + stems[2]]
    )
    assert same_bytes(out.reshape(2, 4), torch.from_numpy(expected))
    assert not torch.signbit(out).reshape(-1)[[0, 1, 4, 5]].any()  # -0.0 became +0.0


def test_real_musdb18_travels_as_exact_int16(musdb_sample, tmp_path):
    """The compressed MUSDB18 preview decodes to 16-bit values: int16 carries it, and
    the resident and worker paths cut the same batches from it as the float path."""
    options = dict(
        root=str(musdb_sample), cache_dir=str(tmp_path), segment=1.0, context=0.5,
        batch_size=4, segments_per_track=8, progress=False, val_fraction=0.0,
    )  # fmt: skip
    worker = MUSDBDataModule(num_workers=0, **options)
    resident = MUSDBDataModule(resident=True, **options)
    for dm in (worker, resident):
        dm.setup("fit")
    assert worker.compact_dtype() == torch.int16
    batches = [
        [dm.on_after_batch_transfer(raw, 0) for raw in dm.train_dataloader()]
        for dm in (worker, resident)
    ]
    reference = float_path_batches(worker, len(batches[0]))
    assert len(reference) == 2 and reference[0].abs().max() > 0.01
    for ours, theirs, ref in zip(*batches, reference, strict=True):
        assert same_bytes(ours, ref) and same_bytes(theirs, ref)
