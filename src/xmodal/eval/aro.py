"""ARO-style probes (Yuksekgonul et al. 2023, https://arxiv.org/abs/2210.01936) on any captioned images.

ARO asks whether a model prefers an image's true caption over the same caption with its order or its
bindings broken: words shuffled (ARO's COCO/Flickr order probes), attributes swapped between nouns
(VG-Attribution) or the arguments of a relation exchanged (VG-Relation). A bag-of-words model cannot
tell them apart. Here the perturbed captions come from :mod:`xmodal.text.perturb`, seeded per item and
per perturbation, so a run is reproducible and any captioned image set (the held-out emoji, a user's
JSONL) becomes a probe. A perturbation that does not apply (nothing to swap) or leaves the caption
unchanged is skipped and counted, never scored.

Accuracy is the share of probed images whose true caption scores strictly higher than the perturbed one
(a constant scorer gets 0; ARO's chance level with one negative is 50%).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from xmodal.data.images import BadImage, check_image, load_image
from xmodal.errors import DataError
from xmodal.eval.scorers import Scorer
from xmodal.text.perturb import shuffle_trigrams, shuffle_words, swap_attributes, swap_relation

Perturbation = Callable[[str, random.Random], str | None]
"""caption, rng → a perturbed caption, or None when the perturbation does not apply."""

PERTURBATIONS: dict[str, Perturbation] = {
    "shuffle_words": shuffle_words,
    "shuffle_trigrams": shuffle_trigrams,
    "swap_attributes": swap_attributes,
    "swap_relation": lambda text, _rng: swap_relation(text),
}
"""The probes by name (``aro_probe(perturbations=...)``, ``xmodal eval aro --perturbation``)."""

CaptionedImage = tuple[Image.Image | str | Path, str]
"""(PIL image or image file, caption)."""


def read_captioned_jsonl(path: str | Path) -> list[tuple[Path, str]]:
    """A user's captioned images: JSONL lines ``{"image": FILE, "caption": TEXT}``.

    Relative image paths are taken from the JSONL file's folder; every image is checked.

    Raises:
        DataError: a missing file, a bad line, or an unreadable image (with its line number).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"captioned-image file {p} not found")
    out: list[tuple[Path, str]] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or "image" not in rec or "caption" not in rec:
            raise DataError(f'{p}:{lineno}: expected an object with "image" and "caption"')
        file = Path(rec["image"])
        file = file if file.is_absolute() else p.parent / file
        try:
            check_image(file)
        except BadImage as bad:
            raise DataError(f"{p}:{lineno}: image {file}: {bad.reason}") from None
        out.append((file, str(rec["caption"])))
    if not out:
        raise DataError(f"{p} holds no captioned images")
    return out


def _as_pairs(items: Sequence[CaptionedImage] | Any) -> tuple[int, Callable[[int], tuple[Any, str]]]:
    """(count, i → (image or path, caption)) for a list of pairs or a dataset with ``items`` + ``load``."""
    if hasattr(items, "items") and hasattr(items, "load"):
        return len(items.items), lambda i: (items.items[i].image_path, items.items[i].caption)
    return len(items), lambda i: items[i]


def _image(x: Image.Image | str | Path) -> Image.Image:
    return x if isinstance(x, Image.Image) else load_image(x)


def perturbed_captions(
    caption: str, index: int, perturbations: Sequence[str], seed: int
) -> dict[str, str | None]:
    """Each perturbation of one caption, seeded by (seed, item index, perturbation name); None: skipped."""
    out: dict[str, str | None] = {}
    for name in perturbations:
        neg = PERTURBATIONS[name](caption, random.Random(f"{seed}:{index}:{name}"))
        out[name] = None if neg is None or " ".join(neg.split()) == " ".join(caption.split()) else neg
    return out


