"""Image → sequence of patch embeddings (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words",
https://arxiv.org/abs/2010.11929): a convolution with kernel = stride = patch size."""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project each to ``dim``.

    Args:
        image_size: expected square input side S (pixels).
        patch_size: patch side P; S must be a multiple of P.
        in_chans: input channels C.
        dim: embedding width D.

    Shapes: (B, C, S, S) → (B, N, D) with N = (S / P)², patches in row-major order.
    """

    def __init__(self, *, image_size: int, patch_size: int, in_chans: int = 3, dim: int) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        """images (B, C, S, S) → (B, N, D)."""
        if images.ndim != 4 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"PatchEmbed expects (B, C, {self.image_size}, {self.image_size}), got {tuple(images.shape)}"
            )
        x = self.proj(images)  # (B, D, S/P, S/P)
        return x.flatten(2).transpose(1, 2)  # (B, N, D)
