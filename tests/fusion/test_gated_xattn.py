"""Tests for xmodal.fusion.gated_xattn: media-location mask semantics, zero gates, open_flamingo parity."""

from __future__ import annotations

import torch

from xmodal.fusion.gated_xattn import GatedCrossAttentionBlock, MaskedCrossAttention, media_attention_mask

# text:  a  <image>  b  c  <image>  d      (two images, one sample)
LOCS = torch.tensor([[False, True, False, False, True, False]])


def test_immediate_mask_on_a_hand_built_example():
    got = media_attention_mask(LOCS, 2, only_immediate=True)
    want = torch.tensor([[[0, 0], [1, 0], [1, 0], [1, 0], [0, 1], [0, 1]]], dtype=torch.bool)
    assert torch.equal(got, want)


def test_all_previous_mask_on_a_hand_built_example():
    got = media_attention_mask(LOCS, 2, only_immediate=False)
    want = torch.tensor([[[0, 0], [1, 0], [1, 0], [1, 0], [1, 1], [1, 1]]], dtype=torch.bool)
    assert torch.equal(got, want)


def xattn(only_immediate: bool) -> MaskedCrossAttention:
    torch.manual_seed(0)
    return MaskedCrossAttention(
        dim=8, dim_visual=6, dim_head=4, heads=2, only_attend_immediate_media=only_immediate
    )


def reference(m: MaskedCrossAttention, x, media, locs):
    """The definition, token by token: softmax over the visible images' tokens, zero if none."""
    B, N, _ = x.shape
    T, L = media.shape[1:3]
    allowed = media_attention_mask(locs, T, only_immediate=m.only_attend_immediate_media)
    H = m.heads
    out = torch.zeros(B, N, m.to_out.in_features, dtype=x.dtype)
    for b in range(B):
        for i in range(N):
            seen = [t for t in range(T) if allowed[b, i, t]]
            if not seen:
                continue
            q = m.to_q(m.norm(x[b, i])).view(H, -1)  # (H, d)
            k, v = m.to_kv(media[b, seen].reshape(len(seen) * L, -1)).chunk(2, dim=-1)
            k, v = k.view(-1, H, q.shape[1]), v.view(-1, H, q.shape[1])  # (K, H, d)
            w = torch.einsum("hd,khd->hk", q, k).div(q.shape[1] ** 0.5).softmax(-1)
            out[b, i] = torch.einsum("hk,khd->hd", w, v).reshape(-1)
    return m.to_out(out)


def test_both_modes_match_the_token_by_token_definition():
    x, media = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 6)
    for only_immediate in (True, False):
        m = xattn(only_immediate)
        torch.testing.assert_close(m(x, media, LOCS), reference(m, x, media, LOCS))


def test_text_before_any_image_gets_exactly_zero_in_both_modes():
    x, media = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 6)
    for only_immediate in (True, False):
        out = xattn(only_immediate)(x, media, LOCS)
        assert torch.equal(out[0, 0], torch.zeros(8))
        assert out[0, 1:].abs().sum(-1).min() > 0


def test_tokens_only_depend_on_the_images_they_may_see():
    x, media = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 6)
    other = media.clone()
    other[:, 1] = torch.randn(3, 6)  # change image 2 only
    m = xattn(True)
    a, b = m(x, media, LOCS), m(x, other, LOCS)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])
    other = media.clone()
    other[:, 0] = torch.randn(3, 6)  # change image 1 only: tokens after image 2 see it only in "all" mode
    a, b = m(x, media, LOCS), m(x, other, LOCS)
    assert torch.equal(a[:, 4:], b[:, 4:])
    m_all = xattn(False)
    assert not torch.allclose(m_all(x, media, LOCS)[:, 4:], m_all(x, other, LOCS)[:, 4:])


def test_text_time_override_for_incremental_decoding():
    x, media = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 6)
    m = xattn(True)
    full = m(x, media, LOCS)
    # decoding the last token alone: it comes after both images
    last = m(x[:, 5:], media, torch.zeros(1, 1, dtype=torch.bool), text_time=torch.tensor([[2]]))
    torch.testing.assert_close(last, full[:, 5:])


def test_gated_block_is_the_identity_at_initialisation_and_then_learns():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(dim=8, dim_visual=6, dim_head=4, heads=2)
    x, media = torch.randn(2, 6, 8), torch.randn(2, 2, 3, 6)
    locs = LOCS.expand(2, -1)
    assert torch.equal(block(x, media, locs), x)
    block(x, media, locs).square().sum().backward()
    assert block.attn_gate.grad is not None and block.attn_gate.grad.abs() > 0
    assert block.ff_gate.grad is not None and block.ff_gate.grad.abs() > 0
    with torch.no_grad():
        block.attn_gate.fill_(0.5)
    out = block(x, media, locs)
    assert not torch.equal(out, x)


def test_matches_open_flamingo_gated_cross_attention_block(open_flamingo_helpers):
    torch.manual_seed(0)
    x, media = torch.randn(2, 6, 8, dtype=torch.float64), torch.randn(2, 2, 3, 6, dtype=torch.float64)
    # open_flamingo lets text before any image attend to every image in "all previous" mode; compare
    # on sequences that start with an image (and, in "immediate" mode, on the hand-built one as well)
    starts = torch.tensor([[True, False, False, True, False, False]] * 2)
    for only_immediate, locs in ((True, LOCS.expand(2, -1)), (True, starts), (False, starts)):
        ours = GatedCrossAttentionBlock(
            dim=8, dim_visual=6, dim_head=4, heads=2, only_attend_immediate_media=only_immediate
        ).double()
        ref = open_flamingo_helpers.GatedCrossAttentionBlock(
            dim=8, dim_visual=6, dim_head=4, heads=2, only_attend_immediate_media=only_immediate
        ).double()
        with torch.no_grad():
            ours.attn_gate.fill_(0.7)
            ours.ff_gate.fill_(-0.3)
        ref.load_state_dict(ours.state_dict())
        torch.testing.assert_close(ours(x, media, locs), ref(x, media, media_locations=locs))


def test_gate_scale_keeps_the_identity_at_zero_and_scales_the_gate():
    torch.manual_seed(0)
    x, media, locs = torch.randn(1, 6, 8), torch.randn(1, 2, 3, 6), LOCS
    plain = GatedCrossAttentionBlock(dim=8, dim_visual=6, dim_head=4, heads=2)
    scaled = GatedCrossAttentionBlock(dim=8, dim_visual=6, dim_head=4, heads=2, gate_scale=10.0)
    scaled.load_state_dict(plain.state_dict())
    assert torch.equal(scaled(x, media, locs), x)
    with torch.no_grad():
        scaled.attn_gate.fill_(0.03)
        scaled.ff_gate.fill_(-0.05)
        plain.attn_gate.fill_(0.3)
        plain.ff_gate.fill_(-0.5)
    torch.testing.assert_close(scaled(x, media, locs), plain(x, media, locs))
