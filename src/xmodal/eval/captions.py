"""``xmodal eval captions``: score caption predictions in the COCO formats with pycocoevalcap's metrics.

References use the COCO captions annotation format (``captions_val2014.json``)::

    {"images": [{"id": 42, ...}, ...],
     "annotations": [{"image_id": 42, "caption": "A dog ...", "id": 1}, ...]}

and predictions the COCO results format: ``[{"image_id": 42, "caption": "a dog on a couch"}, ...]``. Every
image listed under ``"images"`` (or, without that list, every image with a caption) is evaluated, in that
order, as pycocoevalcap's ``COCOEvalCap`` evaluates ``coco.getImgIds()``; each needs at least one reference
and exactly one prediction. Problems with the files raise :class:`~xmodal.errors.DataError` with a
one-line message naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from xmodal.errors import DataError
from xmodal.metrics.captions import METRICS, caption_scores
from xmodal.metrics.meteor import meteor_availability
from xmodal.metrics.spice import spice_availability


def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed file is a :class:`DataError` naming it."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} file {path} is not valid JSON: {e}") from None


def _field(item: Any, key: str, path: Path, where: str) -> Any:
    if not isinstance(item, dict) or key not in item:
        raise DataError(f"{path}: {where} has no {key!r} field")
    return item[key]


def read_coco_references(path: str | Path) -> dict[Hashable, list[str]]:
    """``{image_id: [caption, ...]}`` from a COCO captions annotation file, in evaluation order."""
    path = Path(path)
    data = load_json(path, "references")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected a COCO captions file, an object with an 'annotations' list")
    captions: dict[Hashable, list[str]] = {}
    for k, ann in enumerate(data["annotations"]):
        image_id = _field(ann, "image_id", path, f"annotation {k}")
        caption = _field(ann, "caption", path, f"annotation {k}")
        if not isinstance(caption, str):
            raise DataError(f"{path}: annotation {k} (image {image_id!r}) has a caption that is not a string")
        captions.setdefault(image_id, []).append(caption)
    if "images" not in data:
        return captions
    if not isinstance(data["images"], list):
        raise DataError(f"{path}: 'images' is not a list")
    image_ids = [_field(img, "id", path, f"image {k}") for k, img in enumerate(data["images"])]
    bare = [i for i in image_ids if i not in captions]
    if bare:
        shown = ", ".join(repr(i) for i in bare[:5])
        raise DataError(f"{path}: images without reference captions: {shown} ({len(bare)} in all)")
    listed = set(image_ids)
    unlisted = [i for i in captions if i not in listed]
    if unlisted:
        shown = ", ".join(repr(i) for i in unlisted[:5])
        raise DataError(f"{path}: captions of images missing from 'images': {shown} ({len(unlisted)} in all)")
    return {i: captions[i] for i in dict.fromkeys(image_ids)}


def read_coco_predictions(path: str | Path) -> dict[Hashable, str]:
    """``{image_id: caption}`` from a COCO results file (one prediction per image)."""
    path = Path(path)
    data = load_json(path, "predictions")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a COCO results file, a list of {{'image_id', 'caption'}} objects")
    out: dict[Hashable, str] = {}
    for k, item in enumerate(data):
        image_id = _field(item, "image_id", path, f"result {k}")
        caption = _field(item, "caption", path, f"result {k}")
        if not isinstance(caption, str):
            raise DataError(f"{path}: result {k} (image {image_id!r}) has a caption that is not a string")
        if image_id in out:
            raise DataError(f"{path}: image {image_id!r} has more than one predicted caption")
        out[image_id] = caption
    return out


def evaluate_caption_files(
    references: str | Path,
    predictions: str | Path,
    *,
    per_image: bool = False,
    meteor: bool | None = None,
    spice: bool | None = None,
) -> dict[str, Any]:
    """:func:`~xmodal.metrics.captions.caption_scores` of two COCO-format files, plus ``"notes"``.

    Returns the scores, ``"num_images"``, ``"notes"`` (which optional metrics ran and why others did not)
    and, with ``per_image``, ``"per_image"`` keyed by image id.
    """
    refs = read_coco_references(references)
    preds = read_coco_predictions(predictions)
    try:
        scores = caption_scores(refs, preds, per_image=per_image, meteor=meteor, spice=spice)
    except DataError as e:
        raise DataError(f"{references} vs {predictions}: {e}") from None
    scores["num_images"] = len(refs)
    if "METEOR" in scores or meteor is not False:
        meteor_note = meteor_availability()[1]
    else:
        meteor_note = "METEOR not computed: turned off (--no-meteor)"
    if "SPICE" in scores or spice is not False:
        spice_note = spice_availability()[1]
    else:
        spice_note = "SPICE not computed: turned off (--no-spice)"
    scores["notes"] = [meteor_note, spice_note]
    return scores


def format_caption_scores(scores: dict[str, Any]) -> str:
    """A two-column table of the corpus scores (4 decimals), then the notes."""
    names = [m for m in (*METRICS, "METEOR", "SPICE") if m in scores]
    width = max(len(m) for m in names)
    lines = [f"{'metric'.ljust(width)}  score", f"{'-' * width}  ------"]
    lines += [f"{m.ljust(width)}  {scores[m]:.4f}" for m in names]
    lines.append(f"({scores.get('num_images', '?')} images)")
    lines += [f"note: {n}" for n in scores.get("notes", [])]
    return "\n".join(lines)
