"""Tiny instances of the vision-language models for the registry-wide model test (timm style).

Every factory in :data:`xmodal.registry.VL_MODELS` takes a scratch folder (for tiny random LMs saved to
disk) and returns a :class:`TinyCase`; tests/models/test_registry_vl_models.py checks each: forward,
loss backward, every trainable parameter gets a finite non-zero gradient and frozen ones none, no NaN,
and saving then loading into a rebuilt model gives identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn


@dataclass
class TinyCase:
    """A tiny model ready for the registry test.

    Attributes:
        model: the model, with the intended parameters trainable (``requires_grad``).
        inputs: keyword arguments of ``model(**inputs)``, whose output has a scalar ``.loss``.
        rebuild: a function returning a fresh model of the same structure (weights to be loaded).
        trainable: parameter name → whether it should be trainable (None: not checked).
    """

    model: nn.Module
    inputs: dict[str, Any]
    rebuild: Callable[[], nn.Module]
    trainable: Callable[[str], bool] | None = None


WorkdirFactory = Callable[[Path], TinyCase]
