"""The registry-wide model test (timm style): every registered preset, built for real.

For each name in ``MODELS``: forward + backward on real emoji, every trainable parameter gets a finite,
non-zero gradient and every frozen one none, no NaN, and save → ``load_checkpoint`` gives identical outputs.
"""

from __future__ import annotations

import pytest
import torch

from xmodal.config import ExperimentConfig, ModelConfig, to_dict
from xmodal.losses import clip_loss
from xmodal.models.clip import CLIP
from xmodal.models.factory import build_model, image_preprocess
from xmodal.models.io import load_checkpoint
from xmodal.registry import MODELS
from xmodal.train.checkpoint import save_model_dir


def inputs(model: CLIP, cfg: ModelConfig, emoji_pairs) -> tuple[torch.Tensor, list[str]]:
    images, captions = emoji_pairs
    pre = image_preprocess(model, cfg.image_size)
    return torch.stack([pre(im) for im in images]), captions


def forward_backward(model: CLIP, images: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor]:
    model.train()
    out = model(image=images, text=captions)
    for key, value in out.items():
        assert torch.isfinite(value).all(), f"{key} has NaN/inf"
    clip_loss(**out).backward()
    return out


def check_gradients(model: CLIP) -> tuple[set[str], set[str]]:
    """Assert the gradient contract; returns (trainable names, frozen names)."""
    trainable, frozen = set(), set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            trainable.add(name)
            assert p.grad is not None, f"{name} is trainable but got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
        else:
            frozen.add(name)
            assert p.grad is None, f"{name} is frozen but got a gradient"
    assert trainable, "nothing is trainable"
    return trainable, frozen


@pytest.mark.parametrize("name", MODELS.names())
def test_every_preset_trains_and_round_trips(name, emoji_pairs, tmp_path):
    cfg = MODELS.get(name)()
    assert isinstance(cfg, ModelConfig)
    torch.manual_seed(0)
    model = build_model(cfg)
    images, captions = inputs(model, cfg, emoji_pairs)
    out = forward_backward(model, images, captions)
    assert out["image_features"].shape == out["text_features"].shape == (4, cfg.embed_dim)
    trainable, frozen = check_gradients(model)
    for tower, enc_cfg in (("image_encoder", cfg.image_encoder), ("text_encoder", cfg.text_encoder)):
        names = {n for n in trainable | frozen if n.startswith(f"{tower}.")}
        if enc_cfg.unlocked_blocks == 0:
            assert names <= frozen, f"{tower} is locked in {name} but has trainable parameters"
        if enc_cfg.unlocked_blocks == -1:
            assert names <= trainable, f"{tower} is unlocked in {name} but has frozen parameters"
    assert {n for n in trainable if n.startswith(("image_head.", "text_head."))}
    assert "log_logit_scale" in trainable

    save_model_dir(tmp_path / "model", model, {"config": to_dict(ExperimentConfig(model=cfg))})
    loaded, preprocess = load_checkpoint(tmp_path / "model")
    model.eval()
    assert not loaded.training
    with torch.no_grad():
        a, b = model(image=images, text=captions), loaded(image=images, text=captions)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(
        preprocess(emoji_pairs[0][0]), image_preprocess(model, cfg.image_size)(emoji_pairs[0][0])
    )


def test_lit_partial_unlocking_trains_only_the_last_blocks(emoji_pairs):
    cfg = MODELS.get("clip-effnet-minilm")()
    cfg.image_encoder.unlocked_blocks = 2
    cfg.text_encoder.unlocked_blocks = 2
    torch.manual_seed(0)
    model = build_model(cfg)
    forward_backward(model, *inputs(model, cfg, emoji_pairs))
    trainable, frozen = check_gradients(model)

    def top(names: set[str], depth: int) -> set[str]:
        return {".".join(n.split(".")[:depth]) for n in names}

    # image tower: the last MBConv block and the head (conv + BN); the ImageNet classifier stays frozen
    image = {n for n in trainable if n.startswith("image_encoder.")}
    assert top(image, 3) == {
        "image_encoder._blocks.15",
        "image_encoder._conv_head.weight",
        "image_encoder._bn1.weight",
        "image_encoder._bn1.bias",
    }
    assert "image_encoder._fc.weight" in frozen and "image_encoder._blocks.14._project_conv.weight" in frozen
    # text tower (BERT, post-norm: no final norm): the last 2 of 6 layers
    text = {n for n in trainable if n.startswith("text_encoder.")}
    assert top(text, 5) == {"text_encoder.model.encoder.layer.4", "text_encoder.model.encoder.layer.5"}
    assert any(n.startswith("text_encoder.model.embeddings.") for n in frozen)
    others = trainable - image - text
    assert others == {
        n for n, _ in model.named_parameters() if n.startswith(("image_head.", "text_head."))
    } | {"log_logit_scale"}
