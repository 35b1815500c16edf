"""Gradient caching for contrastive losses (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch
Size under Memory Limited Setup", https://arxiv.org/abs/2101.06983).

A batch far larger than memory allows is split into micro-batches:

1. embed every micro-batch without an autograd graph, remembering the RNG state before each;
2. compute the full-batch loss on the detached embeddings and its gradients with respect to them;
3. re-embed each micro-batch with a graph, replaying its RNG state (so dropout draws the same masks),
   and back-propagate ``⟨embedding, cached gradient⟩``.

Parameter gradients equal the full-batch ones (tested to 1e-5 relative) while activation memory is
that of one micro-batch. Data augmentation is replayed exactly because xmodal draws it from per-sample
seeds (:mod:`xmodal.train.batches`). Caveat: BatchNorm in train mode normalises per micro-batch, so a
trainable BN tower does not match the full batch (locked towers keep BN in eval mode and do match).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from xmodal.models.clip import CLIP

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _embed(model: CLIP, inputs: dict[str, Any]) -> tuple[Tensor, Tensor]:
    out = model(**inputs)
    return out["image_features"], out["text_features"]


def gradcache_backward(model: CLIP, micro_batches: Sequence[dict[str, Any]], loss_fn: LossFn) -> Tensor:
    """Accumulate the full-batch gradients of ``loss_fn`` into ``model``'s parameters.

    Args:
        model: the dual encoder (its ``forward`` takes one micro-batch's keyword inputs).
        micro_batches: the batch's model inputs, split along the batch dimension, in order.
        loss_fn: ``(image_features (N, E), text_features (N, E), logit_scale) -> scalar``, applied to
            the whole batch (N = sum of micro-batch sizes).

    Returns:
        The full-batch loss (detached).
    """
    states, images, texts = [], [], []
    with torch.no_grad():
        for inputs in micro_batches:
            states.append(_rng_state())
            img, txt = _embed(model, inputs)
            images.append(img)
            texts.append(txt)
    after = _rng_state()
    image_all = torch.cat(images).requires_grad_(True)  # (N, E), a leaf holding dL/dI after backward
    text_all = torch.cat(texts).requires_grad_(True)  # (N, E)
    loss = loss_fn(image_all, text_all, model.logit_scale)  # the temperature's gradient flows directly
    loss.backward()
    assert image_all.grad is not None and text_all.grad is not None
    image_grads = image_all.grad.split([t.shape[0] for t in images])
    text_grads = text_all.grad.split([t.shape[0] for t in texts])
    for inputs, state, g_img, g_txt in zip(micro_batches, states, image_grads, text_grads, strict=True):
        _set_rng_state(state)  # replay dropout exactly
        img, txt = _embed(model, inputs)
        surrogate = (img * g_img).sum() + (txt * g_txt).sum()  # d surrogate / d θ = Σ dL/dz · dz/dθ
        surrogate.backward()
    _set_rng_state(after)
    return loss.detach()
