"""Perceiver resampler: a fixed number of learned latents summarise a variable number of visual tokens.

Flamingo (Alayrac et al. 2022, "Flamingo: a Visual Language Model for Few-Shot Learning",
https://arxiv.org/abs/2204.14198, §2.1 and Fig. 5) maps the visual tokens of each image (or video) to
``n_latents`` outputs: per layer, the latents attend to ``concat(visual tokens, latents)`` and pass
through a feed-forward network, both residual; learned time embeddings mark the frames of a video and
(as in open_flamingo's ``PerceiverResampler``) the position of each image in an interleaved sequence.
The output size does not depend on the number of visual tokens V, so any image encoder fits.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor, nn


class FeedForward(nn.Sequential):
    """Pre-norm FFN without biases (Flamingo/open_flamingo): ``LayerNorm → Linear → GELU → Linear``.

    Args:
        dim: width D.
        mult: hidden width = ``mult * D``.
    """

    def __init__(self, *, dim: int, mult: int = 4) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, dim * mult, bias=False),
            nn.GELU(),
            nn.Linear(dim * mult, dim, bias=False),
        )


class PerceiverAttention(nn.Module):
    """Latents attend to ``concat(media tokens, latents)`` (keys/values); queries come from the latents.

    Args:
        dim: width D of media tokens and latents.
        dim_head: width of one head.
        heads: number of heads H.
    """

    def __init__(self, *, dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: Tensor, latents: Tensor, media_mask: Tensor | None = None) -> Tensor:
        """Cross-attend latents to media and themselves.

        Args:
            media: (B, T, M, D) visual tokens of each of T images (M = frames × tokens).
            latents: (B, T, L, D).
            media_mask: (B, T, M) bool, True where a media token is real (None: all are). Latents are
                always valid keys, so no query row is ever fully masked.

        Returns:
            (B, T, L, D), the update to add to the latents.
        """
        B, T, L, _ = latents.shape  # batch, images, latents, width
        H = self.heads
        media, latents = self.norm_media(media), self.norm_latents(latents)
        q = self.to_q(latents)  # (B, T, L, H*d)
        k, v = self.to_kv(torch.cat([media, latents], dim=2)).chunk(2, dim=-1)  # (B, T, M+L, H*d)

        def heads(x: Tensor) -> Tensor:  # (B, T, N, H*d) → (B, T, H, N, d)
            return x.view(*x.shape[:3], H, -1).transpose(2, 3)

        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, T, H, L, M+L)
        if media_mask is not None:
            keys = torch.cat([media_mask.bool(), media_mask.new_ones(B, T, L, dtype=torch.bool)], dim=2)
            scores = scores.masked_fill(~keys[:, :, None, None, :], float("-inf"))
        out = scores.softmax(dim=-1) @ v  # (B, T, H, L, d)
        return self.to_out(out.transpose(2, 3).reshape(B, T, L, -1))


class PerceiverResampler(nn.Module):
    """Flamingo's Perceiver resampler (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198).

    Args:
        dim: width D of the latents (and of the output).
        depth: number of (attention, FFN) layers.
        n_latents: number of learned latents L (the output length per image).
        dim_head: width of one attention head.
        heads: number of heads.
        ff_mult: FFN hidden width = ``ff_mult * D``.
        in_dim: width of the incoming visual tokens; a (trainable) linear map to D when it differs.
        max_num_media: size of the learned media-time table (images per sample); None disables it.
        max_num_frames: size of the learned frame table (frames per video); None disables it.
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int = 6,
        n_latents: int = 64,
        dim_head: int = 64,
        heads: int = 8,
        ff_mult: int = 4,
        in_dim: int | None = None,
        max_num_media: int | None = None,
        max_num_frames: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.n_latents = n_latents
        self.input_proj: nn.Module = (
            nn.Linear(in_dim, dim) if in_dim is not None and in_dim != dim else nn.Identity()
        )
        self.latents = nn.Parameter(torch.randn(n_latents, dim))
        self.frame_embs = nn.Parameter(torch.randn(max_num_frames, dim)) if max_num_frames else None
        self.media_time_embs = nn.Parameter(torch.randn(max_num_media, 1, dim)) if max_num_media else None
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PerceiverAttention(dim=dim, dim_head=dim_head, heads=heads),
                    FeedForward(dim=dim, mult=ff_mult),
                ]
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Resample visual tokens to ``n_latents`` per image.

        Args:
            x: (B, T_img, F, V, D_in) tokens of T_img images/videos of F frames with V tokens each;
               (B, T_img, V, D_in) is read as F = 1, and (B, V, D_in) as T_img = F = 1.
            mask: bool, True where a visual token is real: (B, V), (B, T_img, V) or (B, T_img, F, V),
               matching ``x`` without its last axis; None when all tokens are real.

        Returns:
            (B, T_img, n_latents, D).
        """
        if x.dim() == 3:
            x, mask = x[:, None, None], None if mask is None else mask[:, None, None]
        elif x.dim() == 4:
            x, mask = x[:, :, None], None if mask is None else mask[:, :, None]
        if x.dim() != 5:
            raise ValueError(
                f"resampler input must be (B, V, D), (B, T, V, D) or (B, T, F, V, D); got {x.shape}"
            )
        B, T, F, V, _ = x.shape  # batch, images, frames, tokens per frame, width
        if mask is not None and mask.shape != x.shape[:4]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens {tuple(x.shape[:4])}")
        x = self.input_proj(x)  # (B, T, F, V, D)
        if self.frame_embs is not None:
            if self.frame_embs.shape[0] < F:
                raise ValueError(f"{F} frames but max_num_frames is {self.frame_embs.shape[0]}")
            x = x + self.frame_embs[:F, None]  # (F, 1, D) broadcast over V
        x = x.reshape(B, T, F * V, self.dim)  # (B, T, M, D)
        mask = None if mask is None else mask.reshape(B, T, F * V)
        if self.media_time_embs is not None:
            if self.media_time_embs.shape[0] < T:
                raise ValueError(f"{T} images but max_num_media is {self.media_time_embs.shape[0]}")
            x = x + self.media_time_embs[:T]  # (T, 1, D) broadcast over M
        latents = self.latents.expand(B, T, -1, -1)  # (B, T, L, D)
        for attn, ff in cast(list[tuple[PerceiverAttention, FeedForward]], self.layers):
            latents = latents + attn(x, latents, mask)
            latents = latents + ff(latents)
        return self.norm(latents)  # type: ignore[no-any-return]
