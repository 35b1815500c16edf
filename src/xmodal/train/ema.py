"""An exponential moving average of a model's trainable parameters (Polyak & Juditsky 1992, "Acceleration
of stochastic approximation by averaging"; the decay warm-up of TensorFlow's ExponentialMovingAverage with
``num_updates``: ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early weights fade fast).

The averaged weights are what gets validated and kept (:class:`xmodal.train.generic.GenericTrainer` with
``ema_decay > 0``); the optimiser keeps training the raw ones. Buffers (e.g. batch-norm statistics) are
not averaged: they belong to frozen modules in every recipe that uses this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (0-based): ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage:
    """Shadow copies of ``model``'s trainable parameters, updated after each optimiser step.

    Args:
        model: the model being trained (its ``requires_grad`` parameters are averaged).
        decay: in (0, 1): each update is ``shadow = d * shadow + (1 - d) * param`` with
            ``d = ema_decay_at(decay, updates)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average (a fused ``torch._foreach_lerp_`` over every tensor)."""
        weight = 1.0 - ema_decay_at(self.decay, self.updates)
        names = list(self.params)
        torch._foreach_lerp_([self.shadow[n] for n in names], [self.params[n] for n in names], weight)
        self.updates += 1

    @torch.no_grad()
    def update_reference(self) -> None:
        """The same update, one tensor at a time in plain arithmetic (the reference of :meth:`update`)."""
        d = ema_decay_at(self.decay, self.updates)
        for n, p in self.params.items():
            self.shadow[n].copy_(d * self.shadow[n] + (1.0 - d) * p)
        self.updates += 1

    @torch.no_grad()
    def _swap(self) -> None:
        for n, p in self.params.items():
            tmp = p.detach().clone()
            p.copy_(self.shadow[n])
            self.shadow[n].copy_(tmp)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Replace the model's trainable parameters by their averages (the end of training)."""
        for n, p in self.params.items():
            p.copy_(self.shadow[n])

    def tensors(self) -> dict[str, Tensor]:
        """The shadow weights, keyed ``ema.<parameter name>`` (for a training checkpoint)."""
        return {f"ema.{n}": t for n, t in self.shadow.items()}

    @torch.no_grad()
    def load(self, tensors: dict[str, Tensor], updates: int) -> None:
        """Restore :meth:`tensors` (every averaged parameter must be there) and the update count."""
        missing = [n for n in self.shadow if f"ema.{n}" not in tensors]
        if missing:
            raise KeyError(f"the checkpoint has no average of {missing[0]!r}")
        for n, t in self.shadow.items():
            t.copy_(tensors[f"ema.{n}"])
        self.updates = int(updates)
