"""Training losses on waveforms, one value per source, combinable with weights.

A loss is chosen by one argument (:func:`build_loss`): a name (``"mse"``, ``"l1"``,
``"si-sdr"``, ``"mrstft"``) or a dict of names to coefficients, e.g.
``{"mse": 1.0, "mrstft": 0.1}``. Every term returns one value per source
(averaged over the batch), so the loss is always also reported per source, and
sources can be weighted: explicitly, or ``"balanced"`` (Oh et al., 2018).

``mse`` is the seed study's loss: with equal source weights the total equals
``((estimates - references) ** 2).mean()`` over every element, so its values
compare with the study's Table 1.
"""

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ablation.metrics import si_sdr

# A term maps (estimates, references), both (batch, sources, channels, time),
# to a (sources,) loss averaged over the batch.
Term = Callable[[Tensor, Tensor], Tensor]
BALANCED = "balanced"
EQUAL = "equal"


def mse(estimates: Tensor, references: Tensor) -> Tensor:
    """Mean squared error per source:
    ``(batch, sources, channels, time)`` x 2 -> ``(sources,)``."""
    return (estimates - references).square().mean(dim=(0, 2, 3))


def l1(estimates: Tensor, references: Tensor) -> Tensor:
    """Mean absolute error per source:
    ``(batch, sources, channels, time)`` x 2 -> ``(sources,)``."""
    return (estimates - references).abs().mean(dim=(0, 2, 3))


def negative_si_sdr(estimates: Tensor, references: Tensor) -> Tensor:
    """Negative SI-SDR in dB per source, averaged over the batch:
    ``(batch, sources, channels, time)`` x 2 -> ``(sources,)``."""
    return -si_sdr(estimates, references).mean(dim=0)


