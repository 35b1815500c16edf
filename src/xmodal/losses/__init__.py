"""Losses: symmetric InfoNCE (CLIP) and sigmoid (SigLIP), plain and exact chunked, and their
distributed (all-gather with gradients) form in :mod:`xmodal.losses.distributed`."""

from xmodal.losses.contrastive import ClipLoss, clip_loss, clip_loss_reference
from xmodal.losses.negatives import (
    ClipNegativesLoss,
    clip_loss_with_negatives,
    clip_loss_with_negatives_reference,
)
from xmodal.losses.siglip import SigLipLoss, siglip_loss, siglip_loss_reference

__all__ = [
    "ClipLoss",
    "ClipNegativesLoss",
    "SigLipLoss",
    "clip_loss",
    "clip_loss_reference",
    "clip_loss_with_negatives",
    "clip_loss_with_negatives_reference",
    "siglip_loss",
    "siglip_loss_reference",
]
