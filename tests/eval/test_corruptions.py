"""Tests for the graded image and text corruptions: identity at 0, monotone, seeded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from xmodal.data.emoji import EmojiDataset
from xmodal.data.prepare import prepare
from xmodal.eval.corruptions import (
    IMAGE_CORRUPTIONS,
    OCCLUSION_AREA,
    TEXT_CORRUPTIONS,
    corrupt_image,
    corrupt_text,
)

CAPTION = "a smiling face with sunglasses and a red party hat, smileys & emotion"


@pytest.fixture(scope="module")
def emoji_images() -> list[Image.Image]:
    ds = EmojiDataset(prepare("emoji"), split="test", variants=False)
    return [ds.load(i)[0] for i in (0, 5, 11)]


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


@pytest.mark.parametrize("corruption", IMAGE_CORRUPTIONS)
def test_severity_zero_is_the_clean_image_and_severity_is_monotone(emoji_images, corruption):
    for i, im in enumerate(emoji_images):
        assert np.array_equal(np.asarray(corrupt_image(im, corruption, 0, index=i)), np.asarray(im))
        d = [distance(corrupt_image(im, corruption, s, seed=0, index=i), im) for s in range(6)]
        assert d[0] == 0.0 and d[1] > 0.0
        assert all(a <= b + 1e-9 for a, b in itertools.pairwise(d)), d
        assert d[5] > d[1]


@pytest.mark.parametrize("corruption", ["gaussian_noise", "occlusion"])
def test_random_corruptions_are_seeded_per_image(emoji_images, corruption):
    im = emoji_images[0]
    a = np.asarray(corrupt_image(im, corruption, 3, seed=1, index=4))
    assert np.array_equal(a, np.asarray(corrupt_image(im, corruption, 3, seed=1, index=4)))
    assert not np.array_equal(a, np.asarray(corrupt_image(im, corruption, 3, seed=2, index=4)))
    assert not np.array_equal(a, np.asarray(corrupt_image(im, corruption, 3, seed=1, index=5)))


def test_occlusion_covers_the_stated_area_with_nested_patches():
    white = Image.new("RGB", (60, 40), (255, 255, 255))
    masks = [np.asarray(corrupt_image(white, "occlusion", s, index=2))[..., 0] == 128 for s in range(1, 6)]
    for mask, area in zip(masks, OCCLUSION_AREA, strict=True):
        assert mask.mean() == pytest.approx(area, abs=0.02)
    for small, large in itertools.pairwise(masks):
        assert (large | ~small).all()  # every occluded pixel stays occluded at the next severity


def test_corruptions_keep_size_and_accept_greyscale():
    grey = Image.new("L", (28, 28), 200)
    for c in IMAGE_CORRUPTIONS:
        out = corrupt_image(grey, c, 5)
        assert out.mode == "RGB" and out.size == (28, 28)
    with pytest.raises(ValueError, match="unknown image corruption"):
        corrupt_image(grey, "snow", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt_image(grey, "jpeg", 6)


@pytest.mark.parametrize("corruption", TEXT_CORRUPTIONS)
def test_text_corruptions(corruption):
    assert corrupt_text(CAPTION, corruption, 0) == CAPTION
    outs = [corrupt_text(CAPTION, corruption, s, seed=0, index=3) for s in range(1, 6)]
    assert outs == [corrupt_text(CAPTION, corruption, s, seed=0, index=3) for s in range(1, 6)]
    assert outs[-1] != CAPTION
    assert outs[-1] != corrupt_text(CAPTION, corruption, 5, seed=1, index=3)
    if corruption == "token_dropout":  # more severe: fewer words on average
        assert len(outs[-1].split()) < len(outs[0].split()) <= len(CAPTION.split())
    with pytest.raises(ValueError, match="unknown text corruption"):
        corrupt_text(CAPTION, "leet", 1)
