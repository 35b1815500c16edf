"""Gated cross-attention dense block: how Flamingo lets a frozen LM look at images.

Flamingo (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198, §2.2 and Fig. 4) inserts, between
frozen LM layers, a block ``x ← x + tanh(α_attn) · XAttn(x, media)`` then ``x ← x + tanh(α_ff) · FFN(x)``
with both gates initialised to 0, so at initialisation the LM is exactly unchanged. Media-location
masking: each text token attends only to the visual tokens of the image whose ``<image>`` marker most
recently precedes it (or, with ``only_attend_immediate_media=False``, to every image so far). A text
token with no preceding image attends to nothing: its cross-attention output is exactly zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xmodal.fusion.resampler import FeedForward


def media_attention_mask(
    media_locations: Tensor, num_media: int, *, only_immediate: bool = True, text_time: Tensor | None = None
) -> Tensor:
    """Which image each text token may see.

    Args:
        media_locations: (B, N) bool, True at the ``<image>`` marker tokens of the text.
        num_media: T_img, the number of images per sample.
        only_immediate: attend only to the most recent preceding image (True) or to all previous (False).
        text_time: (B, N) long, overrides the image count seen at each text token (incremental decoding:
            the new tokens come after every image so far); None computes ``cumsum(media_locations)``.

    Returns:
        (B, N, T_img) bool, True where text token i may attend to image j. The ``<image>`` marker itself
        counts as following its image (it may attend to it), as in open_flamingo.
    """
    if text_time is None:
        text_time = media_locations.long().cumsum(dim=-1)  # (B, N): images seen so far, 1-based
    media_time = torch.arange(1, num_media + 1, device=text_time.device)  # (T_img,)
    if only_immediate:
        return text_time[:, :, None] == media_time
    return text_time[:, :, None] >= media_time


class MaskedCrossAttention(nn.Module):
    """Text queries attend to the (resampled) visual tokens of the images they are allowed to see.

    Args:
        dim: text width D.
        dim_visual: width of the visual tokens.
        dim_head: width of one head.
        heads: number of heads H.
        only_attend_immediate_media: see :func:`media_attention_mask`.
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_visual: int,
        dim_head: int = 64,
        heads: int = 8,
        only_attend_immediate_media: bool = True,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.only_attend_immediate_media = only_attend_immediate_media
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, x: Tensor, media: Tensor, media_locations: Tensor, *, text_time: Tensor | None = None
    ) -> Tensor:
        """Masked cross-attention.

        Args:
            x: (B, N, D) text hidden states.
            media: (B, T_img, L, D_visual) visual tokens per image (e.g. the resampler's latents).
            media_locations: (B, N) bool, True at the ``<image>`` markers.
            text_time: optional (B, N) image count per token (see :func:`media_attention_mask`).

        Returns:
            (B, N, D); exactly zero at text tokens that may see no image.
        """
        B, N, _ = x.shape  # batch, text tokens, width
        _, T, L, _ = media.shape  # images, latents per image
        H = self.heads
        q = self.to_q(self.norm(x)).view(B, N, H, -1).transpose(1, 2)  # (B, H, N, d)
        k, v = self.to_kv(media.reshape(B, T * L, -1)).chunk(2, dim=-1)  # (B, T*L, H*d)
        k, v = (t.view(B, T * L, H, -1).transpose(1, 2) for t in (k, v))  # (B, H, T*L, d)
        allowed = media_attention_mask(
            media_locations, T, only_immediate=self.only_attend_immediate_media, text_time=text_time
        )  # (B, N, T)
        allowed = allowed.repeat_interleave(L, dim=-1)[:, None]  # (B, 1, N, T*L)
        sees_any = allowed.any(dim=-1, keepdim=True)  # (B, 1, N, 1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, T*L)
        # rows with no visible image: unmask them so softmax stays finite, then zero their weights
        scores = scores.masked_fill(~(allowed | ~sees_any), float("-inf"))
        attn = scores.softmax(dim=-1) * sees_any
        out = (attn @ v).transpose(1, 2).reshape(B, N, -1)  # (B, N, H*d)
        return self.to_out(out)  # type: ignore[no-any-return]


class GatedCrossAttentionBlock(nn.Module):
    """``x + tanh(α_attn)·XAttn(x)``, then ``+ tanh(α_ff)·FFN(x)``; α initialised to 0 (Flamingo Fig. 4).

    Args:
        dim: text width D.
        dim_visual: width of the visual tokens.
        dim_head: width of one head.
        heads: number of heads.
        ff_mult: FFN hidden width = ``ff_mult * D``.
        only_attend_immediate_media: see :func:`media_attention_mask`.
        gate_scale: the gates are ``tanh(gate_scale · α)``. Adam moves α by about the learning rate per
            step whatever its gradient, so a short run barely opens ``tanh(α)``; ``gate_scale = s`` acts
            as an s-times learning rate for the gates alone. At α = 0 the block is still the identity.
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_visual: int,
        dim_head: int = 64,
        heads: int = 8,
        ff_mult: int = 4,
        only_attend_immediate_media: bool = True,
        gate_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.gate_scale = gate_scale
        self.attn = MaskedCrossAttention(
            dim=dim,
            dim_visual=dim_visual,
            dim_head=dim_head,
            heads=heads,
            only_attend_immediate_media=only_attend_immediate_media,
        )
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.ff = FeedForward(dim=dim, mult=ff_mult)
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(
        self, x: Tensor, media: Tensor, media_locations: Tensor, *, text_time: Tensor | None = None
    ) -> Tensor:
        """x (B, N, D), media (B, T_img, L, D_visual), media_locations (B, N) bool → (B, N, D)."""
        s = self.gate_scale
        x = x + (s * self.attn_gate).tanh() * self.attn(x, media, media_locations, text_time=text_time)
        return x + (s * self.ff_gate).tanh() * self.ff(x)  # type: ignore[no-any-return]
