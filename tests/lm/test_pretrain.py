"""Tests for xmodal.lm.pretrain: the stage-0 LM is trained on training text only and cached by config."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from xmodal.lm import load_causal_lm
from xmodal.lm.pretrain import STAGE0_REPORT, Stage0Config, pack, stage0_key, stage0_lm, stage0_texts

TINY = Stage0Config(layers=1, dim=32, heads=2, context=32, vocab_size=300, steps=30, batch_size=8, lr=3e-3)
DOCS = ["a grinning face", "a cat face", "what is this? a shirt", "is this a bag? no"] * 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage0")
    folder, report = stage0_lm(TINY, root=root, train_docs=DOCS, val_docs=DOCS[:8])
    return root, folder, report


def test_trains_lowers_loss_and_saves_a_loadable_folder(trained):
    _, folder, report = trained
    assert not report["cached"] and report["stage"] == 0
    assert (folder / "model.safetensors").is_file() and (folder / STAGE0_REPORT).is_file()
    model, tok = load_causal_lm(folder)
    assert model.config.n_layer == 1 and model.config.n_positions == 32
    uniform = math.log(len(tok))
    stream = pack(DOCS[:8], tok)
    x = stream[None, :32]
    with torch.no_grad():
        assert float(model(input_ids=x, labels=x).loss) < 0.8 * uniform  # well below a uniform guess
    assert report["val_loss"] < 0.8 * uniform


def test_second_call_reuses_the_cache_and_the_key_covers_config_and_text(trained):
    root, folder, report = trained
    again, r2 = stage0_lm(TINY, root=root, train_docs=DOCS, val_docs=DOCS[:8])
    assert again == folder and r2["cached"] and r2["val_loss"] == report["val_loss"]
    key = stage0_key(TINY, DOCS, DOCS[:8])
    assert folder.name == f"stage0-{key}"
    assert stage0_key(dataclasses.replace(TINY, steps=31), DOCS, DOCS[:8]) != key
    assert stage0_key(dataclasses.replace(TINY, threads=1), DOCS, DOCS[:8]) == key  # speed only
    assert stage0_key(TINY, [*DOCS, "new text"], DOCS[:8]) != key
    assert stage0_key(TINY, DOCS, DOCS[:7]) != key
    assert json.loads((folder / STAGE0_REPORT).read_text())["config"]["steps"] == 30


def test_stage0_text_is_training_text_only():
    from xmodal.data.vl import emoji_caption_items

    train_docs = set(stage0_texts("train", fmnist_images=10))
    train_caps = {c for item in emoji_caption_items("train") for c in item.captions}
    test_only = {c for item in emoji_caption_items("test") for c in item.captions} - train_caps
    assert test_only  # there are held-out captions ...
    assert not (test_only & train_docs)  # ... and none of them is stage-0 text
    assert train_caps <= train_docs


def test_caption_repeats_repeat_only_the_captions():
    once = stage0_texts("train", fmnist_images=10)
    thrice = stage0_texts("train", fmnist_images=10, caption_repeats=3)
    from xmodal.data.vl import emoji_caption_items

    n_caps = sum(len(item.captions) for item in emoji_caption_items("train"))
    assert len(thrice) == len(once) + 2 * n_caps
    assert sorted(set(thrice)) == sorted(set(once))
    assert stage0_key(Stage0Config(caption_repeats=3), once, []) != stage0_key(Stage0Config(), once, [])
