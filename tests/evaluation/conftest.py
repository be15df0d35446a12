"""Shared fixtures of the evaluation tests: toy test sets and evaluations computed once a
session (baseline and checkpoint) that several modules read."""

from __future__ import annotations

from pathlib import Path

import pytest
from evaluation_helpers import evaluate_pair, write_checkpoint

from ablation.evaluation import evaluate_checkpoint
from datamodules import make_toy_dataset


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """Two 2 s test tracks (two BSS Eval frames each) in the MUSDB18-HQ layout."""
    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(root, n_train=0, n_test=2, duration=2.0, seed=3, progress=False)


@pytest.fixture(scope="session")
def toy1(tmp_path_factory) -> Path:
    """One 2 s test track: four-stem scoring costs the most, so it gets one track."""
    root = tmp_path_factory.mktemp("toy1")
    return make_toy_dataset(root, n_train=0, n_test=1, duration=2.0, seed=4, progress=False)


@pytest.fixture(scope="session")
def mixture_eval(toy, tmp_path_factory) -> Path:
    """The mixture baseline on the toy test set, serial, without W&B."""
    return evaluate_pair(toy, tmp_path_factory.mktemp("eval") / "mixture")


@pytest.fixture(scope="session")
def ckpt_eval(toy1, tmp_path_factory) -> Path:
    """A tiny four-stem checkpoint evaluated on one toy track (default output folder), with
    museval itself computing BSS Eval, so that equality with museval can be exact."""
    run = tmp_path_factory.mktemp("runs") / "sweep" / "1d-depth2-seed0"
    ckpt = write_checkpoint(run / "checkpoints" / "last.ckpt")
    return evaluate_checkpoint(
        str(ckpt), str(toy1), metrics="museval", jobs=1, wandb_log=False, progress=False
    )


@pytest.fixture(scope="session")
def four_stem_mixture_eval(toy1, tmp_path_factory) -> Path:
    """The four-stem mixture baseline on one toy track (slow tests only)."""
    out = tmp_path_factory.mktemp("eval") / "four"
    return evaluate_checkpoint(None, str(toy1), baseline="mixture", out=str(out), wandb_log=False)
