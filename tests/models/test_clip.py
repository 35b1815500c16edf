"""Tests for xmodal.models.clip and xmodal.models.heads: temperature, embeddings, locked towers, heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.config import HeadConfig
from xmodal.encoders.efficientnet import efficientnet_lite0
from xmodal.encoders.text_transformer import text_transformer
from xmodal.encoders.vit import vit
from xmodal.errors import ConfigError
from xmodal.losses import clip_loss
from xmodal.models.clip import CLIP
from xmodal.models.factory import build_model, clip_vit_tiny, image_preprocess
from xmodal.models.heads import LinearHead, MlpHead, build_head
from xmodal.models.locking import lock_encoder


def tiny_clip(*, image_encoder: nn.Module | None = None, **kwargs) -> CLIP:
    """A from-scratch CLIP: tiny ViT (32 px) or the given image tower, tiny text Transformer, linear heads."""
    torch.manual_seed(0)
    image = image_encoder if image_encoder is not None else vit()
    return CLIP(
        image_encoder=image,
        text_encoder=text_transformer(max_length=48),
        image_head=LinearHead(in_dim=image.pooled_dim, out_dim=32),
        text_head=LinearHead(in_dim=64, out_dim=32),
        **kwargs,
    )


def batch(model: CLIP, emoji_pairs, size: int = 32) -> tuple[torch.Tensor, list[str]]:
    images, captions = emoji_pairs
    pre = image_preprocess(model, size)
    return torch.stack([pre(im) for im in images]), captions


# -- temperature ------------------------------------------------------------------------------------
def test_logit_scale_starts_at_one_over_temperature():
    model = tiny_clip()
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert model.log_logit_scale.requires_grad
    assert tiny_clip(init_temperature=0.5).logit_scale.item() == pytest.approx(2.0, rel=1e-6)


def test_logit_scale_is_clamped_at_max():
    model = tiny_clip()
    with torch.no_grad():
        model.log_logit_scale.fill_(math.log(1000.0))
    assert model.logit_scale.item() == pytest.approx(100.0)
    assert tiny_clip(init_temperature=0.01, max_logit_scale=50.0).logit_scale.item() == pytest.approx(50.0)


def test_fixed_temperature_is_not_trainable():
    model = tiny_clip(learn_temperature=False)
    assert not model.log_logit_scale.requires_grad
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-6)


# -- embeddings -------------------------------------------------------------------------------------
def test_embeddings_are_unit_norm_and_forward_feeds_the_loss(emoji_pairs):
    model = tiny_clip().eval()
    images, captions = batch(model, emoji_pairs)
    with torch.no_grad():
        z_img, z_txt = model.encode_image(images), model.encode_text(captions)
        raw = model.encode_image(images, normalize=False)
        out = model(image=images, text=captions)
    assert z_img.shape == z_txt.shape == (4, 32)
    torch.testing.assert_close(z_img.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(z_txt.norm(dim=-1), torch.ones(4))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(F.normalize(raw, dim=-1), z_img)
    assert set(out) == {"image_features", "text_features", "logit_scale"}
    torch.testing.assert_close(out["image_features"], z_img)
    assert torch.isfinite(clip_loss(**out))


def test_pooled_features_path_equals_the_tower_path(emoji_pairs):
    model = tiny_clip().eval()
    images, captions = batch(model, emoji_pairs)
    with torch.no_grad():
        pooled_img = model.image_pooled(images)
        pooled_txt = model.text_pooled(model.tokenize(captions))
        torch.testing.assert_close(model.encode_image(pooled=pooled_img), model.encode_image(images))
        torch.testing.assert_close(model.encode_text(pooled=pooled_txt), model.encode_text(captions))
        tokens = model.tokenize(captions)
        torch.testing.assert_close(model.encode_text(tokens), model.encode_text(captions))
    with pytest.raises(ValueError, match="needs images or pooled"):
        model.encode_image()
    with pytest.raises(ValueError, match="needs texts or pooled"):
        model.encode_text()


# -- locked towers stay in eval mode ----------------------------------------------------------------
def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}


def train_step(model: CLIP, emoji_pairs) -> None:
    images, captions = batch(model, emoji_pairs, size=64)
    clip_loss(**model(image=images, text=captions)).backward()


def test_locked_efficientnet_keeps_batchnorm_stats_under_train(emoji_pairs):
    enc = efficientnet_lite0(pretrained=True)
    lock_encoder(enc, 0)
    model = tiny_clip(image_encoder=enc).train()
    assert not any(m.training for m in model.image_encoder.modules())
    assert model.training and model.image_head.training and model.text_encoder.training
    before = bn_state(enc)
    train_step(model, emoji_pairs)
    after = bn_state(enc)
    assert before.keys() == after.keys() and len(before) > 50
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in enc.parameters())


def test_unlocked_efficientnet_does_update_batchnorm_stats(emoji_pairs):
    """The control: the same training step moves BN statistics of a trainable tower."""
    enc = efficientnet_lite0(pretrained=False)
    lock_encoder(enc, -1)
    model = tiny_clip(image_encoder=enc).train()
    before = bn_state(enc)
    train_step(model, emoji_pairs)
    assert not torch.equal(before["_bn0.running_mean"], enc.state_dict()["_bn0.running_mean"])


def test_partly_unlocked_tower_trains_only_its_last_blocks(emoji_pairs):
    enc = efficientnet_lite0(pretrained=True)
    lock_encoder(enc, 2)  # last MBConv block + head conv/BN
    model = tiny_clip(image_encoder=enc).train()
    assert not enc._bn0.training and not enc._blocks[14].training and not enc._fc.training
    assert enc._blocks[15].training and enc._bn1.training
    before = bn_state(enc)
    train_step(model, emoji_pairs)
    after = bn_state(enc)
    assert torch.equal(before["_blocks.14._bn2.running_mean"], after["_blocks.14._bn2.running_mean"])
    assert not torch.equal(before["_bn1.running_mean"], after["_bn1.running_mean"])
    model.eval()
    assert not any(m.training for m in model.modules())


# -- heads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "in_dim"), [("linear", 48), ("mlp", 48), ("identity", 16)])
def test_head_shapes(kind, in_dim):
    head = build_head(kind, in_dim=in_dim, out_dim=16, hidden_dim=24, dropout=0.1)
    assert head(torch.randn(5, in_dim)).shape == (5, 16)


def test_heads_compute_what_they_say():
    torch.manual_seed(0)
    x = torch.randn(3, 6)
    lin = LinearHead(in_dim=6, out_dim=4).eval()
    assert lin.proj.bias is None  # CLIP's projections have no bias
    torch.testing.assert_close(lin(x), x @ lin.proj.weight.T)
    mlp = MlpHead(in_dim=6, hidden_dim=8, out_dim=4, dropout=0.5).eval()
    expected = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    torch.testing.assert_close(mlp(x), expected)
    mlp.train()
    assert not torch.allclose(mlp(x), expected)  # dropout is active in training
    ident = build_head("identity", in_dim=6, out_dim=6)
    assert torch.equal(ident(x), x)


def test_identity_head_needs_equal_dims_and_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="identity head needs in_dim == out_dim, got 64 and 32"):
        build_head("identity", in_dim=64, out_dim=32)
    with pytest.raises(ValueError, match="unknown head kind 'conv'"):
        build_head("conv", in_dim=4, out_dim=4)


def test_factory_reports_head_errors_as_config_errors():
    cfg = clip_vit_tiny()
    cfg.image_head = HeadConfig(kind="identity")  # ViT width 64 ≠ embed_dim 32
    cfg.embed_dim = 32
    with pytest.raises(ConfigError, match=r"model\.image_head: an identity head needs"):
        build_model(cfg)
    cfg = clip_vit_tiny()
    cfg.text_encoder.unlocked_blocks = 9
    with pytest.raises(ConfigError, match=r"model\.text_encoder\.unlocked_blocks: .*has 3 blocks"):
        build_model(cfg)
