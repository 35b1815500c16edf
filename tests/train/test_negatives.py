"""Hard negatives in the trainer: their tower inputs, their embeddings, and a short training run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from xmodal.config import load_config
from xmodal.data.negatives import NegativeSet
from xmodal.models.factory import build_model
from xmodal.train.batches import BatchEntry
from xmodal.train.features import FeatureCache
from xmodal.train.negatives import NegativeTexts, WithNegatives

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"
NEGS = NegativeSet(per_caption=[["a dog with a cat", "cat a with dog"], [], ["blue heart"]], k=2)


def _batch(groups: list[int]) -> list[BatchEntry]:
    return [BatchEntry(group=g, item=g, view=0, aug_seed=0) for g in groups]


def test_batch_inputs_mask_padding_and_embeddings(tmp_path: Path) -> None:
    cfg = load_config(RECIPE, ["model.text_encoder.unlocked_blocks=0"])
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    fresh = NegativeTexts(NEGS, model, cache=None, cache_text=False, text_key={})
    cached = NegativeTexts(NEGS, model, cache=FeatureCache(tmp_path), cache_text=True, text_key={"t": 1})
    batch = _batch([2, 1, 0])
    a, b = fresh.batch_inputs(batch), cached.batch_inputs(batch)
    expected_mask = torch.tensor([[True, False], [False, False], [True, True]])
    assert torch.equal(a["negative_mask"], expected_mask) and torch.equal(b["negative_mask"], expected_mask)
    assert a["negative_text"]["input_ids"].shape[0] == 6  # B·K slots, padding as empty captions
    assert b["negative_pooled"].shape == (6, model.text_encoder.pooled_dim)
    assert torch.all(b["negative_pooled"][~expected_mask.reshape(-1)] == 0)
    images = torch.randn(3, 3, 32, 32)
    texts = ["blue heart", "avocado", "a cat with a dog"]
    net = WithNegatives(model)
    with torch.no_grad():
        out_a = net(image=images, text=texts, **a)
        out_b = net(image=images, text=texts, **b)
        expected = model.encode_text(["blue heart", "a dog with a cat", "cat a with dog"])
    assert out_a["negative_features"].shape == (3, 2, cfg.model.embed_dim)
    torch.testing.assert_close(out_a["negative_features"][expected_mask], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_b["negative_features"], out_a["negative_features"], rtol=1e-5, atol=1e-6)
    assert torch.all(out_a["negative_features"][~expected_mask] == 0)
    empty = fresh.batch_inputs(_batch([1]))  # no real negatives at all: still K (padding) slots
    assert not empty["negative_mask"].any()
    with torch.no_grad():
        out = net(image=images[:1], text=texts[1:2], **empty)
    assert out["negative_features"].shape == (1, 2, cfg.model.embed_dim)
    assert torch.all(out["negative_features"] == 0)


def _first_loss(run: Path) -> float:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return next(x["loss"] for x in lines if x.get("step") == 1 and "loss" in x)


def test_trainer_with_negatives_runs_and_its_loss_includes_them(tmp_path: Path) -> None:
    from xmodal.train.loop import Trainer

    common = [
        "train.steps=2",
        "train.log_every=1",
        "train.eval_every=0",
        "train.ckpt_every=2",
        "data.batch_size=16",
        "eval.max_images=32",
        "model.text_encoder.unlocked_blocks=0",  # locked, cached: the negatives are cached too
    ]
    negs = ["data.hard_negatives.generators=[swap_relation,swap_attributes,shuffle_words]"]
    a = Trainer(load_config(RECIPE, [*common, *negs, "data.hard_negatives.per_image=3"]), tmp_path / "a")
    result = a.fit()
    b = Trainer(load_config(RECIPE, common), tmp_path / "b")
    b.fit()
    assert _first_loss(tmp_path / "a") > _first_loss(tmp_path / "b") + 0.1  # same weights, same batch
    summary = result.skipped["hard_negatives"]
    assert summary["captions"] > 1000 and summary["negatives"] > 2 * summary["captions"]
    assert summary["without_negatives"] < summary["captions"] // 10
    saved = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert saved["skipped"]["hard_negatives"] == summary