class MultiResolutionSTFTLoss:
    """Spectral convergence plus log-magnitude L1, averaged over several STFTs.

    The perceptual regularizer of Parallel WaveGAN (Yamamoto et al., 2020), as in
    auraloss: for each resolution, with ``|X|`` the STFT magnitude of a reference
    and ``|Y|`` of an estimate (Hann window, centred frames, zero edge padding),

    - spectral convergence ``|| |X| - |Y| ||_F / || |X| ||_F``,
    - log-magnitude ``mean | log|X| - log|Y| |``,

    the norms and mean taken per source over batch, channels, bins and frames.
    Magnitudes are ``sqrt(max(power, 1e-7))`` so the log stays finite in silence.
    The default resolutions (hop a quarter of the window) suit 44.1 kHz audio.

    Args:
        fft_sizes: FFT size of each resolution; the window has the same length.
        hop_sizes: hop of each resolution, in samples.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (2048, 1024, 512),
        hop_sizes: Sequence[int] = (512, 256, 128),
    ):
        if len(fft_sizes) != len(hop_sizes) or not fft_sizes:
            raise ValueError(
                f"expected one hop per FFT size, got fft_sizes={list(fft_sizes)} and "
                f"hop_sizes={list(hop_sizes)}."
            )
        self.resolutions = list(zip(fft_sizes, hop_sizes, strict=True))

    @staticmethod
    def magnitude(signal: Tensor, n_fft: int, hop: int) -> Tensor:
        """``(..., time)`` -> ``(..., n_fft // 2 + 1, frames)`` STFT magnitude."""
        window = torch.hann_window(n_fft, device=signal.device, dtype=signal.dtype)
        flat = signal.reshape(-1, signal.shape[-1])
        spec = torch.stft(
            flat,
            n_fft,
            hop,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return power.clamp(min=1e-7).sqrt().reshape(*signal.shape[:-1], *spec.shape[-2:])

    def __call__(self, estimates: Tensor, references: Tensor) -> Tensor:
        """``(batch, sources, channels, time)`` x 2 -> ``(sources,)``."""
        total = estimates.new_zeros(estimates.shape[1])
        dims = (0, 2, 3, 4)
        for n_fft, hop in self.resolutions:
            ref = self.magnitude(references, n_fft, hop)
            est = self.magnitude(estimates, n_fft, hop)
            convergence = (ref - est).square().sum(dims).sqrt() / ref.square().sum(dims).sqrt()
            log_magnitude = (ref.log() - est.log()).abs().mean(dims)
            total = total + convergence + log_magnitude
        return total / len(self.resolutions)


TERMS: dict[str, Term] = {
    "mse": mse,
    "l1": l1,
    "si-sdr": negative_si_sdr,
    "mrstft": MultiResolutionSTFTLoss(),
}


def balanced_weights(references: Tensor, eps: float = 1e-8) -> Tensor:
    """Volume-balancing source weights (after Oh et al., 2018), from one batch.

    Each source is weighted by the inverse of its mean energy (mean square over
    batch, channels and time) in this batch, and the weights are scaled to average
    one, so a quiet source counts as much as a loud one and the total stays on the
    scale of the unweighted loss. No gradient flows through the weights; each is
    at most the number of sources, even for a silent source.

    Args:
        references: ``(batch, sources, channels, time)``.

    Returns:
        ``(sources,)`` weights with mean 1.
    """
    inverse = 1 / (references.detach().float().square().mean(dim=(0, 2, 3)) + eps)
    return inverse / inverse.mean()


def parse_terms(spec: str | Mapping[str, float]) -> dict[str, float]:
    """Turn a loss spec (a name, or names to coefficients) into ``{name: coefficient}``."""
    terms = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    unknown = sorted(set(terms) - set(TERMS))
    if unknown or not terms:
        raise ValueError(
            f"unknown loss {unknown or spec!r}: expected one of {sorted(TERMS)} or a dict of "
            f"them to coefficients, e.g. {{'mse': 1.0, 'mrstft': 0.1}}."
        )
    negative = {name: c for name, c in terms.items() if c < 0}
    if negative:
        raise ValueError(f"loss coefficients must be >= 0, got {negative}.")
    return {name: float(c) for name, c in terms.items()}


class SeparationLoss:
    """A weighted sum of loss terms with per-source weights (build with :func:`build_loss`).

    Calling it with estimates and references ``(batch, sources, channels, time)``
    returns ``(total, per_source)``: ``per_source[name]`` is the source's loss
    before source weighting (so it compares across weightings), and
    ``total = mean over sources of weight[source] * per_source[source]``.
    """

    def __init__(
        self,
        terms: Mapping[str, float],
        sources: Sequence[str],
        weights: Sequence[float] | str | None = None,
    ):
        self.terms = dict(terms)
        self.sources = tuple(sources)
        self.weights = _check_weights(weights, self.sources)

    def source_weights(self, references: Tensor) -> Tensor:
        """``(sources,)`` weights for this batch of references."""
        if self.weights == BALANCED:
            return balanced_weights(references)
        return references.new_tensor(self.weights, dtype=torch.float32)

    def __call__(self, estimates: Tensor, references: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """estimates, references: ``(batch, sources, channels, time)``
        -> ``(total, per_source)``."""
        assert estimates.shape == references.shape, (estimates.shape, references.shape)
        if estimates.shape[1] != len(self.sources):
            raise ValueError(
                f"expected {len(self.sources)} sources {list(self.sources)}, got "
                f"{estimates.shape[1]} in a tensor of shape {tuple(estimates.shape)}."
            )
        # bf16 autocast would lose the small differences a late-training loss is made of.
        estimates, references = estimates.float(), references.float()
        per_source = sum(c * TERMS[name](estimates, references) for name, c in self.terms.items())
        total = (self.source_weights(references) * per_source).mean()
        return total, dict(zip(self.sources, per_source.unbind(), strict=True))


def _check_weights(weights, sources: tuple[str, ...]) -> list[float] | str:
    if weights is None or weights == EQUAL:
        return [1.0] * len(sources)
    if isinstance(weights, str):
        if weights != BALANCED:
            raise ValueError(
                f"unknown source weighting {weights!r}: expected {BALANCED!r}, {EQUAL!r}, a "
                f"list of {len(sources)} numbers (one per source of {list(sources)}), or None."
            )
        return weights
    weights = [float(w) for w in weights]
    if len(weights) != len(sources) or min(weights) < 0:
        raise ValueError(
            f"expected {len(sources)} non-negative source weights for {list(sources)}, "
            f"got {weights}."
        )
    return weights


def build_loss(
    spec: str | Mapping[str, float],
    sources: Sequence[str],
    weights: Sequence[float] | str | None = None,
) -> SeparationLoss:
    """The training loss named by ``spec``.

    Args:
        spec: ``"mse"``, ``"l1"``, ``"si-sdr"`` (negative SI-SDR in dB),
            ``"mrstft"`` (multi-resolution STFT), or a dict of those names to
            coefficients, e.g. ``{"mse": 1.0, "mrstft": 0.1}``.
        sources: names of the sources, in the order of the sources axis.
        weights: per-source weights: ``None`` or ``"equal"`` (all 1), a list with
            one number per source, or ``"balanced"`` (see :func:`balanced_weights`).

    Returns:
        A callable ``(estimates, references) -> (total, {source: loss})``.
    """
    return SeparationLoss(parse_terms(spec), sources, weights)
