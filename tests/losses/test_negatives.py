"""CLIP loss with hard negatives (NegCLIP): reference agreement, NegCLIP's own formulation, masks, weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal.losses import clip_loss, clip_loss_with_negatives, clip_loss_with_negatives_reference
from xmodal.registry import LOSSES


def _features(b: int = 6, m: int = 5, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    img, txt, neg = (
        F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1) for n in (b, b, m)
    )
    return img.requires_grad_(), txt.requires_grad_(), neg.requires_grad_()


def _grads(loss: torch.Tensor, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, xs)


def test_matches_negclip_formulation() -> None:
    """NegCLIP's training code: captions then negatives as text rows; i2t over all, t2i over the first B."""
    img, txt, neg = _features()
    scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    texts = torch.cat([txt, neg])
    logits_per_image = scale * img @ texts.t()  # (B, B + M)
    logits_per_text = logits_per_image.t()[: img.shape[0]]  # (B, B)
    labels = torch.arange(img.shape[0])
    expected = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    got = clip_loss_with_negatives(img, txt, neg, scale)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(got, img, txt, neg, scale), _grads(expected, img, txt, neg, scale), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weight", [1.0, 0.5, 3.0])
def test_matches_reference_with_mask_and_weight(weight: float) -> None:
    img, txt, neg = _features(b=5, m=10)
    neg3 = neg.reshape(5, 2, 8)  # (B, K, D)
    mask = torch.tensor([[1, 1], [1, 0], [0, 0], [1, 1], [0, 1]], dtype=torch.bool)
    scale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    got = clip_loss_with_negatives(img, txt, neg3, scale, negative_mask=mask, negative_weight=weight)
    ref = clip_loss_with_negatives_reference(
        img, txt, neg3, scale, negative_mask=mask, negative_weight=weight
    )
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    g_got = _grads(got, img, txt, neg, scale)
    g_ref = _grads(ref, img, txt, neg, scale)
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.all(g_got[2].reshape(5, 2, 8)[~mask] == 0)  # padding slots get no gradient


def test_no_negatives_or_zero_weight_is_the_clip_loss() -> None:
    img, txt, neg = _features()
    plain = clip_loss(img, txt, 4.0)
    torch.testing.assert_close(clip_loss_with_negatives(img, txt, neg[:0], 4.0), plain, rtol=1e-14, atol=0)
    zero = clip_loss_with_negatives(img, txt, neg, 4.0, negative_weight=0.0)
    torch.testing.assert_close(zero, plain, rtol=1e-14, atol=0)
    all_masked = clip_loss_with_negatives(img, txt, neg, 4.0, negative_mask=torch.zeros(5, dtype=torch.bool))
    torch.testing.assert_close(all_masked, plain, rtol=1e-14, atol=0)


def test_negatives_raise_the_loss_and_only_on_the_image_side() -> None:
    img, txt, neg = _features()
    with_neg = clip_loss_with_negatives(img, txt, neg, 4.0)
    assert with_neg > clip_loss(img, txt, 4.0)
    # the t2i half is untouched: the text gradient through the negatives' column space is only i2t
    labels = torch.arange(6)
    t2i = F.cross_entropy(4.0 * txt @ img.t(), labels)
    i2t = F.cross_entropy(4.0 * img @ torch.cat([txt, neg]).t(), labels)
    torch.testing.assert_close(with_neg, (i2t + t2i) / 2, rtol=1e-12, atol=1e-12)


def test_seeded_value() -> None:
    """Pinned against a NumPy evaluation of the formula in float64 (6.3023304688)."""
    img, txt, neg = _features(b=4, m=3, d=4, seed=3)
    got = clip_loss_with_negatives(img.float(), txt.float(), neg.float(), 10.0)
    torch.testing.assert_close(got, torch.tensor(6.302330, dtype=torch.float32), rtol=0, atol=1e-5)


def test_bad_inputs_raise() -> None:
    img, txt, neg = _features()
    with pytest.raises(ValueError, match="negative_features must be"):
        clip_loss_with_negatives(img, txt, neg[:, :4], 1.0)
    with pytest.raises(ValueError, match="negative_mask"):
        clip_loss_with_negatives(img, txt, neg, 1.0, negative_mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="negative_weight"):
        clip_loss_with_negatives(img, txt, neg, 1.0, negative_weight=-1.0)
    with pytest.raises(ValueError, match="same"):
        clip_loss_with_negatives(img, txt[:3], neg, 1.0)


def test_registered_module_takes_model_outputs() -> None:
    img, txt, neg = _features()
    loss_fn = LOSSES.get("clip_negatives")(negative_weight=0.5)
    out = {"image_features": img, "text_features": txt, "logit_scale": torch.tensor(3.0)}
    torch.testing.assert_close(loss_fn(**out), clip_loss(img, txt, 3.0))  # no negatives in this batch
    got = loss_fn(**out, negative_features=neg, other_output=1)
    torch.testing.assert_close(got, clip_loss_with_negatives(img, txt, neg, 3.0, negative_weight=0.5))
    assert "negative_weight=0.5" in repr(loss_fn)


@pytest.mark.parametrize(("b", "m", "chunk"), [(7, 5, 3), (6, 0, 4), (5, 12, 1), (9, 4, 64)])
@pytest.mark.parametrize("weight", [1.0, 0.3, 0.0])
def test_chunked_matches_plain_forward_and_backward(b: int, m: int, chunk: int, weight: float) -> None:
    img, txt, neg = _features(b=b, m=m, seed=b + m)
    mask = torch.arange(m) % 3 != 1  # some padding slots
    scale = torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
    kw = {"negative_mask": mask, "negative_weight": weight}
    plain = clip_loss_with_negatives(img, txt, neg, scale, **kw)
    chunked = clip_loss_with_negatives(img, txt, neg, scale, chunk_size=chunk, **kw)
    torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-12)
    for a, r in zip(_grads(chunked, img, txt, neg, scale), _grads(plain, img, txt, neg, scale), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


def test_chunked_is_stable_for_large_logits_and_float32() -> None:
    img, txt, neg = _features(b=10, m=8, d=16, seed=4)
    scale = torch.tensor(100.0, dtype=torch.float64)
    ref = clip_loss_with_negatives_reference(img, txt, neg, scale)
    with_grad = [x.detach().float().requires_grad_() for x in (img, txt, neg)]
    got = clip_loss_with_negatives(*with_grad, 100.0, chunk_size=3)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    torch.testing.assert_close(got.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    got.backward()
    ref_grads = _grads(ref, img, txt, neg)
    for x, r in zip(with_grad, ref_grads, strict=True):
        assert x.grad is not None and x.grad.dtype == torch.float32
        torch.testing.assert_close(x.grad.double(), r, rtol=1e-4, atol=1e-5)
