"""Tests for xmodal.losses.siglip: the sigmoid loss (plain and chunked) against a pair-by-pair
reference, forward and backward, with its O(N·D) saved state."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal.losses.chunked import ChunkedSigLipLoss
from xmodal.losses.siglip import SigLipLoss, siglip_loss, siglip_loss_reference
from xmodal.registry import LOSSES


def unit(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).to(dtype)


def leaves(n: int, d: int, dtype: torch.dtype, scale: float = 10.0, bias: float = -10.0, seed: int = 0):
    img = unit(n, d, seed, dtype).requires_grad_(True)
    txt = unit(n, d, seed + 1, dtype).requires_grad_(True)
    s = torch.tensor(scale, dtype=dtype, requires_grad=True)
    b = torch.tensor(bias, dtype=dtype, requires_grad=True)
    return img, txt, s, b


def value_and_grads(fn, *args, **kwargs):
    inputs = leaves(*args, **kwargs)
    loss = fn(*inputs)
    return (loss, *torch.autograd.grad(loss, inputs))


def assert_all_close(got, want, rtol: float, atol: float) -> None:
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


def pairwise_loss(img, txt, scale, bias):
    """Zhai et al. eq. 1 spelt out: every pair a binary classification, summed, divided by N."""
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        for j in range(n):
            z = scale * (img[i] @ txt[j]) + bias
            label = 1.0 if i == j else -1.0
            total = total - torch.log(torch.sigmoid(label * z))
    return total / n


def test_reference_matches_pairwise_definition_forward_and_backward():
    want = value_and_grads(pairwise_loss, 6, 5, torch.float64, scale=3.0, bias=-1.0)
    got = value_and_grads(siglip_loss_reference, 6, 5, torch.float64, scale=3.0, bias=-1.0)
    assert_all_close(got, want, rtol=1e-12, atol=1e-12)


def test_seeded_value_at_the_paper_initialisation():
    img, txt, s, b = leaves(6, 8, torch.float64)  # scale 10, bias −10 (Zhai et al. 2023, sec. 3.4)
    expected = 9.118602417747015  # golden value for these seeds (float64)
    assert siglip_loss(img, txt, s, b).item() == pytest.approx(expected, abs=1e-12)
    assert siglip_loss(img, txt, s, b, chunk_size=4).item() == pytest.approx(expected, abs=1e-12)
    # at that init the N positives dominate, each costing −log σ(10·cos − 10) ≈ 10 − 10·cos nats (the
    # sum is divided by N), while the N² − N negatives cost ≈ e⁻¹⁰ each
    cos = (img * txt).sum(1).detach()
    assert expected == pytest.approx((10 - 10 * cos).mean().item(), abs=0.01)


SHAPES = [(64, 16, 16), (100, 24, 33), (37, 8, 64), (9, 4, 1), (48, 32, 48)]


@pytest.mark.parametrize(("n", "d", "chunk"), SHAPES)
def test_float64_chunked_matches_plain_to_1e_10(n, d, chunk):
    want = value_and_grads(siglip_loss_reference, n, d, torch.float64, scale=5.0, bias=-2.0)
    got = value_and_grads(
        lambda i, t, s, b: siglip_loss(i, t, s, b, chunk_size=chunk),
        n,
        d,
        torch.float64,
        scale=5.0,
        bias=-2.0,
    )
    assert got[0].dtype == torch.float64
    assert_all_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("n", "d", "chunk"), [(1024, 64, 300), (257, 32, 64), (50, 16, 128)])
@pytest.mark.parametrize(("scale", "bias"), [(10.0, -10.0), (30.0, 2.0)])
def test_float32_chunked_matches_plain(n, d, chunk, scale, bias):
    want = value_and_grads(siglip_loss_reference, n, d, torch.float32, scale=scale, bias=bias, seed=3)
    got = value_and_grads(
        lambda i, t, s, b: siglip_loss(i, t, s, b, chunk_size=chunk),
        n,
        d,
        torch.float32,
        scale=scale,
        bias=bias,
        seed=3,
    )
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0)
    assert_all_close(got[1:], want[1:], rtol=1e-5, atol=1e-6)


def test_gradcheck_tiny_float64():
    inputs = leaves(5, 3, torch.float64, scale=3.0, bias=-1.0, seed=7)
    assert torch.autograd.gradcheck(lambda i, t, s, b: ChunkedSigLipLoss.apply(i, t, s, b, 2), inputs)


def test_upstream_gradient_is_applied():
    inputs = leaves(20, 8, torch.float64, seed=2)
    got = torch.autograd.grad(-2.5 * siglip_loss(*inputs, chunk_size=6), inputs)
    want = torch.autograd.grad(-2.5 * siglip_loss_reference(*inputs), inputs)
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("wanted", [(0,), (1,), (2,), (3,), (0, 3), (1, 2)])
def test_only_the_requested_gradients(wanted):
    full = leaves(30, 8, torch.float64, seed=4)
    inputs = [x.detach() for x in full]
    for k in wanted:
        inputs[k].requires_grad_(True)
    got = torch.autograd.grad(siglip_loss(*inputs, chunk_size=7), [inputs[k] for k in wanted])
    want = torch.autograd.grad(siglip_loss_reference(*full), [full[k] for k in wanted])
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


def test_no_grad_and_float_scale_and_bias():
    img, txt, s, b = (x.detach() for x in leaves(33, 8, torch.float64, seed=5))
    want = siglip_loss_reference(img, txt, 7.0, -3.0)
    torch.testing.assert_close(siglip_loss(img, txt, 7.0, -3.0, chunk_size=8), want)  # loss-only path
    with torch.no_grad():
        torch.testing.assert_close(
            siglip_loss(img, txt, s, b, chunk_size=8), siglip_loss_reference(img, txt, s, b)
        )
    scale = torch.tensor([7.0], dtype=torch.float64, requires_grad=True)  # shape (1,) as some models keep it
    (grad,) = torch.autograd.grad(siglip_loss(img, txt, scale, -3.0, chunk_size=8), scale)
    (ref,) = torch.autograd.grad(siglip_loss_reference(img, txt, scale, -3.0), scale)
    assert grad.shape == (1,)
    torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)


def test_confident_positives_keep_their_digits():
    """Large positive logits: the loss is tiny and must not come from cancelling large numbers."""
    emb = torch.eye(16, dtype=torch.float32)
    got = siglip_loss(emb, emb, 30.0, 5.0, chunk_size=5).double()  # z = 35 on, 5 off the diagonal
    want = (
        -F.logsigmoid(torch.tensor(35.0, dtype=torch.float64)) * 16
        - F.logsigmoid(torch.tensor(-5.0, dtype=torch.float64)) * 240
    ) / 16
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    emb = torch.eye(4, dtype=torch.float32)
    tiny = siglip_loss(emb, emb, 60.0, -30.0, chunk_size=3).item()  # z = ±30: loss ≈ 4·e⁻³⁰
    assert tiny == pytest.approx(4 * math.exp(-30), rel=1e-5)


def test_half_inputs_compute_in_float32():
    img, txt, s, b = leaves(40, 16, torch.float64, seed=9)
    img16, txt16 = (x.detach().to(torch.bfloat16).requires_grad_(True) for x in (img, txt))
    loss = siglip_loss(img16, txt16, s.detach().float(), b.detach().float(), chunk_size=16)
    g_img, g_txt = torch.autograd.grad(loss, (img16, txt16))
    assert loss.dtype == torch.float32 and g_img.dtype == g_txt.dtype == torch.bfloat16
    up = [x.detach().float().requires_grad_(True) for x in (img16, txt16)]
    want = siglip_loss_reference(*up, s.detach().float(), b.detach().float())
    want_grads = torch.autograd.grad(want, up)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    for got, ref in zip((g_img, g_txt), want_grads, strict=True):
        torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-4)


def saved_shapes(fn) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return shapes


def test_graph_keeps_no_n_by_n_tensor():
    n, d = 256, 16
    inputs = leaves(n, d, torch.float32)
    plain = saved_shapes(lambda: siglip_loss_reference(*inputs))
    assert (n, n) in plain  # the plain loss keeps (N, N) tensors: the check below can fail
    ours = saved_shapes(lambda: siglip_loss(*inputs, chunk_size=64))
    assert sorted(ours) == sorted([(n, d), (n, d), (), ()])


def test_module_registry_keywords_and_chunk_argument():
    img, txt, s, b = leaves(10, 4, torch.float64, seed=10)
    loss_fn = LOSSES.get("siglip")(chunk_size=3)
    assert isinstance(loss_fn, SigLipLoss) and "chunk_size=3" in repr(loss_fn)
    out = {"image_features": img, "text_features": txt, "logit_scale": s, "logit_bias": b, "extra": 1}
    torch.testing.assert_close(loss_fn(**out), siglip_loss_reference(img, txt, s, b))


def test_errors():
    img, txt, s, b = leaves(4, 2, torch.float64)
    with pytest.raises(ValueError, match=r"\(4, 2\) and text_features \(3, 2\)"):
        siglip_loss(img, txt[:3], s, b, chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        siglip_loss(img, txt, s, b, chunk_size=0)
    with pytest.raises(ValueError, match="scalar"):
        siglip_loss(img, txt, s, torch.zeros(2), chunk_size=2)
