"""Hugging Face CLIP and SigLIP folders as xmodal dual encoders: ``create_model("hf-clip:PATH")``.

A folder in transformers' format (``config.json`` with ``model_type`` "clip" or "siglip", safetensors
weights, tokenizer files, ``preprocessor_config.json``), as ``openai/clip-vit-base-patch32`` or
``google/siglip-base-patch16-224`` are published, becomes an :class:`HFDualEncoder`:

* image tower: the vision model (:class:`~xmodal.encoders.hf_clip.HFVisionTower`); image head: CLIP's
  ``visual_projection`` (a bias-free linear map), or the identity for SigLIP (its pooling head is part
  of the tower);
* text tower: the text model with the folder's tokenizer; text head: ``text_projection`` or the identity;
* logit scale from the checkpoint; SigLIP's ``logit_bias`` too, returned by ``forward`` so that
  ``SigLipLoss()(**model(image=..., text=...))`` works (Zhai et al. 2023, https://arxiv.org/abs/2303.15343);
* image preprocessing from ``preprocessor_config.json`` (:mod:`xmodal.data.hf_preprocess`).

Names: ``hf:PATH`` (CLIP or SigLIP, from config.json), ``hf-clip:PATH``, ``hf-siglip:PATH`` (the type is
checked). A recipe names one as ``model: {name: "hf:PATH"}``: the towers and heads come from the folder;
of the rest of the model section only ``image_encoder.unlocked_blocks`` / ``text_encoder.unlocked_blocks``
(LiT locking, 0 = frozen by default) and ``learn_temperature`` apply. Only safetensors are read: a folder
with nothing but ``pytorch_model.bin`` (a pickle) is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.config import EncoderConfig, HeadConfig, ModelConfig
from xmodal.data.hf_preprocess import HFImagePreprocess, load_hf_preprocess
from xmodal.encoders.hf_clip import HFFolderTokenizer, HFTextTower, HFVisionTower
from xmodal.errors import ConfigError, XmodalError
from xmodal.models.clip import CLIP
from xmodal.models.heads import LinearHead
from xmodal.models.locking import lock_encoder

PREFIXES = {"hf:": None, "hf-clip:": "clip", "hf-siglip:": "siglip"}
"""Model-name prefixes → the model_type they require (None: either)."""
MODEL_TYPES = ("clip", "siglip")


def is_hf_name(name: str) -> bool:
    """Whether a model name points at a Hugging Face folder (``hf:``, ``hf-clip:``, ``hf-siglip:``)."""
    return any(str(name).startswith(p) for p in PREFIXES)


def split_hf_name(name: str) -> tuple[Path, str | None]:
    """``"hf-clip:/models/x"`` → (Path("/models/x"), "clip")."""
    for prefix, kind in PREFIXES.items():
        if name.startswith(prefix):
            path = name[len(prefix) :]
            if not path:
                raise ConfigError(f"model name {name!r} needs a folder after {prefix!r}")
            return Path(path).expanduser(), kind
    raise ConfigError(
        f"{name!r} is not a Hugging Face model name (expected one of {', '.join(PREFIXES)}PATH)"
    )


def read_hf_config(folder: Path, expected: str | None = None) -> dict[str, Any]:
    """``folder/config.json`` of a CLIP/SigLIP model, checked: the folder, the type and safetensors weights.

    Raises:
        XmodalError: a one-line message naming the folder (missing, not CLIP/SigLIP, the wrong type, or
        weights only as a pickle).
    """
    if not folder.is_dir():
        raise XmodalError(f"Hugging Face model folder {folder} does not exist")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise XmodalError(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XmodalError(f"{cfg_path} is not valid JSON: {e}") from None
    model_type = cfg.get("model_type") if isinstance(cfg, dict) else None
    if model_type not in MODEL_TYPES:
        raise XmodalError(
            f"{folder}: model_type {model_type!r} is not a CLIP or SigLIP dual encoder "
            f"(supported: {', '.join(MODEL_TYPES)})"
        )
    if expected is not None and model_type != expected:
        raise XmodalError(f"{folder}: model_type is {model_type!r}, not {expected!r}; use hf:{folder}")
    if not any(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").is_file():
        if any(folder.glob("pytorch_model*.bin")):
            raise XmodalError(
                f"{folder} holds its weights only as pytorch_model.bin, a pickle that xmodal does not load; "
                "convert it to model.safetensors (save_pretrained(..., safe_serialization=True))"
            )
        raise XmodalError(f"{folder} has no safetensors weights (model.safetensors)")
    return cfg  # type: ignore[no-any-return]


class HFDualEncoder(CLIP):
    """A :class:`CLIP` built from a Hugging Face folder, with SigLIP's optional logit bias.

    Args:
        logit_bias: SigLIP's additive bias b (logits = s · cos + b), or None for CLIP.
        preprocess: the folder's image preprocessing (PIL image → (3, S, S)).
        **clip_args: as :class:`CLIP`.

    ``forward`` returns CLIP's dict, plus ``"logit_bias"`` when the model has one.
    """

    def __init__(self, *, logit_bias: float | None, preprocess: HFImagePreprocess, **clip_args: Any) -> None:
        super().__init__(**clip_args)
        self.logit_bias = None if logit_bias is None else nn.Parameter(torch.tensor(float(logit_bias)))
        self.preprocess = preprocess

    def forward(  # type: ignore[override]
        self, image: Tensor | None = None, text: Any = None, **kwargs: Any
    ) -> dict[str, Tensor]:
        """As :meth:`CLIP.forward`, with ``"logit_bias"`` (a scalar) for SigLIP models."""
        out = super().forward(image, text, **kwargs)
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out


def _pretrained(model_type: str, folder: Path) -> Any:
    """transformers' CLIPModel / SiglipModel from the folder, float32, offline, safetensors only."""
    from transformers import CLIPModel, SiglipModel
    from transformers.utils import logging as hf_logging

    cls = CLIPModel if model_type == "clip" else SiglipModel
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise XmodalError(
            f"cannot load {model_type} weights from {folder}: {str(e).strip().splitlines()[0]}"
        ) from None
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def hf_model_config(name: str) -> ModelConfig:
    """The :class:`ModelConfig` recorded for an ``hf:`` model: its name, head kinds, embed dim, image size."""
    folder, expected = split_hf_name(name)
    cfg = read_hf_config(folder, expected)
    preprocess = load_hf_preprocess(folder)
    clip = cfg["model_type"] == "clip"
    from transformers import AutoConfig

    full = AutoConfig.from_pretrained(str(folder), local_files_only=True)  # with the class defaults filled in
    embed_dim = int(full.projection_dim) if clip else int(full.text_config.projection_size)
    head = HeadConfig(kind="linear" if clip else "identity")
    return ModelConfig(
        name=name,
        image_encoder=EncoderConfig(name="hf"),
        text_encoder=EncoderConfig(name="hf"),
        image_head=head,
        text_head=head,
        embed_dim=embed_dim,
        image_size=preprocess.output_size or 224,
    )


