"""Tests for ``load_model``: a preset name or a checkpoint folder / file (the eval commands' ``--model``)."""

from __future__ import annotations

import pytest
import torch

from xmodal.config import ExperimentConfig, to_dict
from xmodal.errors import ConfigError
from xmodal.models.factory import create_model
from xmodal.models.io import load_model
from xmodal.train.checkpoint import save_model_dir


def test_load_model_reads_presets_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    model, _ = create_model("clip-vit-tiny")
    with torch.no_grad():
        next(model.text_head.parameters()).mul_(3.0)  # weights the preset would not start with
    save_model_dir(tmp_path / "m", model, {"config": to_dict(ExperimentConfig(model=model.config))})
    x = torch.rand(2, 3, 32, 32)
    for spec in (tmp_path / "m", tmp_path / "m" / "model.safetensors", str(tmp_path / "m")):
        loaded, preprocess = load_model(spec)
        torch.testing.assert_close(
            loaded.encode_text(["a cat", "a dog"]), model.encode_text(["a cat", "a dog"])
        )
        torch.testing.assert_close(loaded.encode_image(x), model.encode_image(x))
        assert not loaded.training and preprocess.size == 32
    fresh, _ = load_model("clip-vit-tiny")
    assert not torch.equal(next(fresh.text_head.parameters()), next(model.text_head.parameters()))
    with pytest.raises(ConfigError, match="unknown model"):
        load_model(tmp_path / "nowhere")
