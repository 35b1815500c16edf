"""Tests for xmodal.lm.loading: any local causal LM folder, offline; multimodal special tokens."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import CheckpointError
from xmodal.lm import CHUNK_TOKEN, IMAGE_TOKEN, add_multimodal_tokens, context_length, load_causal_lm
from xmodal.lm.tiny import save_tiny_lm


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm_dir(request, tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param, context=96)


def test_loads_any_folder_offline_with_pad_token(lm_dir):
    model, tok = load_causal_lm(lm_dir)
    assert not model.training
    assert tok.pad_token is not None
    assert context_length(model) == 96
    ids = torch.tensor([tok("a cat face")["input_ids"]])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_same_weights_as_saved(lm_dir):
    from safetensors.torch import load_file

    model, _ = load_causal_lm(lm_dir)
    saved = load_file(str(lm_dir / "model.safetensors"))
    state = model.state_dict()
    for name, t in saved.items():
        assert torch.equal(state[name], t), name


def test_multimodal_tokens_are_atomic_and_resize_embeddings(lm_dir):
    model, tok = load_causal_lm(lm_dir)
    n_before = len(tok)
    old = model.get_input_embeddings().weight.detach().clone()
    ids = add_multimodal_tokens(tok, model)
    assert set(ids) == {IMAGE_TOKEN, CHUNK_TOKEN}
    assert sorted(ids.values()) == [n_before, n_before + 1]
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == n_before + 2
    assert torch.equal(emb[:n_before], old)  # existing rows untouched
    assert model.get_output_embeddings().weight.shape[0] == n_before + 2
    text = f"{IMAGE_TOKEN}\nwhat is it?{CHUNK_TOKEN}"
    enc = tok(text, add_special_tokens=False)["input_ids"]
    assert enc.count(ids[IMAGE_TOKEN]) == 1 and enc.count(ids[CHUNK_TOKEN]) == 1
    # idempotent: a second call adds nothing
    assert add_multimodal_tokens(tok, model) == ids and len(tok) == n_before + 2


def test_refuses_pickle_only_and_missing_folders(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no model weights"):
        load_causal_lm(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x02pickle")
    with pytest.raises(CheckpointError, match=r"only pickle weights \(pytorch_model.bin\)"):
        load_causal_lm(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_causal_lm(bare)
