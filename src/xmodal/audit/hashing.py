"""Image fingerprints for duplicate search: exact pixel hashes, perceptual hashes, blockwise Hamming search.

* **Exact**: SHA-256 of the decoded RGB pixels and the image size, so a PNG and a lossless re-encode of the
  same pixels (or the same image in another container) collide, and nothing else does.
* **pHash** (Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions", 2010; the
  variant of ``imagehash.phash``): greyscale, Lanczos resize to 32×32, 2-D DCT-II, the 8×8 lowest
  frequencies compared with their median → 64 bits. Robust to resizing, JPEG re-encoding and brightness or
  contrast changes. The DCT runs as two matrix products on a whole batch (``C X Cᵀ``), not per image.
* **dHash** (Krawetz, "Kind of like that", 2013; ``imagehash.dhash``): greyscale 9×8, each pixel brighter
  than its left neighbour → 64 bits.

Both perceptual hashes give the same bits as ``imagehash`` (tested). Hashes are packed into one
``uint64`` per image; :func:`hamming_pairs` finds every (a, b) pair within a radius by XOR and popcount
over blocks of rows, so memory is ``block_size × len(b)`` words.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

HASH_SIZE = 8  # 8 × 8 = 64 bits
PHASH_SIZE = 32  # pHash's DCT input is 32 × 32 (HASH_SIZE × highfreq_factor 4)


def pixel_sha256(image: Image.Image) -> str:
    """Hex SHA-256 of an RGB image's size and raw pixel bytes.

    Decode files with :func:`xmodal.data.images.load_image` (transparency over white) first.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def _dct_matrix(n: int) -> np.ndarray:
    """(n, n) unnormalised DCT-II matrix, ``scipy.fftpack.dct``'s: C[k, i] = 2 cos(π k (2i + 1) / 2n)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(PHASH_SIZE)


def grey_thumbnail(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 greyscale thumbnail, Lanczos-resized to ``size`` = (w, h) as imagehash does."""
    return np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


def grey_thumbnails(images: Iterable[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) float64 stack of :func:`grey_thumbnail` (the hashes' input)."""
    rows = [grey_thumbnail(im, size) for im in images]
    return np.stack(rows).astype(np.float64) if rows else np.zeros((0, size[1], size[0]))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, 64) booleans → (N,) uint64, the first bit most significant (imagehash's hex order)."""
    packed = np.packbits(bits.astype(np.uint8), axis=1)  # (N, 8) bytes, big-endian bit order
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def phash_batch(thumbnails: np.ndarray) -> np.ndarray:
    """pHash of (N, 32, 32) greyscale thumbnails → (N,) uint64.

    The 2-D DCT-II is ``C X Cᵀ`` (rows, then columns, as ``dct(dct(x, axis=0), axis=1)``); the low 8×8
    block (DC term included) is thresholded at its own median.
    """
    if thumbnails.shape[1:] != (PHASH_SIZE, PHASH_SIZE):
        raise ValueError(f"pHash needs (N, 32, 32) thumbnails, got {thumbnails.shape}")
    low = _DCT[:HASH_SIZE] @ thumbnails @ _DCT[:HASH_SIZE].T  # (N, 8, 8)
    flat = low.reshape(len(low), -1)  # (N, 64)
    return pack_bits(flat > np.median(flat, axis=1, keepdims=True))


def dhash_batch(thumbnails: np.ndarray) -> np.ndarray:
    """dHash of (N, 8, 9) greyscale thumbnails → (N,) uint64: pixel > its left neighbour, row-major."""
    if thumbnails.shape[1:] != (HASH_SIZE, HASH_SIZE + 1):
        raise ValueError(f"dHash needs (N, 8, 9) thumbnails, got {thumbnails.shape}")
    bits = thumbnails[:, :, 1:] > thumbnails[:, :, :-1]  # (N, 8, 8)
    return pack_bits(bits.reshape(len(bits), -1))


def perceptual_hashes(images: Iterable[Image.Image], kind: str = "phash") -> np.ndarray:
    """(N,) uint64 perceptual hashes of PIL images; ``kind`` is "phash" or "dhash"."""
    if kind == "phash":
        return phash_batch(grey_thumbnails(images, (PHASH_SIZE, PHASH_SIZE)))
    if kind == "dhash":
        return dhash_batch(grey_thumbnails(images, (HASH_SIZE + 1, HASH_SIZE)))
    raise ValueError(f"unknown perceptual hash {kind!r}; expected 'phash' or 'dhash'")


def popcount64(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy ≥ 2.0's ``bitwise_count``; a byte table otherwise)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1)


def hamming_pairs(
    a: np.ndarray, b: np.ndarray, radius: int, *, block_size: int = 1024
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair (i, j) with ``popcount(a[i] XOR b[j]) <= radius``, block by block of ``a``.

    Args:
        a: (N,) uint64 hashes; b: (M,) uint64 hashes.
        radius: the largest Hamming distance kept (0..64).
        block_size: rows of ``a`` per step (memory: ``block_size × M`` words).

    Yields:
        (i (P,), j (P,), distance (P,)) int64 arrays per block, i ascending.
    """
    if not 0 <= radius <= 64:
        raise ValueError(f"Hamming radius must be in 0..64, got {radius}")
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    for start in range(0, len(a), block_size):
        dist = popcount64(a[start : start + block_size, None] ^ b[None, :])  # (blk, M)
        i, j = np.nonzero(dist <= radius)
        yield i + start, j, dist[i, j]


def hamming_pairs_reference(a: np.ndarray, b: np.ndarray, radius: int) -> list[tuple[int, int, int]]:
    """Plain loops over Python ints: the pairs :func:`hamming_pairs` must find, for tests."""
    return [
        (i, j, d)
        for i, x in enumerate(int(v) for v in a)
        for j, y in enumerate(int(v) for v in b)
        if (d := bin(x ^ y).count("1")) <= radius
    ]
