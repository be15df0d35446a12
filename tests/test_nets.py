"""The two U-Net families, their presets and build() (ablation.nets)."""

import itertools
import math

import numpy as np
import pytest
import stempeg
import torch
from torch import nn

from ablation.nets import PRESETS, SpecUNet, UNet2d, WaveUNet, build

WAVE_DEPTHS = range(1, 13)
SPEC_DEPTHS = range(1, 7)
ODD_LENGTH = 4093
# Small STFT for the depth grid: the architecture, not the resolution, is under test.
SMALL_STFT = {"n_fft": 512, "hop_length": 128, "bins": 200}


def stereo(length: int = ODD_LENGTH, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, 2, length, generator=generator)


def assert_trains(
    net: nn.Module, mixture: torch.Tensor, first_layer: nn.Module, silent: bool = False
) -> torch.Tensor:
    """Forward and backward once; check the shape, finiteness and gradients
    (finite only for a silent mixture: a mask or the mixture phase times zero
    rightly gives no gradient)."""
    mixture = mixture.clone().requires_grad_(True)
    estimates = net(mixture)
    expected = (mixture.shape[0], net.sources, mixture.shape[1], mixture.shape[2])
    assert estimates.shape == expected, (estimates.shape, expected)
    assert torch.isfinite(estimates).all()
    estimates.square().mean().backward()
    assert first_layer.weight.grad is not None
    assert silent or first_layer.weight.grad.abs().sum() > 0
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(parameter.grad).all(), f"non-finite gradient in {name}"
    assert torch.isfinite(mixture.grad).all()
    return estimates.detach()


# ---------------------------------------------------------------- depth grid
@pytest.mark.parametrize("depth", WAVE_DEPTHS)
def test_wave_unet_every_depth_trains_and_sums_to_mixture(depth):
    net = build("wave-unet-m6", depth=depth, filters=4)
    mixture = stereo()
    estimates = assert_trains(net, mixture, net.down_convs[0])
    torch.testing.assert_close(estimates.sum(dim=1), mixture, atol=1e-5, rtol=0)


@pytest.mark.parametrize("depth", SPEC_DEPTHS)
@pytest.mark.parametrize(
    ("input_mode", "output"), itertools.product(["magnitude", "complex"], ["mask", "spectrogram"])
)
def test_spec_unet_every_depth_trains(depth, input_mode, output):
    net = build(
        "spectrogram-channels",
        depth=depth,
        filters=2,
        input_mode=input_mode,
        output=output,
        **SMALL_STFT,
    )
    assert_trains(net, stereo(), net.unets[0].encoder[0][0])


def test_receptive_field_grows_with_depth():
    wave = [build("wave-unet-m6", depth=d, filters=1).receptive_field() for d in WAVE_DEPTHS]
    spec = [build("spleeter-2stems", depth=d, filters=1).receptive_field() for d in SPEC_DEPTHS]
    assert all(a < b for a, b in itertools.pairwise(wave)), wave
    assert all(a < b for a, b in itertools.pairwise(spec)), spec


# ------------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PRESETS))
@torch.no_grad()
def test_every_preset_at_full_size_keeps_shape(name):
    net = build(name).eval()
    assert net.channels == 2
    estimates = net(stereo(batch=1))
    assert estimates.shape == (1, net.sources, 2, ODD_LENGTH)
    assert torch.isfinite(estimates).all()


def test_m4_uses_the_papers_input_context():
    # Stoller et al. 2018, section 5: M4 predicts 16389 samples from 147443.
    net = build("wave-unet-m4")
    assert net.valid_lengths(16389) == (147443, 16389)
    assert net.valid_lengths(16000) == (147443, 16389)


def test_build_applies_overrides_and_rebuilds_from_config():
    net = build("wave-unet-m4", depth=3, filters=5, upsampling="learned")
    assert isinstance(net, WaveUNet)
    assert (net.depth, net.sources, net.config["upsampling"]) == (3, 2, "learned")
    twin = build(net.config)
    twin.load_state_dict(net.state_dict())
    mixture = stereo(1001)
    torch.testing.assert_close(twin(mixture), net(mixture))
    spec = build("spleeter-4stems", depth=2, filters=2, **SMALL_STFT)
    assert isinstance(spec, SpecUNet) and len(spec.unets) == 4
    assert build(spec.config).config == spec.config


