"""Vision Transformer image encoder, trained from scratch.

Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", https://arxiv.org/abs/2010.11929: patch embeddings + a learned CLS token + learned position
embeddings, pre-norm transformer blocks, a final LayerNorm.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from xmodal.encoders.base import Encoder, EncoderOutput
from xmodal.layers.patch_embed import PatchEmbed
from xmodal.layers.transformer import Transformer
from xmodal.registry import IMAGE_ENCODERS


class ViTEmbed(nn.Module):
    """Patch embedding, CLS token prepended, learned position embedding added.

    images (B, C, S, S) → (B, 1 + N, D), CLS first.
    """

    def __init__(self, *, image_size: int, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(
            image_size=image_size, patch_size=patch_size, in_chans=in_chans, dim=dim
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, S, S) → (B, 1 + N, D)."""
        x = self.patch_embed(images)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, x], dim=1) + self.pos_embed


class VisionTransformer(Encoder):
    """ViT encoder.

    Args:
        image_size: input side S (square images).
        patch_size: patch side P (S must be a multiple).
        dim: width D.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        in_chans: input channels.
        pool: pooled vector = the CLS token ("cls") or the mean of the patch tokens ("mean").
        dropout: dropout in attention and MLPs.

    ``forward`` returns tokens = the normalised patch tokens (B, N, D) with N = (S / P)² (CLS
    excluded) and pooled (B, D).
    """

    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        *,
        image_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        pool: Literal["cls", "mean"] = "cls",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.token_dim = dim
        self.pooled_dim = dim
        self.pool = pool
        self.default_image_size = image_size
        self.embed = ViTEmbed(image_size=image_size, patch_size=patch_size, in_chans=in_chans, dim=dim)
        self.transformer = Transformer(
            dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(_init_linear)

    def forward(self, images: Tensor) -> EncoderOutput:
        """images (B, C, S, S) → tokens (B, N, D), pooled (B, D)."""
        x = self.norm(self.transformer(self.embed(images)))  # (B, 1 + N, D)
        tokens = x[:, 1:]  # (B, N, D)
        pooled = x[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return EncoderOutput(tokens=tokens, pooled=pooled)

    def blocks(self) -> list[nn.Module]:
        """[embedding (patches + CLS + positions), each transformer block]."""
        return [self.embed, *self.transformer.blocks]

    def output_only_modules(self) -> list[nn.Module]:
        """The final LayerNorm."""
        return [self.norm]


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@IMAGE_ENCODERS.register("vit")
def vit(**kwargs: Any) -> VisionTransformer:
    """A ViT; keyword arguments override the tiny defaults (32 px, patch 8, width 64, 2 blocks, 4 heads)."""
    args: dict[str, Any] = {"image_size": 32, "patch_size": 8, "dim": 64, "depth": 2, "num_heads": 4}
    return VisionTransformer(**(args | kwargs))
