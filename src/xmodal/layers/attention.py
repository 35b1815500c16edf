"""Multi-head self-attention on top of ``F.scaled_dot_product_attention``, plus its plain reference.

Attention is ``softmax(Q Kᵀ / sqrt(d_head)) V`` (Vaswani et al. 2017, "Attention Is All You Need",
https://arxiv.org/abs/1706.03762). The module calls PyTorch's fused kernel; ``attention_reference``
spells the same computation out so tests can check the fused path against it, forward and backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def make_attention_mask(
    mask: Tensor | None, num_tokens: int, *, causal: bool, device: torch.device | None = None
) -> Tensor | None:
    """Combine a key-padding mask and a causal mask into one boolean attention mask.

    Args:
        mask: (B, N) bool, True where a token is real; None when all are.
        num_tokens: N.
        causal: whether query i may only attend to keys j <= i.
        device: where to build the causal mask when ``mask`` is None.

    Returns:
        (B, 1, N, N) bool (True = may attend), (1, 1, N, N) when only causal, or None when neither.
        A query row with no allowed key (a fully padded sequence, or left padding under a causal
        mask) is opened to every key so that softmax stays finite; the output at such a padded
        position is meaningless and must be ignored downstream (it is, via ``mask``).
    """
    if mask is None and not causal:
        return None
    allowed: Tensor | None = None
    if mask is not None:
        allowed = mask.bool()[:, None, None, :]  # (B, 1, 1, N): keys
    if causal:
        device = mask.device if mask is not None else device
        tril = torch.ones(num_tokens, num_tokens, dtype=torch.bool, device=device).tril()
        allowed = tril[None, None] if allowed is None else allowed & tril  # (B|1, 1, N, N)
    assert allowed is not None
    if allowed.shape[-2] == 1:  # key padding only: broadcast over queries
        allowed = allowed.expand(-1, -1, num_tokens, -1)
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def attention_reference(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """Plain ``softmax(Q Kᵀ / sqrt(d)) V`` without fused kernels (the parity reference).

    Args:
        q, k, v: (B, H, N, d) queries, keys, values.
        attn_mask: bool, broadcastable to (B, H, N, N), True where a query may attend to a key.

    Returns:
        (B, H, N, d).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


class SelfAttention(nn.Module):
    """Multi-head self-attention with an optional key-padding mask and causal masking.

    Args:
        dim: model width D (a multiple of ``num_heads``).
        num_heads: number of heads H; each has width D / H.
        dropout: dropout on the attention weights and on the output projection (training only).
        causal: mask future tokens (query i sees keys j <= i).
        fused: use ``F.scaled_dot_product_attention`` (True) or ``attention_reference`` (False).
    """

    def __init__(
        self, *, dim: int, num_heads: int, dropout: float = 0.0, causal: bool = False, fused: bool = True
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.causal = causal
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) bool True=valid or None → (B, N, D)."""
        B, N, D = x.shape  # batch, tokens, width
        H = self.num_heads
        qkv = self.qkv(x).view(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, N, d)
        q, k, v = qkv.unbind(0)  # each (B, H, N, d)
        attn_mask = make_attention_mask(mask, N, causal=self.causal, device=x.device)
        if self.fused:
            # causal without padding: let the kernel build the mask (it can then use flash attention)
            only_causal = self.causal and mask is None
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None if only_causal else attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=only_causal,
            )
        else:
            if self.training and self.dropout > 0:
                raise ValueError("the reference attention path has no attention dropout; use fused=True")
            y = attention_reference(q, k, v, attn_mask)
        y = y.transpose(1, 2).reshape(B, N, D)  # (B, N, H*d)
        return self.proj_drop(self.proj(y))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x`` (B, N, D), keys and values from ``memory`` (B, M, Dm).

    Used by decoders that read an encoder's tokens (Vaswani et al. 2017, §3.2.3: "encoder-decoder
    attention"). ``fused`` picks ``F.scaled_dot_product_attention`` or ``attention_reference``.

    Args:
        dim: query width D (a multiple of ``num_heads``).
        num_heads: heads H.
        memory_dim: width of the memory tokens (default D).
        dropout: dropout on the attention weights and the output projection (training only).
        fused: use the fused kernel (True) or the plain reference (False).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        memory_dim: int | None = None,
        dropout: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.fused = fused
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(memory_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), memory (B, M, Dm), memory_mask (B, M) bool True=valid or None → (B, N, D)."""
        B, N, D = x.shape  # batch, queries, width
        M, H = memory.shape[1], self.num_heads
        q = self.q(x).view(B, N, H, D // H).transpose(1, 2)  # (B, H, N, d)
        k, v = self.kv(memory).view(B, M, 2, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, M, d) each
        attn_mask = None if memory_mask is None else memory_mask.bool()[:, None, None, :]  # (B, 1, 1, M)
        if self.fused:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            if self.training and self.dropout > 0:
                raise ValueError("the reference attention path has no attention dropout; use fused=True")
            y = attention_reference(q, k, v, attn_mask)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(B, N, D)))