def aro_probe(
    scorer: Scorer,
    items: Sequence[CaptionedImage] | Any,
    *,
    perturbations: Sequence[str] = tuple(PERTURBATIONS),
    seed: int = 0,
    batch_items: int = 32,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Accuracy of preferring each image's true caption over its perturbations.

    Args:
        scorer: aligned pairs → (N,) scores (:mod:`xmodal.eval.scorers`).
        items: (image or file, caption) pairs, or a caption dataset (``items`` with ``image_path`` and
            ``caption``, e.g. :class:`~xmodal.data.emoji.EmojiDataset`).
        perturbations: names from :data:`PERTURBATIONS`.
        seed: the base seed; item i's perturbation p uses ``random.Random(f"{seed}:{i}:{p}")``.
        batch_items: images scored per scorer call.
        max_items: probe only the first ``max_items`` items.

    Returns:
        ``{"n_items", "seed", "perturbations": {name: {"n", "skipped", "accuracy", "examples": up to 3
        (caption, perturbed)}}, "all": {"n", "accuracy"} (true caption above every applicable
        perturbation, over items with at least one), "macro_accuracy": mean over perturbations with n > 0}``;
        accuracy is None where nothing was scored.
    """
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown or not perturbations:
        raise ValueError(f"unknown perturbation(s) {unknown}; known: {', '.join(PERTURBATIONS)}")
    n, get = _as_pairs(items)
    n = n if max_items is None else min(n, max_items)
    if n == 0:
        raise ValueError("no captioned images to probe")
    wins: dict[str, list[bool]] = {p: [] for p in perturbations}
    skipped = dict.fromkeys(perturbations, 0)
    examples: dict[str, list[tuple[str, str]]] = {p: [] for p in perturbations}
    all_wins: list[bool] = []
    for start in range(0, n, batch_items):
        images: list[Image.Image] = []
        texts: list[str] = []
        slots: list[tuple[int, str | None]] = []  # (item, perturbation; None: the true caption)
        for i in range(start, min(start + batch_items, n)):
            source, caption = get(i)
            image = _image(source)
            images.append(image)
            texts.append(caption)
            slots.append((i, None))
            for name, neg in perturbed_captions(caption, i, perturbations, seed).items():
                if neg is None:
                    skipped[name] += 1
                    continue
                images.append(image)
                texts.append(neg)
                slots.append((i, name))
                if len(examples[name]) < 3:
                    examples[name].append((caption, neg))
        scores = torch.as_tensor(scorer(images, texts), dtype=torch.float32).reshape(-1)  # (P,)
        if scores.numel() != len(texts):
            raise ValueError(f"the scorer returned {scores.numel()} scores for {len(texts)} pairs")
        true_score: dict[int, float] = {}
        beaten: dict[int, list[bool]] = {}
        for (i, probe), s in zip(slots, scores.tolist(), strict=True):
            if probe is None:
                true_score[i] = s
                continue
            win = true_score[i] > s
            wins[probe].append(win)
            beaten.setdefault(i, []).append(win)
        all_wins += [all(v) for v in beaten.values()]
    per: dict[str, dict[str, Any]] = {
        p: {
            "n": len(wins[p]),
            "skipped": skipped[p],
            "accuracy": sum(wins[p]) / len(wins[p]) if wins[p] else None,
            "examples": examples[p],
        }
        for p in perturbations
    }
    scored = [v["accuracy"] for v in per.values() if v["accuracy"] is not None]
    return {
        "n_items": n,
        "seed": seed,
        "perturbations": per,
        "all": {"n": len(all_wins), "accuracy": sum(all_wins) / len(all_wins) if all_wins else None},
        "macro_accuracy": sum(scored) / len(scored) if scored else None,
    }


def format_aro(results: dict[str, Any]) -> str:
    """A plain-text table: one row per perturbation, then the all-perturbations row."""
    from xmodal.cli import format_table

    def acc(v: float | None) -> Any:
        return "n/a" if v is None else v

    rows: list[list[Any]] = [
        [name, r["n"], r["skipped"], acc(r["accuracy"])] for name, r in results["perturbations"].items()
    ]
    rows.append(["all (beats every one)", results["all"]["n"], "", acc(results["all"]["accuracy"])])
    return format_table(["perturbation", "n", "skipped", "accuracy"], rows)
