"""Classification metrics: top-K accuracy, per-class accuracy, confusion matrix.

Used for zero-shot classification (CLIP, Radford et al., 2021, https://arxiv.org/abs/2103.00020, §3.1)
and linear probes. Predictions and labels are class indices in [0, C).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

Labels = Tensor | np.ndarray | Sequence[int]
"""Class indices: an integer tensor, a NumPy array or a list."""


def _as_long(x: Labels, what: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.is_floating_point() or t.ndim != 1:
        raise ValueError(f"{what} must be a 1-d integer sequence, got dtype {t.dtype} shape {tuple(t.shape)}")
    return t.long().cpu()


def _check_range(x: Tensor, num_classes: int, what: str) -> None:
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got values {int(x.min())}..{int(x.max())}")


def topk_accuracy(logits: Tensor, labels: Labels, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of samples whose label is among the K highest logits, for each K.

    Args:
        logits: (N, C) class scores.
        labels: (N,) true class indices.
        ks: the cut-offs; K > C counts as K = C (every sample is a hit).

    Returns:
        ``{"top1": float, "top5": float, ...}``.
    """
    y = _as_long(labels, "labels")
    if logits.ndim != 2 or logits.shape[0] != y.numel():
        raise ValueError(f"logits has shape {tuple(logits.shape)}, expected ({y.numel()}, C)")
    if y.numel() == 0:
        raise ValueError("no samples to score")
    num_classes = logits.shape[1]
    _check_range(y, num_classes, "labels")
    max_k = min(max(ks), num_classes)
    top = logits.detach().cpu().topk(max_k, dim=1).indices  # (N, max_k), best first
    hit = top == y[:, None]  # (N, max_k), at most one True per row
    return {f"top{k}": hit[:, : min(k, num_classes)].any(dim=1).double().mean().item() for k in ks}


def confusion_matrix(preds: Labels, labels: Labels, num_classes: int) -> Tensor:
    """Counts of (true, predicted) class pairs.

    Args:
        preds: (N,) predicted class indices; labels: (N,) true class indices.
        num_classes: C.

    Returns:
        (C, C) int64 tensor; entry [i, j] counts samples of true class i predicted as j (rows are true).
    """
    p, y = _as_long(preds, "preds"), _as_long(labels, "labels")
    if p.numel() != y.numel():
        raise ValueError(f"{p.numel()} predictions for {y.numel()} labels")
    _check_range(p, num_classes, "preds")
    _check_range(y, num_classes, "labels")
    return torch.bincount(y * num_classes + p, minlength=num_classes * num_classes).view(
        num_classes, num_classes
    )


def per_class_accuracy(preds: Labels, labels: Labels, classnames: Sequence[str]) -> dict[str, float]:
    """Accuracy within each true class (recall per class).

    Args:
        preds: (N,) predicted class indices; labels: (N,) true class indices.
        classnames: C names, in class-index order.

    Returns:
        ``{classname: accuracy}`` in class order; NaN for a class with no samples.
    """
    cm = confusion_matrix(preds, labels, len(classnames)).double()  # (C, C)
    support = cm.sum(dim=1)  # (C,)
    acc = cm.diagonal() / support  # 0/0 -> NaN for empty classes
    return {name: float(a) for name, a in zip(classnames, acc.tolist(), strict=True)}
