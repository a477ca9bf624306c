"""The model zoo: every model's forward pass on its natural input, the registry, input checks,
the windows the loader cuts, and the device-side input pipeline (views, augmentation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from featurestore.cli import main
from featurestore.errors import UserError
from featurestore.presets import preset
from featurestore.spec import FeatureSpec
from trainers.augment import Augment, AugmentConfig
from trainers.inputs import InputConfig, InputPipeline, average_views, valid_segments
from trainers.models import MODELS, build_model, count_parameters
from trainers.windows import Windows

pytest_plugins = ["helpers_trainers"]
pytestmark = pytest.mark.usefixtures("one_thread")

# A small spec: 1 s at 8 kHz, so every model runs in milliseconds.
SMALL = preset("mtat-seed").select(["logmel", "mfcc", "waveform", "handcrafted"], sample_rate=8000, duration=1.0,
                                   n_fft=256, hop=128, n_mels=32, n_mfcc=13, crop_samples=4096, crops=2,
                                   segment_seconds=0.5)
FRAMES, HOP, N_MFCC, CROP = 63, 128, 13, 4096  # SMALL's frames (1 + 8000 // 128), hop, MFCCs, waveform crop


def features(kind: str, spec: FeatureSpec = SMALL):
    """The features an input of `kind` reads in `spec`."""
    return InputConfig(kind).features(spec)


def _example(shape, batch=4):
    if isinstance(shape[0], tuple):
        return tuple(torch.randn(batch, *s) for s in shape)
    return torch.randn(batch, *shape)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_forward_and_backward_on_its_natural_input(name):
    kind = MODELS[name].natural_input
    shape = InputConfig(kind).sample_shape(SMALL)
    torch.manual_seed(0)
    model = build_model(name, features(kind), shape, n_classes=7)
    out = model(_example(shape))
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(_example(shape, batch=1))).all()


@pytest.mark.parametrize("name", ["cnn4", "cnn3", "nnet2", "c2f", "mlp"])
def test_spectrogram_models_adapt_to_the_store_sizes(name):
    for spec in (SMALL, preset("gtzan").replace(duration=1.0)):
        for kind in MODELS[name].inputs:
            if kind == "handcrafted":
                continue
            shape = InputConfig(kind, crop_frames=40).sample_shape(spec)
            assert build_model(name, features(kind, spec), shape, 3)(_example(shape, 2)).shape == (2, 3)


def test_models_refuse_the_wrong_input_kind_with_a_clear_message():
    with pytest.raises(UserError, match=r"nnet1 reads waveform \(or any waveform feature\) input, not logmel"):
        build_model("nnet1", features("logmel"), (1, 32, 63), 5)
    with pytest.raises(UserError, match=r"ffnn reads handcrafted \(or any segments feature\) input, not mfcc"):
        build_model("ffnn", features("mfcc"), (1, 13, 63), 5)
    with pytest.raises(UserError, match="unknown model 'resnet'"):
        build_model("resnet", features("logmel"), (1, 32, 63), 5)
    model = build_model("cnn4", features("logmel"), (1, 32, 63), 5)
    with pytest.raises(UserError, match=r"cnn4 was built for logmel input of shape \(1, 32, 63\).*got \(1, 4096\)"):
        model(torch.randn(2, 1, 4096))
    mixnet = build_model("mixnet", features("waveform+mfcc"), ((1, 4096), (1, 13, 63)), 5)
    with pytest.raises(UserError, match="mixnet was built for waveform\\+mfcc"):
        mixnet(torch.randn(2, 1, 4096))


def test_models_command_lists_every_model_with_input_and_parameter_count(capsys):
    assert main(["models", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    mtat, hand = preset("mtat-seed"), preset("handcrafted")
    for name, info in MODELS.items():
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        spec = hand if info.natural_input == "handcrafted" else mtat
        shape = InputConfig(info.natural_input).sample_shape(spec)
        assert info.natural_input in line
        assert f"{count_parameters(build_model(name, features(info.natural_input, spec), shape, 10)):,}" in line
    assert "(1,80,313)" in out and "(57,)" in out


def _rows(batch: torch.Tensor) -> list[np.ndarray]:
    return list(batch.numpy())


def test_windows_are_exact_slices_centre_and_evenly_spaced():
    x = np.arange(2 * 2 * CROP, dtype=np.float32).reshape(2, 2, CROP)  # (batch, crops, samples): SMALL's waveform
    cut = lambda config, train, rng=None: Windows(SMALL, config)({"waveform": list(x)}, train, rng)["waveform"]  # noqa: E731
    centre = cut(InputConfig("waveform", crop_samples=4), train=False)
    assert centre.shape == (2, 1, 4) and centre.dtype == torch.float32  # the rows' dtype
    # 2 crops x (CROP - 3) positions laid end to end: the centre window is crop 0's last one
    per_crop = CROP - 3
    g = (2 * per_crop - 1) // 2
    assert np.array_equal(centre[:, 0].numpy(), x[:, g // per_crop, g % per_crop:g % per_crop + 4])
    views = cut(InputConfig("waveform", crop_samples=4, eval_crops=3), train=False)
    assert np.array_equal(views[0, 0].numpy(), x[0, 0, 0:4]) and np.array_equal(views[0, 2].numpy(), x[0, 1, -4:])
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = cut(InputConfig("waveform", crop_samples=4), train=True, rng=rng)[:, 0].numpy()
        for b in range(2):
            first = int(w[b, 0])
            assert np.array_equal(w[b], first + np.arange(4)) and first in x[b, :, :per_crop]
    # a spectrogram keeps its band axis and is windowed along time
    spec = np.random.default_rng(1).standard_normal((2, 32, FRAMES)).astype(np.float16)
    window = Windows(SMALL, InputConfig("logmel", crop_frames=6))({"logmel": list(spec)}, False)["logmel"]
    start = (FRAMES - 6) // 2
    assert window.shape == (2, 1, 32, 6) and window.dtype == torch.float16 and np.array_equal(window[:, 0].numpy(), spec[:, :, start:start + 6])


def test_training_windows_are_a_function_of_the_generator():
    spec = np.random.default_rng(1).standard_normal((8, 32, FRAMES)).astype(np.float16)
    windows = Windows(SMALL, InputConfig("logmel", crop_frames=6))
    draw = lambda seed: windows({"logmel": list(spec)}, True, np.random.default_rng(seed))["logmel"]  # noqa: E731
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_pipeline_normalises_with_the_store_stats_and_averages_views():
    cfg = InputConfig("logmel", crop_frames=8, eval_crops=3)
    pipe = InputPipeline(SMALL, cfg)
    mean, std = np.linspace(-50, -10, 32).astype(np.float32), np.linspace(1, 4, 32).astype(np.float32)
    std[0] = 0.0  # a constant band must not divide by zero
    pipe.set_stats({"logmel": (mean, std)})
    raw = torch.randn(2, 32, FRAMES).to(torch.float16) * 10 - 30
    x, w = pipe(Windows(SMALL, cfg)({"logmel": _rows(raw)}, train=False), train=False)
    assert x.shape == (6, 1, 32, 8) and w.shape == (2, 3)
    safe_std = torch.from_numpy(np.where(std > 0, std, 1))
    first = (raw[0, :, :8].float() - torch.from_numpy(mean)[:, None]) / safe_std[:, None]  # the first of 3 views
    assert torch.allclose(x[0, 0], first)
    probs = torch.tensor([[0.1], [0.2], [0.6], [1.0], [1.0], [0.0]])
    assert torch.allclose(average_views(probs, torch.tensor([[1.0, 1, 1], [1, 1, 0]])), torch.tensor([[0.3], [1.0]]))


def test_handcrafted_segments_are_views_of_the_track_and_padding_segments_are_ignored():
    spec = SMALL
    valid = valid_segments(np.array([8000, 3000, 1]), spec.feature("handcrafted"))
    assert valid.tolist() == [[True, True], [True, False], [True, False]]
    pipe = InputPipeline(spec, InputConfig("handcrafted"))
    x, w = pipe({"handcrafted": torch.randn(3, 2, 57), "valid": torch.from_numpy(valid)}, train=False)
    assert x.shape == (6, 57) and w.tolist() == valid.astype(float).tolist()
    flat = InputPipeline(spec, InputConfig("handcrafted", segments=False))
    x, w = flat({"handcrafted": torch.randn(3, 2, 57)}, train=False)
    assert x.shape == (3, 114) and w.shape == (3, 1)


def test_augmentations_follow_their_recipe_and_probability():
    torch.manual_seed(0)
    wave = torch.ones(64, 1, 1000)
    masked = Augment(AugmentConfig(wave_noise_p=0, wave_mask_p=1.0)).waveform(wave)
    zeros = (masked == 0).sum(-1).flatten()
    assert ((zeros >= 100) & (zeros <= 150)).all()  # 10-15 % of the crop
    noisy = Augment(AugmentConfig(wave_noise_p=1.0, wave_mask_p=0)).waveform(torch.zeros(64, 1, 4000))
    amplitude = noisy.std(-1).flatten()
    assert (amplitude > 0.0008).all() and (amplitude < 0.017).all()
    spec = torch.ones(64, 1, 20, 100)
    out = Augment(AugmentConfig(time_mask_p=1.0, freq_mask_p=0, feature_noise_p=0)).spectrogram(spec)
    masked_frames = (out[:, 0] == 0).all(1).sum(-1)
    assert masked_frames.max() <= 30 and masked_frames.float().mean() > 5
    out = Augment(AugmentConfig(time_mask_p=0, freq_mask_p=1.0, feature_noise_p=0)).spectrogram(spec)
    assert (out[:, 0] == 0).all(-1).sum(-1).max() <= 2
    off = Augment(AugmentConfig.off())
    assert torch.equal(off.spectrogram(spec), spec) and torch.equal(off.waveform(wave), wave)
    half = Augment(AugmentConfig(wave_noise_p=0.5, wave_mask_p=0)).waveform(torch.zeros(2000, 1, 10))
    assert 0.4 < (half.abs().sum(-1) > 0).float().mean() < 0.6


@pytest.mark.parametrize("train", [True, False])
def test_aligned_pairs_cut_waveform_and_mfcc_windows_from_the_same_seconds(train):
    """MixNet's two inputs cover the same seconds: the MFCC window starts at the frame nearest the
    waveform window's first sample, in training (random) and evaluation (evenly spaced) alike."""
    starts = SMALL.feature("waveform").starts()  # two 4096-sample crops of the 8000-sample clip
    b = 6
    wave = (torch.as_tensor(starts)[:, None] + torch.arange(CROP)).float().expand(b, -1, -1)
    mfcc = torch.arange(FRAMES).float().expand(b, N_MFCC, -1)  # each value: its frame
    rows = {"waveform": _rows(wave), "mfcc": _rows(mfcc)}
    config = InputConfig("waveform+mfcc", crop_samples=1280, crop_frames=10, eval_crops=1 if train else 4)
    rng = np.random.default_rng(0)
    (w, m), _ = InputPipeline(SMALL, config)(Windows(SMALL, config)(rows, train, rng), train=train)
    first_sample, first_frame = w[:, 0, 0], m[:, 0, 0, 0]
    assert torch.equal(w[:, 0], first_sample[:, None] + torch.arange(1280))  # a contiguous window
    expected = torch.floor((first_sample + HOP / 2) / HOP).clamp(0, FRAMES - 10)
    assert torch.equal(first_frame, expected) and torch.equal(m[:, 0, 0], first_frame[:, None] + torch.arange(10))
    assert len(set(first_sample.tolist())) > 1  # different clips or views, different seconds
    # unaligned (the old behaviour), the two windows are drawn independently
    unaligned = dataclasses.replace(config, aligned=False)
    rng = np.random.default_rng(0)
    (w, m), _ = InputPipeline(SMALL, unaligned)(Windows(SMALL, unaligned)(rows, train, rng), train=train)
    derived = torch.floor((w[:, 0, 0] + HOP / 2) / HOP).clamp(0, FRAMES - 10)
    assert not torch.equal(m[:, 0, 0, 0], derived)


