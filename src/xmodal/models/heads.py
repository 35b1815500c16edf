"""Projection heads from a tower's pooled features into the joint embedding space."""

from __future__ import annotations

from torch import Tensor, nn


class MlpHead(nn.Module):
    """Two-layer MLP head: Linear → GELU → Dropout → Linear, (B, in_dim) → (B, out_dim)."""

    def __init__(self, *, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_dim) → (B, out_dim)."""
        return self.fc2(self.drop(self.act(self.fc1(x))))


class LinearHead(nn.Module):
    """Dropout then a linear map, (B, in_dim) → (B, out_dim), as CLIP's projections."""

    def __init__(self, *, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_dim) → (B, out_dim)."""
        return self.proj(self.drop(x))


def build_head(
    kind: str,
    *,
    in_dim: int,
    out_dim: int,
    hidden_dim: int = 1024,
    dropout: float = 0.0,
    input_norm: bool = False,
) -> nn.Module:
    """A head by kind: ``"linear"``, ``"mlp"`` or ``"identity"`` (needs in_dim == out_dim).

    ``input_norm`` puts a LayerNorm on the input: it standardises features whose channels have very
    different scales (multi-scale pooled CNN features).
    """
    if input_norm and kind != "identity":
        return nn.Sequential(
            nn.LayerNorm(in_dim),
            build_head(kind, in_dim=in_dim, out_dim=out_dim, hidden_dim=hidden_dim, dropout=dropout),
        )
    if kind == "linear":
        return LinearHead(in_dim=in_dim, out_dim=out_dim, dropout=dropout)
    if kind == "mlp":
        return MlpHead(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, dropout=dropout)
    if kind == "identity":
        if in_dim != out_dim:
            raise ValueError(f"an identity head needs in_dim == out_dim, got {in_dim} and {out_dim}")
        return nn.Identity()
    raise ValueError(f"unknown head kind {kind!r}; expected 'linear', 'mlp' or 'identity'")