def build_hf_model(cfg: ModelConfig) -> HFDualEncoder:
    """The dual encoder of the folder named by ``cfg.name`` (``hf:``/``hf-clip:``/``hf-siglip:`` PATH)."""
    folder, expected = split_hf_name(cfg.name)
    model_type = read_hf_config(folder, expected)["model_type"]
    preprocess = load_hf_preprocess(folder)
    hf = _pretrained(model_type, folder)
    clip = model_type == "clip"
    max_length = int(hf.text_model.config.max_position_embeddings)
    tokenizer = HFFolderTokenizer(folder, max_length=max_length, pad_to_max_length=not clip)
    mean = tuple(float(v) for v in preprocess.mean) if preprocess.mean is not None else (0.0, 0.0, 0.0)
    std = tuple(float(v) for v in preprocess.std) if preprocess.std is not None else (1.0, 1.0, 1.0)
    image = HFVisionTower(hf.vision_model, mean=mean, std=std)
    text = HFTextTower(hf.text_model, tokenizer, use_attention_mask=clip)
    image_head: nn.Module = nn.Identity()
    text_head: nn.Module = nn.Identity()
    if clip:
        image_head = LinearHead(in_dim=image.pooled_dim, out_dim=hf.visual_projection.out_features)
        image_head.proj.weight = hf.visual_projection.weight
        text_head = LinearHead(in_dim=text.pooled_dim, out_dim=hf.text_projection.out_features)
        text_head.proj.weight = hf.text_projection.weight
    log_scale = float(hf.logit_scale.detach().reshape(()))
    bias = float(hf.logit_bias.detach().reshape(())) if not clip else None
    model = HFDualEncoder(
        image_encoder=image,
        text_encoder=text,
        image_head=image_head,
        text_head=text_head,
        init_temperature=math.exp(-log_scale),
        max_logit_scale=max(cfg.max_logit_scale, math.exp(log_scale)),
        learn_temperature=cfg.learn_temperature,
        logit_bias=bias,
        preprocess=preprocess,
    )
    with torch.no_grad():
        model.log_logit_scale.copy_(hf.logit_scale.detach().reshape(()))
    for enc, enc_cfg, where in ((image, cfg.image_encoder, "image"), (text, cfg.text_encoder, "text")):
        try:
            lock_encoder(enc, enc_cfg.unlocked_blocks)
        except ValueError as e:
            raise ConfigError(f"model.{where}_encoder.unlocked_blocks: {e}") from None
    if model.logit_bias is not None:
        model.logit_bias.requires_grad_(cfg.learn_temperature)
    return model


def hf_folder_name(path: str | Path) -> str | None:
    """``path`` as an ``hf:`` model name: when it is one, or a folder with ``config.json`` but no
    ``state.json`` (a Hugging Face folder rather than an xmodal checkpoint); otherwise None."""
    s = str(path)
    if is_hf_name(s):
        return s
    p = Path(s)
    if p.is_dir() and (p / "config.json").is_file() and not (p / "state.json").is_file():
        return f"hf:{p}"
    return None
