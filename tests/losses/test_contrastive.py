"""Tests for xmodal.losses.contrastive: CLIP's symmetric InfoNCE against plain references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.losses import ClipLoss, clip_loss
from xmodal.registry import LOSSES


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def reference_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Row by row: -log softmax of the matching pair, image→text and text→image, averaged."""
    n = img.shape[0]
    i2t = torch.stack([-torch.log_softmax(scale * (img[i] @ txt.T), dim=0)[i] for i in range(n)])
    t2i = torch.stack([-torch.log_softmax(scale * (txt[j] @ img.T), dim=0)[j] for j in range(n)])
    return (i2t.sum() / n + t2i.sum() / n) / 2


def open_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """open_clip's ClipLoss (single process), written out by hand: logits per image and per text."""
    logits_per_image = scale * img @ txt.T
    logits_per_text = scale * txt @ img.T
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def leaf_inputs(n: int = 6, d: int = 8):
    img = unit(n, d, 0).requires_grad_(True)
    txt = unit(n, d, 1).requires_grad_(True)
    scale = torch.tensor(14.3, dtype=torch.float64, requires_grad=True)
    return img, txt, scale


@pytest.mark.parametrize("reference", [reference_loss, open_clip_loss])
def test_matches_references_forward_and_backward(reference):
    img, txt, scale = leaf_inputs()
    loss = clip_loss(img, txt, scale)
    grads = torch.autograd.grad(loss, (img, txt, scale))
    img2, txt2, scale2 = leaf_inputs()
    ref = reference(img2, txt2, scale2)
    ref_grads = torch.autograd.grad(ref, (img2, txt2, scale2))
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-12)


def test_seeded_value():
    img, txt, scale = leaf_inputs()
    # golden value for these seeds (float64); random pairs at scale 14.3 sit well above log(6) ≈ 1.79
    assert clip_loss(img, txt, scale).item() == pytest.approx(5.349792669604351, abs=1e-12)


def test_float_scale_and_chance_level_at_zero_scale():
    img, txt = unit(5, 4, 2), unit(5, 4, 3)
    torch.testing.assert_close(clip_loss(img, txt, 0.0), torch.tensor(math.log(5), dtype=torch.float64))
    torch.testing.assert_close(clip_loss(img, txt, 2.5), clip_loss(img, txt, torch.tensor(2.5)))


def test_perfect_alignment_with_large_scale_is_near_zero():
    emb = torch.eye(8, dtype=torch.float64)  # orthonormal: each image matches only its caption
    assert clip_loss(emb, emb, 100.0).item() < 1e-30
    # and it rises when the pairs are shuffled
    assert clip_loss(emb, emb.roll(1, dims=0), 100.0).item() > 50


def test_symmetric_in_its_two_inputs():
    img, txt = unit(7, 5, 4), unit(7, 5, 5)
    torch.testing.assert_close(clip_loss(img, txt, 10.0), clip_loss(txt, img, 10.0))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"\(4, 8\) and text_features \(3, 8\)"):
        clip_loss(unit(4, 8, 0), unit(3, 8, 1), 1.0)
    with pytest.raises(ValueError, match="same"):
        clip_loss(unit(4, 8, 0), unit(4, 6, 1), 1.0)


def test_module_takes_model_outputs_as_keywords():
    img, txt = unit(4, 3, 6), unit(4, 3, 7)
    out = {"image_features": img, "text_features": txt, "logit_scale": torch.tensor(5.0), "extra": 1}
    loss_fn = LOSSES.get("clip")()
    assert isinstance(loss_fn, ClipLoss)
    torch.testing.assert_close(loss_fn(**out), clip_loss(img, txt, 5.0))
