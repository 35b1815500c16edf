"""Contrastive losses for dual encoders.

Symmetric InfoNCE as in CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision", https://arxiv.org/abs/2103.00020): the mean of the image→text and text→image
cross-entropies over the (N, N) logits ``logit_scale · I Tᵀ``, whose diagonal holds the positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.registry import LOSSES


def clip_loss(image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE.

    Args:
        image_features: (N, D) L2-normalised image embeddings.
        text_features: (N, D) L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.

    Returns:
        Scalar loss: (CE(logits, arange) + CE(logitsᵀ, arange)) / 2.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            f"image_features {tuple(image_features.shape)} and text_features "
            f"{tuple(text_features.shape)} must have the same (N, D) shape"
        )
    logits = logit_scale * image_features @ text_features.t()  # (N, N)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


@LOSSES.register("clip")
class ClipLoss(nn.Module):
    """Thin module over :func:`clip_loss`, so that ``loss(**model(...))`` works."""

    def forward(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, **_: object
    ) -> Tensor:
        """See :func:`clip_loss`; extra model outputs are ignored."""
        return clip_loss(image_features, text_features, logit_scale)
