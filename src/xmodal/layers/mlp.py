"""The two-layer feed-forward network of a transformer block (Vaswani et al. 2017, §3.3)."""

from __future__ import annotations

from torch import Tensor, nn


class Mlp(nn.Module):
    """``Linear → act → dropout → Linear → dropout``.

    Args:
        in_dim: input width D_in.
        hidden_dim: hidden width (usually 4 × D_in).
        out_dim: output width D_out.
        act_layer: activation class, instantiated without arguments.
        dropout: dropout after the activation and after the second linear layer.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        act_layer: type[nn.Module] = nn.GELU,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = act_layer()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., D_in) → (..., D_out)."""
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
