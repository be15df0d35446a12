"""Fast separation metrics for training and quick checks, batched in torch.

These are the whole-segment ("global") figures, one number per item and source
computed over all channels and samples at once, as the SiSEC 2021 Music Demixing
challenge's "new SDR" does. They are cheap enough to run every validation step;
the frame-wise BSS Eval v4 figures of the final evaluation come from museval.

Every function takes ``(..., channels, time)`` tensors and returns ``(...)``:
with stems ``(batch, sources, channels, time)`` the result is ``(batch, sources)``.
Computation is in float32 whatever the input dtype, so bf16 estimates are scored
as precisely as float32 ones.
"""

import torch
from torch import Tensor

# Added to numerator and denominator as in the Music Demixing challenge's SDR, so a
# silent reference with a silent estimate scores 0 dB instead of NaN.
EPS = 1e-7


def _check(estimates: Tensor, references: Tensor) -> None:
    assert estimates.shape == references.shape, (estimates.shape, references.shape)
    if estimates.dim() < 2:
        raise ValueError(
            f"expected (..., channels, time) tensors, got shape {tuple(estimates.shape)}."
        )


def _energy(signal: Tensor) -> Tensor:
    return signal.square().sum(dim=(-2, -1))


def sdr(estimates: Tensor, references: Tensor, eps: float = EPS) -> Tensor:
    """Whole-segment signal-to-distortion ratio in dB.

    ``10 log10((|s|^2 + eps) / (|s - s_hat|^2 + eps))`` with the norms taken over
    channels and time together. Not scale-invariant: a louder or quieter estimate
    of the right signal scores lower.

    Args:
        estimates: ``(..., channels, time)``.
        references: ``(..., channels, time)``, same shape.
        eps: added to both energies.

    Returns:
        ``(...)`` SDR in dB, float32.
    """
    _check(estimates, references)
    estimates, references = estimates.float(), references.float()
    signal = _energy(references) + eps
    distortion = _energy(references - estimates) + eps
    return 10 * torch.log10(signal / distortion)


def si_sdr(estimates: Tensor, references: Tensor, eps: float = EPS) -> Tensor:
    """Scale-invariant SDR in dB (Le Roux et al., 2019), without mean removal.

    The reference is first scaled by the least-squares gain
    ``alpha = <s_hat, s> / <s, s>`` (one gain over all channels of an item, so the
    stereo image must be right too), then ``10 log10(|alpha s|^2 / |alpha s - s_hat|^2)``.
    Audio is close to zero-mean already, so the mean is not removed.

    Args:
        estimates: ``(..., channels, time)``.
        references: ``(..., channels, time)``, same shape.
        eps: keeps silent references and perfect estimates finite.

    Returns:
        ``(...)`` SI-SDR in dB, float32.
    """
    _check(estimates, references)
    estimates, references = estimates.float(), references.float()
    dot = (estimates * references).sum(dim=(-2, -1), keepdim=True)
    alpha = dot / (_energy(references)[..., None, None] + eps)
    target = alpha * references
    return 10 * torch.log10((_energy(target) + eps) / (_energy(target - estimates) + eps))
