"""What an EMA of the weights costs a training step (``model.ema_decay``).

The same training steps as ``bench train`` (forward, MSE, backward, Adam step on
random 4-stem stereo segments), timed side by side without and with the update that
``lightning_modules.ema.WeightEMA`` makes after every step (torch's ``AveragedModel``
with the foreach EMA, weights and buffers). The ratio is segments/s with EMA over
segments/s without: the share of the budget a cell keeps for training.
"""

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ablation.benchmarks.train import FAMILY_PRESETS, segments_per_second
from ablation.nets import build

DEPTHS = (2, 4, 6)
DECAY = 0.999


def main(quick: bool = False) -> None:
    """Print segments/s without and with the EMA update per family and depth, and the ratio."""
    seconds, warmup, steps = (1.0, 1, 3) if quick else (3.0, 3, 10)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    print(f"device {device}, threads {torch.get_num_threads()}, {steps} timed steps, decay {DECAY}")
    print(f"{'depth':>5} {'family':>6} {'plain seg/s':>12} {'EMA seg/s':>10} {'EMA/plain':>10}")
    for depth in DEPTHS:
        for family, preset in FAMILY_PRESETS.items():
            net = build(preset, depth=depth).to(device)
            plain = segments_per_second(net, seconds, warmup, steps, device)
            average = AveragedModel(
                net, device=device, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(DECAY)
            )
            ema = segments_per_second(
                net, seconds, warmup, steps, device, lambda n=net, a=average: a.update_parameters(n)
            )
            print(
                f"{depth:>5} {family:>6} {plain:>12.2f} {ema:>10.2f} {ema / plain:>10.3f}",
                flush=True,
            )
