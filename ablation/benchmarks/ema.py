"""What an EMA of the weights costs a training step (``model.ema_decay``).

The training step of ``bench train`` (forward, MSE, backward, Adam step on random
4-stem stereo segments) timed alternately without and with the update that
``lightning_modules.ema.WeightEMA`` makes after every step (torch's ``AveragedModel``
with the foreach EMA, weights and buffers), in CPU seconds of this process. The
ratio is the step with EMA over the step without: what the average costs a budget.
"""

import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ablation.benchmarks.train import BATCH, CHANNELS, SOURCES, train_step
from ablation.nets import build

PRESETS = {"1d": "wave-unet-m6", "2d": "spectrogram-channels"}
DEPTHS = (2, 4, 6)
DECAY = 0.999


def main(quick: bool = False) -> None:
    """Print the step time without and with the EMA update per dimension and depth."""
    seconds, rounds = (1.0, 3) if quick else (3.0, 7)
    torch.manual_seed(0)
    print(f"CPU seconds per step, median of {rounds} alternated rounds, decay {DECAY}")
    print(f"{'depth':>5} {'dim':>6} {'plain s':>9} {'EMA s':>9} {'EMA/plain':>10}")
    for depth in DEPTHS:
        for dimension, preset in PRESETS.items():
            plain, ema = _step_times(build(preset, depth=depth), seconds, rounds)
            print(f"{depth:>5} {dimension:>6} {plain:>9.3f} {ema:>9.3f} {ema / plain:>10.3f}")


def _step_times(net: torch.nn.Module, seconds: float, rounds: int) -> tuple[float, float]:
    region = int(seconds * 44100)
    window = net.valid_lengths(region)[0] if net.dimension == "1d" else region
    mixture = 0.1 * torch.randn(BATCH, CHANNELS, window)
    stems = 0.1 * torch.randn(BATCH, SOURCES, CHANNELS, region)
    step = train_step(net, lambda n: n(mixture)[..., :region], stems)
    average = AveragedModel(net, use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(DECAY))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds + 1):  # the first round warms up
        for with_ema in (False, True):
            start = time.process_time()
            step()
            if with_ema:
                average.update_parameters(net)
            times[with_ema].append(time.process_time() - start)
    return statistics.median(times[False][1:]), statistics.median(times[True][1:])
