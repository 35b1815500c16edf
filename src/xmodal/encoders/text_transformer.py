"""A text transformer trained from scratch: token + position embeddings, pre-norm blocks, final norm.

The text tower of CLIP (Radford et al. 2021, https://arxiv.org/abs/2103.00020) without its causal
mask and EOT pooling: here attention is bidirectional with a padding mask, and the pooled vector is
the mean over real tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xmodal.encoders.base import Encoder, EncoderOutput, masked_mean
from xmodal.encoders.tokenizer import ByteTokenizer, Tokenizer
from xmodal.layers.transformer import Transformer
from xmodal.registry import TEXT_ENCODERS


class TextEmbed(nn.Module):
    """Learned token and position embeddings: input_ids (B, L) → (B, L, D)."""

    def __init__(self, *, vocab_size: int, max_length: int, dim: int) -> None:
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, dim))
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids (B, L) → (B, L, D)."""
        return self.token_embed(input_ids) + self.pos_embed[:, : input_ids.shape[1]]


class TextTransformer(Encoder):
    """Bidirectional text transformer encoder.

    Args:
        vocab_size: embedding table size (default: the tokenizer's).
        max_length: longest input L (position embeddings); default: the tokenizer's.
        dim: width D.
        depth: number of blocks.
        num_heads: attention heads.
        pad_id: padding id, used to build the mask when none is given (default: the tokenizer's).
        mlp_ratio: MLP hidden width / D.
        dropout: dropout in attention and MLPs.
        tokenizer: turns texts into ``input_ids`` / ``attention_mask`` (default ``ByteTokenizer``).

    ``forward`` returns tokens (B, L, D), pooled = masked mean (B, D) and the mask (B, L).
    """

    def __init__(
        self,
        *,
        vocab_size: int | None = None,
        max_length: int | None = None,
        dim: int,
        depth: int,
        num_heads: int,
        pad_id: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        if tokenizer is None:
            tokenizer = ByteTokenizer(max_length=max_length or 64)
        self.tokenizer = tokenizer
        vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
        max_length = tokenizer.max_length if max_length is None else max_length
        if vocab_size < tokenizer.vocab_size or max_length < tokenizer.max_length:
            raise ValueError(
                f"vocab_size {vocab_size} / max_length {max_length} smaller than the tokenizer's "
                f"{tokenizer.vocab_size} / {tokenizer.max_length}"
            )
        self.pad_id = tokenizer.pad_id if pad_id is None else pad_id
        self.max_length = max_length
        self.token_dim = dim
        self.pooled_dim = dim
        self.embed = TextEmbed(vocab_size=vocab_size, max_length=max_length, dim=dim)
        self.transformer = Transformer(
            dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)
        for m in self.transformer.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """input_ids (B, L) long, attention_mask (B, L) 0/1 or bool (default: ids != pad_id).

        Returns tokens (B, L, D), pooled (B, D) mean over real tokens, mask (B, L) bool.
        """
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_length {self.max_length}")
        mask = input_ids != self.pad_id if attention_mask is None else attention_mask.bool()
        x = self.norm(self.transformer(self.embed(input_ids), mask))  # (B, L, D)
        return EncoderOutput(tokens=x, pooled=masked_mean(x, mask), mask=mask)

    def blocks(self) -> list[nn.Module]:
        """[embeddings (token + position), each transformer block]."""
        return [self.embed, *self.transformer.blocks]

    def output_only_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.norm]


@TEXT_ENCODERS.register("text_transformer")
def text_transformer(**kwargs: Any) -> TextTransformer:
    """A text transformer; keyword arguments override the tiny defaults (width 64, 2 blocks, 4 heads)."""
    args: dict[str, Any] = {"dim": 64, "depth": 2, "num_heads": 4}
    return TextTransformer(**(args | kwargs))
