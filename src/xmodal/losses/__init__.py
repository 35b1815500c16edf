"""Losses: symmetric InfoNCE (CLIP) and sigmoid (SigLIP), plain and exact chunked, and their
distributed (all-gather with gradients) form in :mod:`xmodal.losses.distributed`."""

from xmodal.losses.contrastive import ClipLoss, clip_loss, clip_loss_reference
from xmodal.losses.siglip import SigLipLoss, siglip_loss, siglip_loss_reference

__all__ = [
    "ClipLoss",
    "SigLipLoss",
    "clip_loss",
    "clip_loss_reference",
    "siglip_loss",
    "siglip_loss_reference",
]
