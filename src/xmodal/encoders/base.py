"""What every encoder returns: the token sequence and a pooled vector.

Fusion modules, projectors and resamplers consume ``tokens``; contrastive heads consume ``pooled``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class EncoderOutput:
    """Output of any xmodal encoder.

    Attributes:
        tokens: (B, N, D) per-token features (image patches / grid cells, text tokens, audio frames).
        pooled: (B, P) one vector per sample (P may differ from D, e.g. a classifier's pre-logits).
        mask: (B, N) bool, True where a token is real (None: all are).
    """

    tokens: Tensor
    pooled: Tensor
    mask: Tensor | None = None


class Encoder(nn.Module):
    """Base class for encoders.

    Subclasses set ``token_dim`` (D) and ``pooled_dim`` (P) and implement ``blocks()``: the
    trunk's stages in input → output order, so LiT-style locking can unfreeze the last N of them.
    """

    token_dim: int
    pooled_dim: int
    # image encoders: the normalisation their weights expect, (x - mean) / std on RGB in [0, 1]
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def blocks(self) -> list[nn.Module]:
        """The trunk's blocks from input to output (used to lock all but the last N)."""
        raise NotImplementedError

    def auxiliary_modules(self) -> list[nn.Module]:
        """Modules off the feature path (e.g. a classifier head): always frozen by locking."""
        return []

    def output_only_modules(self) -> list[nn.Module]:
        """Modules after the last block (final norms) that unlock together with the last block."""
        return []


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over valid tokens. tokens (B, N, D), mask (B, N) bool or None → (B, D)."""
    if mask is None:
        return tokens.mean(dim=1)
    w = mask.to(tokens.dtype).unsqueeze(-1)  # (B, N, 1)
    return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(torch.finfo(tokens.dtype).tiny)
