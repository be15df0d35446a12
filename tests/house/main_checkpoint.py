"""What a run folder written by the main branch before the command line was reshaped
(commit 2c04a71) holds beside its weights: ``config.yaml`` (paths as ``{root}`` and
``{runs}``), the checkpoint's hyper-parameters and the names of its callback states.
``main_checkpoint.json`` was written at that commit by ``python
tests/house/main_checkpoint.py`` (a 2-step 1d-depth2 run with 4 filters on toy data).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("main_checkpoint.json")


def fit_arguments(runs: Path, root: Path, steps: int) -> list[str]:
    return [
        "fit", "--config", str(REPO / "sweeps" / "demo_base.yaml"), "--cell=1d-depth2",
        "--model.filters=4", "--trainer.max_time=00:00:02:00", f"--data.root={root}",
        f"--run.dir={runs}", "--run.name=run", f"--trainer.max_steps={steps}",
    ]  # fmt: skip


def layout(run: Path, root: Path, runs: Path) -> dict:
    """The parts of a run folder that a reshaped command line must still read."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    config = (run / "config.yaml").read_text()
    return {
        "config.yaml": config.replace(str(root), "{root}").replace(str(runs), "{runs}"),
        "hyper_parameters": json.loads(json.dumps(ckpt["hyper_parameters"], default=str)),
        "callbacks": sorted(ckpt["callbacks"]),
        "keys": sorted(ckpt),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from ablation.cli import main
    from datamodules import make_toy_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(Path(tmp) / "toy", n_train=3, n_test=1, duration=3.0)
        runs = Path(tmp) / "runs"
        main(fit_arguments(runs, root, 2))
        found = layout(runs / "adhoc" / "run", root, runs)
    GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
