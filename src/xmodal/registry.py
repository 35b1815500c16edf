"""A small name → factory registry, one instance per kind of component.

Registration sits right beside the definition (``@MODELS.register("clip-effnet-minilm")``), and
lookups of unknown names fail with a one-line error that lists what is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of component.

    Args:
        kind: what is registered ("model", "dataset" ...); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``fn`` under ``name``; a duplicate name is an error."""

        def deco(fn: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> T:
        """The factory registered as ``name``; ``KeyError`` naming the known ones otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


MODELS: Registry[Callable[..., Any]] = Registry("model")
IMAGE_ENCODERS: Registry[Callable[..., Any]] = Registry("image encoder")
TEXT_ENCODERS: Registry[Callable[..., Any]] = Registry("text encoder")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
LOSSES: Registry[Callable[..., Any]] = Registry("loss")
# Vision-language generative models (LLaVA, Flamingo, BLIP-2, captioners): each name maps to a factory
# ``make(workdir: Path) -> xmodal.models.cases.TinyCase`` (a tiny instance, a batch and a rebuild function)
# that tests/models/test_registry_vl_models.py runs through forward, backward and save/load.
VL_MODELS: Registry[Callable[..., Any]] = Registry("vision-language model")
