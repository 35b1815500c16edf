"""Tests for xmodal.metrics.classification: hand-computed cases and a NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmodal.metrics.classification import confusion_matrix, per_class_accuracy, topk_accuracy


def test_topk_accuracy_hand_computed():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.3, 0.0],  # label 1: top-1 hit
            [0.5, 0.2, 0.4, 0.1],  # label 2: second best → top-2 hit
            [0.3, 0.2, 0.1, 0.4],  # label 2: last → hit only at K = 4
        ]
    )
    labels = [1, 2, 2]
    acc = topk_accuracy(logits, labels, ks=(1, 2, 3, 4, 5))
    assert acc == pytest.approx({"top1": 1 / 3, "top2": 2 / 3, "top3": 2 / 3, "top4": 1.0, "top5": 1.0})


def test_topk_accuracy_matches_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 200)
    order = np.argsort(-logits, axis=1)
    expected = {f"top{k}": float(np.mean([labels[i] in order[i, :k] for i in range(200)])) for k in (1, 3, 5)}
    assert topk_accuracy(torch.from_numpy(logits), labels, ks=(1, 3, 5)) == pytest.approx(expected)


def test_confusion_matrix_rows_are_true_classes():
    preds = [0, 1, 1, 2, 0, 2]
    labels = [0, 1, 2, 2, 2, 1]
    cm = confusion_matrix(preds, labels, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [1, 1, 1]]
    assert int(cm.sum()) == 6


def test_per_class_accuracy_and_empty_class():
    preds = torch.tensor([0, 1, 1, 2, 0])
    labels = np.array([0, 1, 2, 2, 2])
    acc = per_class_accuracy(preds, labels, ["tee", "bag", "boot", "coat"])
    assert list(acc) == ["tee", "bag", "boot", "coat"]
    assert acc["tee"] == 1.0 and acc["bag"] == 1.0
    assert acc["boot"] == pytest.approx(1 / 3)
    assert math.isnan(acc["coat"])  # no samples of class 3


def test_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        topk_accuracy(torch.rand(2, 3), [0, 3])
    with pytest.raises(ValueError, match="expected"):
        topk_accuracy(torch.rand(2, 3), [0, 1, 2])
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        confusion_matrix([0, 1, 1], [0, 1], 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0.5, 1.0], [0, 1], 2)
