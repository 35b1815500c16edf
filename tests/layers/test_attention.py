import pytest
import torch

from xmodal.layers.attention import SelfAttention, attention_reference, make_attention_mask


def _pair(causal: bool, dropout: float = 0.0) -> tuple[SelfAttention, SelfAttention]:
    torch.manual_seed(0)
    fused = SelfAttention(dim=32, num_heads=4, causal=causal, dropout=dropout)
    plain = SelfAttention(dim=32, num_heads=4, causal=causal, dropout=dropout, fused=False)
    plain.load_state_dict(fused.state_dict())
    return fused, plain


MASKS = {
    "none": None,
    "right_pad": torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]]).bool(),
    "left_pad": torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]).bool(),
}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_name", list(MASKS))
def test_fused_matches_reference_forward_and_backward(causal: bool, mask_name: str) -> None:
    fused, plain = _pair(causal)
    mask = MASKS[mask_name]
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fused(x1, mask), plain(x2, mask)
    assert y1.shape == (3, 7, 32)
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    w = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(2))
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for (name, p1), p2 in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert p1.grad is not None, name
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_reference_is_softmax_qkt_v() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    expected = torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) / 2.0, dim=-1) @ v  # sqrt(4) = 2
    torch.testing.assert_close(attention_reference(q, k, v), expected)


def test_padded_keys_do_not_influence_valid_tokens() -> None:
    attn = SelfAttention(dim=16, num_heads=2).eval()
    mask = torch.tensor([[1, 1, 1, 0, 0]]).bool()
    x = torch.randn(1, 5, 16)
    x_changed = x.clone()
    x_changed[:, 3:] = 100 * torch.randn(1, 2, 16)
    torch.testing.assert_close(attn(x, mask)[:, :3], attn(x_changed, mask)[:, :3])
    # without the mask the padded tokens do change the valid ones
    assert not torch.allclose(attn(x)[:, :3], attn(x_changed)[:, :3])


def test_causal_ignores_the_future() -> None:
    attn = SelfAttention(dim=16, num_heads=2, causal=True).eval()
    x = torch.randn(2, 6, 16)
    x_changed = x.clone()
    x_changed[:, 4:] = torch.randn(2, 2, 16)
    y, y_changed = attn(x), attn(x_changed)
    torch.testing.assert_close(y[:, :4], y_changed[:, :4])
    assert not torch.allclose(y[:, 4:], y_changed[:, 4:])


def test_make_attention_mask_shapes_and_values() -> None:
    assert make_attention_mask(None, 4, causal=False) is None
    causal = make_attention_mask(None, 3, causal=True)
    assert causal is not None and causal.shape == (1, 1, 3, 3)
    assert causal[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    m = make_attention_mask(torch.tensor([[True, True, False], [False, False, False]]), 3, causal=False)
    assert m is not None and m.shape == (2, 1, 3, 3)
    assert m[0, 0, 0].tolist() == [True, True, False]
    assert m[1].all()  # a fully padded sequence attends everywhere (finite, ignored downstream)


def test_seeded_golden_output() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(dim=8, num_heads=2)
    x = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([0.13165891, -0.45437679, -0.32817209, 0.32198197])
    torch.testing.assert_close(attn(x)[0, 0, :4], expected, atol=1e-5, rtol=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        SelfAttention(dim=10, num_heads=4)
    plain = SelfAttention(dim=8, num_heads=2, dropout=0.1, fused=False).train()
    with pytest.raises(ValueError, match="no attention dropout"):
        plain(torch.randn(1, 2, 8))


def test_dropout_only_in_training() -> None:
    attn = SelfAttention(dim=16, num_heads=2, dropout=0.5)
    x = torch.randn(2, 5, 16)
    attn.eval()
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))
