"""Embed images and texts with a dual encoder, in batches, for evaluation.

A model here is anything with CLIP's two towers (Radford et al., 2021, https://arxiv.org/abs/2103.00020):
``encode_image(images (B, 3, H, W)) -> (B, E)`` and ``encode_text(texts: list[str]) -> (B, E)``, both
L2-normalised. Embedding runs under ``torch.inference_mode()`` with the model in eval mode; every module's
own train/eval flag is restored afterwards (a frozen tower kept in eval mode stays so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from itertools import islice
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

T = TypeVar("T")


@runtime_checkable
class DualEncoder(Protocol):
    """What evaluation needs of a model: two towers into one L2-normalised embedding space."""

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) preprocessed images → (B, E) unit vectors."""
        ...

    def encode_text(self, texts: list[str]) -> Tensor:
        """B strings → (B, E) unit vectors."""
        ...


Preprocess = Callable[[Image.Image], Tensor]
"""An image transform: PIL image → (3, H, W) float tensor."""


@contextmanager
def evaluating(model: object) -> Iterator[None]:
    """Puts ``model`` in eval mode for the block, then restores each submodule's own training flag."""
    if not isinstance(model, nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def model_device(model: object) -> torch.device:
    """The device of the model's first parameter or buffer (CPU when it has none)."""
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return torch.device("cpu")


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _image_source(images: Any) -> tuple[Iterable[Image.Image], int | None]:
    """PIL images from a dataset (``load(i)`` + ``items``, or ``to_pil(i)`` + ``labels``) or an iterable."""
    if hasattr(images, "load") and hasattr(images, "items"):
        n = len(images.items)
        return (images.load(i)[0] for i in range(n)), n
    if hasattr(images, "to_pil") and hasattr(images, "labels"):
        n = len(images.labels)
        return (images.to_pil(i) for i in range(n)), n
    return images, len(images) if isinstance(images, Sized) else None


def _disable(progress: bool | None) -> bool | None:
    # tqdm's disable=None hides the bar when stderr is not a terminal
    return None if progress is None else not progress


def embed_images(
    model: DualEncoder,
    images: Iterable[Image.Image] | Any,
    preprocess: Preprocess,
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> Tensor:
    """Embeds images with ``model.encode_image``.

    Args:
        model: a dual encoder (its parameters' device is used for the batches).
        images: an iterable of PIL images, an image–caption dataset (``load(i) -> (image, caption)`` and
            ``items``) or a labelled dataset (``to_pil(i)`` and ``labels``).
        preprocess: PIL image → (3, H, W) tensor.
        batch_size: images per forward pass.
        progress: show a tqdm bar; None shows it only on a terminal.

    Returns:
        (N, E) float32 CPU tensor, in input order.
    """
    source, total = _image_source(images)
    device = model_device(model)
    chunks: list[Tensor] = []
    with (
        evaluating(model),
        torch.inference_mode(),
        tqdm(total=total, desc="embedding images", unit="img", disable=_disable(progress)) as bar,
    ):
        for batch in _batched(source, batch_size):
            x = torch.stack([preprocess(im) for im in batch]).to(device)  # (B, 3, H, W)
            chunks.append(model.encode_image(x).float().cpu())  # (B, E)
            bar.update(len(batch))
    if not chunks:
        raise ValueError("no images to embed")
    return torch.cat(chunks)  # outside inference mode: a normal tensor, usable with autograd later


def embed_texts(
    model: DualEncoder, texts: Sequence[str], *, batch_size: int = 256, progress: bool | None = None
) -> Tensor:
    """Embeds strings with ``model.encode_text``.

    Args:
        model: a dual encoder.
        texts: N strings.
        batch_size: strings per forward pass.
        progress: show a tqdm bar; None shows it only on a terminal.

    Returns:
        (N, E) float32 CPU tensor, in input order.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    chunks: list[Tensor] = []
    with (
        evaluating(model),
        torch.inference_mode(),
        tqdm(total=len(texts), desc="embedding texts", unit="text", disable=_disable(progress)) as bar,
    ):
        for batch in _batched(texts, batch_size):
            chunks.append(model.encode_text(list(batch)).float().cpu())  # (B, E)
            bar.update(len(batch))
    if not chunks:
        raise ValueError("no texts to embed")
    return torch.cat(chunks)
