"""The checkpoint contract (ablation.checkpoint): a checkpoint rebuilds its net alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ablation.checkpoint import CheckpointError, checkpoint_step, load_net
from ablation.nets import build

SOURCES = ("drums", "bass", "other", "vocals")


def tiny_net() -> nn.Module:
    return build("wave-unet-m6", depth=2, filters=4)


def write_checkpoint(path: Path, net: nn.Module, **hparams) -> Path:
    """A checkpoint shaped like the ones Lightning writes for our modules."""
    hyper_parameters = {"net_config": net.config, "sources": SOURCES, "sample_rate": 44100}
    hyper_parameters.update(hparams)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"hyper_parameters": hyper_parameters, "state_dict": state}, path)
    return path


def test_load_net_restores_net_weights_and_info(tmp_path):
    net = tiny_net()
    ckpt = write_checkpoint(tmp_path / "net.ckpt", net, segment=1.5)
    loaded = load_net(ckpt)
    assert not loaded.training
    assert loaded.source_names == SOURCES and loaded.sample_rate == 44100
    assert loaded.segment_seconds == 1.5 and loaded.channels == 2
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"RIFF this is not a checkpoint", "not a readable PyTorch checkpoint"),
        ({"state_dict": {}}, "not a checkpoint of this suite"),
        ({"hyper_parameters": {"sources": SOURCES}, "state_dict": {}}, "net_config"),
    ],
)
def test_load_net_explains_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "model.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_net(path)


def test_load_net_rejects_weights_of_another_net(tmp_path):
    ckpt = write_checkpoint(tmp_path / "net.ckpt", tiny_net())
    other = build("wave-unet-m6", depth=3, filters=4)
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["hyper_parameters"]["net_config"] = other.config
    torch.save(checkpoint, ckpt)
    with pytest.raises(CheckpointError, match="does not rebuild"):
        load_net(ckpt)


def test_checkpoint_step_reads_the_saved_step(tmp_path):
    ckpt = write_checkpoint(tmp_path / "net.ckpt", tiny_net())
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["global_step"] = 42
    torch.save(checkpoint, ckpt)
    assert checkpoint_step(ckpt) == 42


def test_a_checkpoint_of_the_old_vocabulary_still_loads(tmp_path):
    """Checkpoints written before 'dimension' named the axis say "family": "wave"/"spec"."""
    for dimension, legacy in (("1d", "wave"), ("2d", "spec")):
        preset = "wave-unet-m6" if dimension == "1d" else "spleeter-4stems"
        net = build(preset, depth=2, filters=4)
        old = {k: v for k, v in net.config.items() if k != "dimension"} | {"family": legacy}
        ckpt = write_checkpoint(tmp_path / f"{legacy}.ckpt", net)
        checkpoint = torch.load(ckpt, weights_only=False)
        checkpoint["hyper_parameters"]["net_config"] = old
        torch.save(checkpoint, ckpt)
        assert load_net(ckpt).dimension == dimension
