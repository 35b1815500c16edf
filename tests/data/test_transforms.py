"""Tests for the torchvision-free transforms: exact values, centre crop, and reproducible augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal.data.transforms import ImagePreprocess, TrainAugment, to_tensor

HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def _noise(h: int = 40, w: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def test_to_tensor_layout_and_scale() -> None:
    img = Image.new("RGB", (3, 2), (255, 0, 51))
    x = to_tensor(img)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 1, 2], torch.tensor([1.0, 0.0, 0.2]))
    assert to_tensor(Image.new("L", (2, 2), 255)).shape == (3, 2, 2)


def test_preprocess_normalises_exactly() -> None:
    pre = ImagePreprocess(size=8, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.2))
    x = pre(Image.new("RGB", (20, 20), (255, 102, 0)))  # (1.0, 0.4, 0.0)
    assert x.shape == (3, 8, 8)
    torch.testing.assert_close(x[:, 4, 4], torch.tensor([1.6, 0.0, -3.0]))


def test_preprocess_centre_crops_without_distortion() -> None:
    # 60×20: red | blue | red in thirds; the centre square is all blue
    img = Image.new("RGB", (60, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    x = ImagePreprocess(size=10, resample="nearest", **HALF)(img)
    torch.testing.assert_close(x, torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1).expand(3, 10, 10))


def test_preprocess_golden_value() -> None:
    x = ImagePreprocess(size=16, **HALF)(_noise())
    assert x.shape == (3, 16, 16)
    assert float(x.mean()) == pytest.approx(0.0047181658, abs=1e-6)
    assert float(x[1, 3, 4]) == pytest.approx(0.3725490570, abs=1e-6)


def test_train_augment_same_seed_same_tensors() -> None:
    aug = TrainAugment(size=16, **HALF)
    runs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(123)
        runs.append(torch.stack([aug(_noise(seed=s), gen) for s in range(4)]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    other = torch.stack([aug(_noise(seed=s), torch.Generator().manual_seed(124)) for s in range(4)])
    assert not torch.equal(runs[0], other)


def test_train_augment_golden_value() -> None:
    x = TrainAugment(size=16, **HALF)(_noise(), torch.Generator().manual_seed(0))
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0.0604489930, abs=1e-6)
    assert float(x[0, 0, 0]) == pytest.approx(0.0512737036, abs=1e-6)


def test_train_augment_resumes_from_generator_state() -> None:
    aug = TrainAugment(size=12, **HALF)
    images = [_noise(seed=s) for s in range(5)]
    gen = torch.Generator().manual_seed(7)
    straight = [aug(img, gen) for img in images]
    gen = torch.Generator().manual_seed(7)
    for img in images[:2]:
        aug(img, gen)
    state = gen.get_state()
    resumed_gen = torch.Generator()
    resumed_gen.set_state(state)
    resumed = [aug(img, resumed_gen) for img in images[2:]]
    for a, b in zip(straight[2:], resumed, strict=True):
        assert torch.equal(a, b)


def test_train_augment_draws_a_fixed_count() -> None:
    gen = torch.Generator().manual_seed(0)
    TrainAugment(size=8, grayscale_p=1.0, **HALF)(_noise(), gen)
    ref = torch.Generator().manual_seed(0)
    torch.rand(TrainAugment.N_RANDOM, generator=ref, dtype=torch.float64)
    assert torch.equal(gen.get_state(), ref.get_state())


def test_no_flip_by_default_and_identity_when_all_off() -> None:
    img = Image.new("RGB", (16, 16), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 4, 16))  # a dark bar on the left: flipping would move it
    plain = TrainAugment(
        size=16, scale=(1.0, 1.0), grayscale_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, **HALF
    )
    x = plain(img, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x, ImagePreprocess(size=16, **HALF)(img))
    assert float(x[:, :, :4].mean()) == pytest.approx(-1.0)
    flipped = TrainAugment(
        size=16,
        scale=(1.0, 1.0),
        grayscale_p=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hflip_p=1.0,
        **HALF,
    )(img, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, x.flip(-1))


def test_grayscale_makes_channels_equal() -> None:
    x = TrainAugment(size=8, grayscale_p=1.0, **HALF)(_noise(), torch.Generator().manual_seed(1))
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_crops_zoom_in() -> None:
    # a small scale zooms into the image: over many draws some crop misses the central dot entirely
    img = Image.new("RGB", (40, 40), (255, 255, 255))
    img.paste((0, 0, 0), (19, 19, 21, 21))
    aug = TrainAugment(
        size=8, scale=(0.1, 0.1), grayscale_p=0.0, brightness=0.0, contrast=0.0, saturation=0.0, **HALF
    )
    gen = torch.Generator().manual_seed(0)
    minima = [float(aug(img, gen).min()) for _ in range(20)]
    assert max(minima) > 0.9 and min(minima) < 0.5


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 0}, {"scale": (0.0, 1.0)}, {"grayscale_p": 1.5}, {"brightness": 1.0}, {"resample": "cubic"}],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrainAugment(**{"size": 8, **HALF, **kwargs})
