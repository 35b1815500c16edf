"""GradCache gives the full-batch parameter gradients, with dropout and augmentation replayed."""

from __future__ import annotations

from pathlib import Path

import torch

from xmodal.config import load_config
from xmodal.losses.contrastive import clip_loss
from xmodal.models.factory import build_model
from xmodal.train.gradcache import gradcache_backward

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"


def _model_and_inputs(n: int = 24, dropout: float = 0.3) -> tuple[torch.nn.Module, dict[str, object]]:
    cfg = load_config(RECIPE, [f"model.image_head.dropout={dropout}", f"model.text_head.dropout={dropout}"])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    images = torch.randn(n, 3, 32, 32)
    texts = [f"emoji number {i} with {'red ' * (i % 3)}colour" for i in range(n)]
    return model, {"image": images, "text": texts}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _split(inputs: dict[str, object], size: int) -> list[dict[str, object]]:
    images, texts = inputs["image"], inputs["text"]
    assert isinstance(images, torch.Tensor) and isinstance(texts, list)
    return [{"image": images[i : i + size], "text": texts[i : i + size]} for i in range(0, len(texts), size)]


def _check_equal(model: torch.nn.Module, inputs: dict[str, object], full_loss: torch.Tensor) -> None:
    full = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    loss = gradcache_backward(model, _split(inputs, 8), clip_loss)
    cached = _grads(model)
    assert set(cached) == set(full) and len(full) > 10
    torch.testing.assert_close(loss, full_loss.detach(), rtol=1e-6, atol=1e-6)
    for name, g in full.items():
        scale = g.abs().max().clamp_min(1e-12)
        assert (cached[name] - g).abs().max() / scale < 1e-5, name


def test_gradcache_equals_one_full_batch_pass() -> None:
    model, inputs = _model_and_inputs(dropout=0.0)
    torch.manual_seed(123)
    out = model(**inputs)
    full_loss = clip_loss(out["image_features"], out["text_features"], out["logit_scale"])
    full_loss.backward()
    _check_equal(model, inputs, full_loss)


def test_gradcache_equals_full_batch_with_dropout() -> None:
    """With dropout, the reference is the full-batch loss over the same masks: the micro-batches embedded
    with their graphs kept (the memory-hungry computation GradCache replaces)."""
    model, inputs = _model_and_inputs(dropout=0.3)
    torch.manual_seed(123)
    outs = [model(**part) for part in _split(inputs, 8)]
    image = torch.cat([o["image_features"] for o in outs])
    text = torch.cat([o["text_features"] for o in outs])
    full_loss = clip_loss(image, text, model.logit_scale)
    full_loss.backward()
    _check_equal(model, inputs, full_loss)


def test_gradcache_replays_dropout_and_leaves_rng_as_a_plain_pass_would() -> None:
    model, inputs = _model_and_inputs(12)
    torch.manual_seed(7)
    gradcache_backward(model, _split(inputs, 4), clip_loss)
    after_cached = torch.rand(3)
    torch.manual_seed(7)
    with torch.no_grad():
        for part in _split(inputs, 4):
            model(**part)
    after_plain = torch.rand(3)
    assert torch.equal(after_cached, after_plain)


def test_trainer_with_micro_batches_matches_whole_batches(tmp_path: Path) -> None:
    from xmodal.train.loop import Trainer

    common = [
        "train.steps=3",
        "train.eval_every=0",
        "train.ckpt_every=3",
        "data.batch_size=32",
        "eval.max_images=64",
        "model.image_head.dropout=0.2",
    ]
    a = Trainer(load_config(RECIPE, common), tmp_path / "a", progress=False)
    a.fit()
    b = Trainer(load_config(RECIPE, [*common, "train.micro_batch_size=8"]), tmp_path / "b", progress=False)
    b.fit()
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-5, msg=k)
