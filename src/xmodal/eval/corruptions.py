"""Graded, seeded corruptions of images and texts for robustness evaluation.

Image corruptions follow ImageNet-C (Hendrycks & Dietterich 2019, https://arxiv.org/abs/1903.12261):
five severities of Gaussian noise, Gaussian blur, JPEG compression and an occluding grey patch (as in
Cutout, DeVries & Taylor 2017), applied to the PIL image before the model's preprocessing. Blur and patch
sizes are relative to the image side, so 28 px Fashion-MNIST and 64 px emoji are hurt alike. Text
corruptions (Qiu et al. 2022, https://arxiv.org/abs/2212.08044) drop words, add character typos or
shuffle words, through :mod:`xmodal.text.perturb`.

Severity 0 is the identity for every corruption. Randomness comes from the caller's seed and the item's
index only: the noise field and the patch position of an image are the same at every severity, so a
higher severity moves the image at least as far from the original (noise, patch) as a lower one.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

from xmodal.text.perturb import shuffle_words, token_dropout, typos

SEVERITIES = (1, 2, 3, 4, 5)

NOISE_STD = (0.04, 0.08, 0.12, 0.18, 0.26)
"""Gaussian noise standard deviation, pixel values in [0, 1] (ImageNet-C's levels, first four, shifted)."""
BLUR_STD = (0.01, 0.02, 0.03, 0.045, 0.06)
"""Gaussian blur standard deviation as a fraction of the shorter image side."""
JPEG_QUALITY = (60, 40, 25, 15, 8)
"""PIL JPEG quality (1-95)."""
OCCLUSION_AREA = (0.05, 0.10, 0.20, 0.30, 0.45)
"""Share of the image covered by the grey patch (same aspect ratio as the image)."""
TOKEN_DROPOUT = (0.1, 0.2, 0.3, 0.45, 0.6)
"""Probability of dropping each word."""
TYPO_RATE = (0.02, 0.05, 0.1, 0.15, 0.2)
"""Character edits per letter."""
SHUFFLE_FRACTION = (0.2, 0.4, 0.6, 0.8, 1.0)
"""Share of words moved to other positions."""

IMAGE_CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "jpeg", "occlusion")
TEXT_CORRUPTIONS = ("token_dropout", "typos", "word_shuffle")


def _level(table: tuple[float, ...], severity: int) -> float:
    if not 1 <= severity <= len(table):
        raise ValueError(f"severity must be in 0..{len(table)}, got {severity}")
    return table[severity - 1]


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``'s corruption under ``seed`` (the same at every severity)."""
    return np.random.default_rng([seed, index])


def corrupt_image(
    image: Image.Image, corruption: str, severity: int, *, seed: int = 0, index: int = 0
) -> Image.Image:
    """An RGB copy of ``image`` with ``corruption`` at ``severity`` (0: unchanged, 1-5: graded).

    Args:
        image: a PIL image (any mode; converted to RGB).
        corruption: one of :data:`IMAGE_CORRUPTIONS`.
        severity: 0..5.
        seed, index: the randomness (noise field, patch position) is drawn from ``(seed, index)``.

    Returns:
        A new RGB PIL image of the same size.
    """
    if corruption not in IMAGE_CORRUPTIONS:
        raise ValueError(f"unknown image corruption {corruption!r}; known: {', '.join(IMAGE_CORRUPTIONS)}")
    rgb = image.convert("RGB")
    if severity == 0:
        return rgb.copy()
    w, h = rgb.size
    rng = image_rng(seed, index)
    if corruption == "gaussian_noise":
        x = np.asarray(rgb, dtype=np.float32) / 255.0  # (H, W, 3)
        noise = rng.standard_normal(x.shape, dtype=np.float32)  # (H, W, 3), one field for all severities
        y = np.clip(x + _level(NOISE_STD, severity) * noise, 0.0, 1.0)
        return Image.fromarray(np.rint(y * 255.0).astype(np.uint8))
    if corruption == "gaussian_blur":
        return rgb.filter(ImageFilter.GaussianBlur(_level(BLUR_STD, severity) * min(w, h)))
    if corruption == "jpeg":
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=int(_level(JPEG_QUALITY, severity)))
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert("RGB")
    # occlusion: a grey patch with the image's aspect ratio; its relative position u is drawn once, so the
    # patch of a higher severity contains the patch of a lower one (top = u·(H - h) shrinks as h grows)
    side = _level(OCCLUSION_AREA, severity) ** 0.5
    ph, pw = max(1, round(h * side)), max(1, round(w * side))
    uy, ux = rng.random(2)
    top, left = round(uy * (h - ph)), round(ux * (w - pw))
    arr = np.array(rgb)  # (H, W, 3)
    arr[top : top + ph, left : left + pw] = 128
    return Image.fromarray(arr)


def text_rng(seed: int, index: int, corruption: str) -> random.Random:
    """The generator of text ``index``'s corruption under ``seed`` (the same at every severity)."""
    return random.Random(f"{seed}:{index}:{corruption}")


def corrupt_text(text: str, corruption: str, severity: int, *, seed: int = 0, index: int = 0) -> str:
    """``text`` with ``corruption`` (one of :data:`TEXT_CORRUPTIONS`) at ``severity`` (0: unchanged)."""
    if corruption not in TEXT_CORRUPTIONS:
        raise ValueError(f"unknown text corruption {corruption!r}; known: {', '.join(TEXT_CORRUPTIONS)}")
    if severity == 0:
        return text
    rng = text_rng(seed, index, corruption)
    if corruption == "token_dropout":
        return token_dropout(text, rng, _level(TOKEN_DROPOUT, severity))
    if corruption == "typos":
        return typos(text, rng, _level(TYPO_RATE, severity))
    return shuffle_words(text, rng, _level(SHUFFLE_FRACTION, severity))
