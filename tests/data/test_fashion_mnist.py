"""Tests for the Fashion-MNIST reader: idx parsing and validation on small files, and the real test set."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from xmodal.data.fashion_mnist import CLASSNAMES, PROMPT_TEMPLATES, FashionMNIST, read_idx
from xmodal.errors import DataError
from xmodal.registry import DATASETS


def _write_idx(path: Path, array: np.ndarray, magic: int | None = None, extra: bytes = b"") -> None:
    magic = 0x00000800 | array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes() + extra)


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    return tmp_path, images, labels


def test_reads_images_and_labels(small) -> None:
    root, images, labels = small
    ds = FashionMNIST(root, split="test")
    assert len(ds) == 20
    assert ds.images.dtype == np.uint8 and ds.images.shape == (20, 28, 28)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == labels.tolist()
    np.testing.assert_array_equal(ds.images, images)


def test_to_pil_inverts_to_dark_on_white(small) -> None:
    root, images, _ = small
    ds = FashionMNIST(root)
    inverted = np.asarray(ds.to_pil(3))
    assert inverted.shape == (28, 28, 3)
    np.testing.assert_array_equal(inverted[..., 0], 255 - images[3])
    np.testing.assert_array_equal(np.asarray(ds.to_pil(3, invert=False))[..., 2], images[3])
    img, label = ds.load(3)
    assert img.mode == "RGB" and label == 3


def test_bad_magic_is_an_error(tmp_path: Path) -> None:
    _write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)), magic=0x00000801)
    with pytest.raises(DataError, match=r"magic number 0x00000801, expected 0x00000803"):
        read_idx(tmp_path / "x.gz", ndim=3)


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    _write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)), extra=b"\0")
    with pytest.raises(DataError, match=r"1585 bytes, expected 1584"):
        read_idx(tmp_path / "x.gz", ndim=3)


def test_not_gzip_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.gz").write_bytes(b"plain bytes")
    with pytest.raises(DataError, match="cannot read idx file"):
        read_idx(tmp_path / "x.gz", ndim=1)


def test_count_mismatch_and_bad_labels(small) -> None:
    root = small[0]
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", np.arange(19) % 10)
    with pytest.raises(DataError, match=r"20 images .* but 19 labels"):
        FashionMNIST(root)
    _write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(20, 10))
    with pytest.raises(DataError, match=r"expected 0\.\.9"):
        FashionMNIST(root)


def test_missing_files_tell_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run `xmodal data prepare fashion-mnist`"):
        FashionMNIST(tmp_path, split="train")
    with pytest.raises(DataError, match="unknown fashion-mnist split"):
        FashionMNIST(tmp_path, split="val")  # type: ignore[arg-type]


def test_names_and_prompts() -> None:
    assert DATASETS.get("fashion-mnist") is FashionMNIST
    assert len(CLASSNAMES) == 10 and len(set(CLASSNAMES)) == 10
    assert all(name == name.lower() and "/" not in name for name in CLASSNAMES)
    assert len(PROMPT_TEMPLATES) >= 4 and all(t.count("{}") == 1 for t in PROMPT_TEMPLATES)
    assert PROMPT_TEMPLATES[0].format(CLASSNAMES[1]) == "a photo of a pair of trousers."


@pytest.mark.slow
def test_real_test_split_is_balanced(real_fashion_mnist_root: Path) -> None:
    ds = FashionMNIST(real_fashion_mnist_root, split="test")
    assert ds.images.shape == (10_000, 28, 28)
    assert np.bincount(ds.labels, minlength=10).tolist() == [1_000] * 10
    # objects are light on black as stored: the border is background
    assert ds.images[:, 0, 0].mean() < 1 and np.asarray(ds.to_pil(0))[0, 0].tolist() == [255, 255, 255]
