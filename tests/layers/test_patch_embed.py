import pytest
import torch

from xmodal.layers.patch_embed import PatchEmbed


def test_shapes() -> None:
    pe = PatchEmbed(image_size=32, patch_size=8, dim=24)
    assert pe.num_patches == 16 and pe.grid_size == 4
    assert pe(torch.randn(2, 3, 32, 32)).shape == (2, 16, 24)


def test_patches_are_row_major_linear_projections() -> None:
    pe = PatchEmbed(image_size=8, patch_size=4, in_chans=2, dim=5)
    images = torch.randn(1, 2, 8, 8)
    out = pe(images)  # (1, 4, 5)
    weight = pe.proj.weight.reshape(5, -1)  # (D, C*P*P)
    for idx, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        patch = images[0, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(-1)  # (C*P*P,)
        torch.testing.assert_close(out[0, idx], weight @ patch + pe.proj.bias, atol=1e-5, rtol=1e-5)


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        PatchEmbed(image_size=30, patch_size=8, dim=4)
    pe = PatchEmbed(image_size=32, patch_size=8, dim=4)
    with pytest.raises(ValueError, match=r"expects \(B, C, 32, 32\)"):
        pe(torch.randn(1, 3, 64, 64))


def test_seeded_golden_output() -> None:
    torch.manual_seed(0)
    pe = PatchEmbed(image_size=4, patch_size=2, dim=3)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        pe(x)[0, 0], torch.tensor([-1.06005454, 0.25691801, 0.08857881]), atol=1e-5, rtol=0
    )
