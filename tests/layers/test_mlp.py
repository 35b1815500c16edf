import torch
from torch import nn

from xmodal.layers.mlp import Mlp


def test_shapes_and_composition() -> None:
    mlp = Mlp(in_dim=8, hidden_dim=32, out_dim=5)
    x = torch.randn(2, 3, 8)
    y = mlp(x)
    assert y.shape == (2, 3, 5)
    expected = mlp.fc2(nn.functional.gelu(mlp.fc1(x)))
    torch.testing.assert_close(y, expected)


def test_act_layer_is_injected() -> None:
    mlp = Mlp(in_dim=4, hidden_dim=8, out_dim=4, act_layer=nn.ReLU)
    assert isinstance(mlp.act, nn.ReLU)
    x = torch.randn(6, 4)
    torch.testing.assert_close(mlp(x), mlp.fc2(torch.relu(mlp.fc1(x))))


def test_dropout_only_in_training() -> None:
    mlp = Mlp(in_dim=16, hidden_dim=64, out_dim=16, dropout=0.5)
    x = torch.randn(4, 16)
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp(x))
    mlp.train()
    assert not torch.allclose(mlp(x), mlp(x))


def test_seeded_golden_output() -> None:
    torch.manual_seed(0)
    mlp = Mlp(in_dim=4, hidden_dim=8, out_dim=3)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        mlp(x)[0], torch.tensor([0.04784036, -0.15079503, 0.35500091]), atol=1e-5, rtol=0
    )
