"""SigLIP: the pairwise sigmoid loss for image–text pre-training.

Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training", https://arxiv.org/abs/2303.15343.
Every (image i, text j) pair is an independent binary classification with logit
``z_ij = s · I_i·T_j + b`` and label +1 on the diagonal, −1 elsewhere:

    loss = −Σ_ij log σ(label_ij · z_ij) / N

normalised by the batch size N as open_clip's ``SigLipLoss`` does. No softmax couples the rows, so
the loss splits into blocks without any running statistics (:mod:`xmodal.losses.chunked`).

The paper initialises the model-side parameters to a temperature log t = log 10 (``logit_scale =
exp(log t) = 10``) and a bias b = −10, so that the many negatives start near σ(z) ≈ 0; those two
learnable scalars belong to the model, which passes them in as ``logit_scale`` and ``logit_bias``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.losses.chunked import chunked_siglip_loss
from xmodal.losses.contrastive import check_pair
from xmodal.registry import LOSSES


def siglip_loss_reference(
    image_features: Tensor, text_features: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float
) -> Tensor:
    """SigLIP with the full (N, N) logits and labels (autograd keeps them for the backward).

    Args:
        image_features: (N, D) L2-normalised image embeddings.
        text_features: (N, D) L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        logit_bias: the additive bias, a scalar tensor or float.

    Returns:
        Scalar loss −Σ_ij log σ(label_ij · (s · I_i·T_j + b)) / N.
    """
    check_pair(image_features, text_features, None)
    n = image_features.shape[0]
    logits = logit_scale * image_features @ text_features.t() + logit_bias  # (N, N)
    labels = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1  # +1 diagonal, −1 elsewhere
    return -F.logsigmoid(labels * logits).sum() / n


def siglip_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """SigLIP's sigmoid loss, in one piece or in exact (chunk_size, chunk_size) blocks.

    Args:
        image_features: (N, D) L2-normalised image embeddings.
        text_features: (N, D) L2-normalised text embeddings; row i is the caption of image i.
        logit_scale: the multiplier (already exponentiated), a scalar tensor or float.
        logit_bias: the additive bias, a scalar tensor or float.
        chunk_size: None for :func:`siglip_loss_reference`; an int for the blockwise version, whose
            peak memory grows as N·chunk_size instead of N² (float32 arithmetic for half inputs).

    Returns:
        Scalar loss, differentiable w.r.t. both feature matrices and tensor scale and bias.
    """
    check_pair(image_features, text_features, chunk_size)
    if chunk_size is None:
        return siglip_loss_reference(image_features, text_features, logit_scale, logit_bias)
    return chunked_siglip_loss(image_features, text_features, logit_scale, logit_bias, int(chunk_size))


@LOSSES.register("siglip")
class SigLipLoss(nn.Module):
    """Thin module over :func:`siglip_loss`, so that ``loss(**model(...))`` works.

    Args:
        chunk_size: None for the plain loss, an int for the exact blockwise one.
    """

    def __init__(self, *, chunk_size: int | None = None) -> None:
        super().__init__()
        check_pair(torch.empty(1, 1), torch.empty(1, 1), chunk_size)
        self.chunk_size = chunk_size

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor,
        **_: object,
    ) -> Tensor:
        """See :func:`siglip_loss`; extra model outputs are ignored."""
        return siglip_loss(image_features, text_features, logit_scale, logit_bias, chunk_size=self.chunk_size)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}"
