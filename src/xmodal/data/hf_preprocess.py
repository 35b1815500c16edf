"""Image preprocessing of a Hugging Face CLIP/SigLIP folder, read from its ``preprocessor_config.json``.

Reproduces transformers' PIL ("slow") image processors (``CLIPImageProcessor`` / ``SiglipImageProcessor``
with ``backend="pil"``) without torchvision: convert to RGB (transparent pixels composited on white),
resize (the shortest side to ``size["shortest_edge"]`` keeping the aspect ratio, the long side
``int(short · long / short)``; or straight to ``size["height"] × size["width"]``) with PIL's filter
``resample``, centre crop with integer offsets ``(H − h) // 2``, rescale by ``rescale_factor`` (1/255) in
float64, then normalise with the folder's mean and std in float32.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from xmodal.errors import XmodalError

PREPROCESSOR_FILE = "preprocessor_config.json"

_OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
_OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
_CLIP_DEFAULTS: dict[str, Any] = {
    "size": {"shortest_edge": 224},
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "image_mean": _OPENAI_MEAN,
    "image_std": _OPENAI_STD,
}
_SIGLIP_DEFAULTS: dict[str, Any] = {
    "size": {"height": 224, "width": 224},
    "do_center_crop": False,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "CLIPImageProcessor": _CLIP_DEFAULTS,
    "CLIPFeatureExtractor": _CLIP_DEFAULTS,
    "SiglipImageProcessor": _SIGLIP_DEFAULTS,
}
"""What transformers' processor classes assume for keys a ``preprocessor_config.json`` leaves out."""


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB image; one with transparency is composited on white first (as transformers does)."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def shortest_edge_size(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """(new width, new height) with the short side ``shortest_edge`` and the aspect ratio kept (floored)."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if width <= height else (new_long, shortest_edge)


def center_crop(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre crop (H, W, C) → (height, width, C); an image smaller than the crop is zero-padded around."""
    h, w = arr.shape[:2]
    if h < height or w < width:  # pad symmetrically (extra pixel at the top/left as transformers' ceil)
        ph, pw = max(height, h), max(width, w)
        padded = np.zeros((ph, pw, *arr.shape[2:]), dtype=arr.dtype)
        top, left = -(-(ph - h) // 2), -(-(pw - w) // 2)
        padded[top : top + h, left : left + w] = arr
        arr, h, w = padded, ph, pw
    top, left = (h - height) // 2, (w - width) // 2
    return arr[top : top + height, left : left + width]


class HFImagePreprocess:
    """PIL image → float32 tensor (3, h, w), as a folder's CLIP/SigLIP image processor computes it.

    Args:
        resize: ``("shortest_edge", n)`` or ``("exact", (height, width))``; None: no resizing.
        crop: (height, width) of the centre crop, or None.
        resample: PIL filter id (3 = bicubic).
        rescale_factor: multiplier on uint8 values (1/255), or None for none.
        mean, std: per-channel normalisation after rescaling, or None for none.
    """

    def __init__(
        self,
        *,
        resize: tuple[str, Any] | None,
        crop: tuple[int, int] | None,
        resample: int = 3,
        rescale_factor: float | None = 1 / 255,
        mean: Sequence[float] | None = (0.5, 0.5, 0.5),
        std: Sequence[float] | None = (0.5, 0.5, 0.5),
    ) -> None:
        self.resize = resize
        self.crop = crop
        self.resample = Image.Resampling(resample)
        self.rescale_factor = rescale_factor
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    @property
    def output_size(self) -> int | None:
        """The side of the square output, when it is fixed (crop or exact resize), else None."""
        if self.crop is not None and self.crop[0] == self.crop[1]:
            return self.crop[0]
        if self.resize is not None and self.resize[0] == "exact" and self.resize[1][0] == self.resize[1][1]:
            return int(self.resize[1][0])
        return None

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = to_rgb(img)
        if self.resize is not None:
            mode, value = self.resize
            if mode == "shortest_edge":
                w, h = shortest_edge_size(img.width, img.height, int(value))
            else:
                h, w = int(value[0]), int(value[1])
            img = img.resize((w, h), resample=self.resample)
        arr: np.ndarray = np.asarray(img)  # (H, W, 3) uint8
        if self.crop is not None:
            arr = center_crop(arr, *self.crop)
        if self.rescale_factor is not None:
            arr = (arr.astype(np.float64) * self.rescale_factor).astype(np.float32)
        else:
            arr = arr.astype(np.float32)
        if self.mean is not None and self.std is not None:
            arr = (arr - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, h, w)

    def __repr__(self) -> str:
        return f"HFImagePreprocess(resize={self.resize}, crop={self.crop}, resample={self.resample.name})"


def _size(value: Any, where: str, *, int_is_shortest_edge: bool) -> tuple[str, Any]:
    """A size entry → ("shortest_edge", n) or ("exact", (h, w)). A bare int (older files, e.g. openai's
    CLIP: ``"size": 224, "crop_size": 224``) is a shortest edge for ``size`` and a square for ``crop_size``,
    as transformers reads it."""
    if isinstance(value, int):
        return ("shortest_edge", value) if int_is_shortest_edge else ("exact", (value, value))
    if isinstance(value, dict):
        if "shortest_edge" in value and "longest_edge" not in value:
            return ("shortest_edge", int(value["shortest_edge"]))
        if "height" in value and "width" in value:
            return ("exact", (int(value["height"]), int(value["width"])))
    raise XmodalError(f"{where}: unsupported size {value!r} (expected shortest_edge or height/width)")


def load_hf_preprocess(folder: str | Path) -> HFImagePreprocess:
    """The image preprocessing described by ``folder/preprocessor_config.json``."""
    path = Path(folder) / PREPROCESSOR_FILE
    if not path.is_file():
        raise XmodalError(f"{folder} has no {PREPROCESSOR_FILE} (the image preprocessing of the model)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XmodalError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise XmodalError(f"{path}: expected a JSON object")
    kind = cfg.get("image_processor_type") or cfg.get("feature_extractor_type")
    cfg = {**CLASS_DEFAULTS.get(str(kind).removesuffix("Fast").removesuffix("Pil"), {}), **cfg}
    crop = None
    if cfg.get("do_center_crop", False):
        crop_mode, crop_value = _size(
            cfg.get("crop_size", 224), f"{path} crop_size", int_is_shortest_edge=False
        )
        if crop_mode != "exact":
            raise XmodalError(f"{path}: crop_size needs height and width, got {cfg.get('crop_size')!r}")
        crop = (int(crop_value[0]), int(crop_value[1]))
    normalize = cfg.get("do_normalize", True)
    if normalize and not (isinstance(cfg.get("image_mean"), list) and isinstance(cfg.get("image_std"), list)):
        raise XmodalError(f"{path}: do_normalize needs image_mean and image_std lists")
    return HFImagePreprocess(
        resize=_size(cfg.get("size", 224), f"{path} size", int_is_shortest_edge=True)
        if cfg.get("do_resize", True)
        else None,
        crop=crop,
        resample=int(cfg.get("resample", 3)),
        rescale_factor=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None,
        mean=cfg.get("image_mean") if normalize else None,
        std=cfg.get("image_std") if normalize else None,
    )