def test_build_does_not_mutate_presets():
    before = {name: dict(args) for name, args in PRESETS.items()}
    build("wave-unet-m6", depth=2)
    build(PRESETS["spleeter-2stems"], depth=2)
    assert PRESETS == before


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("wave-unet-m5", {}, "valid presets: .*wave-unet-m4"),
        ("wave-unet-m4", {"depht": 3}, "valid arguments: .*'depth'"),
        ({"depth": 3}, {}, "needs 'dimension'"),
        ("wave-unet-m4", {"upsampling": "cubic"}, "upsampling must be one of"),
        ("wave-unet-m4", {"down_kernel": 16}, "down_kernel must be odd"),
        ("wave-unet-m4", {"depth": 0}, "depth must be an integer >= 1"),
        ("wave-unet-m4", {"sources": 1}, "sources >= 2"),
        ("spleeter-2stems", {"bins": 3000}, "bins must be at most .*2049"),
        ("spleeter-2stems", {"input_mode": "phase"}, "input_mode must be one of"),
        ("spleeter-2stems", {"dropout": 1.0}, "dropout must be in"),
        ("spleeter-2stems", {"hop_length": 4096}, "hop_length <= n_fft // 2"),
    ],
)
def test_bad_arguments_raise_clear_errors(preset, overrides, message):
    with pytest.raises(ValueError, match=message):
        build(preset, **overrides)


@pytest.mark.parametrize("name", ["wave-unet-m6", "spectrogram-channels"])
def test_wrong_channel_count_raises_clear_error(name):
    net = build(name, depth=2, filters=2, channels=1)
    with pytest.raises(ValueError, match=r"expects a mixture \(batch, 1, time\)"):
        net(stereo(1001))


# -------------------------------------------------------------- WaveUNet variants
WAVE_VARIANTS = list(
    itertools.product(
        ["decimate", "strided"], ["linear", "learned", "transposed"], ["valid", "same"]
    )
)


@pytest.mark.parametrize(("downsampling", "upsampling", "padding"), WAVE_VARIANTS)
def test_wave_unet_variants_keep_shape_for_any_length(downsampling, upsampling, padding):
    net = WaveUNet(
        depth=3,
        filters=3,
        down_kernel=5,
        up_kernel=3,
        downsampling=downsampling,
        upsampling=upsampling,
        padding=padding,
    )
    for length in (1, 2, ODD_LENGTH):
        mixture = stereo(length)
        estimates = net(mixture)
        assert estimates.shape == (2, 4, 2, length)
        torch.testing.assert_close(estimates.sum(dim=1), mixture, atol=1e-5, rtol=0)
    assert_trains(net, stereo(), net.down_convs[0])


def test_wave_unet_direct_tanh_output_is_bounded_and_mono_works():
    net = WaveUNet(channels=1, depth=2, filters=3, output="direct", output_activation="tanh")
    estimates = net(10 * torch.randn(3, 1, 999))
    assert estimates.shape == (3, 4, 1, 999)
    assert estimates.abs().max() <= 1


@pytest.mark.parametrize(("upsampling", "padding"), [("linear", "valid"), ("transposed", "same")])
def test_wave_receptive_field_matches_gradient_span(upsampling, padding):
    net = WaveUNet(
        sources=1,
        channels=1,
        depth=3,
        filters=2,
        down_kernel=5,
        up_kernel=3,
        upsampling=upsampling,
        downsampling="strided" if upsampling == "transposed" else "decimate",
        padding=padding,
        output="direct",
        output_activation="none",
    ).double()
    assert gradient_span_1d(net, net.receptive_field() * 4, 2**net.depth) == net.receptive_field()


