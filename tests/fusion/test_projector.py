"""Tests for xmodal.fusion.projector: LLaVA's linear and LLaVA-1.5's MLP projectors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.fusion.projector import ProjectorConfig, build_projector, llava_1_5_projector


def test_llava_1_5_matches_the_reference_builder():
    """LLaVA's ``build_vision_projector`` for "mlp2x_gelu": Linear(D_v, D) → GELU → Linear(D, D)."""
    torch.manual_seed(0)
    proj = build_projector(llava_1_5_projector(), in_dim=12, out_dim=16)
    ref = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 16))
    ref.load_state_dict({k.removeprefix("layers."): v for k, v in proj.state_dict().items()})
    x = torch.randn(2, 5, 12, requires_grad=True)
    y = proj(x)
    assert y.shape == (2, 5, 16)
    torch.testing.assert_close(y, ref(x), rtol=0, atol=0)
    assert [type(m) for m in proj.layers] == [nn.Linear, nn.GELU, nn.Linear]


def test_dropout_acts_on_the_tokens_and_hidden_layer_in_training_only():
    torch.manual_seed(0)
    proj = build_projector(ProjectorConfig(depth=2, input_norm=True, dropout=0.5), in_dim=12, out_dim=16)
    kinds = [type(m) for m in proj.layers]
    assert kinds == [nn.LayerNorm, nn.Dropout, nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
    plain = build_projector(ProjectorConfig(depth=2, input_norm=True), in_dim=12, out_dim=16)
    # same parameters: LayerNorm 0, Linear 2 → 1, Linear 5 → 3
    plain.load_state_dict(
        {
            k.replace("layers.2.", "layers.1.").replace("layers.5.", "layers.3."): v
            for k, v in proj.state_dict().items()
        }
    )
    x = torch.randn(4, 5, 12)
    proj.eval()
    torch.testing.assert_close(proj(x), plain(x), rtol=0, atol=0)  # eval: dropout is the identity
    proj.train()
    torch.manual_seed(1)
    a = proj(x)
    torch.manual_seed(1)
    ln, d1, l1, act, d2, l2 = proj.layers
    torch.testing.assert_close(a, l2(d2(act(l1(d1(ln(x)))))), rtol=0, atol=0)
    assert not torch.allclose(a, plain(x))


def test_input_dropout_rate_can_differ_from_the_hidden_one():
    cfg = ProjectorConfig(depth=2, input_norm=True, dropout=0.1, input_dropout=0.4)
    proj = build_projector(cfg, in_dim=12, out_dim=16)
    drops = [m.p for m in proj.layers if isinstance(m, nn.Dropout)]
    assert drops == [0.4, 0.1]  # the vision tokens, then the hidden layer
    only_input = build_projector(ProjectorConfig(depth=2, input_dropout=0.3), in_dim=12, out_dim=16)
    assert [type(m) for m in only_input.layers] == [nn.Dropout, nn.Linear, nn.GELU, nn.Linear]
    none = build_projector(ProjectorConfig(depth=2, dropout=0.2, input_dropout=0.0), in_dim=12, out_dim=16)
    assert [type(m) for m in none.layers] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear]


def test_linear_projector_is_one_matrix():
    proj = build_projector(ProjectorConfig(kind="linear", depth=1), in_dim=8, out_dim=4)
    assert [type(m) for m in proj.layers] == [nn.Linear]
    x = torch.randn(3, 8)
    lin = proj.layers[0]
    torch.testing.assert_close(proj(x), x @ lin.weight.T + lin.bias)


def test_depth_activation_hidden_and_norm_are_explicit():
    cfg = ProjectorConfig(kind="mlp", depth=3, activation="relu", hidden_dim=7, input_norm=True)
    proj = build_projector(cfg, in_dim=5, out_dim=6)
    types = [type(m) for m in proj.layers]
    assert types == [nn.LayerNorm, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [m.out_features for m in proj.layers if isinstance(m, nn.Linear)] == [7, 7, 6]
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5)
    out = proj(x)
    out.sum().backward()
    assert out.shape == (2, 3, 6)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in proj.parameters())


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        (ProjectorConfig(kind="conv"), "kind"),
        (ProjectorConfig(kind="linear", depth=2), "linear projector has depth 1"),
        (ProjectorConfig(dropout=1.0), "dropout"),
        (ProjectorConfig(input_dropout=-0.1), "input_dropout: must be in"),
        (ProjectorConfig(kind="mlp", depth=0), "must be >= 1"),
        (ProjectorConfig(kind="mlp", activation="mlp2x_gelu"), "unknown 'mlp2x_gelu'"),
    ],
)
def test_bad_configs_are_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_projector(cfg, in_dim=4, out_dim=4)


def test_merge_concatenates_each_2x2_block_of_the_grid():
    from xmodal.fusion.projector import GridMerge

    grid = torch.arange(16.0).view(1, 16, 1)  # a 4×4 grid, token value = its row-major index
    merged = GridMerge(2)(grid)
    assert merged.shape == (1, 4, 4)
    assert merged[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    x = torch.randn(2, 16, 3)
    ref = torch.stack(  # by hand: block (i, j), its rows then columns, channels of each token in turn
        [
            torch.cat([x[:, (2 * i + a) * 4 + 2 * j + b] for a in (0, 1) for b in (0, 1)], dim=-1)
            for i in (0, 1)
            for j in (0, 1)
        ],
        dim=1,
    )
    torch.testing.assert_close(GridMerge(2)(x), ref, rtol=0, atol=0)
    proj = build_projector(ProjectorConfig(depth=2, input_norm=True, merge=2), in_dim=3, out_dim=8)
    assert proj(x).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="square grid"):
        GridMerge(2)(torch.randn(1, 9, 3))
    with pytest.raises(ConfigError, match="merge"):
        build_projector(ProjectorConfig(merge=0), in_dim=3, out_dim=8)
