"""The "vqa" recipe end to end through the CLI, shrunk: a few real Fashion-MNIST images, tiny models."""

from __future__ import annotations

import json

import pytest

from xmodal.cli import main
from xmodal.data.prepare import prepare
from xmodal.data.vl import build_vqa
from xmodal.tasks.vqa import prior_answers

CONFIG = "configs/vqa.yaml"
TINY = [
    "data.fmnist_train_images=30",
    "data.fmnist_val_images=8",
    "data.fmnist_test_images=8",
    "data.emoji=false",
    "data.image_size=64",
    "data.batch_size=8",
    "classifier.dim=32",
    "classifier.depth=1",
    "generative.dim=32",
    "generative.depth=1",
    "train.steps=3",
    "train.eval_every=3",
    "train.ckpt_every=3",
    "train.log_every=1",
]


@pytest.fixture(scope="module")
def real_fashion_mnist_root():
    """The real fashion-mnist data, prepared in $XMODAL_HOME (instant when `make data` ran)."""
    return prepare("fashion-mnist")


def run(*argv: str) -> int:
    return main([*argv, *[x for s in TINY for x in ("--set", s)], "--no-progress"])


def test_train_then_eval(tmp_path, real_fashion_mnist_root):
    out = tmp_path / "run"
    assert run("train", CONFIG, "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_questions"] == 40 and metrics["test_images"] == 8
    for key in ("classification", "generative", "question_only_classifier", "question_only_prior"):
        assert 0 <= metrics[key]["overall"] <= 100
        assert set(metrics[key]["perAnswerType"]) == {"yes/no", "other"}
    assert set(metrics["beats_question_only"]) == {"classification", "generative"}
    for name in ("classifier", "generative", "question_only"):
        assert (out / name / "model" / "model.safetensors").is_file()
        assert metrics["train"][name]["best_step"] == 3
    assert run("eval", CONFIG, "--checkpoint", str(out), "--out", str(tmp_path / "eval.json")) == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    for key in ("classification", "generative", "question_only_classifier"):
        assert again[key] == metrics[key]
    assert run("train", CONFIG, "--out", str(out)) == 2  # would overwrite


def test_question_only_prior_uses_question_then_type(real_fashion_mnist_root):
    train = build_vqa("train", fmnist_images=200, emoji=False).items
    test = build_vqa("test", fmnist_images=50, emoji=False).items
    prior = prior_answers(train, test)
    what = [i for i in test if i.question == "what is this?"]
    expected = max(
        set(a.answer for a in train if a.question == "what is this?"),
        key=lambda a: (sum(t.answer == a for t in train if t.question == "what is this?"), -ord(a[0])),
    )
    assert {prior[i.question_id] for i in what} == {expected}
    assert all(prior[i.question_id] in {"yes", "no"} for i in test if i.answer_type == "yes/no")
