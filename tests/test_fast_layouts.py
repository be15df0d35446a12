"""The nets' fast memory layouts compute what the plain layouts compute.

Each optimised layer has a class attribute ``fast_layout``; switched off, it
runs torch's own layer on the plain contiguous layout (the reference). Outputs
must agree to 1e-5 of their scale, and gradients, which sum many more terms
in another order, to 1e-4 of the net's largest gradient (the gradient of a
bias before batch norm is rounding noise around zero, which only that scale
judges), in training and in evaluation mode, and the state-dict keys stay those of the
torch layers, so checkpoints written before still load.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablation.nets import build
from ablation.nets.blocks import fast_layout_classes
from ablation.nets.fast_ops import ELU

RTOL = 1e-5
GRADIENT_RTOL = 1e-4


def run(net: nn.Module, mixture: torch.Tensor, train: bool) -> tuple[torch.Tensor, list]:
    """Estimates and the gradients of every parameter of a fixed loss."""
    net.train(train)
    net.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    estimates = net(mixture)
    weights = torch.linspace(-1, 1, estimates.numel()).reshape(estimates.shape)
    (estimates * weights).sum().backward()
    return estimates.detach(), [p.grad.clone() for p in net.parameters()]


def assert_close(
    fast: torch.Tensor, plain: torch.Tensor, what: str, scale: torch.Tensor, rtol: float
) -> None:
    error = (fast - plain).abs().max() / scale
    assert error <= rtol, f"{what}: max |fast - plain| is {error:.2e} of the scale {scale:.2e}"


def assert_fast_layout_matches(monkeypatch, net: nn.Module, mixture: torch.Tensor) -> None:
    classes = fast_layout_classes(net)
    assert classes, "the net has no layer with a fast layout to compare"
    for train in (True, False):
        fast = run(net, mixture, train)
        with monkeypatch.context() as patch:
            for cls in classes:
                patch.setattr(cls, "fast_layout", False)
            plain = run(net, mixture, train)
        assert_close(fast[0], plain[0], f"estimates (train={train})", plain[0].abs().max(), RTOL)
        largest = max(gradient.abs().max() for gradient in plain[1])
        for index, (a, b) in enumerate(zip(fast[1], plain[1], strict=True)):
            what = f"gradient of parameter {index} (train={train})"
            assert_close(a, b, what, largest, GRADIENT_RTOL)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("wave-unet-m6", {"depth": 3, "filters": 6}),
        ("wave-unet-m6", {"depth": 2, "filters": 4, "downsampling": "strided"}),
        (
            "wave-unet-m6",
            {"depth": 2, "filters": 4, "upsampling": "transposed", "padding": "same"},
        ),
    ],
)
def test_wave_unet_fast_layout_matches_plain_convolutions(monkeypatch, preset, overrides):
    torch.manual_seed(0)
    net = build(preset, **overrides)
    mixture = 0.3 * torch.randn(2, 2, 3001)
    assert_fast_layout_matches(monkeypatch, net, mixture)


def test_fast_layout_keeps_state_dict_keys_and_shapes():
    # The keys and shapes torch's own Conv1d would store (no "conv." nesting, 3-D weights).
    state = build("wave-unet-m6", depth=2, filters=4).state_dict()
    assert state["down_convs.0.weight"].shape == (4, 2, 15)
    assert state["up_convs.0.weight"].shape == (4, 12, 5)
    assert state["output_conv.weight"].shape == (6, 6, 1)
    assert state["bottleneck.bias"].shape == (12,)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("spleeter-4stems", {"depth": 3, "filters": 4, "dropout": 0.0}),
        ("spectrogram-channels", {"depth": 2, "filters": 4, "dropout": 0.0}),
        ("spleeter-2stems", {"depth": 2, "filters": 4, "dropout": 0.0, "input_mode": "complex"}),
    ],
)
def test_spec_unet_fast_layout_matches_plain_layout(monkeypatch, preset, overrides):
    # Dropout is off: its masks are drawn in memory order, so they differ by layout.
    torch.manual_seed(0)
    net = build(preset, n_fft=512, hop_length=128, bins=128, **overrides)
    mixture = 0.3 * torch.randn(2, 2, 31 * 128)
    assert_fast_layout_matches(monkeypatch, net, mixture)


def reference_separate(net, mixture: torch.Tensor) -> torch.Tensor:
    """SpecUNet's estimates as the modules' docstring states them: masks times the kept
    bins of the mixture's STFT, those complex spectrograms zero-padded to every bin, iSTFT."""
    spectrogram = net.stft(mixture)[:, :, : net.bins]
    outputs = net._run_unets(net.input_norm(net._features(spectrogram)))
    b, _, f, n = outputs.shape
    outputs = outputs.reshape(b, net.sources, net.channels, -1, f, n).movedim(3, -1)
    mixture_spectrogram = spectrogram.unsqueeze(1)
    if net.complex_input:
        sources = torch.complex(outputs[..., 0].tanh(), outputs[..., 1].tanh())
        sources = sources * mixture_spectrogram
    else:
        magnitudes = torch.sigmoid(outputs[..., 0]) * mixture_spectrogram.abs()
        power = magnitudes.square()
        masks = (power + 1e-10 / net.sources) / (power.sum(1, keepdim=True) + 1e-10)
        sources = masks * mixture_spectrogram
    padded = torch.zeros(*sources.shape[:3], net.stft.bins, n, dtype=sources.dtype)
    padded[..., : net.bins, :] = sources
    return net.istft(padded, length=mixture.shape[-1])


