"""Issue 21, item 7: evaluation checks the stored mixture against the track's stems, as
training checks the stems: another length, a shift and silence are refused in one line
naming the track (on main each was scored without a word)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ablation.errors import AblationError
from ablation.evaluation import evaluate_checkpoint
from datamodules import make_toy_dataset


def damaged(tmp_path, change) -> str:
    root = make_toy_dataset(tmp_path / "toy", n_train=0, n_test=1, duration=2.0, progress=False)
    track = next((root / "test").iterdir())
    mixture, rate = sf.read(track / "mixture.wav")
    sf.write(track / "mixture.wav", change(mixture), rate, subtype="PCM_16")
    return track.name


@pytest.mark.parametrize(
    "change, found",
    [
        (lambda m: m[:-5000], "its mixture has 83200 samples, its stems 88200"),
        (lambda m: np.concatenate([np.zeros((3000, 2)), m[:-3000]]), "shifted by 3000 samples"),
        (lambda m: np.zeros_like(m), "its mixture is silent (all zeros) and its stems are not"),
    ],
    ids=["short", "shifted", "silent"],
)
def test_evaluation_refuses_a_mixture_that_is_not_its_stems(tmp_path, change, found):
    name = damaged(tmp_path, change)
    with pytest.raises(AblationError) as error:
        evaluate_checkpoint(
            None, str(tmp_path / "toy"), "test", str(tmp_path / "eval"), baseline="mixture",
            jobs=1, wandb_log=False, progress=False,
        )  # fmt: skip
    message = str(error.value)
    assert f"track {name!r}" in message and found in message and "\n" not in message


def test_the_real_compressed_mixture_passes_the_check(musdb_sample):
    from ablation.evaluation.tracks import decode
    from ablation.tracks import list_tracks

    track = decode(list_tracks(musdb_sample, "train")[0])  # coded apart, within the bound
    assert track.mixture.shape == (300032, 2)
