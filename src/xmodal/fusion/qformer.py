"""Q-Former: learned queries that read a frozen image encoder and share self-attention with text.

Li et al. 2023, "BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders and Large
Language Models", https://arxiv.org/abs/2301.12597, §3.1 and Fig. 2. A BERT-style (post-norm) transformer
whose input is ``concat(queries, text)``: self-attention is shared between the two, and its mask decides
the objective (uni-modal for ITC, bi-directional for ITM, multimodal-causal for ITG); the queries alone
cross-attend to the frozen image features every ``cross_attention_every`` layers; queries and text have
separate feed-forward networks (as LAVIS's ``intermediate_query``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.layers.attention import attention_reference

MaskMode = Literal["unimodal", "bidirectional", "causal"]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (BERT's, with biases).

    Args:
        dim: query width D (a multiple of ``num_heads``).
        kv_dim: key/value input width (D for self-attention, the image width for cross-attention).
        num_heads: number of heads H.
        dropout: attention-weight dropout (training only).
        fused: ``F.scaled_dot_product_attention`` (True) or the plain ``attention_reference`` (False).
    """

    def __init__(
        self, *, dim: int, kv_dim: int, num_heads: int, dropout: float = 0.0, fused: bool = True
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads, self.dropout, self.fused = num_heads, dropout, fused
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(kv_dim, dim)
        self.value = nn.Linear(kv_dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (B, N, D) attends to context (B, M, kv_dim); attn_mask bool (B|1, 1, N, M), True = may attend."""
        B, N, D = x.shape  # batch, queries, width
        H = self.num_heads

        def heads(t: Tensor) -> Tensor:  # (B, n, D) → (B, H, n, D/H)
            return t.view(B, t.shape[1], H, D // H).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(context)), heads(self.value(context))
        if self.fused:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
            )
        else:
            y = attention_reference(q, k, v, attn_mask)
        return self.out(y.transpose(1, 2).reshape(B, N, D))  # type: ignore[no-any-return]


class FeedForward(nn.Module):
    """BERT's post-norm FFN sub-layer: ``LayerNorm(x + Linear(GELU(Linear(x))))``."""

    def __init__(self, *, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., D) → (..., D)."""
        return self.norm(x + self.drop(self.fc2(F.gelu(self.fc1(x)))))  # type: ignore[no-any-return]


class QFormerLayer(nn.Module):
    """Shared self-attention over [queries; text], queries-only cross-attention, separate FFNs.

    Args:
        dim: width D; encoder_dim: frozen image feature width; num_heads; mlp_ratio: FFN width = ratio·D.
        cross_attention: whether this layer has the cross-attention to the image.
    """

    def __init__(
        self,
        *,
        dim: int,
        encoder_dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        cross_attention: bool = True,
        dropout: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(
            dim=dim, kv_dim=dim, num_heads=num_heads, dropout=dropout, fused=fused
        )
        self.self_norm = nn.LayerNorm(dim, eps=1e-12)
        self.cross_attn: MultiHeadAttention | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                dim=dim, kv_dim=encoder_dim, num_heads=num_heads, dropout=dropout, fused=fused
            )
            self.cross_norm = nn.LayerNorm(dim, eps=1e-12)
        hidden = int(dim * mlp_ratio)
        self.ffn_query = FeedForward(dim=dim, hidden_dim=hidden, dropout=dropout)
        self.ffn_text = FeedForward(dim=dim, hidden_dim=hidden, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        num_queries: int,
        self_mask: Tensor | None,
        image: Tensor | None,
        image_mask: Tensor | None,
    ) -> Tensor:
        """x (B, Q+N, D) with the Q queries first → (B, Q+N, D)."""
        x = self.self_norm(x + self.drop(self.self_attn(x, x, self_mask)))
        q, t = x[:, :num_queries], x[:, num_queries:]
        if num_queries and self.cross_attn is not None:
            assert image is not None
            q = self.cross_norm(q + self.drop(self.cross_attn(q, image, image_mask)))
        return torch.cat([self.ffn_query(q), self.ffn_text(t)], dim=1)


def qformer_self_mask(num_queries: int, text_mask: Tensor | None, num_text: int, mode: MaskMode) -> Tensor:
    """The shared self-attention mask over [queries; text] (BLIP-2 Fig. 2, right).

    Args:
        num_queries: Q; text_mask: (B, N) bool/0-1, True for real text tokens (None: all real);
        num_text: N; mode: "unimodal" (ITC: queries ↔ queries, text ↔ text), "bidirectional" (ITM: all ↔
            all) or "causal" (ITG: queries ↔ queries; text → all queries and earlier text).

    Returns:
        (B|1, 1, Q+N, Q+N) bool, True = may attend. Padded text keys are masked; a row left with no key
        (impossible when the first text token is real) would be opened by SDPA's NaN, so none is.
    """
    Q, N = num_queries, num_text
    allowed = torch.zeros(Q + N, Q + N, dtype=torch.bool)
    allowed[:Q, :Q] = True
    if mode == "unimodal":
        allowed[Q:, Q:] = True
    elif mode == "bidirectional":
        allowed[:] = True
    elif mode == "causal":
        allowed[Q:, :Q] = True
        allowed[Q:, Q:] = torch.ones(N, N, dtype=torch.bool).tril()
    else:
        raise ValueError(f"unknown Q-Former mask mode {mode!r}")
    allowed = allowed[None, None]  # (1, 1, Q+N, Q+N)
    if text_mask is not None:
        device = text_mask.device
        keys = torch.cat(
            [torch.ones(text_mask.shape[0], Q, dtype=torch.bool, device=device), text_mask.bool()], 1
        )
        allowed = allowed.to(device) & keys[:, None, None, :]
    return allowed


def _bert_init(module: nn.Module) -> None:
    """BERT's initialisation (Devlin et al. 2019): N(0, 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class QFormer(nn.Module):
    """BLIP-2's Querying Transformer (Li et al. 2023, https://arxiv.org/abs/2301.12597).

    Args:
        num_queries: learned query tokens Q (32 in BLIP-2).
        dim: width D; depth: layers; num_heads: heads; mlp_ratio: FFN width ratio.
        encoder_dim: width of the frozen image features.
        vocab_size: text vocabulary (BERT's plus BLIP-2's ``[DEC]``); max_text_len: position table size.
        cross_attention_every: cross-attention in layers 0, k, 2k, ... (BLIP-2: every 2nd layer).
        dropout: dropout in attention and FFN outputs.
        fused: SDPA (True) or the plain reference attention (False), for parity tests.
    """

    def __init__(
        self,
        *,
        num_queries: int = 32,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        encoder_dim: int = 1408,
        vocab_size: int = 30523,
        max_text_len: int = 512,
        cross_attention_every: int = 2,
        dropout: float = 0.1,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.num_queries, self.encoder_dim = dim, num_queries, encoder_dim
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.position_embeddings = nn.Embedding(max_text_len, dim)
        self.embed_norm = nn.LayerNorm(dim, eps=1e-12)
        self.embed_drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(
                dim=dim,
                encoder_dim=encoder_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                cross_attention=i % cross_attention_every == 0,
                dropout=dropout,
                fused=fused,
            )
            for i in range(depth)
        )
        self.apply(_bert_init)

    def forward(
        self,
        *,
        image: Tensor | None = None,
        image_mask: Tensor | None = None,
        text_ids: Tensor | None = None,
        text_mask: Tensor | None = None,
        mode: MaskMode = "unimodal",
    ) -> tuple[Tensor | None, Tensor | None]:
        """Run queries (when ``image`` is given) and/or text through the Q-Former.

        Args:
            image: (B, V, encoder_dim) frozen image features; None runs text alone (ITC's text side).
            image_mask: (B, V) bool, True for real image tokens.
            text_ids: (B, N) token ids; None runs queries alone (ITC's image side, stage 2).
            text_mask: (B, N) 1 for real tokens.
            mode: the self-attention mask (:func:`qformer_self_mask`).

        Returns:
            (query outputs (B, Q, D) or None, text outputs (B, N, D) or None).
        """
        parts, Q, N = [], 0, 0
        if image is not None:
            Q = self.num_queries
            parts.append(self.embed_norm(self.query_tokens.expand(image.shape[0], -1, -1)))
        if text_ids is not None:
            N = text_ids.shape[1]
            pos = torch.arange(N, device=text_ids.device)
            parts.append(self.embed_norm(self.word_embeddings(text_ids) + self.position_embeddings(pos)))
        if not parts:
            raise ValueError("the Q-Former needs an image, a text or both")
        x = self.embed_drop(torch.cat(parts, dim=1))  # (B, Q+N, D)
        mask = qformer_self_mask(Q, text_mask if text_ids is not None else None, N, mode).to(x.device)
        cross_mask = None if image_mask is None else image_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, Q, mask, image, cross_mask)
        return (x[:, :Q] if Q else None), (x[:, Q:] if N else None)
