"""Winoground (Thrush et al. 2022, https://arxiv.org/abs/2204.03162): visio-linguistic compositionality.

Each example holds two images and two captions made of the same words in a different order ("a mug in
some grass" / "some grass in a mug"); caption j describes image j. With s(c, i) any scorer's score:

* text score: s(c0, i0) > s(c1, i0) and s(c1, i1) > s(c0, i1) (each image picks its caption);
* image score: s(c0, i0) > s(c0, i1) and s(c1, i1) > s(c1, i0) (each caption picks its image);
* group score: both.

Comparisons are strict, so a scorer that gives every pair the same score gets 0 (the paper's rule), and
random chance is 25% / 25% / 16.7%. Scores are reported overall and per tag (``tag``, ``secondary_tag``,
``collapsed_tag``, ``num_main_preds``).

The reader takes the official layout: ``examples.jsonl`` (one JSON object per line with ``id``,
``image_0``, ``image_1``, ``caption_0``, ``caption_1``, ``tag``, ``secondary_tag``, ``num_main_preds``,
``collapsed_tag``) beside ``images/{image_0}.png``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmodal.data.images import BadImage, check_image, load_image
from xmodal.errors import DataError
from xmodal.eval.scorers import Scorer

REQUIRED_FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1")
TAG_FIELDS = ("tag", "secondary_tag", "collapsed_tag", "num_main_preds")


@dataclass(frozen=True)
class WinogroundExample:
    """One Winoground example: caption j describes image j.

    Attributes:
        id: the example id; image_0, image_1: image files; caption_0, caption_1: the captions.
        tag, secondary_tag, collapsed_tag: the linguistic tags ("Object", "Relation", "Both"; "Symbolic",
            "Pragmatics", "Series" or ""); num_main_preds: main predicates (1 or 2).
    """

    id: int | str
    image_0: Path
    image_1: Path
    caption_0: str
    caption_1: str
    tag: str = ""
    secondary_tag: str = ""
    collapsed_tag: str = ""
    num_main_preds: int | str = ""


def read_winoground(path: str | Path, *, image_ext: str = ".png") -> list[WinogroundExample]:
    """Reads Winoground in its official layout.

    Args:
        path: the folder holding ``examples.jsonl`` and ``images/``, or the ``examples.jsonl`` file.
        image_ext: the image files' extension.

    Returns:
        The examples in file order.

    Raises:
        DataError: a missing file, a line that is not a JSON object with the required fields, or an
            unreadable image (named with its line number).
    """
    p = Path(path)
    jsonl = p / "examples.jsonl" if p.is_dir() else p
    if not jsonl.is_file():
        raise DataError(f"Winoground examples file {jsonl} not found (expected DIR/examples.jsonl)")
    image_dir = jsonl.parent / "images"
    examples: list[WinogroundExample] = []
    for lineno, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{jsonl}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{jsonl}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [f for f in REQUIRED_FIELDS if f not in rec]
        if missing:
            raise DataError(f"{jsonl}:{lineno}: missing field(s) {', '.join(missing)}")
        images = []
        for key in ("image_0", "image_1"):
            file = image_dir / f"{rec[key]}{image_ext}"
            try:
                check_image(file)
            except BadImage as bad:
                raise DataError(f"{jsonl}:{lineno}: {key} {file}: {bad.reason}") from None
            images.append(file)
        examples.append(
            WinogroundExample(
                id=rec["id"],
                image_0=images[0],
                image_1=images[1],
                caption_0=str(rec["caption_0"]),
                caption_1=str(rec["caption_1"]),
                **{f: rec.get(f) or "" for f in TAG_FIELDS},
            )
        )
    if not examples:
        raise DataError(f"{jsonl} holds no examples")
    return examples


def _rates(text: Tensor, image: Tensor) -> dict[str, float | int]:
    n = text.numel()
    return {
        "n": n,
        "text_score": text.double().mean().item(),
        "image_score": image.double().mean().item(),
        "group_score": (text & image).double().mean().item(),
    }


def winoground_metrics(scores: Tensor, examples: Sequence[WinogroundExample] | None = None) -> dict[str, Any]:
    """Text, image and group scores from the four scores of each example.

    Args:
        scores: (N, 2, 2), ``scores[n, j, k] = s(caption_j, image_k)``.
        examples: the N examples, for the per-tag breakdown (optional).

    Returns:
        ``{"n", "text_score", "image_score", "group_score", "correct": {"text", "image", "group"} (N bools
        each), "by_tag": {field: {value: {"n", "text_score", "image_score", "group_score"}}}}``.
    """
    if scores.ndim != 3 or scores.shape[1:] != (2, 2):
        raise ValueError(f"scores must be (N, 2, 2), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        raise ValueError("no examples to score")
    if examples is not None and len(examples) != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} score blocks for {len(examples)} examples")
    s = scores.double()
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])  # (N,) each image prefers its caption
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])  # (N,) each caption prefers its image
    out: dict[str, Any] = _rates(text, image)
    out["correct"] = {"text": text.tolist(), "image": image.tolist(), "group": (text & image).tolist()}
    by_tag: dict[str, dict[str, Any]] = {}
    for field in TAG_FIELDS if examples is not None else ():
        groups: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(examples or ()):
            value = str(getattr(ex, field))
            if value:
                groups[value].append(i)
        if groups:
            by_tag[field] = {v: _rates(text[idx], image[idx]) for v, idx in sorted(groups.items())}
    out["by_tag"] = by_tag
    return out


def winoground_score_matrix(
    score_fn: Scorer, examples: Sequence[WinogroundExample], *, batch_examples: int = 32
) -> Tensor:
    """(N, 2, 2) scores ``s(caption_j, image_k)`` of every example, ``batch_examples`` at a time."""
    blocks = []
    for start in range(0, len(examples), batch_examples):
        chunk = examples[start : start + batch_examples]
        images, texts = [], []
        for ex in chunk:
            pair = (load_image(ex.image_0), load_image(ex.image_1))
            for caption in (ex.caption_0, ex.caption_1):  # j
                for im in pair:  # k
                    images.append(im)
                    texts.append(caption)
        s = torch.as_tensor(score_fn(images, texts), dtype=torch.float32)
        if s.numel() != len(texts):
            raise ValueError(f"the scorer returned {s.numel()} scores for {len(texts)} pairs")
        blocks.append(s.reshape(len(chunk), 2, 2))
    return torch.cat(blocks)


def winoground_scores(
    score_fn: Scorer, examples: Sequence[WinogroundExample], *, batch_examples: int = 32
) -> dict[str, Any]:
    """Winoground text / image / group scores of any scorer; see :func:`winoground_metrics`."""
    scores = winoground_score_matrix(score_fn, examples, batch_examples=batch_examples)
    out = winoground_metrics(scores, examples)
    out["ids"] = [ex.id for ex in examples]
    return out


def format_winoground(results: dict[str, Any]) -> str:
    """A plain-text table: overall, then one row per tag value."""
    from xmodal.cli import format_table

    rows: list[list[Any]] = [
        ["all", "", results["n"], results["text_score"], results["image_score"], results["group_score"]]
    ]
    for field, values in results.get("by_tag", {}).items():
        for value, r in values.items():
            rows.append([field, value, r["n"], r["text_score"], r["image_score"], r["group_score"]])
    return format_table(["subset", "value", "n", "text", "image", "group"], rows)
