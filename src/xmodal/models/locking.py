"""LiT-style locking (Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image text Tuning",
https://arxiv.org/abs/2111.07991): freeze a tower, or all of it but its last N blocks.

Frozen parts stay in eval mode even while the model trains, so BatchNorm statistics and dropout of a
locked tower do not drift (see :func:`keep_frozen_in_eval`).
"""

from __future__ import annotations

from torch import nn

from xmodal.encoders.base import Encoder


def lock_encoder(encoder: Encoder, unlocked_blocks: int) -> None:
    """Set ``requires_grad`` on an encoder's parameters.

    Args:
        encoder: an encoder exposing ``blocks()`` (input → output) and ``output_only_modules()``.
        unlocked_blocks: -1 trains everything; 0 freezes everything; N > 0 trains the last N blocks
            plus the modules after them (final norms).
    """
    if unlocked_blocks < -1:
        raise ValueError(f"unlocked_blocks must be -1, 0 or positive, got {unlocked_blocks}")
    train_all = unlocked_blocks == -1
    for p in encoder.parameters():
        p.requires_grad_(train_all)
    if unlocked_blocks > 0:
        blocks = encoder.blocks()
        if unlocked_blocks > len(blocks):
            raise ValueError(f"unlocked_blocks={unlocked_blocks} but the encoder has {len(blocks)} blocks")
        for m in [*blocks[-unlocked_blocks:], *encoder.output_only_modules()]:
            for p in m.parameters():
                p.requires_grad_(True)
    for m in encoder.auxiliary_modules():
        for p in m.parameters():
            p.requires_grad_(False)


def keep_frozen_in_eval(module: nn.Module) -> None:
    """Put every fully frozen sub-tree of ``module`` into eval mode (BatchNorm stats, dropout)."""
    for child in module.children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            child.eval()
        else:
            keep_frozen_in_eval(child)