def gradient_span_1d(net: nn.Module, length: int, phases: int) -> int:
    """Largest span of input samples with a non-zero gradient, over ``phases``
    consecutive output samples in the middle (the span repeats with period
    ``2**depth``)."""
    span = 0
    for position in range(length // 2, length // 2 + phases):
        mixture = torch.randn(1, 1, length, dtype=torch.float64, requires_grad=True)
        net(mixture)[0, 0, 0, position].backward()
        touched = mixture.grad[0, 0].nonzero().flatten()
        span = max(span, int(touched.max() - touched.min()) + 1)
    return span


# -------------------------------------------------------------- SpecUNet details
def spectrograms(net: SpecUNet, mixture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixture STFT and the source spectrograms handed to the iSTFT."""
    seen = {}
    hooks = [
        net.stft.register_forward_hook(lambda m, i, o: seen.update(mixture=o)),
        net.istft.register_forward_pre_hook(lambda m, i: seen.update(sources=i[0])),
    ]
    net(mixture)
    for hook in hooks:
        hook.remove()
    return seen["mixture"], seen["sources"]


def test_magnitude_mask_reuses_mixture_phase_and_zeroes_unkept_bins():
    net = build("spleeter-2stems", depth=3, filters=2, **SMALL_STFT)
    mix, sources = spectrograms(net, stereo())
    # The iSTFT takes missing bins as zero: the net may hand it the kept ones only.
    assert sources.shape[:3] == (2, 2, 2) and sources.shape[-2] in (200, 257)
    assert sources.shape[-1] == mix.shape[-1]
    sources = torch.nn.functional.pad(sources, (0, 0, 0, 257 - sources.shape[-2]))
    assert torch.equal(sources[..., 200:, :], torch.zeros_like(sources[..., 200:, :]))
    kept, mix = sources[..., :200, :], mix[:, None, :, :200, :]
    # A real mask in (0, 1): same phase as the mixture, smaller magnitude.
    assert (kept * mix.conj()).imag.abs().max() < 1e-4 * mix.abs().max() ** 2
    assert (kept.abs() <= mix.abs() + 1e-6).all()


def test_complex_mask_changes_the_phase():
    net = build("spleeter-2stems", depth=3, filters=2, input_mode="complex", **SMALL_STFT)
    mix, sources = spectrograms(net, stereo())
    phase_change = (sources[..., :200, :] * mix[:, None, :, :200, :].conj()).angle().abs()
    assert phase_change.max() > 0.1


@pytest.mark.parametrize(
    ("input_mode", "output", "input_norm"),
    [
        ("magnitude", "mask", "batchnorm"),
        ("magnitude", "spectrogram", "affine"),
        ("complex", "mask", "none"),
        ("complex", "spectrogram", "batchnorm"),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_spec_unet_depth_6_stays_bounded_on_random_and_silent_input(
    input_mode, output, input_norm, train
):
    net = build(
        "spectrogram-channels",
        depth=6,
        filters=4,
        input_mode=input_mode,
        output=output,
        input_norm=input_norm,
        **SMALL_STFT,
    ).train(train)
    for mixture in (stereo(), torch.zeros(2, 2, ODD_LENGTH), torch.ones(2, 2, ODD_LENGTH)):
        largest = largest_activation(net, mixture)
        assert largest < 100, largest


def largest_activation(net: nn.Module, mixture: torch.Tensor) -> float:
    """Largest absolute real value any module outputs (and the estimates)."""
    values = []

    def record(module, inputs, output):
        if isinstance(output, torch.Tensor) and not output.is_complex():
            values.append(output.detach().abs().max().item())

    hooks = [module.register_forward_hook(record) for module in net.modules()]
    try:
        estimates = net(mixture)
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.isfinite(estimates).all()
    return max(values)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_silent_mixture_gives_finite_output_and_gradients(name):
    net = build(name, depth=2, filters=2)
    first = next(m for m in net.modules() if _is_conv(m))
    assert_trains(net, torch.zeros(2, 2, 2001), first, silent=True)


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv1d | nn.Conv2d)


def test_input_normalization_is_saved_and_learns_bin_statistics():
    net = build("spleeter-2stems", depth=2, filters=2, **SMALL_STFT)
    keys = net.state_dict().keys()
    assert "input_norm.norm.running_mean" in keys and "input_norm.norm.running_var" in keys
    net.train()(stereo())
    running_mean = net.input_norm.norm.running_mean
    assert running_mean.shape == (2 * 200,)
    assert running_mean.abs().sum() > 0


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_unet2d_receptive_field_matches_gradient_span(depth):
    core = UNet2d(1, 1, depth, filters=2).double().eval()
    # ReLU zeroes gradients at random places; the dependency structure does not
    # depend on it, so probe with a leaky one.
    for level in core.decoder:
        level[1] = nn.LeakyReLU(0.2)
    frames, span = 32 * 2**depth, 0
    for position in range(frames // 2, frames // 2 + 2**depth):
        x = torch.randn(1, 1, 2**depth, frames, dtype=torch.float64, requires_grad=True)
        core(x)[0, 0, 0, position].backward()
        touched = x.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
        span = max(span, int(touched.max() - touched.min()) + 1)
    assert span == core.receptive_field()


def test_spec_unet_mono_and_short_inputs():
    net = build("spectrogram-channels", channels=1, depth=6, filters=2, **SMALL_STFT).eval()
    for length in (1, 100, ODD_LENGTH):
        assert net(torch.randn(1, 1, length)).shape == (1, 4, 1, length)


# ------------------------------------------------------------------ reporting
def test_describe_reports_every_figure():
    for net, family, unit in [
        (build("wave-unet-m6", depth=2, filters=2), "1d", "samples"),
        (build("spleeter-4stems", depth=2, filters=2, **SMALL_STFT), "2d", "frames"),
    ]:
        info = net.describe()
        assert info["dimension"] == family and info["depth"] == 2
        assert info["receptive_field_unit"] == unit
        assert info["parameters"] == sum(p.numel() for p in net.parameters())
        assert info["receptive_field"] == net.receptive_field() > 1
        assert info["receptive_field_samples"] >= info["receptive_field"]
        assert info["macs_per_second"] > 0


def test_wave_macs_match_hand_count():
    channels, filters, down, up, sources, rate = 2, 3, 5, 3, 2, 64
    net = WaveUNet(
        sources=sources,
        channels=channels,
        depth=1,
        filters=filters,
        down_kernel=down,
        up_kernel=up,
        padding="same",
        output="direct",
    )
    expected = (
        channels * filters * down * rate  # down convolution
        + filters * 2 * filters * down * rate // 2  # bottleneck at half rate
        + (2 * filters + filters) * filters * up * rate  # up convolution on the concatenation
        + (filters + channels) * sources * channels * rate  # 1x1 output convolution
    )
    assert net.macs_per_second(sample_rate=rate) == expected


def test_spec_macs_match_hand_count():
    channels, filters, sources = 2, 3, 2
    net = SpecUNet(
        sources=sources,
        channels=channels,
        depth=1,
        filters=filters,
        n_fft=64,
        hop_length=16,
        bins=32,
    )
    rate = 16 * 31  # 32 frames: already a multiple of 2**depth
    out = sources * channels
    expected = (
        channels * filters * 25 * 16 * 16  # strided 5x5 convolution, 16 x 16 outputs
        + filters * out * 25 * 16 * 16  # transposed 5x5 convolution, 16 x 16 inputs
        + out * out * 16 * 32 * 32  # 4x4 head at full size
    )
    assert net.macs_per_second(sample_rate=rate) == expected


# ------------------------------------------------------------ real training
@pytest.fixture(scope="module")
def real_batch(musdb_sample) -> torch.Tensor:
    """Two half-second excerpts of the real MUSDB18 preview: (2, 4, 2, 22050)."""
    track = next((musdb_sample / "train").glob("*.stem.mp4"))
    audio, _ = stempeg.read_stems(str(track), dtype=np.float32)
    stems = torch.from_numpy(audio[1:]).permute(0, 2, 1)  # (sources, channels, time)
    return torch.stack([stems[..., 44100:66150], stems[..., 176400:198450]]).contiguous()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("wave-unet-m6", {"depth": 12, "filters": 4}),
        ("wave-unet-m6", {"depth": 6, "filters": 8}),
        ("spleeter-4stems", {"depth": 6, "filters": 4, **SMALL_STFT}),
        ("spectrogram-channels", {"depth": 6, "filters": 8, **SMALL_STFT}),
        ("spectrogram-channels", {"depth": 6, "filters": 8, "input_mode": "complex", **SMALL_STFT}),
        (
            "spectrogram-channels",
            {"depth": 6, "filters": 8, "input_mode": "complex", "output": "mask", **SMALL_STFT},
        ),
    ],
)
def test_deep_nets_fit_a_real_batch_stably(real_batch, name, overrides):
    torch.manual_seed(0)
    net = build(name, **overrides)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    mixture, losses = real_batch.sum(dim=1), []
    for _ in range(80):
        loss = nn.functional.mse_loss(net(mixture), real_batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(map(math.isfinite, losses)), losses
    # Fell, and well below the loss of estimating silence.
    silence = real_batch.square().mean().item()
    assert losses[-1] < min(0.7 * losses[0], 0.8 * silence), (losses[0], losses[-1], silence)