def test_image_input_is_a_square_three_channel_picture_in_unit_range():
    """The YOLO report's input: each spectrogram window resized to S x S, scaled to [0, 1] by its
    own extremes, in three equal channels; c2f reads it."""
    config = InputConfig("logmel", crop_frames=40, image_size=48)
    raw = (torch.randn(3, 32, FRAMES) * 10 - 40).to(torch.float16)
    x, _ = InputPipeline(SMALL, config)(Windows(SMALL, config)({"logmel": _rows(raw)}, train=False), train=False)
    assert x.shape == (3, 3, 48, 48) == (3, *InputConfig("logmel", image_size=48).sample_shape(SMALL))
    flat = x.flatten(1)
    assert torch.allclose(flat.amin(1), torch.zeros(3), atol=1e-6) and torch.allclose(flat.amax(1), torch.ones(3))
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    start = (FRAMES - 40) // 2
    window = raw[:, :, start:start + 40].float()
    resized = torch.nn.functional.interpolate(window[:, None], size=(48, 48), mode="bilinear")[:, 0]
    lo, hi = resized.amin((1, 2), keepdim=True), resized.amax((1, 2), keepdim=True)
    assert torch.allclose(x[:, 0], (resized - lo) / (hi - lo), atol=1e-6)
    model = build_model("c2f", features("logmel"), (3, 48, 48), n_classes=10)
    assert model(x).shape == (3, 10)
    head = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in head] == [256, 128, 64, 10]  # the report's head


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_gives_the_same_output_in_channels_last_layout(name):
    """--channels-last: weights and 4-D inputs change layout, not values."""
    from trainers.runtime import memory_format

    info = MODELS[name]
    shape = (3, 48, 48) if name == "c2f" else InputConfig(info.natural_input).sample_shape(SMALL)
    torch.manual_seed(0)
    model = build_model(name, features(info.natural_input), shape, n_classes=4).eval()
    x = _example(shape)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    assert torch.allclose(model(memory_format(x, True)), expected, atol=1e-5)


