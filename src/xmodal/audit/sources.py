"""What a contamination audit compares: a registered dataset split, an image folder, or a JSONL list.

``open_source(spec)`` accepts

* ``NAME:SPLIT`` of a registered dataset (``emoji:train``, ``fashion-mnist:test``): images exactly as the
  dataset's ``load(i)`` returns them (emoji composited over white, Fashion-MNIST inverted), and the caption
  when the dataset has one;
* a folder: every image file below it (sorted), no captions;
* a ``.jsonl`` file: one ``{"image": PATH, "caption": TEXT, ...}`` object per line (``caption`` optional,
  relative paths relative to the file's folder); a row may be kept verbatim in a cleaned list.

Every item has a ``key`` (a stable name used in the pairs file) and a ``record``: the JSON object that a
cleaned training list (``--exclude``) writes for it, itself a valid JSONL source row where the item has an
image file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from xmodal.data.images import load_image
from xmodal.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class AuditItem:
    """One image (and maybe caption) of a source.

    Attributes:
        key: stable name, e.g. ``emoji:train#12``, a file path, or ``list.jsonl:7``.
        caption: the caption, or None.
        record: the JSON object a cleaned list writes for this item.
        image_key: items with equal ``image_key`` share one image (a JSONL list with 5 captions per
            image names its file 5 times); the image is decoded and hashed once.
    """

    key: str
    caption: str | None
    record: dict[str, Any]
    image_key: str


@dataclass
class Source:
    """Items and a way to decode their images.

    Attributes:
        spec: what the user passed.
        items: the items, in source order.
        load: ``load(i)`` → RGB PIL image of item ``i`` (raises ``BadImage`` for a broken file).
    """

    spec: str
    items: list[AuditItem]
    load: Callable[[int], Image.Image] = field(repr=False)

    def __len__(self) -> int:
        return len(self.items)


def _dataset_source(spec: str, name: str, split: str) -> Source:
    import xmodal  # noqa: F401  (registers the datasets)
    from xmodal.registry import DATASETS

    try:
        dataset = DATASETS.get(name)(split=split)
    except TypeError as e:
        raise DataError(f"{spec}: dataset {name!r} cannot be opened by split: {e}") from None
    if not (hasattr(dataset, "load") and hasattr(dataset, "__len__")):
        raise DataError(f"{spec}: dataset {name!r} has no load(i)")
    listed = getattr(dataset, "items", None)
    items = []
    for i in range(len(dataset)):
        entry = listed[i] if isinstance(listed, list) else None
        caption = getattr(entry, "caption", None)
        caption = caption if isinstance(caption, str) else None
        path = getattr(entry, "image_path", None)
        if path is not None:
            record: dict[str, Any] = {"image": str(path), **({"caption": caption} if caption else {})}
        else:
            record = {"dataset": name, "split": split, "index": i}
        items.append(AuditItem(key=f"{name}:{split}#{i}", caption=caption, record=record, image_key=f"#{i}"))
    return Source(spec, items, lambda i: dataset.load(i)[0])


def _folder_source(spec: str, root: Path) -> Source:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{spec}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    items = [AuditItem(key=str(p), caption=None, record={"image": str(p)}, image_key=str(p)) for p in files]
    return Source(spec, items, lambda i: load_image(files[i]))


def _jsonl_source(spec: str, path: Path) -> Source:
    items, files = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            raise DataError(f'{path}:{n}: expected an object with an "image" path')
        caption = row.get("caption")
        if caption is not None and not isinstance(caption, str):
            raise DataError(f"{path}:{n}: caption is not a string")
        image = Path(row["image"])
        image = image if image.is_absolute() else path.parent / image
        files.append(image)
        items.append(AuditItem(key=f"{path.name}:{n}", caption=caption, record=row, image_key=str(image)))
    if not items:
        raise DataError(f"{path}: no rows")
    return Source(spec, items, lambda i: load_image(files[i]))


def open_source(spec: str) -> Source:
    """A :class:`Source` from ``NAME:SPLIT``, a folder, or a ``.jsonl`` file (see the module docstring)."""
    path = Path(spec)
    if path.is_dir():
        return _folder_source(spec, path)
    if path.is_file():
        if path.suffix.lower() != ".jsonl":
            raise DataError(f"{spec}: expected a folder of images, a .jsonl list or NAME:SPLIT")
        return _jsonl_source(spec, path)
    name, sep, split = spec.partition(":")
    if not sep or not name or not split:
        raise DataError(f"{spec}: no such file or folder, and not a registered dataset as NAME:SPLIT")
    import xmodal  # noqa: F401
    from xmodal.registry import DATASETS

    if name not in DATASETS:
        raise DataError(f"{spec}: unknown dataset {name!r} (registered: {', '.join(DATASETS.names())})")
    return _dataset_source(spec, name, split)
