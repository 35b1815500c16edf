"""The registry-wide test for vision-language models: every entry of ``VL_MODELS``, built tiny.

For each name: forward with labels, loss backward, every trainable parameter gets a finite, non-zero
gradient and every frozen one none, the trainable set is the one the model declares, no NaN, and the
saved weights loaded into a rebuilt model give identical outputs. Every module of ``xmodal.models`` is
imported first, so a model registers itself just by being defined there.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

import xmodal.models
from xmodal.registry import VL_MODELS
from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, save_model_dir

for _mod in pkgutil.iter_modules(xmodal.models.__path__):
    importlib.import_module(f"xmodal.models.{_mod.name}")


def _loss(out) -> torch.Tensor:
    return out.loss if hasattr(out, "loss") else out["loss"]


def test_registry_lists_the_llava_variants():
    assert {"llava-tiny-gpt2", "llava-tiny-llama-lora"} <= set(VL_MODELS.names())


@pytest.mark.parametrize("name", VL_MODELS.names())
def test_every_vl_model_trains_and_round_trips(name, tmp_path_factory):
    case = VL_MODELS.get(name)(tmp_path_factory.mktemp(name))
    model = case.model
    model.train()
    loss = _loss(model(**case.inputs))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = set()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            trainable.add(pname)
            assert p.grad is not None, f"{pname} is trainable but got no gradient"
            assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"
        else:
            assert p.grad is None, f"{pname} is frozen but got a gradient"
    assert trainable, "nothing is trainable"
    if case.trainable is not None:
        expected = {n for n, _ in model.named_parameters() if case.trainable(n)}
        assert trainable == expected

    folder = tmp_path_factory.mktemp(f"{name}-saved")
    save_model_dir(folder, model, {"name": name})
    rebuilt = case.rebuild()
    load_model_weights(rebuilt, folder / MODEL_FILE)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        a, b = model(**case.inputs), rebuilt(**case.inputs)
    assert torch.equal(_loss(a), _loss(b))
    assert torch.equal(a.logits, b.logits)