@pytest.mark.parametrize(
    "overrides",
    [{"preset": "spleeter-4stems"}, {"preset": "spleeter-2stems", "input_mode": "complex"}],
)
@torch.no_grad()
def test_spec_unet_masks_the_whole_spectrum_as_padding_the_masked_bins(overrides):
    overrides = dict(overrides)
    torch.manual_seed(0)
    net = build(
        overrides.pop("preset"),
        depth=2,
        filters=4,
        n_fft=512,
        hop_length=128,
        bins=100,
        **overrides,
    ).eval()
    mixture = 0.3 * torch.randn(2, 2, 31 * 128)
    expected = reference_separate(net, mixture)
    assert_close(net._separate(mixture), expected, "estimates", expected.abs().max(), RTOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_elu_matches_torch_elu_in_value_and_gradient(dtype):
    # Edges: exactly 0, just below it (where exp(x) - 1 rounds), deep negatives, positives.
    edges = torch.tensor([0.0, -1e-8, -1e-4, -0.5, -20.0, -100.0, 1e-8, 3.0], dtype=dtype)
    x = torch.cat([edges, torch.randn(1000, dtype=dtype)]).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    fast, plain = ELU()(x), torch.nn.functional.elu(reference)
    weights = torch.randn_like(plain)
    (fast * weights).sum().backward()
    (plain * weights).sum().backward()
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(fast, plain, atol=eps, rtol=eps)
    torch.testing.assert_close(x.grad, reference.grad, atol=4 * eps, rtol=4 * eps)


def test_fast_elu_gradient_is_exact():
    x = torch.randn(40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ELU(), (x,))


@pytest.mark.parametrize("input_mode", ["magnitude", "complex"])
def test_spec_unet_hands_the_istft_masked_spectra_along_the_bins(input_mode):
    # The fast iSTFT runs only on spectra whose memory runs along the bins.
    geometry = {"n_fft": 512, "hop_length": 128, "bins": 100}
    net = build("spleeter-4stems", depth=2, filters=4, input_mode=input_mode, **geometry)
    seen = []
    net.istft.register_forward_pre_hook(lambda module, args: seen.append(args[0].stride(-2)))
    with torch.no_grad():
        net(0.3 * torch.randn(2, 2, 31 * 128))
    assert seen == [1]
