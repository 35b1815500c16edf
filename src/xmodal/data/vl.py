"""Data for vision-language generation: emoji captions and templated visual questions, split by image.

* Captions (:func:`emoji_caption_items`): one item per base emoji of the registered emoji dataset's split
  (train 1,333 / val 183 / test 395 emoji, by ``splits.json``); the references are the emoji's Unicode
  name and its short names ("grinning face", "grinning"), the first being the training target.
* Visual questions (:func:`build_vqa`): templates over Fashion-MNIST photos (class, group, yes/no and
  "which of these") and emoji (category, subcategory, yes/no and "which of these"). Train and val images
  come from Fashion-MNIST's training file and the emoji train / val splits; test images from its test
  file and the emoji test split, so a test question never shows an image a training question showed.
  Every question carries ten VQAv2-style human answers (the templated answer, with a few synonyms for
  the Fashion-MNIST classes) in the annotation format :func:`xmodal.metrics.vqa_accuracy` scores, and
  :class:`AnswerVocab` turns them into the soft targets ``min(#humans / 3, 1)`` of VQA classifiers
  (Antol et al. 2015, https://arxiv.org/abs/1505.00468; Teney et al. 2018,
  https://arxiv.org/abs/1708.02711).

Everything is a pure function of the prepared data and a seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torch import Tensor

from xmodal.data.emoji import EmojiDataset, _words
from xmodal.data.fashion_mnist import FashionMNIST
from xmodal.data.images import load_image
from xmodal.errors import ConfigError, DataError
from xmodal.metrics.vqa import normalize_prediction
from xmodal.paths import data_dir

VLSplit = Literal["train", "val", "test"]
N_HUMAN_ANSWERS = 10  # as in VQAv2


def answer_text(raw: str) -> str:
    """An answer in the form the VQA evaluation compares: lower-case words, "&" as "and", no punctuation.

    The result is a fixed point of :func:`xmodal.metrics.vqa.normalize_prediction` (tested), so a
    model that outputs a vocabulary answer verbatim is scored as matching it.
    """
    text = re.sub(r"[^a-z0-9 ]+", " ", raw.lower().replace("&", " and "))
    return normalize_prediction(" ".join(text.split()))


# ------------------------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class CaptionItem:
    """One emoji image and its reference captions.

    Attributes:
        image_id: "emoji/<unified>" (unique per image).
        image_path: the 64×64 RGBA PNG.
        captions: the references, name first, then the short names not equal to it.
    """

    image_id: str
    image_path: Path
    captions: tuple[str, ...]

    def load(self) -> Image.Image:
        """The RGB image composited over white."""
        return load_image(self.image_path)


def _emoji_entries(root: Path) -> dict[str, dict[str, Any]]:
    try:
        entries = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read {root / 'emoji.json'}: {err}; run `xmodal data prepare emoji`"
        ) from None
    return {e["unified"]: e for e in entries if isinstance(e, dict) and e.get("unified")}


def emoji_references(entry: dict[str, Any]) -> tuple[str, ...]:
    """The reference captions of an emoji.json entry: its name, then its distinct short names.

    E.g. GRINNING FACE / ["grinning"] → ("grinning face", "grinning"); lower-case, "_"/"-" as spaces.
    """
    refs: list[str] = []
    for text in [entry.get("name"), *(entry.get("short_names") or [])]:
        words = _words(text)
        if words and words not in refs:
            refs.append(words)
    return tuple(refs)


REFERENCE_CHOICES = ("all", "first")


def training_references(item: CaptionItem, which: str) -> tuple[str, ...]:
    """The references of ``item`` that become training targets: ``"all"`` (the name and the short names),
    or ``"first"`` (the name only: the form a model then generates, as the nearest-neighbour baseline
    returns it; CIDEr-D rewards the longer names over the short ones, see the README).

    Raises:
        ConfigError: ``which`` is neither.
    """
    check_references(which, "references")
    return item.captions if which == "all" else item.captions[:1]


def check_references(which: str, key: str) -> None:
    """A one-line :class:`ConfigError` naming ``key`` unless ``which`` is "all" or "first"."""
    if which not in REFERENCE_CHOICES:
        raise ConfigError(f"{key}: expected one of {', '.join(REFERENCE_CHOICES)}, got {which!r}")


def emoji_caption_items(split: VLSplit, *, root: Path | None = None) -> list[CaptionItem]:
    """The caption items of one emoji split (base images only: skin tones would repeat a caption).

    Raises:
        DataError: the emoji dataset is not prepared.
    """
    ds = EmojiDataset(root, split=split, variants=False)
    entries = _emoji_entries(ds.root)
    items = []
    for item in ds.items:
        refs = emoji_references(entries.get(item.emoji_id, {}))
        if refs:
            items.append(CaptionItem(f"emoji/{item.unified}", item.image_path, refs))
    return items


# ------------------------------------------------------------------------------------- visual questions

FMNIST_ANSWERS = tuple(
    answer_text(a)
    for a in ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
)
"""Fashion-MNIST class answers in label order ("ankle boot" is "boot": "ankle" never helps a reader)."""
FMNIST_GROUPS = {"clothing": (0, 1, 2, 3, 4, 6), "footwear": (5, 7, 9), "bag": (8,)}
"""Class groups: label → the group answering "what kind of item is this?"."""
FMNIST_SYNONYMS = {
    "t shirt": ("top", "tee"),
    "trouser": ("trousers", "pants"),
    "pullover": ("sweater", "jumper"),
    "coat": ("jacket",),
    "sandal": ("sandals",),
    "sneaker": ("shoe", "trainer"),
    "bag": ("handbag", "purse"),
    "boot": ("boots", "ankle boot"),
}
"""Other answers some of the ten simulated humans give for a Fashion-MNIST class."""
_GROUP_QUESTION = {"clothing": "is this clothing?", "footwear": "is this footwear?", "bag": "is this a bag?"}


@dataclass(frozen=True)
class VQAItem:
    """One visual question.

    Attributes:
        question_id: unique within a :class:`VQASet`.
        image_id: "fashion-mnist/<file split>/<index>" or "emoji/<unified>".
        question: the question text.
        answer: the templated answer (``answer_text`` form).
        answers: the ten human answers.
        question_type: the template ("what is this", "is this", "which of these", ...).
        answer_type: "yes/no" or "other" (VQAv2's answer types).
    """

    question_id: int
    image_id: str
    question: str
    answer: str
    answers: tuple[str, ...]
    question_type: str
    answer_type: str

    def annotation(self) -> dict[str, Any]:
        """The VQAv2 annotation dictionary that :func:`xmodal.metrics.vqa_accuracy` scores."""
        return {
            "question_id": self.question_id,
            "image_id": self.image_id,
            "question_type": self.question_type,
            "answer_type": self.answer_type,
            "multiple_choice_answer": self.answer,
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                for i, a in enumerate(self.answers)
            ],
        }


def _humans(answer: str, rng: random.Random, synonyms: Sequence[str] = ()) -> tuple[str, ...]:
    """Ten human answers: ``answer`` at least 7 times, the rest drawn from ``synonyms``."""
    n_other = rng.randint(0, 3) if synonyms else 0
    return (answer,) * (N_HUMAN_ANSWERS - n_other) + tuple(rng.choice(synonyms) for _ in range(n_other))


def _choices(answer: str, pool: Sequence[str], rng: random.Random, k: int = 3) -> str:
    """ "a, b or c" with ``answer`` and ``k - 1`` other members of ``pool``, in random order."""
    picks = [answer, *rng.sample([p for p in pool if p != answer], k - 1)]
    rng.shuffle(picks)
    return f"{', '.join(picks[:-1])} or {picks[-1]}"


def fmnist_questions(label: int, rng: random.Random) -> list[tuple[str, str, tuple[str, ...], str, str]]:
    """(question, answer, human answers, question type, answer type) for one Fashion-MNIST image."""
    name = FMNIST_ANSWERS[label]
    group = next(g for g, labels in FMNIST_GROUPS.items() if label in labels)
    asked_class = name if rng.random() < 0.5 else rng.choice([a for a in FMNIST_ANSWERS if a != name])
    asked_group = group if rng.random() < 0.5 else rng.choice([g for g in FMNIST_GROUPS if g != group])
    syn = FMNIST_SYNONYMS.get(name, ())
    yes = ("yes" if asked_class == name else "no", "yes" if asked_group == group else "no")
    return [
        ("what is this?", name, _humans(name, rng, syn), "what is this", "other"),
        ("what kind of item is this?", group, _humans(group, rng), "what kind", "other"),
        (f"is this a {asked_class}?", yes[0], _humans(yes[0], rng), "is this", "yes/no"),
        (_GROUP_QUESTION[asked_group], yes[1], _humans(yes[1], rng), "is this", "yes/no"),
        (
            f"which of these is shown: {_choices(name, FMNIST_ANSWERS, rng)}?",
            name,
            _humans(name, rng, syn),
            "which of these",
            "other",
        ),
    ]


def emoji_questions(
    category: str,
    subcategory: str,
    categories: Sequence[str],
    subcategories: Sequence[str],
    rng: random.Random,
) -> list[tuple[str, str, tuple[str, ...], str, str]]:
    """(question, answer, human answers, question type, answer type) for one emoji image."""
    asked = category if rng.random() < 0.5 else rng.choice([c for c in categories if c != category])
    yes = "yes" if asked == category else "no"
    return [
        ("what category is this emoji?", category, _humans(category, rng), "what category", "other"),
        (
            "what subcategory is this emoji?",
            subcategory,
            _humans(subcategory, rng),
            "what subcategory",
            "other",
        ),
        (f"is this emoji in the category {asked}?", yes, _humans(yes, rng), "is this", "yes/no"),
        (
            f"which category is this emoji from: {_choices(category, categories, rng)}?",
            category,
            _humans(category, rng),
            "which of these",
            "other",
        ),
        (
            f"which of these is shown: {_choices(subcategory, subcategories, rng)}?",
            subcategory,
            _humans(subcategory, rng),
            "which of these",
            "other",
        ),
    ]


@dataclass
class VQASet:
    """The questions of one split and a way to load their images.

    Attributes:
        split: "train", "val" or "test".
        items: the questions, in a fixed order.
        image_ids: the distinct images, in first-use order.
    """

    split: str
    items: list[VQAItem]
    image_ids: list[str] = field(default_factory=list)
    _fmnist: dict[str, FashionMNIST] = field(default_factory=dict, repr=False)
    _emoji_paths: dict[str, Path] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def load_image(self, image_id: str) -> Image.Image:
        """The RGB image ``image_id`` (Fashion-MNIST inverted to dark-on-white like the emoji)."""
        if image_id.startswith("fashion-mnist/"):
            _, file_split, index = image_id.split("/")
            return self._fmnist[file_split].to_pil(int(index), invert=True)
        return load_image(self._emoji_paths[image_id])

    def annotations(self) -> list[dict[str, Any]]:
        """The VQAv2 annotations of every question, in order."""
        return [item.annotation() for item in self.items]


def _pixel_hash(ds: FashionMNIST, i: int) -> str:
    return hashlib.sha256(ds.images[i].tobytes()).hexdigest()


def build_vqa(
    split: VLSplit,
    *,
    fmnist_images: int = 1500,
    emoji: bool = True,
    seed: int = 0,
    fmnist_root: Path | None = None,
    emoji_root: Path | None = None,
) -> VQASet:
    """The templated visual questions of one split.

    Args:
        split: "train" / "val" (Fashion-MNIST training-file images, from the two ends of one seeded order,
            so disjoint; emoji train / val split) or "test" (Fashion-MNIST test-file images whose pixels
            equal no training-file image; emoji test split).
        fmnist_images: Fashion-MNIST images in this split (0: none); five questions each.
        emoji: include the emoji questions (five per base emoji of the split).
        seed: drives image choice, yes/no balance, distractors and synonyms.

    Returns:
        A :class:`VQASet`; the same arguments give the same questions and ids.

    Raises:
        DataError: a dataset is not prepared, or fewer Fashion-MNIST images than asked for exist.
    """
    if split not in ("train", "val", "test"):
        raise DataError(f"unknown VQA split {split!r}; expected train, val or test")
    rng = random.Random(f"xmodal-vqa:{seed}:{split}")
    out = VQASet(split=split, items=[])
    rows: list[tuple[str, list[tuple[str, str, tuple[str, ...], str, str]]]] = []
    if fmnist_images > 0:
        root = fmnist_root if fmnist_root is not None else data_dir("fashion-mnist")
        train_file = FashionMNIST(root, split="train")
        order = list(range(len(train_file)))
        random.Random(f"xmodal-vqa-images:{seed}").shuffle(order)  # one order: train and val disjoint
        if split == "test":
            test_file = FashionMNIST(root, split="test")
            out._fmnist["test"] = test_file
            seen = {_pixel_hash(train_file, i) for i in order}  # no test image equals any train-file image
            candidates = list(range(len(test_file)))
            random.Random(f"xmodal-vqa-test-images:{seed}").shuffle(candidates)
            picks = [i for i in candidates if _pixel_hash(test_file, i) not in seen][:fmnist_images]
            source, labels = "test", test_file.labels
        else:
            out._fmnist["train"] = train_file
            # train from the front of the order, val from the back: disjoint whatever the two sizes
            picks = order[:fmnist_images] if split == "train" else order[::-1][:fmnist_images]
            source, labels = "train", train_file.labels
        if len(picks) < fmnist_images:
            raise DataError(
                f"only {len(picks)} Fashion-MNIST {split} images available, {fmnist_images} asked"
            )
        for i in picks:
            rows.append((f"fashion-mnist/{source}/{i}", fmnist_questions(int(labels[i]), rng)))
    if emoji:
        everything = EmojiDataset(emoji_root, split="all", variants=False)
        categories = sorted({answer_text(e.category) for e in everything.items if e.category})
        subcategories = sorted({answer_text(e.subcategory) for e in everything.items if e.subcategory})
        for item in EmojiDataset(emoji_root, split=split, variants=False).items:
            if not (item.category and item.subcategory):
                continue
            image_id = f"emoji/{item.unified}"
            out._emoji_paths[image_id] = item.image_path
            cat, sub = answer_text(item.category), answer_text(item.subcategory)
            rows.append((image_id, emoji_questions(cat, sub, categories, subcategories, rng)))
    for image_id, questions in rows:
        out.image_ids.append(image_id)
        for question, answer, humans, qtype, atype in questions:
            out.items.append(VQAItem(len(out.items), image_id, question, answer, humans, qtype, atype))
    return out


class AnswerVocab:
    """The answers a VQA classifier chooses from, with soft targets.

    Args:
        answers: the answer strings, index order.
    """

    def __init__(self, answers: Sequence[str]) -> None:
        if len(set(answers)) != len(answers):
            raise ValueError("answer vocabulary has duplicates")
        self.answers = list(answers)
        self.index = {a: i for i, a in enumerate(self.answers)}

    @classmethod
    def from_items(cls, items: Sequence[VQAItem], *, min_count: int = 1) -> AnswerVocab:
        """Every human answer given at least ``min_count`` times in ``items`` (training questions),
        most frequent first (ties alphabetical)."""
        counts = Counter(a for item in items for a in item.answers)
        kept = sorted((a for a, c in counts.items() if c >= min_count), key=lambda a: (-counts[a], a))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.answers)

    def soft_targets(self, items: Sequence[VQAItem]) -> Tensor:
        """(N, V) float targets: ``min(#humans who gave answer v / 3, 1)``; answers outside the vocab drop."""
        target = torch.zeros(len(items), len(self.answers))
        for row, item in enumerate(items):
            for answer, count in Counter(item.answers).items():
                if answer in self.index:
                    target[row, self.index[answer]] = min(count / 3.0, 1.0)
        return target

    def coverage(self, items: Sequence[VQAItem]) -> float:
        """Share of ``items`` whose templated answer is in the vocabulary (the classifier's ceiling)."""
        return sum(item.answer in self.index for item in items) / max(1, len(items))
