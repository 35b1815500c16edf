"""MMBench-style multiple choice (TSV with base64 images) and CircularEval.

MMBench: Liu et al., "MMBench: Is Your Multi-modal Model an All-around Player?", 2023,
https://arxiv.org/abs/2307.06281. A TSV file with a header row; the columns used here (any order, extra
columns ignored): ``index``, ``question``, ``hint``, ``A`` ``B`` ``C`` ``D`` (``E``... when present),
``answer`` (a letter; absent in test splits), ``category``, ``l2-category``, ``image`` (a base64-encoded
image file, or, as in later MMBench releases, the ``index`` of an earlier row whose image it shares).
Empty cells and pandas' ``nan`` mean "none": an option that is none does not exist.

CircularEval (Section 3.2 of the paper): a question with N options is asked N times, the options rotated
by one position each time (A B C D, then B C D A ...); it counts as solved only when every answer is right.
Vanilla accuracy is the first pass alone.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from xmodal.data.images import to_rgb
from xmodal.errors import DataError

LETTERS = "ABCDEFGHIJ"
REQUIRED = ("index", "question", "A", "B", "image")


def _none(value: str | None) -> bool:
    return value is None or value.strip() == "" or value.strip().lower() == "nan"


@dataclass(frozen=True)
class MMBenchItem:
    """One multiple-choice question.

    Attributes:
        index: the row's ``index``.
        question, hint: texts (hint "" when none).
        options: ``{"A": text, "B": text, ...}``, the existing options in letter order.
        answer: the right letter, or None (test splits).
        category, l2_category: as in the file ("" when absent).
        image_b64: the base64 image; :meth:`image` decodes it.
    """

    index: str
    question: str
    hint: str
    options: dict[str, str]
    answer: str | None
    category: str
    l2_category: str
    image_b64: str = dataclasses.field(repr=False)

    def image(self) -> Image.Image:
        """The decoded image, RGB (transparency over white, as xmodal decodes files)."""
        try:
            raw = base64.b64decode(self.image_b64, validate=False)
            with Image.open(io.BytesIO(raw)) as im:
                im.load()
                return to_rgb(im)
        except (binascii.Error, UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(
                f"MMBench item {self.index}: the image is not a readable base64 image ({e})"
            ) from None


def read_mmbench(tsv: str | Path) -> list[MMBenchItem]:
    """The rows of an MMBench TSV file, in file order (images stay base64 until :meth:`MMBenchItem.image`).

    Raises:
        DataError: a missing column, a row with fewer than two options, an answer that names no option, a
            duplicate index, or an image reference to an unknown index.
    """
    path = Path(tsv)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images are long cells
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        raise DataError(f"MMBench file {path} does not exist") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable TSV file ({e})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    columns = set(rows[0])
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    images: dict[str, str] = {}
    items = []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        index = (row["index"] or "").strip()
        if index in images:
            raise DataError(f"{path}:{n}: index {index!r} appears twice")
        image = (row["image"] or "").strip()
        if len(image) <= 64 and image in images:  # a reference to an earlier row's image
            image = images[image]
        elif len(image) <= 64:
            raise DataError(f"{path}:{n}: image is neither base64 data nor the index of an earlier row")
        images[index] = image
        options = {}
        for letter in LETTERS:
            if letter not in columns or _none(row[letter]):
                break
            options[letter] = row[letter].strip()
        if len(options) < 2:
            raise DataError(f"{path}:{n}: fewer than two options")
        answer = None if _none(row.get("answer")) else str(row["answer"]).strip()
        if answer is not None and answer not in options:
            raise DataError(f"{path}:{n}: answer {answer!r} is not one of the options {', '.join(options)}")
        items.append(
            MMBenchItem(
                index=index,
                question=(row["question"] or "").strip(),
                hint="" if _none(row.get("hint")) else str(row["hint"]).strip(),
                options=options,
                answer=answer,
                category="" if _none(row.get("category")) else str(row["category"]),
                l2_category="" if _none(row.get("l2-category")) else str(row["l2-category"]),
                image_b64=image,
            )
        )
    return items


def rotate(item: MMBenchItem, shift: int) -> MMBenchItem:
    """The item with its options rotated by ``shift``: option k gets the text of option (k + shift) mod N."""
    letters = list(item.options)
    texts = [item.options[letters[(k + shift) % len(letters)]] for k in range(len(letters))]
    answer = None
    if item.answer is not None:
        answer = letters[(letters.index(item.answer) - shift) % len(letters)]
    return dataclasses.replace(item, options=dict(zip(letters, texts, strict=True)), answer=answer)


def circular_eval(predict_fn: Callable[[MMBenchItem], str], items: Sequence[MMBenchItem]) -> dict[str, Any]:
    """Vanilla and CircularEval accuracy of ``predict_fn`` (an item → the letter it picks).

    Returns:
        ``{"n", "vanilla", "circular", "per_category": {cat: {"n", "vanilla", "circular"}},
        "per_l2_category": {...}, "predictions": [{"index", "answer", "picked": [original letters, one per
        rotation], "vanilla", "circular"}]}``; accuracies in [0, 1].
    """
    if not items:
        raise DataError("no MMBench items to evaluate")
    records = []
    for item in items:
        if item.answer is None:
            raise DataError(f"MMBench item {item.index} has no answer (a test split cannot be scored here)")
        letters = list(item.options)
        picked = []
        for shift in range(len(letters)):
            choice = predict_fn(rotate(item, shift))
            if choice not in letters:
                raise ValueError(
                    f"predict_fn returned {choice!r} for item {item.index}; options are {letters}"
                )
            picked.append(letters[(letters.index(choice) + shift) % len(letters)])  # back to original letters
        right = [p == item.answer for p in picked]
        records.append(
            {
                "index": item.index,
                "answer": item.answer,
                "picked": picked,
                "vanilla": right[0],
                "circular": all(right),
            }
        )

    def accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(rows)
        return {
            "n": n,
            "vanilla": sum(r["vanilla"] for r in rows) / n,
            "circular": sum(r["circular"] for r in rows) / n,
        }

    def grouped(key: str) -> dict[str, Any]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for item, rec in zip(items, records, strict=True):
            groups.setdefault(getattr(item, key) or "(none)", []).append(rec)
        return {k: accuracy(v) for k, v in sorted(groups.items())}

    return {
        **accuracy(records),
        "per_category": grouped("category"),
        "per_l2_category": grouped("l2_category"),
        "predictions": records,
    }
