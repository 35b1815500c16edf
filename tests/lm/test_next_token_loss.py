"""The shared shifted cross-entropy (with label smoothing) and the LM dropout override."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.lm import load_causal_lm
from xmodal.lm.loading import set_dropout
from xmodal.lm.sequences import IGNORE_INDEX, next_token_loss
from xmodal.lm.tiny import save_tiny_lm


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tmp_path_factory):
    return load_causal_lm(save_tiny_lm(tmp_path_factory.mktemp(request.param), request.param))[0].eval()


def test_equals_the_transformers_loss_without_smoothing(lm):
    ids = torch.randint(5, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :3] = IGNORE_INDEX
    with torch.no_grad():
        out = lm(input_ids=ids, labels=labels)
        ours = next_token_loss(out.logits, labels)
    assert torch.allclose(ours, out.loss, atol=1e-6)


def test_label_smoothing_mixes_in_the_uniform_target():
    logits = torch.randn(1, 4, 7, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[IGNORE_INDEX, 2, IGNORE_INDEX, 5]])
    logp = logits[0, [0, 2]].log_softmax(-1)  # positions predicting labels 2 and 5
    nll = -(logp[0, 2] + logp[1, 5]) / 2
    uniform = -logp.mean(dim=-1).mean()
    want = 0.9 * nll + 0.1 * uniform
    assert math.isclose(float(next_token_loss(logits, labels, 0.1)), float(want), rel_tol=1e-6)


def test_set_dropout_reaches_every_dropout_module(lm):
    n = set_dropout(lm, 0.3)
    ps = [m.p for m in lm.modules() if isinstance(m, torch.nn.Dropout)]
    assert n == len(ps) and all(p == 0.3 for p in ps)
    with pytest.raises(ValueError, match="dropout must be in"):
        set_dropout(lm, 1.0)
