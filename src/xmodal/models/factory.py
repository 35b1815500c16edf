"""Builders: configs → models. The only place that reads a :class:`~xmodal.config.ModelConfig`.

Named presets live in :data:`xmodal.registry.MODELS` (name → ModelConfig factory), registered next
to their definitions below; ``create_model`` takes a preset name, a YAML recipe or a ModelConfig.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from xmodal.config import EncoderConfig, HeadConfig, ModelConfig, load_config
from xmodal.encoders.base import Encoder
from xmodal.errors import ConfigError
from xmodal.models.clip import CLIP
from xmodal.models.heads import build_head
from xmodal.models.locking import lock_encoder
from xmodal.registry import IMAGE_ENCODERS, MODELS, TEXT_ENCODERS, Registry


def _build_encoder(registry: Registry[Any], cfg: EncoderConfig, where: str) -> Encoder:
    """Build a registered encoder, turning bad names/arguments into a one-line ConfigError."""
    if cfg.name not in registry:
        raise ConfigError(
            f"{where}.name: unknown {registry.kind} {cfg.name!r} (registered: {', '.join(registry.names())})"
        )
    factory = registry.get(cfg.name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(cfg.args) - set(params))
        if unknown:
            raise ConfigError(
                f"unknown config key '{where}.args.{unknown[0]}' for {cfg.name} (known: {', '.join(params)})"
            )
    try:
        enc = factory(**cfg.args)
    except TypeError as e:
        raise ConfigError(f"{where}.args: {e}") from None
    try:
        lock_encoder(enc, cfg.unlocked_blocks)
    except ValueError as e:
        raise ConfigError(f"{where}.unlocked_blocks: {e}") from None
    return enc  # type: ignore[no-any-return]


def _head(cfg: HeadConfig, in_dim: int, out_dim: int, where: str) -> Any:
    try:
        return build_head(
            cfg.kind,
            in_dim=in_dim,
            out_dim=out_dim,
            hidden_dim=cfg.hidden_dim,
            dropout=cfg.dropout,
            input_norm=cfg.input_norm,
        )
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def build_model(cfg: ModelConfig) -> CLIP:
    """A :class:`CLIP` from its config: encoders from the registries, locking, heads, temperature.

    ``model.name: "hf:PATH"`` (or ``hf-clip:`` / ``hf-siglip:``) builds a Hugging Face CLIP/SigLIP folder
    instead (:mod:`xmodal.models.hf_clip`).
    """
    from xmodal.models.hf_clip import build_hf_model, is_hf_name

    if is_hf_name(cfg.name):
        return build_hf_model(cfg)
    if cfg.name != "clip":
        raise ConfigError(
            f"model.name: unknown model architecture {cfg.name!r} (available: clip, hf:PATH, "
            "hf-clip:PATH, hf-siglip:PATH)"
        )
    image = _build_encoder(IMAGE_ENCODERS, cfg.image_encoder, "model.image_encoder")
    text = _build_encoder(TEXT_ENCODERS, cfg.text_encoder, "model.text_encoder")
    return CLIP(
        image_encoder=image,
        text_encoder=text,
        image_head=_head(cfg.image_head, image.pooled_dim, cfg.embed_dim, "model.image_head"),
        text_head=_head(cfg.text_head, text.pooled_dim, cfg.embed_dim, "model.text_head"),
        init_temperature=cfg.init_temperature,
        max_logit_scale=cfg.max_logit_scale,
        learn_temperature=cfg.learn_temperature,
    )


def image_preprocess(model: CLIP, image_size: int) -> Any:
    """The eval-time preprocessing of a model's image tower (its own mean/std convention).

    A model that carries its own ``preprocess`` (a Hugging Face folder's) returns that one.
    """
    from xmodal.data.transforms import ImagePreprocess

    own = getattr(model, "preprocess", None)
    if own is not None:
        return own
    enc = model.image_encoder
    return ImagePreprocess(size=image_size, mean=enc.image_mean, std=enc.image_std)


def resolve_model_config(name_or_config: str | Path | ModelConfig) -> ModelConfig:
    """A preset name, a path to a YAML recipe, or a ModelConfig → ModelConfig."""
    if isinstance(name_or_config, ModelConfig):
        return name_or_config
    s = str(name_or_config)
    from xmodal.models.hf_clip import hf_model_config, is_hf_name

    if is_hf_name(s):  # "hf:PATH", "hf-clip:PATH", "hf-siglip:PATH": a Hugging Face folder
        return hf_model_config(s)
    if s.endswith((".yaml", ".yml")) or Path(s).is_file():
        return load_config(s).model
    if s not in MODELS:
        raise ConfigError(
            f"unknown model {s!r}; registered: {', '.join(MODELS.names())} (or pass a YAML recipe)"
        )
    return dataclasses.replace(MODELS.get(s)())


def create_model(name_or_config: str | Path | ModelConfig) -> tuple[CLIP, Any]:
    """Build a model and its preprocessing, as ``open_clip.create_model_and_transforms`` users expect.

    Returns:
        (model in eval mode, preprocess: PIL image → (3, S, S) tensor).
    """
    cfg = resolve_model_config(name_or_config)
    model = build_model(cfg)
    model.config = cfg  # type: ignore[assignment]
    return model.eval(), image_preprocess(model, cfg.image_size)


def list_models() -> list[str]:
    """Names of the registered model presets."""
    return MODELS.names()


# -- presets ------------------------------------------------------------------------------------
@MODELS.register("clip-effnet-minilm")
def clip_effnet_minilm() -> ModelConfig:
    """EfficientNet-Lite0 (ImageNet, multi-scale pooled) → MLP head into locked all-MiniLM-L6-v2's space."""
    return ModelConfig(
        image_encoder=EncoderConfig(
            name="efficientnet_lite0", args={"pretrained": True, "pooled_stages": [4, 5, 7]}
        ),
        text_encoder=EncoderConfig(name="minilm", args={"max_length": 64}),
        image_head=HeadConfig(kind="mlp", hidden_dim=1024, dropout=0.3, input_norm=True),
        text_head=HeadConfig(kind="identity"),
        embed_dim=384,
        image_size=128,
    )


@MODELS.register("clip-vit-tiny")
def clip_vit_tiny() -> ModelConfig:
    """From-scratch tiny ViT + tiny text Transformer (byte tokenizer): for tests and new domains."""
    return ModelConfig(
        image_encoder=EncoderConfig(
            name="vit",
            args={"image_size": 32, "patch_size": 8, "dim": 64, "depth": 2, "num_heads": 4},
            unlocked_blocks=-1,
        ),
        text_encoder=EncoderConfig(
            name="text_transformer",
            args={"dim": 64, "depth": 2, "num_heads": 4, "max_length": 48},
            unlocked_blocks=-1,
        ),
        image_head=HeadConfig(kind="linear"),
        text_head=HeadConfig(kind="linear"),
        embed_dim=64,
        image_size=32,
    )
