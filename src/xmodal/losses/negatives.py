"""CLIP loss with hard negative captions (NegCLIP: Yuksekgonul et al. 2023, "When and why
vision-language models behave like bags-of-words, and what to do about it",
https://arxiv.org/abs/2210.01936, §4).

NegCLIP appends the batch's hard-negative captions as extra text columns: every image's image→text
softmax runs over the B true captions *and all M negatives of the batch* (not only its own), while the
text→image softmax is the plain one over the B images of the B true captions (a negative caption has
no image). With I (B, D), T (B, D), N (M, D) and s the logit scale::

    loss = ( CE(s · I [T; N]ᵀ, arange B) + CE(s · T Iᵀ, arange B) ) / 2

``negative_weight`` w counts each negative w times in the image→text denominator (a logit offset of
log w): 1 is NegCLIP, 0 is the plain CLIP loss. ``negative_mask`` drops padding slots, so that every
rank can hold the same number of slots (B·K) and be all-gathered even when some captions have fewer
than K negatives (:func:`xmodal.losses.distributed.gathered_negatives_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.losses.chunked_negatives import chunked_clip_loss_with_negatives
from xmodal.losses.contrastive import check_pair
from xmodal.registry import LOSSES


def flat_negatives(
    negative_features: Tensor, negative_mask: Tensor | None, dim: int
) -> tuple[Tensor, Tensor | None]:
    """(B, K, D) or (M, D) negatives → (M, D), and the mask (B, K) or (M,) → (M,) bool.

    Raises ``ValueError`` when the shapes do not fit.
    """
    if negative_features.ndim not in (2, 3) or negative_features.shape[-1] != dim:
        raise ValueError(
            f"negative_features must be (M, {dim}) or (B, K, {dim}), got {tuple(negative_features.shape)}"
        )
    flat = negative_features.reshape(-1, dim)
    if negative_mask is None:
        return flat, None
    if negative_mask.shape != negative_features.shape[:-1]:
        raise ValueError(
            f"negative_mask {tuple(negative_mask.shape)} must match negative_features "
            f"{tuple(negative_features.shape[:-1])}"
        )
    return flat, negative_mask.reshape(-1).to(torch.bool)


def clip_loss_with_negatives(
    image_features: Tensor,
    text_features: Tensor,
    negative_features: Tensor,
    logit_scale: Tensor | float,
    *,
    negative_mask: Tensor | None = None,
    negative_weight: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """Symmetric InfoNCE whose image→text side also scores every hard negative of the batch.

    Args:
        image_features: (B, D) L2-normalised image embeddings.
        text_features: (B, D) L2-normalised embeddings of the true captions (row i belongs to image i).
        negative_features: (M, D) or (B, K, D) L2-normalised negative-caption embeddings; all of them
            are negatives of every image (NegCLIP), whoever they were made from.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        negative_mask: (M,) or (B, K) bool, False for padding slots (None: all are real).
        negative_weight: w ≥ 0; each negative counts w times in the image→text denominator.
        chunk_size: None for the plain computation; an int for exact (chunk, chunk) blocks with
            O((B + M)·D) memory (:mod:`xmodal.losses.chunked_negatives`).

    Returns:
        Scalar loss ``(CE_i2t over B + M columns + CE_t2i over B rows) / 2``, differentiable w.r.t.
        all features and a tensor ``logit_scale``.
    """
    check_pair(image_features, text_features, chunk_size)
    if negative_weight < 0 or not math.isfinite(negative_weight):
        raise ValueError(f"negative_weight must be a finite number >= 0, got {negative_weight}")
    negatives, mask = flat_negatives(negative_features, negative_mask, image_features.shape[1])
    if negative_weight == 0:  # counted zero times: the plain CLIP loss
        negatives, mask = negatives[:0], None
    if chunk_size is not None:
        real = negatives if mask is None else negatives[mask]  # padding slots get zero gradient
        w = negative_weight if real.shape[0] else 1.0
        return chunked_clip_loss_with_negatives(
            image_features, text_features, real, logit_scale, w, int(chunk_size)
        )
    b = image_features.shape[0]
    labels = torch.arange(b, device=image_features.device)
    pos = logit_scale * image_features @ text_features.t()  # (B, B): rows images, columns captions
    neg = logit_scale * image_features @ negatives.t()  # (B, M)
    if negative_weight not in (0.0, 1.0):
        neg = neg + math.log(negative_weight)
    if mask is not None:
        neg = neg.masked_fill(~mask[None, :], -math.inf)
    i2t = F.cross_entropy(torch.cat([pos, neg], dim=1), labels)  # (B, B + M)
    t2i = F.cross_entropy(pos.t(), labels)
    return (i2t + t2i) / 2


def clip_loss_with_negatives_reference(
    image_features: Tensor,
    text_features: Tensor,
    negative_features: Tensor,
    logit_scale: Tensor | float,
    *,
    negative_mask: Tensor | None = None,
    negative_weight: float = 1.0,
) -> Tensor:
    """The same loss written per sample, with the mask applied by dropping rows (for tests).

    For image i: −log( e^{S_ii} / (Σ_j e^{S_ij} + w Σ_m e^{s I_i·N_m}) ); for caption j:
    −log( e^{S_jj} / Σ_i e^{S_ij} ); the mean of each over B, then their average.
    """
    negatives = negative_features.reshape(-1, image_features.shape[1])
    if negative_mask is not None:
        negatives = negatives[negative_mask.reshape(-1).to(torch.bool)]
    i2t_terms, t2i_terms = [], []
    for i in range(image_features.shape[0]):
        s_pos = logit_scale * (image_features[i] * text_features).sum(-1)  # (B,) image i vs captions
        s_neg = logit_scale * (image_features[i] * negatives).sum(-1)  # (M,)
        denominator = s_pos.exp().sum() + negative_weight * s_neg.exp().sum()
        i2t_terms.append(denominator.log() - s_pos[i])
        s_col = logit_scale * (image_features * text_features[i]).sum(-1)  # (B,) caption i vs images
        t2i_terms.append(torch.logsumexp(s_col, 0) - s_col[i])
    return (torch.stack(i2t_terms).mean() + torch.stack(t2i_terms).mean()) / 2


@LOSSES.register("clip_negatives")
class ClipNegativesLoss(nn.Module):
    """Thin module over :func:`clip_loss_with_negatives` (``loss(**model_outputs)``).

    Without ``negative_features`` (a batch with no negatives) it is the plain CLIP loss.

    Args:
        negative_weight: each negative's weight in the image→text denominator (1: NegCLIP).
        chunk_size: None for the plain loss, an int for the exact blockwise one.
    """

    def __init__(self, *, negative_weight: float = 1.0, chunk_size: int | None = None) -> None:
        super().__init__()
        if negative_weight < 0 or not math.isfinite(negative_weight):
            raise ValueError(f"negative_weight must be a finite number >= 0, got {negative_weight}")
        check_pair(torch.empty(1, 1), torch.empty(1, 1), chunk_size)
        self.negative_weight = negative_weight
        self.chunk_size = chunk_size

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        negative_features: Tensor | None = None,
        negative_mask: Tensor | None = None,
        **_: object,
    ) -> Tensor:
        """See :func:`clip_loss_with_negatives`; extra model outputs are ignored."""
        if negative_features is None:
            negative_features = image_features.new_zeros(0, image_features.shape[1])
        return clip_loss_with_negatives(
            image_features,
            text_features,
            negative_features,
            logit_scale,
            negative_mask=negative_mask,
            negative_weight=self.negative_weight,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return f"negative_weight={self.negative_weight}, chunk_size={self.chunk_size}"
