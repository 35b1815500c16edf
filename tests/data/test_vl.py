"""Tests for xmodal.data.vl: emoji caption items, templated VQA split by image, answers and soft targets."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from xmodal.data.fashion_mnist import FashionMNIST
from xmodal.data.vl import (
    FMNIST_ANSWERS,
    AnswerVocab,
    CaptionItem,
    VQAItem,
    answer_text,
    build_vqa,
    emoji_caption_items,
    emoji_references,
    training_references,
)
from xmodal.errors import ConfigError, DataError
from xmodal.metrics import vqa_accuracy
from xmodal.metrics.vqa import normalize_prediction


@pytest.fixture(scope="module")
def vqa_splits(real_emoji_root, real_fashion_mnist_root):
    return {s: build_vqa(s, fmnist_images=300, seed=3) for s in ("train", "val", "test")}


def test_emoji_references_name_then_distinct_short_names():
    entry = {"name": "GRINNING FACE", "short_names": ["grinning", "grinning_face", "grinning"]}
    assert emoji_references(entry) == ("grinning face", "grinning")
    assert emoji_references({"name": "", "short_names": ["arrow_left"]}) == ("arrow left",)


def test_training_references_all_or_the_name_only():
    from pathlib import Path

    item = CaptionItem("emoji/x", Path("x.png"), ("keycap 1", "one"))
    assert training_references(item, "all") == ("keycap 1", "one")
    assert training_references(item, "first") == ("keycap 1",)
    with pytest.raises(ConfigError, match="references: expected one of all, first, got 'short'"):
        training_references(item, "short")


def test_caption_items_follow_the_emoji_split(real_emoji_root):
    sizes = {s: len(emoji_caption_items(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1333, "val": 183, "test": 395}
    test = emoji_caption_items("test")
    train_ids = {i.image_id for i in emoji_caption_items("train")}
    assert not train_ids & {i.image_id for i in test}
    assert all(item.captions and item.captions[0] for item in test)
    first = test[0]
    assert first.image_id == "emoji/0031-FE0F-20E3" and first.captions == ("keycap 1", "one")
    assert first.load().size == (64, 64)


def test_answers_are_fixed_points_of_the_vqa_normalisation(vqa_splits):
    answers = {a for s in vqa_splits.values() for item in s.items for a in item.answers}
    assert answers and all(normalize_prediction(a) == a for a in answers)
    assert answer_text("Smileys & Emotion") == "smileys and emotion"
    assert answer_text("T-shirt") == "t shirt"


def test_test_images_never_appear_in_train_or_val(vqa_splits, real_fashion_mnist_root):
    train, val, test = (set(vqa_splits[s].image_ids) for s in ("train", "val", "test"))
    assert not train & test and not val & test and not train & val
    assert len(train) == 300 + 1333 and len(test) == 300 + 395
    # not even pixel-identical Fashion-MNIST images across the files
    tr_file, te_file = FashionMNIST(split="train"), FashionMNIST(split="test")
    tr_pixels = {tr_file.images[int(i.split("/")[2])].tobytes() for i in train if i.startswith("fashion")}
    te_pixels = {te_file.images[int(i.split("/")[2])].tobytes() for i in test if i.startswith("fashion")}
    assert not tr_pixels & te_pixels


def test_questions_are_deterministic_and_well_formed(vqa_splits):
    again = build_vqa("test", fmnist_images=300, seed=3)
    assert again.items == vqa_splits["test"].items
    other = build_vqa("test", fmnist_images=300, seed=4)
    assert other.items != again.items
    items = vqa_splits["train"].items
    assert [i.question_id for i in items] == list(range(len(items)))
    assert all(len(i.answers) == 10 and Counter(i.answers)[i.answer] >= 7 for i in items)
    kinds = Counter(i.question_type for i in items)
    assert set(kinds) == {
        "what is this",
        "what kind",
        "is this",
        "which of these",
        "what category",
        "what subcategory",
    }
    yes_no = [i.answer for i in items if i.answer_type == "yes/no"]
    assert set(yes_no) == {"yes", "no"} and 0.35 < yes_no.count("yes") / len(yes_no) < 0.65
    for item in items:
        if item.question_type == "which of these":
            assert item.answer in item.question  # the right answer is one of the choices
    fm = next(i for i in items if i.image_id.startswith("fashion") and i.question_type == "what is this")
    label = int(FashionMNIST(split="train").labels[int(fm.image_id.split("/")[2])])
    assert fm.answer == FMNIST_ANSWERS[label]
    assert vqa_splits["train"].load_image(fm.image_id).size == (28, 28)
    assert vqa_splits["train"].load_image(items[-1].image_id).size == (64, 64)


def test_the_templated_answer_scores_100_and_a_synonym_less(vqa_splits):
    test = vqa_splits["test"]
    anns = test.annotations()
    perfect = vqa_accuracy(anns, {i.question_id: i.answer for i in test.items})
    assert perfect["overall"] == 100.0
    wrong = vqa_accuracy(anns, {i.question_id: "banana" for i in test.items})
    assert wrong["overall"] == 0.0
    item = VQAItem(
        0, "x", "what is this?", "trouser", ("trouser",) * 8 + ("pants",) * 2, "what is this", "other"
    )
    assert vqa_accuracy([item.annotation()], {0: "pants"})["overall"] == 60.0


def test_vocab_and_soft_targets():
    items = [
        VQAItem(0, "a", "q", "trouser", ("trouser",) * 8 + ("pants",) * 2, "t", "other"),
        VQAItem(1, "b", "q", "yes", ("yes",) * 10, "t", "yes/no"),
        VQAItem(2, "c", "q", "no", ("no",) * 9 + ("martian",), "t", "yes/no"),
    ]
    vocab = AnswerVocab.from_items(items[:2])
    assert vocab.answers == ["yes", "trouser", "pants"]
    target = vocab.soft_targets(items)
    expected = torch.tensor([[0.0, 1.0, 2 / 3], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(target, expected)
    assert vocab.coverage(items) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="duplicates"):
        AnswerVocab(["a", "a"])


def test_bad_split_and_too_many_images(real_fashion_mnist_root):
    with pytest.raises(DataError, match="unknown VQA split"):
        build_vqa("dev")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="only"):
        build_vqa("val", fmnist_images=60001, emoji=False)
