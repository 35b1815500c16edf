import pytest
import torch

from xmodal.encoders.vit import VisionTransformer, vit
from xmodal.registry import IMAGE_ENCODERS


def test_shapes_and_cls_pooling() -> None:
    m = VisionTransformer(image_size=32, patch_size=8, dim=48, depth=2, num_heads=4).eval()
    out = m(torch.randn(3, 3, 32, 32))
    assert out.tokens.shape == (3, 16, 48) and out.pooled.shape == (3, 48) and out.mask is None
    x = m.norm(m.transformer(m.embed(torch.zeros(1, 3, 32, 32))))
    ref = m(torch.zeros(1, 3, 32, 32))
    torch.testing.assert_close(ref.pooled, x[:, 0])  # CLS, normalised
    torch.testing.assert_close(ref.tokens, x[:, 1:])
    assert m.token_dim == m.pooled_dim == 48


def test_mean_pooling() -> None:
    m = VisionTransformer(image_size=16, patch_size=4, dim=32, depth=1, num_heads=2, pool="mean").eval()
    out = m(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    with pytest.raises(ValueError, match="pool"):
        VisionTransformer(image_size=16, patch_size=4, dim=32, depth=1, num_heads=2, pool="max")  # type: ignore[arg-type]


def test_blocks_and_output_modules() -> None:
    m = VisionTransformer(image_size=16, patch_size=4, dim=32, depth=3, num_heads=2)
    blocks = m.blocks()
    assert len(blocks) == 4 and blocks[0] is m.embed
    assert m.output_only_modules() == [m.norm]
    covered = {id(p) for mod in blocks + m.output_only_modules() for p in mod.parameters()}
    assert covered == {id(p) for p in m.parameters()}
    # chaining the blocks then the norm reproduces forward
    x = torch.randn(1, 3, 16, 16)
    h = x
    for b in blocks:
        h = b(h)
    torch.testing.assert_close(m.norm(h)[:, 1:], m(x).tokens)


def test_every_parameter_gets_a_gradient() -> None:
    m = vit(image_size=16, patch_size=4, dim=32, depth=2, num_heads=2)
    out = m(torch.randn(2, 3, 16, 16))
    (out.tokens.square().mean() + out.pooled.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name


def test_position_embedding_breaks_permutation_symmetry() -> None:
    m = vit().eval()
    x = torch.randn(1, 3, 32, 32)
    swapped = x.clone()
    swapped[..., :8, :8], swapped[..., :8, 8:16] = x[..., :8, 8:16], x[..., :8, :8]  # swap two patches
    a, b = m(x).tokens, m(swapped).tokens
    assert not torch.allclose(a[:, 0], b[:, 1], atol=1e-4)


def test_registered_with_tiny_defaults_and_golden() -> None:
    assert IMAGE_ENCODERS.get("vit") is vit
    torch.manual_seed(0)
    m = vit()
    assert (m.default_image_size, m.token_dim, len(m.blocks())) == (32, 64, 3)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        m(x).pooled[0, :4],
        torch.tensor([-1.64400709, -0.32299766, -1.46646607, 0.99313849]),
        atol=1e-5,
        rtol=0,
    )
