"""Tests for xmodal.train.optim: parameter groups (decay, per-tower learning rates) and the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.config import ExperimentConfig, HeadConfig
from xmodal.errors import ConfigError
from xmodal.models.factory import build_model, clip_vit_tiny
from xmodal.train.optim import build_optimizer, build_scheduler, param_groups, warmup_cosine


def tiny_cfg(**optim) -> ExperimentConfig:
    cfg = ExperimentConfig(model=clip_vit_tiny())
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


def group_of(groups: list[dict], name: str) -> dict:
    (g,) = [g for g in groups if name in g["names"]]
    return g


def test_no_decay_on_biases_norms_and_temperature():
    cfg = tiny_cfg(weight_decay=0.2)
    model = build_model(cfg.model)
    groups = param_groups(model, cfg)
    named = dict(model.named_parameters())
    no_decay = {n for g in groups if g["weight_decay"] == 0.0 for n in g["names"]}
    decay = {n for g in groups if g["weight_decay"] == 0.2 for n in g["names"]}
    assert no_decay | decay == set(named) and not no_decay & decay
    assert "log_logit_scale" in no_decay
    assert "image_encoder.norm.weight" in no_decay and "image_encoder.norm.bias" in no_decay
    assert "text_encoder.transformer.blocks.0.norm1.weight" in no_decay
    assert all(n in no_decay for n in named if n.endswith(".bias"))
    assert all(named[n].ndim >= 2 for n in decay)
    assert "image_head.proj.weight" in decay and "text_encoder.transformer.blocks.1.mlp.fc1.weight" in decay


def test_per_tower_learning_rates_are_param_groups():
    cfg = tiny_cfg(lr=1e-3)
    cfg.model.image_encoder.lr = 1e-4
    cfg.model.text_encoder.lr = 2e-4
    cfg.model.image_head = HeadConfig(kind="linear", lr=5e-3)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg)
    by_name = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert by_name["image_encoder.transformer.blocks.0.attn.qkv.weight"] == 1e-4
    assert by_name["image_encoder.norm.bias"] == 1e-4
    assert by_name["text_encoder.embed.token_embed.weight"] == 2e-4
    assert by_name["image_head.proj.weight"] == 5e-3
    assert by_name["text_head.proj.weight"] == 1e-3  # no head lr: the base lr
    assert by_name["log_logit_scale"] == 1e-3
    assert {g["lr"] for g in opt.param_groups} == {1e-4, 2e-4, 5e-3, 1e-3}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert opt.defaults["betas"] == cfg.optim.betas and opt.defaults["eps"] == cfg.optim.eps


def test_frozen_parameters_are_left_out():
    cfg = tiny_cfg()
    cfg.model.image_encoder.unlocked_blocks = 0
    model = build_model(cfg.model)
    names = {n for g in param_groups(model, cfg) for n in g["names"]}
    assert not any(n.startswith("image_encoder.") for n in names)
    assert any(n.startswith("text_encoder.") for n in names)


def test_nothing_to_train_is_a_config_error():
    cfg = tiny_cfg()
    cfg.model.image_encoder.unlocked_blocks = cfg.model.text_encoder.unlocked_blocks = 0
    cfg.model.image_head = cfg.model.text_head = HeadConfig(kind="identity")
    cfg.model.embed_dim = 64
    cfg.model.learn_temperature = False
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(build_model(cfg.model), cfg)


def test_warmup_then_cosine_values():
    f = lambda s, r=0.0: warmup_cosine(s, warmup_steps=10, total_steps=110, min_ratio=r)  # noqa: E731
    assert f(0) == pytest.approx(0.1)
    assert f(4) == pytest.approx(0.5)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert f(110) == pytest.approx(0.0, abs=1e-12)
    assert f(500) == pytest.approx(0.0, abs=1e-12)
    assert f(60, 0.2) == pytest.approx(0.6)
    assert f(110, 0.2) == pytest.approx(0.2)
    assert warmup_cosine(0, warmup_steps=0, total_steps=10) == pytest.approx(1.0)


def test_scheduler_applies_the_multiplier_to_every_group():
    cfg = tiny_cfg(lr=1e-3, warmup_steps=4, min_lr_ratio=0.1)
    cfg.train.steps = 20
    cfg.model.image_encoder.lr = 1e-4
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(20):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for step, lrs in enumerate(seen):
        mult = warmup_cosine(step, warmup_steps=4, total_steps=20, min_ratio=0.1)
        base = [g["initial_lr"] for g in opt.param_groups]
        assert lrs == pytest.approx([b * mult for b in base])
    assert seen[0][0] == pytest.approx(0.25 * min(g["initial_lr"] for g in opt.param_groups))
    assert isinstance(sched, torch.optim.lr_scheduler.LambdaLR)
