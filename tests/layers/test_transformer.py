import pytest
import torch
from torch import nn

from xmodal.layers.transformer import Transformer, TransformerBlock


def test_block_is_pre_norm_residual() -> None:
    block = TransformerBlock(dim=16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.norm1(x))
    expected = h + block.mlp(block.norm2(h))
    torch.testing.assert_close(block(x), expected)
    assert block.mlp.fc1.out_features == 64  # mlp_ratio 4


def test_stack_runs_blocks_in_order() -> None:
    t = Transformer(dim=16, depth=3, num_heads=4, mlp_ratio=2.0).eval()
    assert len(t.blocks) == 3
    x = torch.randn(2, 4, 16)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    h = x
    for block in t.blocks:
        h = block(h, mask)
    torch.testing.assert_close(t(x, mask), h)


def test_padding_does_not_leak_into_valid_tokens() -> None:
    t = Transformer(dim=16, depth=2, num_heads=2).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]]).bool()
    x_changed = x.clone()
    x_changed[:, 4:] = torch.randn(1, 2, 16)
    torch.testing.assert_close(t(x, mask)[:, :4], t(x_changed, mask)[:, :4])
    # and a padded sequence equals the unpadded one on its valid tokens
    torch.testing.assert_close(t(x, mask)[:, :4], t(x[:, :4]), atol=1e-5, rtol=1e-5)


def test_causal_flag_reaches_attention() -> None:
    t = Transformer(dim=16, depth=2, num_heads=2, causal=True).eval()
    assert all(b.attn.causal for b in t.blocks)
    x = torch.randn(1, 5, 16)
    x_changed = x.clone()
    x_changed[:, -1] = torch.randn(16)
    torch.testing.assert_close(t(x)[:, :4], t(x_changed)[:, :4])


@pytest.mark.parametrize("norm_layer", [nn.LayerNorm, nn.RMSNorm])
def test_norm_layer_is_injected_and_gradients_flow(norm_layer: type[nn.Module]) -> None:
    t = Transformer(dim=8, depth=2, num_heads=2, norm_layer=norm_layer)
    assert isinstance(t.blocks[0].norm1, norm_layer)
    out = t(torch.randn(2, 3, 8))
    out.square().mean().backward()
    for name, p in t.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_seeded_golden_output() -> None:
    torch.manual_seed(0)
    t = Transformer(dim=8, depth=2, num_heads=2)
    x = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        t(x)[0, 0, :4], torch.tensor([-1.86612153, -1.83846533, -1.08433747, -0.32066905]), atol=1e-5, rtol=0
    )
