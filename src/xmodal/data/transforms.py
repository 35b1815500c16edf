"""Image transforms without torchvision: PIL in, normalised (3, S, S) float tensors out.

``ImagePreprocess`` is the deterministic eval path (resize the short side, centre crop, normalise, as
CLIP's preprocessing). ``TrainAugment`` adds a random-resized crop that keeps the aspect ratio, random
greyscale and mild colour jitter. No horizontal flip by default: for emoji and icons a flip changes the
meaning ("left arrow", "right-facing fist").

All randomness comes from an explicit ``torch.Generator``, and each call draws the same number of values
whatever branches it takes, so a training run is reproducible and can be resumed exactly by restoring
the generator state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
# ITU-R BT.601 luma, as PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image → float32 tensor (3, H, W) in [0, 1] (converted to RGB first if needed)."""
    arr = np.array(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)  # (H, W, 3), a copy
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def _resample(name: str) -> Image.Resampling:
    try:
        return _RESAMPLE[name]
    except KeyError:
        raise ValueError(f"unknown resample {name!r}; expected one of {sorted(_RESAMPLE)}") from None


def _mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    return torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) → (1, H, W) luma."""
    r, g, b = x.unbind(0)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(0)


class ImagePreprocess:
    """Deterministic preprocessing: resize the short side to ``size``, centre crop, normalise.

    Args:
        size: output side S in pixels.
        mean, std: per-channel RGB normalisation applied to [0, 1] values.
        resample: "bicubic" (default), "bilinear", "lanczos", "box" or "nearest".

    ``__call__(img)``: PIL image (H, W) → float32 tensor (3, S, S).
    """

    def __init__(
        self, *, size: int, mean: Sequence[float], std: Sequence[float], resample: str = "bicubic"
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self.resample = resample
        self._resample = _resample(resample)
        self.mean, self.std = _mean_std(mean, std)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        # crop the central square and resize it in one resampling step (PIL takes a float box)
        out = img.resize((self.size, self.size), self._resample, box=(left, top, left + side, top + side))
        return (to_tensor(out) - self.mean) / self.std

    def __repr__(self) -> str:
        return f"ImagePreprocess(size={self.size}, resample={self.resample!r})"


class TrainAugment:
    """Training augmentation: random-resized square crop, random greyscale, colour jitter, normalise.

    The crop is a square whose area is a fraction ``scale`` of the largest square in the image, at a
    uniformly random position, resized to ``size``: it zooms and shifts but never distorts.

    Args:
        size: output side S in pixels.
        mean, std: per-channel RGB normalisation applied to [0, 1] values.
        scale: (low, high) range of the crop's area relative to the largest square.
        grayscale_p: probability of converting to greyscale (kept 3-channel).
        brightness, contrast, saturation: jitter strengths; each factor is uniform in [1 - s, 1 + s].
        hflip_p: probability of a horizontal flip; 0 by default because flips change meaning for icons.
        resample: as ``ImagePreprocess``.

    ``__call__(img, generator)``: PIL image → float32 tensor (3, S, S); draws exactly ``N_RANDOM``
    values from ``generator`` per call.
    """

    N_RANDOM = 8

    def __init__(
        self,
        *,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: tuple[float, float] = (0.7, 1.0),
        grayscale_p: float = 0.2,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hflip_p: float = 0.0,
        resample: str = "bicubic",
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        for name, p in (("grayscale_p", grayscale_p), ("hflip_p", hflip_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name, s in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= s < 1:
                raise ValueError(f"{name} must be in [0, 1), got {s}")
        self.size = size
        self.scale = scale
        self.grayscale_p = grayscale_p
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.hflip_p = hflip_p
        self.resample = resample
        self._resample = _resample(resample)
        self.mean, self.std = _mean_std(mean, std)

    def __call__(self, img: Image.Image, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(self.N_RANDOM, generator=generator, dtype=torch.float64).tolist()
        w, h = img.size
        # crop: area fraction, then position, of a square inside the largest square
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[0]
        side = math.sqrt(area) * min(w, h)
        left, top = u[1] * (w - side), u[2] * (h - side)
        out = img.resize((self.size, self.size), self._resample, box=(left, top, left + side, top + side))
        if u[3] < self.hflip_p:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = to_tensor(out)  # (3, S, S) in [0, 1]

        # colour jitter, fixed order: brightness, contrast, saturation (each factor in [1 - s, 1 + s])
        x = (x * (1 + self.brightness * (2 * u[4] - 1))).clamp_(0.0, 1.0)
        mean_luma = _grayscale(x).mean()
        x = (mean_luma + (x - mean_luma) * (1 + self.contrast * (2 * u[5] - 1))).clamp_(0.0, 1.0)
        luma = _grayscale(x)
        x = (luma + (x - luma) * (1 + self.saturation * (2 * u[6] - 1))).clamp_(0.0, 1.0)
        if u[7] < self.grayscale_p:
            x = _grayscale(x).expand(3, -1, -1).contiguous()
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return (
            f"TrainAugment(size={self.size}, scale={self.scale}, grayscale_p={self.grayscale_p}, "
            f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
            f"hflip_p={self.hflip_p})"
        )
