"""Losses: contrastive (CLIP/InfoNCE) for now."""

from xmodal.losses.contrastive import ClipLoss, clip_loss

__all__ = ["ClipLoss", "clip_loss"]
