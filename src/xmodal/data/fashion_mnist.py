"""Fashion-MNIST: 70,000 28×28 greyscale product photos in 10 balanced classes, read from idx files.

Used by xmodal as a zero-shot classification benchmark for image–text models: class names go through
``PROMPT_TEMPLATES``, and images are inverted to dark-on-white (``to_pil(i, invert=True)``) to match the
emoji domain the models are trained on.

Paper: Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", 2017, https://arxiv.org/abs/1708.07747. Prepare with ``xmodal data prepare fashion-mnist``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from xmodal.errors import DataError
from xmodal.paths import data_dir
from xmodal.registry import DATASETS

# The official labels, in label order.
OFFICIAL_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The same classes, in label order, worded to read well inside a prompt ("a photo of a {}.").
CLASSNAMES = (
    "t-shirt",
    "pair of trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
# CLIP-style zero-shot prompts; a class's text embedding is the mean over these.
PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "an emoji of a {}.",
    "a drawing of a {}.",
    "a black and white photo of a {}.",
)

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Read a gzipped idx file of unsigned bytes with ``ndim`` dimensions (3 for images, 1 for labels).

    Returns:
        uint8 array of the shape in the header: (N, 28, 28) for images, (N,) for labels.

    Raises:
        DataError: unreadable gzip, wrong magic number, or a payload size that does not match the header.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read idx file {path}: {err}") from None
    header = 4 + 4 * ndim  # magic, then one big-endian uint32 per dimension
    magic = 0x00000800 | ndim  # 0x08: unsigned byte data
    if len(raw) < header:
        raise DataError(f"idx file {path} is {len(raw)} bytes, shorter than its {header}-byte header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"idx file {path} has magic number {found:#010x}, expected {magic:#010x}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"idx file {path} is {len(raw)} bytes, expected {expected} for shape {shape} plus header"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


@DATASETS.register("fashion-mnist")
class FashionMNIST:
    """The Fashion-MNIST train (60,000) or test (10,000) split, held in memory.

    Args:
        root: the prepared folder; default ``data_dir("fashion-mnist")``.
        split: "test" (default) or "train".

    Attributes:
        images: uint8 (N, 28, 28), light objects on black as stored.
        labels: int64 (N,), in 0..9, indexing ``CLASSNAMES``.
        classnames: ``CLASSNAMES``.
    """

    classnames = CLASSNAMES
    templates = PROMPT_TEMPLATES

    def __init__(self, root: Path | None = None, *, split: Literal["train", "test"] = "test") -> None:
        if split not in FILES:
            raise DataError(f"unknown fashion-mnist split {split!r}; expected 'train' or 'test'")
        self.root = Path(root) if root is not None else data_dir("fashion-mnist")
        self.split = split
        image_file, label_file = (self.root / name for name in FILES[split])
        for path in (image_file, label_file):
            if not path.is_file():
                raise DataError(
                    f"fashion-mnist file {path} is missing; run `xmodal data prepare fashion-mnist`"
                )
        self.images = read_idx(image_file, ndim=3)
        self.labels = read_idx(label_file, ndim=1).astype(np.int64)
        if self.images.shape[1:] != (28, 28):
            raise DataError(f"fashion-mnist images in {image_file} are {self.images.shape[1:]}, not 28x28")
        if len(self.images) != len(self.labels):
            raise DataError(
                f"fashion-mnist {split}: {len(self.images)} images in {image_file} but "
                f"{len(self.labels)} labels in {label_file}"
            )
        if len(self.labels) and int(self.labels.max()) >= len(CLASSNAMES):
            raise DataError(
                f"fashion-mnist labels in {label_file} go up to {self.labels.max()}, expected 0..9"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def to_pil(self, i: int, invert: bool = True) -> Image.Image:
        """Image ``i`` as a 28×28 RGB PIL image; ``invert`` makes it dark-on-white like emoji."""
        pixels = self.images[i]
        if invert:
            pixels = 255 - pixels
        img = Image.fromarray(np.ascontiguousarray(pixels))  # (28, 28) uint8 → mode "L"
        return img.convert("RGB")

    def load(self, i: int) -> tuple[Image.Image, int]:
        """(inverted RGB image, label) of sample ``i``."""
        return self.to_pil(i), int(self.labels[i])
