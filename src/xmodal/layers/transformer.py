"""Pre-norm transformer blocks and a stack of them.

Pre-norm (``x + f(norm(x))``) as in GPT-2 and ViT (Xiong et al. 2020, "On Layer Normalization in the
Transformer Architecture", https://arxiv.org/abs/2002.04745): it trains without warm-up tricks.
"""

from __future__ import annotations

from torch import Tensor, nn

from xmodal.layers.attention import SelfAttention
from xmodal.layers.mlp import Mlp


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    Args:
        dim: width D.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width = ``mlp_ratio * dim``.
        dropout: dropout in attention and MLP.
        causal: causal self-attention.
        norm_layer: normalisation class, called as ``norm_layer(dim)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        causal: bool = False,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SelfAttention(dim=dim, num_heads=num_heads, dropout=dropout, causal=causal)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_dim=dim, hidden_dim=int(dim * mlp_ratio), out_dim=dim, dropout=dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) bool True=valid or None → (B, N, D)."""
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of ``depth`` pre-norm blocks in ``.blocks`` (no final norm: the encoder owns it).

    Args: as ``TransformerBlock``, plus ``depth``, the number of blocks.
    """

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        causal: bool = False,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim=dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                causal=causal,
                norm_layer=norm_layer,
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, D), mask (B, N) bool True=valid or None → (B, N, D)."""
        for block in self.blocks:
            x = block(x, mask)
        return x
