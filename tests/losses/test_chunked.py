"""Tests for xmodal.losses.chunked through ``clip_loss(..., chunk_size=...)``: the exact blockwise
symmetric InfoNCE against the plain (N, N) version, forward and backward, and its O(N·D) saved state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal.losses.chunked import ChunkedClipLoss, clip_log_sum_exps, spans
from xmodal.losses.contrastive import ClipLoss, clip_loss, clip_loss_reference
from xmodal.registry import LOSSES


def unit(n: int, d: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).to(dtype)


def leaves(n: int, d: int, dtype: torch.dtype, scale: float = 14.3, seed: int = 0):
    img = unit(n, d, seed, dtype).requires_grad_(True)
    txt = unit(n, d, seed + 1, dtype).requires_grad_(True)
    return img, txt, torch.tensor(scale, dtype=dtype, requires_grad=True)


def value_and_grads(fn, n, d, dtype, scale=14.3, seed=0):
    img, txt, s = leaves(n, d, dtype, scale, seed)
    loss = fn(img, txt, s)
    return (loss, *torch.autograd.grad(loss, (img, txt, s)))


def assert_all_close(got, want, rtol: float, atol: float) -> None:
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


def test_spans_cover_n_in_order():
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(3, 8) == [(0, 3)]
    assert spans(6, 3) == [(0, 3), (3, 6)]


# (N, D, chunk): dividing, not dividing, N < chunk, chunk 1, one block exactly
SHAPES = [(64, 16, 16), (100, 24, 33), (37, 8, 64), (9, 4, 1), (48, 32, 48)]


@pytest.mark.parametrize(("n", "d", "chunk"), SHAPES)
def test_float64_matches_plain_to_1e_10(n, d, chunk):
    want = value_and_grads(clip_loss_reference, n, d, torch.float64)
    got = value_and_grads(lambda i, t, s: clip_loss(i, t, s, chunk_size=chunk), n, d, torch.float64)
    assert got[0].dtype == torch.float64
    assert_all_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("n", "d", "chunk"), [(1024, 64, 300), (257, 32, 64), (50, 16, 128)])
def test_float32_matches_plain(n, d, chunk):
    want = value_and_grads(clip_loss_reference, n, d, torch.float32, scale=50.0, seed=3)
    got = value_and_grads(
        lambda i, t, s: clip_loss(i, t, s, chunk_size=chunk), n, d, torch.float32, scale=50.0, seed=3
    )
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0)
    assert_all_close(got[1:], want[1:], rtol=1e-5, atol=1e-6)


def test_seeded_value_same_as_plain_golden():
    img, txt, s = leaves(6, 8, torch.float64)
    assert clip_loss(img, txt, s, chunk_size=4).item() == pytest.approx(5.349792669604351, abs=1e-12)


def test_gradcheck_tiny_float64():
    img, txt, s = leaves(5, 3, torch.float64, scale=3.0, seed=7)
    assert torch.autograd.gradcheck(lambda i, t, sc: ChunkedClipLoss.apply(i, t, sc, 2), (img, txt, s))


def test_upstream_gradient_is_applied():
    img, txt, s = leaves(20, 8, torch.float64, seed=2)
    got = torch.autograd.grad(3.5 * clip_loss(img, txt, s, chunk_size=6), (img, txt, s))
    want = torch.autograd.grad(3.5 * clip_loss_reference(img, txt, s), (img, txt, s))
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("wanted", [(0,), (1,), (2,), (0, 2), (1, 2)])
def test_only_the_requested_gradients(wanted):
    img, txt, s = leaves(30, 8, torch.float64, seed=4)
    inputs = [img.detach(), txt.detach(), s.detach()]
    for k in wanted:
        inputs[k].requires_grad_(True)
    got = torch.autograd.grad(clip_loss(*inputs, chunk_size=7), [inputs[k] for k in wanted])
    want = torch.autograd.grad(clip_loss_reference(img, txt, s), [(img, txt, s)[k] for k in wanted])
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


def test_float_scale_and_scale_of_shape_one():
    img, txt, _ = leaves(12, 6, torch.float64, seed=5)
    torch.testing.assert_close(clip_loss(img, txt, 9.0, chunk_size=5), clip_loss_reference(img, txt, 9.0))
    scale = torch.tensor([9.0], dtype=torch.float64, requires_grad=True)  # open_clip-style shape (1,)
    (grad,) = torch.autograd.grad(clip_loss(img, txt, scale, chunk_size=5), scale)
    (want,) = torch.autograd.grad(clip_loss_reference(img, txt, scale), scale)
    assert grad.shape == (1,)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def far_apart_pairs(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images near a direction v, every third caption near −v.

    At scale 100 a logit is ≈ +96 for a +v caption and ≈ −96 for a −v one, so in every block the −v
    captions' columns lie ≈ 190 below the block maximum, beyond float32's exp range (e⁻¹⁰⁴ = 0): a
    block-wide shift loses those columns entirely; their sums need their own shifts.
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g, dtype=torch.float64)
    img = F.normalize(v + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(v + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    txt[::3] = -txt[::3]
    return img, txt


def test_log_sum_exps_exact_when_a_block_spans_beyond_exp_range():
    img, txt = far_apart_pairs(40, 16, seed=8)
    for r0 in (0, 16, 32):
        block = 100 * img[r0 : r0 + 16] @ txt[:16].T
        assert (block.amax(0) < block.max() - 110).any()  # exp(col − block max) is 0 in float32
    lse = clip_log_sum_exps(img.float(), txt.float(), torch.tensor(100.0), 16)
    logits = 100 * img @ txt.T
    torch.testing.assert_close(
        (lse.row_shift + lse.row_sum.log()).double(), logits.logsumexp(1), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(
        (lse.col_shift + lse.col_sum.log()).double(), logits.logsumexp(0), rtol=1e-6, atol=0
    )
    torch.testing.assert_close(lse.diag.double(), logits.diagonal(), rtol=1e-6, atol=0)


def test_stable_when_logits_span_beyond_exp_range_at_scale_100():
    img, txt = far_apart_pairs(40, 16, seed=8)
    ref = [x.clone().requires_grad_(True) for x in (img, txt, torch.tensor(100.0, dtype=torch.float64))]
    ref_loss = clip_loss_reference(*ref)
    ref_grads = torch.autograd.grad(ref_loss, ref)
    ours = [x.float().requires_grad_(True) for x in (img, txt, torch.tensor(100.0))]
    loss = clip_loss(*ours, chunk_size=16)
    grads = torch.autograd.grad(loss, ours)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-5, atol=0)
    for g32, g64 in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-5)


def test_half_inputs_compute_in_float32():
    img, txt, s = leaves(40, 16, torch.float64, seed=9)
    img16, txt16 = (x.detach().to(torch.bfloat16).requires_grad_(True) for x in (img, txt))
    loss = clip_loss(img16, txt16, s.detach().float(), chunk_size=16)
    g_img, g_txt = torch.autograd.grad(loss, (img16, txt16))
    assert loss.dtype == torch.float32 and g_img.dtype == g_txt.dtype == torch.bfloat16
    up = [x.detach().float().requires_grad_(True) for x in (img16, txt16)]
    want = clip_loss_reference(*up, s.detach().float())
    want_grads = torch.autograd.grad(want, up)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    for got, ref in zip((g_img, g_txt), want_grads, strict=True):
        torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-4)  # bf16 rounding of the result


def saved_shapes(fn) -> list[tuple[int, ...]]:
    """Shapes of every tensor autograd packs while ``fn()`` builds its graph."""
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return shapes


def test_graph_keeps_no_n_by_n_tensor():
    n, d = 256, 16
    img, txt, s = leaves(n, d, torch.float32)
    plain = saved_shapes(lambda: clip_loss_reference(img, txt, s))
    assert (n, n) in plain  # the plain loss does keep the logits: the check below can fail
    ours = saved_shapes(lambda: clip_loss(img, txt, s, chunk_size=64))
    assert ours and all(torch.Size(shape).numel() <= n * d for shape in ours)
    assert sorted(ours) == sorted([(), (n,), (n,), (n, d), (n, d)])


def test_module_registry_and_chunk_argument():
    img, txt, s = leaves(10, 4, torch.float64, seed=10)
    loss_fn = LOSSES.get("clip")(chunk_size=3)
    assert isinstance(loss_fn, ClipLoss) and "chunk_size=3" in repr(loss_fn)
    torch.testing.assert_close(
        loss_fn(image_features=img, text_features=txt, logit_scale=s, extra=1), clip_loss(img, txt, s)
    )


@pytest.mark.parametrize("bad", [0, -4, 2.5, True])
def test_bad_chunk_size_is_an_error(bad):
    img, txt, s = leaves(4, 2, torch.float64)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        clip_loss(img, txt, s, chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        ClipLoss(chunk_size=bad)
