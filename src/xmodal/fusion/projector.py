"""Projectors from vision tokens into a language model's embedding space.

* Linear: LLaVA (Liu et al. 2023, "Visual Instruction Tuning", https://arxiv.org/abs/2304.08485, §4.1):
  one trainable matrix W maps each visual token to a word-embedding-sized vector.
* MLP: LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning",
  https://arxiv.org/abs/2310.03744, §3.2) uses a two-layer MLP with GELU (``mlp2x_gelu``), which is
  ``ProjectorConfig(kind="mlp", depth=2, activation="gelu")`` here: depth and activation are explicit
  fields, never parsed out of a name.

* Token merging: MiniGPT-v2 (Chen et al. 2023, https://arxiv.org/abs/2310.09478, §3) concatenates every
  2×2 neighbouring visual tokens into one, ``ProjectorConfig(merge=2)`` here: fewer, wider tokens.

Shapes: (B, T, D_vision) → (B, T, D_lm), or (B, T / merge², D_lm) when merging a square grid of tokens;
without merging any leading dims work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from xmodal.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


@dataclass
class ProjectorConfig:
    """A projector's architecture.

    Attributes:
        kind: "linear" (one layer; ``depth`` must be 1) or "mlp".
        depth: number of linear layers (LLaVA-1.5: 2).
        activation: between layers, one of :data:`ACTIVATIONS` (LLaVA-1.5: "gelu").
        hidden_dim: width of the hidden layers (None: the LM's width, as LLaVA-1.5).
        input_norm: LayerNorm on the vision tokens first (useful for un-normalised CNN features).
        dropout: while training, dropout on the (normalised) vision tokens and after each hidden
            activation (Srivastava et al. 2014): regularises a projector that would otherwise memorise
            the training images' frozen features. 0: none (LLaVA-1.5).
        input_dropout: the rate on the vision tokens alone when it should differ from ``dropout``'s
            (None: ``dropout``), e.g. strong on the frozen features, light on the hidden layer.
    """

    kind: str = "mlp"
    depth: int = 2
    activation: str = "gelu"
    hidden_dim: int | None = None
    input_norm: bool = False
    dropout: float = 0.0
    input_dropout: float | None = None
    merge: int = 1


class GridMerge(nn.Module):
    """Concatenate each ``m``×``m`` block of neighbouring tokens of a square row-major grid (MiniGPT-v2).

    (..., T, C) with T = g², g divisible by m → (..., T / m², m² C); block (i, j) holds grid rows
    m·i .. m·i + m - 1 and columns m·j .. m·j + m - 1, row by row, and blocks come row-major.
    """

    def __init__(self, m: int) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: Tensor) -> Tensor:
        """x (..., T, C) → (..., T / m², m² C)."""
        *lead, T, C = x.shape
        g, m = math.isqrt(T), self.m
        if g * g != T or g % m:
            raise ValueError(
                f"merging {m}x{m} tokens needs a square grid with a side divisible by {m}, got {T}"
            )
        x = x.reshape(*lead, g // m, m, g // m, m, C).transpose(-4, -3)  # (..., g/m, g/m, m, m, C)
        return x.reshape(*lead, (g // m) ** 2, m * m * C)


def llava_1_5_projector() -> ProjectorConfig:
    """LLaVA-1.5's projector: two linear layers with a GELU between them."""
    return ProjectorConfig(kind="mlp", depth=2, activation="gelu")


class MlpProjector(nn.Module):
    """``depth`` linear layers with ``act_layer`` between them (none after the last).

    Args:
        in_dim: vision token width D_vision.
        out_dim: LM embedding width D_lm.
        depth: number of linear layers (>= 1; 1 is the LLaVA linear projector).
        hidden_dim: width between layers (default ``out_dim``).
        act_layer: activation class, instantiated without arguments.
        input_norm: LayerNorm(D_vision) first.
        dropout: dropout probability on the input tokens and after each activation (0: no layer added).
        input_dropout: the input tokens' rate instead (None: ``dropout``).
        merge: concatenate each merge×merge block of a square token grid first (:class:`GridMerge`).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int,
        depth: int = 2,
        hidden_dim: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        input_norm: bool = False,
        dropout: float = 0.0,
        input_dropout: float | None = None,
        merge: int = 1,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"projector depth must be >= 1, got {depth}")
        hidden = hidden_dim or out_dim
        dims = [in_dim * merge * merge] + [hidden] * (depth - 1) + [out_dim]
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if input_norm else []
        if merge > 1:
            layers.append(GridMerge(merge))
        for i in range(depth):
            if i > 0:
                layers.append(act_layer())
            p = dropout if i > 0 or input_dropout is None else input_dropout
            if p > 0:
                layers.append(nn.Dropout(p))
            layers.append(nn.Linear(dims[i], dims[i + 1]))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim, self.depth = in_dim, out_dim, depth

    def forward(self, x: Tensor) -> Tensor:
        """x (..., D_vision) → (..., D_lm)."""
        return self.layers(x)  # type: ignore[no-any-return]


def build_projector(cfg: ProjectorConfig, *, in_dim: int, out_dim: int) -> MlpProjector:
    """The projector ``cfg`` describes.

    Raises:
        ConfigError: unknown kind or activation, a linear projector with depth != 1, depth < 1.
    """
    if cfg.kind not in ("linear", "mlp"):
        raise ConfigError(f"projector.kind: expected 'linear' or 'mlp', got {cfg.kind!r}")
    if cfg.kind == "linear" and cfg.depth != 1:
        raise ConfigError(f"projector.depth: a linear projector has depth 1, got {cfg.depth}")
    if cfg.depth < 1:
        raise ConfigError(f"projector.depth: must be >= 1, got {cfg.depth}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"projector.dropout: must be in [0, 1), got {cfg.dropout}")
    if cfg.merge < 1:
        raise ConfigError(f"projector.merge: must be >= 1, got {cfg.merge}")
    if cfg.input_dropout is not None and not 0.0 <= cfg.input_dropout < 1.0:
        raise ConfigError(f"projector.input_dropout: must be in [0, 1) or null, got {cfg.input_dropout}")
    if cfg.activation not in ACTIVATIONS:
        raise ConfigError(
            f"projector.activation: unknown {cfg.activation!r} (known: {', '.join(sorted(ACTIVATIONS))})"
        )
    return MlpProjector(
        in_dim=in_dim,
        out_dim=out_dim,
        depth=cfg.depth,
        hidden_dim=cfg.hidden_dim,
        act_layer=ACTIVATIONS[cfg.activation],
        input_norm=cfg.input_norm,
        dropout=cfg.dropout,
        input_dropout=cfg.input_dropout,
        merge=cfg.merge,
    )
