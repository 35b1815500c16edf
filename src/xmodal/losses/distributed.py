"""Contrastive losses across ranks: all-gather features with gradients flowing back to their rank.

open_clip's ``--gather-with-grad`` semantics: every rank sees the features of the whole global batch,
so each of its samples meets W·B − 1 negatives; the gather's backward sums the gradients that every
rank's loss sends to a feature into the rank that owns it. Used with DistributedDataParallel (which
averages parameter gradients over ranks), W ranks × B pairs give the same loss and parameter
gradients as 1 rank × W·B pairs (tested on 2 CPU ranks with gloo).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from xmodal.losses.negatives import clip_loss_with_negatives, flat_negatives


def world_size() -> int:
    """The number of ranks (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather (B, D) → (W·B, D) in rank order; the backward returns each rank its slice of the
    summed gradient (``torch.distributed.nn.functional.all_gather``). Identity on one rank."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated in favour of a private API; still the autograd-aware one
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def gathered_loss(
    loss_fn: Callable[..., Tensor], image_features: Tensor, text_features: Tensor, *args: Tensor | float
) -> Tensor:
    """``loss_fn`` over the global batch: features gathered from every rank (with gradients).

    Args:
        loss_fn: e.g. :func:`xmodal.losses.clip_loss` or ``siglip_loss``; called as
            ``loss_fn(all_image (W·B, D), all_text (W·B, D), *args)``.
        image_features, text_features: this rank's (B, D) features.
        args: the rest of the loss's arguments (logit scale, bias), identical on every rank.

    Every rank computes the same global loss; with DDP's gradient averaging the parameter gradients
    equal single-process full-batch gradients.
    """
    return loss_fn(gather_with_grad(image_features), gather_with_grad(text_features), *args)


def gather_no_grad(x: Tensor) -> Tensor:
    """All-gather (n, …) → (W·n, …) in rank order, without autograd (masks, ids). Identity on one rank."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def gathered_negatives_loss(
    image_features: Tensor,
    text_features: Tensor,
    negative_features: Tensor,
    logit_scale: Tensor | float,
    *,
    negative_mask: Tensor | None = None,
    negative_weight: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    """:func:`xmodal.losses.negatives.clip_loss_with_negatives` over the global batch.

    Args:
        image_features, text_features: this rank's (B, D) features.
        negative_features: this rank's (M, D) or (B, K, D) negative-caption features; M must be the
            same on every rank (pad with masked slots), so that every image meets the W·M negatives of
            the whole batch, as on one rank with W·B pairs.
        logit_scale: identical on every rank.
        negative_mask: (M,) / (B, K) bool, False for padding slots; None on every rank or on none.
        negative_weight, chunk_size: see :func:`~xmodal.losses.negatives.clip_loss_with_negatives`.
    """
    negatives, mask = flat_negatives(negative_features, negative_mask, image_features.shape[1])
    return clip_loss_with_negatives(
        gather_with_grad(image_features),
        gather_with_grad(text_features),
        gather_with_grad(negatives),
        logit_scale,
        negative_mask=None if mask is None else gather_no_grad(mask.to(torch.uint8)).to(torch.bool),
        negative_weight=negative_weight,
        chunk_size=chunk_size,
    )
