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

On several ranks (torch.distributed) step 2 all-gathers every rank's embeddings with gradients, so the
loss is the global batch's and each rank gets dL/d(its own embeddings); step 3 stays local. The
backward passes run on the bare model, *not* through DistributedDataParallel (whose reducer expects
one forward per backward), and the trainer then averages the parameter gradients over ranks in one
flat all-reduce (:func:`xmodal.train.distributed.average_gradients`): W ranks × B equal 1 rank × W·B
(tested on 2 gloo ranks, with hard negatives and with cached frozen towers, where the micro-batches
embed only the heads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from xmodal.models.clip import CLIP

LossFn = Callable[..., Tensor]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _embed(forward: Callable[..., dict[str, Tensor]], inputs: dict[str, Any]) -> dict[str, Tensor]:
    """The features of one micro-batch: every batched output but the logit scale."""
    return {k: v for k, v in forward(**inputs).items() if k != "logit_scale"}


def gradcache_backward(
    model: CLIP,
    micro_batches: Sequence[dict[str, Any]],
    loss_fn: LossFn,
    *,
    forward: Callable[..., dict[str, Tensor]] | None = None,
) -> Tensor:
    """Accumulate the full-batch gradients of ``loss_fn`` into ``model``'s parameters.

    Args:
        model: the dual encoder (its ``forward`` takes one micro-batch's keyword inputs).
        micro_batches: the batch's model inputs, split along the batch dimension, in order.
        loss_fn: ``(image_features (N, E), text_features (N, E), logit_scale, **other_outputs) ->
            scalar``, applied to the whole batch (N = sum of micro-batch sizes); other outputs are the
            forward's further batched tensors (e.g. ``negative_features`` (N, K, E), ``negative_mask``).
            Under torch.distributed it may all-gather (every rank calls it once per step).
        forward: what embeds a micro-batch (default ``model``; e.g. a wrapper that also embeds hard
            negatives). It must return ``image_features`` and ``text_features``.

    Returns:
        The full-batch loss (detached). On several ranks the caller then averages the parameter
        gradients over ranks (:func:`xmodal.train.distributed.average_gradients`), as DDP would.
    """
    run = forward if forward is not None else model
    states: list[dict[str, Any]] = []
    outs: list[dict[str, Tensor]] = []
    with torch.no_grad():
        for inputs in micro_batches:
            states.append(_rng_state())
            outs.append(_embed(run, inputs))
    after = _rng_state()
    whole = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}  # (N, …) each
    # floating outputs become leaves that hold dL/d(output) after the backward; masks pass through
    leaves = [k for k, v in whole.items() if v.is_floating_point()]
    for k in leaves:
        whole[k].requires_grad_(True)
    image_all, text_all = whole.pop("image_features"), whole.pop("text_features")
    # the temperature's gradient flows directly
    loss = loss_fn(image_all, text_all, model.logit_scale, **whole)
    loss.backward()
    whole.update(image_features=image_all, text_features=text_all)
    sizes = [o["image_features"].shape[0] for o in outs]
    grads: dict[str, tuple[Tensor, ...]] = {}
    for k in leaves:
        g = whole[k].grad
        grads[k] = (torch.zeros_like(whole[k]) if g is None else g).split(sizes)
    for i, (inputs, state) in enumerate(zip(micro_batches, states, strict=True)):
        _set_rng_state(state)  # replay dropout exactly
        out = _embed(run, inputs)
        surrogate = sum((out[k] * grads[k][i]).sum() for k in leaves)  # d surrogate/dθ = Σ dL/dz · dz/dθ
        surrogate.backward()  # type: ignore[union-attr]
    _set_rng_state(after)
    return loss.detach()
