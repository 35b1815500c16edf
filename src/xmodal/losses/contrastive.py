"""Contrastive losses for dual encoders.

Symmetric InfoNCE as in CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision", https://arxiv.org/abs/2103.00020): the mean of the image→text and text→image
cross-entropies over the (N, N) logits ``logit_scale · I Tᵀ``, whose diagonal holds the positives.

``clip_loss_reference`` builds the logits in one piece; ``clip_loss(..., chunk_size=c)`` gives the
same value and gradients in (c, c) blocks with O(N·c + N·D) memory (see :mod:`xmodal.losses.chunked`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.losses.chunked import chunked_clip_loss
from xmodal.registry import LOSSES


def check_pair(image_features: Tensor, text_features: Tensor, chunk_size: int | None) -> None:
    """Raise ``ValueError`` unless both are (N, D) with the same shape and chunk_size is None or ≥ 1."""
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(
            f"image_features {tuple(image_features.shape)} and text_features "
            f"{tuple(text_features.shape)} must have the same (N, D) shape"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def clip_loss_reference(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE with the full (N, N) logits (autograd keeps them for the backward).

    Args:
        image_features: (N, D) L2-normalised image embeddings.
        text_features: (N, D) L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.

    Returns:
        Scalar loss: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2.
    """
    check_pair(image_features, text_features, None)
    logits = logit_scale * image_features @ text_features.t()  # (N, N)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def clip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Symmetric InfoNCE, in one piece or in exact (chunk_size, chunk_size) blocks.

    Args:
        image_features: (N, D) L2-normalised image embeddings.
        text_features: (N, D) L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        chunk_size: None for :func:`clip_loss_reference`; an int for the blockwise version, whose peak
            memory grows as N·chunk_size instead of N² (float32 arithmetic for half inputs, loss
            returned in float32). 1024–4096 is a good range on CPUs and GPUs.

    Returns:
        Scalar loss: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2, differentiable w.r.t. both
        feature matrices and a tensor ``logit_scale``.
    """
    check_pair(image_features, text_features, chunk_size)
    if chunk_size is None:
        return clip_loss_reference(image_features, text_features, logit_scale)
    return chunked_clip_loss(image_features, text_features, logit_scale, int(chunk_size))


@LOSSES.register("clip")
class ClipLoss(nn.Module):
    """Thin module over :func:`clip_loss`, so that ``loss(**model(...))`` works.

    Args:
        chunk_size: None for the plain loss, an int for the exact blockwise one.
    """

    def __init__(self, *, chunk_size: int | None = None) -> None:
        super().__init__()
        check_pair(torch.empty(1, 1), torch.empty(1, 1), chunk_size)
        self.chunk_size = chunk_size

    def forward(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, **_: object
    ) -> Tensor:
        """See :func:`clip_loss`; extra model outputs are ignored."""
        return clip_loss(image_features, text_features, logit_scale, chunk_size=self.chunk_size)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}"
