"""The 1-D nets' fast CPU path computes what the plain layers compute.

With every ``fast_layout`` switched off the WaveUNet runs torch's own layers
on the plain contiguous layout: that is the reference. The fast path must give
the same estimates (to 1e-5 of their scale) and the same gradients of the
input and of every parameter (to 1e-4 of the largest, as the sums run in
another order), for every resampling and padding variant the grid uses, and
keep the state-dict keys, so checkpoints written before load. Its own
autograd functions are checked against finite differences in float64.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablation.nets import build, time_major
from ablation.nets.blocks import center_crop, fast_layout_classes, on_cpu_fast

RTOL = 1e-5
GRADIENT_RTOL = 1e-4

# Every padding, downsampling, upsampling and output path the grid can take.
VARIANTS = [
    {},
    {"padding": "same"},
    {"downsampling": "strided", "upsampling": "learned"},
    {"downsampling": "strided", "upsampling": "learned", "padding": "same"},
    {"upsampling": "transposed", "output": "direct", "output_activation": "none"},
    {"upsampling": "transposed", "padding": "same", "growth": "double"},
]


def run(net: nn.Module, mixture: torch.Tensor) -> list[torch.Tensor]:
    """Estimates, then the gradients of the mixture and of every parameter of a fixed loss
    (the WaveUNet has no layer that training mode changes)."""
    net.zero_grad(set_to_none=True)
    mixture = mixture.clone().requires_grad_()
    estimates = net(mixture, context=40)
    weights = torch.linspace(-1, 1, estimates.numel()).reshape(estimates.shape)
    (estimates * weights).sum().backward()
    return [estimates.detach(), mixture.grad, *(p.grad for p in net.parameters())]


@contextmanager
def switched_off(monkeypatch, net: nn.Module):
    """A context in which every fast layout of ``net`` is switched off."""
    classes = fast_layout_classes(net)
    assert classes, "the net has no layer with a fast layout to compare"
    with monkeypatch.context() as patch:
        for cls in classes:
            patch.setattr(cls, "fast_layout", False)
        yield


def assert_within(fast: torch.Tensor, reference: torch.Tensor, scale, rtol: float, what: str):
    error = float((fast - reference).abs().max() / scale)
    assert error <= rtol, f"{what}: max |fast - plain| is {error:.2e} of the scale {scale:.2e}"


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: "-".join(map(str, o.values())))
def test_fast_path_matches_plain_layers(monkeypatch, overrides):
    torch.manual_seed(0)
    net = build("wave-unet-m6", depth=3, filters=6, **overrides)
    mixture = 0.3 * torch.randn(2, 2, 1201)
    fast = run(net, mixture)
    with switched_off(monkeypatch, net):
        reference = run(net, mixture)
    assert fast[0].is_contiguous(), "the estimates must leave the net contiguous"
    assert_within(fast[0], reference[0], reference[0].abs().max(), RTOL, "estimates")
    largest = max(g.abs().max() for g in reference[1:])
    for index, (a, b) in enumerate(zip(fast[1:], reference[1:], strict=True)):
        what = "mixture gradient" if index == 0 else f"gradient of parameter {index - 1}"
        assert_within(a, b, largest, GRADIENT_RTOL, what)


@pytest.mark.parametrize("overrides", VARIANTS[:3], ids=lambda o: "-".join(map(str, o.values())))
@torch.no_grad()
def test_fast_inference_matches_plain_layers(monkeypatch, overrides):
    # Without autograd the fast path activates in place: a different code path.
    torch.manual_seed(0)
    net = build("wave-unet-m6", depth=3, filters=6, **overrides).eval()
    mixture = 0.3 * torch.randn(2, 2, 1201)
    fast = net(mixture)
    with switched_off(monkeypatch, net):
        reference = net(mixture)
    assert_within(fast, reference, reference.abs().max(), RTOL, "estimates")


def test_switching_off_reaches_every_fast_class():
    # The bench's "fast layouts off" row is plain only if each fast class is switched.
    net = build("wave-unet-m6", depth=2, filters=4)
    names = {cls.__name__ for cls in fast_layout_classes(net)}
    assert names == {"WaveUNet", "RowConv1d", "Decimate", "LinearUpsample"}


@pytest.mark.parametrize(
    ("overrides", "extra"),
    [
        ({}, []),
        ({"downsampling": "strided"}, ["downsamplers.0.conv.weight", "downsamplers.0.conv.bias"]),
        ({"upsampling": "learned"}, ["upsamplers.0.logit"]),
        ({"upsampling": "transposed"}, ["upsamplers.0.conv.weight", "upsamplers.0.conv.bias"]),
    ],
)
def test_state_dict_keys_are_those_of_torch_layers(overrides, extra):
    state = build("wave-unet-m6", depth=1, filters=4, **overrides).state_dict()
    convs = ["down_convs.0", "bottleneck", "up_convs.0", "output_conv"]
    expected = {f"{conv}.{name}" for conv in convs for name in ("weight", "bias")}
    assert set(state) == expected | set(extra)
    assert state["up_convs.0.weight"].shape == (4, 12, 5)


def test_fast_path_is_cpu_only():
    layer = build("wave-unet-m6", depth=1, filters=4).down_convs[0]
    assert on_cpu_fast(layer, torch.zeros(1))
    assert not on_cpu_fast(layer, torch.zeros(1, device="meta"))


# ------------------------------------------------------- the custom functions
def strided_input(*shape: int) -> torch.Tensor:
    """A float64 input stored time-major, as the fast path passes them."""
    return torch.randn(shape[0], shape[2], shape[1], dtype=torch.float64).transpose(1, 2)


def is_time_major(x: torch.Tensor) -> bool:
    return x.transpose(1, 2).is_contiguous()


def interpolate(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=2 * x.shape[-1] - 1, mode="linear", align_corners=True)


@pytest.mark.parametrize(
    ("function", "reference", "length"),
    [
        (time_major.interpolate_through, interpolate, 7),
        (time_major.decimate, lambda x: x[..., ::2], 7),
        (time_major.decimate, lambda x: x[..., ::2], 8),
    ],
)
def test_time_major_functions_match_torch_and_their_gradients(function, reference, length):
    torch.manual_seed(0)
    for x in (strided_input(2, 3, length), torch.randn(2, 3, length, dtype=torch.float64)):
        out = function(x)
        assert is_time_major(out)
        torch.testing.assert_close(out, reference(x), rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(function, (x.detach().requires_grad_(),))
        gradient = torch.autograd.grad(function(x.requires_grad_()).sum(), x)[0]
        assert is_time_major(gradient)


def test_cat_cropped_matches_torch_and_its_gradient():
    torch.manual_seed(0)
    a, b = strided_input(2, 3, 5), strided_input(2, 4, 13)
    out = time_major.cat_cropped(a, b)
    assert is_time_major(out)
    torch.testing.assert_close(out, torch.cat([a, center_crop(b, 5)], dim=1), rtol=0, atol=0)
    a.requires_grad_(), b.requires_grad_()
    assert torch.autograd.gradcheck(time_major.cat_cropped, (a, b))
    upstream = strided_input(*out.shape)
    gradients = torch.autograd.grad(time_major.cat_cropped(a, b), (a, b), upstream)
    # a's gradient is a view of the concatenation's: time-major rows.
    assert is_time_major(gradients[1]) and gradients[0].stride(1) == 1


@pytest.mark.parametrize(
    ("kernel", "length", "skip_length"), [(5, 9, 21), (3, 6, 13), (15, 12, 25)]
)
def test_conv_interpolated_is_the_convolution_of_the_concatenation(kernel, length, skip_length):
    torch.manual_seed(0)
    x, skip = strided_input(2, 3, length), strided_input(2, 2, skip_length)
    weight = torch.randn(4, 5, kernel, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    out = time_major.conv_interpolated(x, skip, weight, bias)
    upsampled = interpolate(x)
    expected = F.conv1d(
        torch.cat([upsampled, center_crop(skip, upsampled.shape[-1])], 1), weight, bias
    )
    assert is_time_major(out)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    inputs = [t.requires_grad_() for t in (x, skip, weight, bias)]
    check = functools.partial(
        torch.autograd.gradcheck, time_major.conv_interpolated, fast_mode=True
    )
    assert check(inputs)


def test_cat_cropped_names_a_crop_it_cannot_make():
    with pytest.raises(ValueError, match="cannot centre-crop size 4 to 5"):
        time_major.cat_cropped(torch.zeros(1, 1, 5), torch.zeros(1, 1, 4))


@pytest.mark.parametrize(
    ("kernel", "length", "padding", "gemm"),
    [
        (9, 20, 0, True),
        (9, 26, 0, True),
        (9, 12, 0, True),
        (9, 10, 4, True),
        (5, 9, 0, False),
        (1, 4, 0, False),
    ],
)
def test_row_conv_matches_conv1d_and_its_gradients(kernel, length, padding, gemm):
    # Kernel 9 takes the GEMM weight gradient: outputs a whole number of kernels
    # long (26 - 9 + 1), or not (tail rows, only tail rows), and zero-padded.
    torch.manual_seed(0)
    x = strided_input(2, 3, length).requires_grad_()
    weight = torch.randn(4, 3, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    out = time_major.row_conv(x, weight, bias, padding)
    assert is_time_major(out)
    assert (type(out.grad_fn).__name__ == "_RowConvBackward") == gemm
    torch.testing.assert_close(out, F.conv1d(x, weight, bias, padding=padding))
    # Fast mode (random projections of the Jacobian): torch's float64 convolutions
    # take milliseconds a call, too slow for one call per Jacobian entry.
    check = functools.partial(torch.autograd.gradcheck, time_major.row_conv, fast_mode=True)
    assert check((x, weight, bias, padding))
    assert check((x.detach(), weight, None, padding))


def test_fast_path_trains_under_bf16_autocast(monkeypatch):
    # The sweeps train in bf16-mixed: the fast path must give the plain path's step there too.
    torch.manual_seed(0)
    net = build("wave-unet-m6", depth=3, filters=6)
    mixture = 0.3 * torch.randn(2, 2, 1201)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = run(net, mixture)
        with switched_off(monkeypatch, net):
            reference = run(net, mixture)
    assert_within(fast[0], reference[0], reference[0].abs().max(), 0.03, "bf16 estimates")
    largest = max(g.abs().max() for g in reference[1:])
    for a, b in zip(fast[1:], reference[1:], strict=True):
        assert a.dtype == b.dtype
        assert_within(a, b, largest, 0.03, "bf16 gradient")
