"""CLIPScore / RefCLIPScore (xmodal.metrics.clipscore): the definition on hand-made vectors, the vectorised
functions against the plain loop, and parity with torchmetrics' CLIPScore on a tiny random Hugging Face
CLIP model saved to disk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import xmodal
from xmodal.eval.embed import embed_images, embed_texts
from xmodal.metrics.clipscore import (
    W_CLIPSCORE,
    best_reference_similarity,
    clip_score,
    ref_clip_score,
    scores_reference,
)
from xmodal.models.hf_tiny import save_tiny_hf_model


def test_clip_score_on_known_angles():
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, math.sqrt(3.0)]])  # cos 1, 0, -1, 0.5
    per, mean = clip_score(image, text)
    torch.testing.assert_close(per, torch.tensor([2.5, 0.0, 0.0, 1.25]))
    assert mean == pytest.approx(3.75 / 4)
    per100, _ = clip_score(image, text, w=100.0)
    torch.testing.assert_close(per100, torch.tensor([100.0, 0.0, 0.0, 50.0]))


def test_ref_clip_score_is_the_harmonic_mean_with_the_best_reference():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cand = torch.tensor([[1.0, math.sqrt(3.0)], [1.0, 0.0]])  # CLIP-S: 2.5·0.5 = 1.25; 2.5·0 = 0
    refs = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])
    owner = torch.tensor([0, 0, 1, 1])  # image 0: best cos(c, r) = √3/2; image 1: both negative → 0
    best = best_reference_similarity(cand, refs, owner)
    torch.testing.assert_close(best, torch.tensor([math.sqrt(3.0) / 2, 0.0]))
    per, mean = ref_clip_score(image, cand, refs, owner)
    a, b = 1.25, math.sqrt(3.0) / 2
    torch.testing.assert_close(per, torch.tensor([2 * a * b / (a + b), 0.0]))
    assert mean == pytest.approx(a * b / (a + b))


def test_vectorised_scores_equal_the_plain_loop():
    g = torch.Generator().manual_seed(0)
    n, e = 9, 16
    image, cand = torch.randn(n, e, generator=g), torch.randn(n, e, generator=g)
    counts = [1 + (i % 4) for i in range(n)]
    refs = [torch.randn(c, e, generator=g) for c in counts]
    owner = torch.tensor([i for i, c in enumerate(counts) for _ in range(c)])
    perm = torch.randperm(len(owner), generator=g)  # references in any order
    flat, owner = torch.cat(refs)[perm], owner[perm]
    expected_clip, expected_ref = scores_reference(image, cand, refs)
    per_clip, mean_clip = clip_score(image, cand)
    per_ref, mean_ref = ref_clip_score(image, cand, flat, owner)
    assert 0 < sum(x == 0 for x in expected_clip) < n  # some pairs clamp, some do not
    torch.testing.assert_close(per_clip.double(), torch.tensor(expected_clip, dtype=torch.float64))
    torch.testing.assert_close(per_ref.double(), torch.tensor(expected_ref, dtype=torch.float64))
    assert mean_clip == pytest.approx(float(np.mean(expected_clip)), abs=1e-6)
    assert mean_ref == pytest.approx(float(np.mean(expected_ref)), abs=1e-6)


def test_bad_shapes_and_missing_references_raise():
    with pytest.raises(ValueError, match=r"one shape"):
        clip_score(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"without references: \[1\]"):
        best_reference_similarity(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="owner indices"):
        best_reference_similarity(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0, 2]))


class _TensorFeatures(nn.Module):
    """transformers 5 returns model outputs from get_*_features; torchmetrics 1.9 expects tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def test_clip_score_agrees_with_torchmetrics_on_a_local_hf_clip(tmp_path):
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    folder = save_tiny_hf_model(tmp_path / "tiny-clip", "clip", seed=0)
    metric = CLIPScore(
        model_name_or_path=lambda: (
            _TensorFeatures(CLIPModel.from_pretrained(str(folder), local_files_only=True)),
            CLIPProcessor.from_pretrained(str(folder), local_files_only=True),
        )
    )
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(4)]
    arrays += [np.array(Image.new("RGB", (40, 40), c)) for c in ("red", "blue", "white", "black")]
    captions = [
        "a photo of a cat",
        "a dog on the grass",
        "two birds in the sky",
        "the red car near a house",
        "xyz",
        "A photo depicts a smiling face",
        "?",
        "an apple",
    ]
    theirs = []
    for arr, caption in zip(arrays, captions, strict=True):
        metric.reset()
        theirs.append(float(metric(torch.from_numpy(arr).permute(2, 0, 1), caption).detach()))

    model, preprocess = xmodal.create_model(f"hf-clip:{folder}")
    img = embed_images(model, [Image.fromarray(a) for a in arrays], preprocess, progress=False)
    per, mean = clip_score(img, embed_texts(model, captions, progress=False))
    assert 0 < sum(t == 0 for t in theirs) < len(theirs)  # the clamp at 0 is exercised both ways
    np.testing.assert_allclose(per.numpy() / W_CLIPSCORE * 100, theirs, rtol=0, atol=1e-3)
    assert mean / W_CLIPSCORE * 100 == pytest.approx(float(np.mean(theirs)), abs=1e-3)

    # torchmetrics' module clamps the mean cosine, not each pair: equal on pairs whose cosines are positive
    positive = [i for i, t in enumerate(theirs) if t > 0]
    metric.reset()
    batch = float(
        metric(
            [torch.from_numpy(arrays[i]).permute(2, 0, 1) for i in positive], [captions[i] for i in positive]
        ).detach()
    )
    assert batch == pytest.approx(float(per[positive].mean()) / W_CLIPSCORE * 100, abs=1e-3)