def test_a_model_far_from_its_designed_input_size_gets_one_warning_line_with_the_fix():
    """cnn4 on whole 30-s, 128-band GTZAN clips: 21.5 M parameters instead of the 3.5 M it has on
    the MTAT report's input; the line names both counts and the crop that fixes it."""
    from trainers.zoo import size_warning

    gtzan = preset("gtzan")
    whole, cropped = InputConfig("logmel"), InputConfig("logmel", crop_frames=313)
    counts = {i: count_parameters(build_model("cnn4", i.features(gtzan), i.sample_shape(gtzan), 10))
              for i in (whole, cropped)}
    line = size_warning("cnn4", gtzan, whole, 10, counts[whole])
    assert counts[whole] > 20_000_000 and line.startswith(f"warning: cnn4 on logmel (1,128,1292) has {counts[whole]:,}")
    assert "recipe mtat-cnn" in line and line.endswith("--crop-frames 313") and "\n" not in line
    assert size_warning("cnn4", gtzan, cropped, 10, counts[cropped]) is None  # 1.6x: close enough
    mtat = preset("mtat-seed")
    natural = count_parameters(build_model("cnn4", whole.features(mtat), whole.sample_shape(mtat), 10))
    assert size_warning("cnn4", mtat, whole, 10, natural) is None
