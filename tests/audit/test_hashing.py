"""Tests for xmodal.audit.hashing: imagehash parity, blockwise Hamming search vs plain loops, pixel SHA-256.

imagehash is a test-only dependency (``imagehash==4.3.2`` in the ``test`` extra).
"""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from xmodal.audit.hashing import (
    hamming_pairs,
    hamming_pairs_reference,
    perceptual_hashes,
    pixel_sha256,
    popcount64,
)
from xmodal.data.images import load_image, to_rgb


def sample_images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    photos = [Image.fromarray(getattr(skdata, n)()) for n in ("astronaut", "coffee", "chelsea", "camera")]
    noise = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(17, 40), (64, 64)]
    ]
    smooth = np.linspace(0, 255, 48 * 48).reshape(48, 48).astype(np.uint8)
    return [to_rgb(im) for im in [*photos, *noise, Image.fromarray(smooth)]]


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_perceptual_hashes_equal_imagehash(kind):
    images = sample_images()[:-1]  # photos and noise
    ours = perceptual_hashes(images, kind)
    theirs = [int(str(getattr(imagehash, kind)(im)), 16) for im in images]
    assert ours.dtype == np.uint64 and ours.tolist() == theirs


def test_phash_differs_from_imagehash_only_on_rounding_ties():
    """A linear ramp has DCT coefficients that are exactly 0 in theory: both implementations round them to
    tiny values of either sign, so bits whose coefficient equals the median to 1e-9 may differ; no others."""
    from scipy.fftpack import dct

    ramp = sample_images()[-1]
    pixels = np.asarray(ramp.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8].reshape(-1)
    ties = np.abs(low - np.median(low)) < 1e-9 * np.abs(low).max()
    ours = int(perceptual_hashes([ramp])[0])
    theirs = int(str(imagehash.phash(ramp)), 16)
    differing = [k for k in range(64) if (ours ^ theirs) >> (63 - k) & 1]
    assert all(ties[k] for k in differing)


def test_perceptual_hash_is_robust_and_discriminative():
    astronaut, coffee = sample_images()[:2]
    h = perceptual_hashes([astronaut, astronaut.resize((128, 128)), coffee])
    d = popcount64(h[:, None] ^ h[None, :])
    assert d[0, 1] <= 4 and d[0, 2] >= 20


def test_unknown_hash_kind():
    with pytest.raises(ValueError, match="unknown perceptual hash"):
        perceptual_hashes(sample_images()[:1], "ahash")


@pytest.mark.parametrize(("radius", "block_size"), [(0, 3), (5, 7), (20, 1000), (64, 2)])
def test_hamming_pairs_equal_plain_loops(radius, block_size):
    rng = np.random.default_rng(radius)
    base = rng.integers(0, 2**63, 30, dtype=np.uint64)
    # b: copies of some of a with a few bits flipped, plus unrelated hashes
    flips = np.array(
        [sum(1 << int(k) for k in rng.choice(64, n, replace=False)) for n in rng.integers(0, 8, 20)]
    )
    b = np.concatenate([base[:20] ^ flips.astype(np.uint64), rng.integers(0, 2**63, 25, dtype=np.uint64)])
    got = sorted(
        (int(i), int(j), int(d))
        for blk in hamming_pairs(base, b, radius, block_size=block_size)
        for i, j, d in zip(*blk, strict=True)
    )
    assert got == sorted(hamming_pairs_reference(base, b, radius))
    if radius == 5:
        assert len(got) >= 10  # the flipped copies are found


def test_popcount_matches_python():
    x = np.array([0, 1, 2**64 - 1, 0xF0F0, 2**63], dtype=np.uint64)
    assert popcount64(x).tolist() == [bin(int(v)).count("1") for v in x]


def test_pixel_sha256_sees_pixels_not_files(tmp_path):
    im = sample_images()[1]
    im.save(tmp_path / "a.png")
    im.save(tmp_path / "b.png", compress_level=0)
    im.save(tmp_path / "c.bmp")
    digests = {pixel_sha256(load_image(tmp_path / n)) for n in ("a.png", "b.png", "c.bmp")}
    assert len(digests) == 1
    changed = im.copy()
    changed.putpixel((0, 0), (0, 0, 1) if im.getpixel((0, 0)) != (0, 0, 1) else (0, 0, 2))
    assert pixel_sha256(changed) not in digests
    # transparency is composited over white as xmodal decodes: a transparent pixel equals a white one
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (10, 20, 30, 0))
    white = Image.new("RGB", (2, 1), (255, 0, 0))
    white.putpixel((1, 0), (255, 255, 255))
    rgba.save(tmp_path / "t.png")
    assert pixel_sha256(load_image(tmp_path / "t.png")) == pixel_sha256(white)
    # the size is part of the digest: same bytes, other shape
    assert pixel_sha256(Image.new("RGB", (2, 3))) != pixel_sha256(Image.new("RGB", (3, 2)))
