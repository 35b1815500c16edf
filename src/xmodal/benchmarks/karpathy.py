"""COCO and Flickr30K captions in Karpathy's split files (``dataset_coco.json``, ``dataset_flickr30k.json``).

The splits of Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image Descriptions",
CVPR 2015 (https://arxiv.org/abs/1412.2306): 5,000 test images for COCO (the "5k test" of CLIP's Table 13)
and 1,000 for Flickr30K, each with about five captions. The file::

    {"dataset": "coco" | "flickr30k",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
                 "split": "train" | "restval" | "val" | "test", "cocoid": 391895, "imgid": 0,
                 "sentids": [...],
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": [...], "imgid": 0,
                                "sentid": 0}, ...]}, ...]}

Flickr30K entries have no ``filepath`` (images sit directly in the image folder) and no ``cocoid``. An
image's file is ``image_root / filepath / filename``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.errors import DataError
from xmodal.eval.captions import load_json

SPLITS = ("train", "restval", "val", "test")


@dataclass(frozen=True)
class KarpathyImage:
    """One image of a Karpathy split file.

    Attributes:
        path: ``image_root / filepath / filename``.
        captions: its raw sentences, in file order.
        image_id: ``cocoid`` for COCO, else ``imgid`` (else the position in the file).
        split: "train", "restval", "val" or "test".
    """

    path: Path
    captions: tuple[str, ...]
    image_id: int | str
    split: str


def _splits(split: str) -> set[str]:
    wanted = {s.strip() for s in split.split("+") if s.strip()}
    unknown = sorted(wanted - set(SPLITS))
    if not wanted or unknown:
        raise DataError(
            f"unknown Karpathy split {split!r}; expected one of {', '.join(SPLITS)} (join with +)"
        )
    return wanted


def read_karpathy(json_path: str | Path, image_root: str | Path, split: str = "test") -> list[KarpathyImage]:
    """The images of one split (``"test"``; ``"train+restval"`` for several) with their captions.

    Args:
        json_path: ``dataset_coco.json`` or ``dataset_flickr30k.json``.
        image_root: the folder the ``filepath``/``filename`` entries are relative to.
        split: a split name, or several joined with ``+``.

    Returns:
        The split's images in file order; every one has at least one caption.

    Raises:
        DataError: unreadable file, missing fields, an image without sentences, or an empty split.
    """
    path = Path(json_path)
    doc: Any = load_json(path, "Karpathy split")
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise DataError(f'{path}: expected a Karpathy split file, an object with an "images" list')
    wanted = _splits(split)
    root = Path(image_root)
    out = []
    for n, entry in enumerate(images):
        if not isinstance(entry, dict) or "filename" not in entry or "split" not in entry:
            raise DataError(f'{path}: image {n} has no "filename" or "split" field')
        if entry["split"] not in wanted:
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise DataError(f"{path}: image {n} ({entry['filename']}) has no sentences")
        captions = []
        for s in sentences:
            if not isinstance(s, dict) or not isinstance(s.get("raw"), str):
                raise DataError(f'{path}: image {n} ({entry["filename"]}) has a sentence without "raw" text')
            captions.append(s["raw"])
        image_id = entry.get("cocoid", entry.get("imgid", n))
        out.append(
            KarpathyImage(
                path=root / str(entry.get("filepath", "")) / str(entry["filename"]),
                captions=tuple(captions),
                image_id=image_id if isinstance(image_id, int | str) else n,
                split=str(entry["split"]),
            )
        )
    if not out:
        raise DataError(f"{path}: no images in split {split!r}")
    return out


def caption_index(images: list[KarpathyImage]) -> tuple[list[str], list[int]]:
    """All captions, flattened, and the index of each caption's image (``text_to_image``)."""
    texts = [c for im in images for c in im.captions]
    index = [i for i, im in enumerate(images) for _ in im.captions]
    return texts, index
