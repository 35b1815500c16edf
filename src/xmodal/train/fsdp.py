"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for dual encoders whose towers do not fit one device.

Each tower's blocks are sharded first (one all-gather per block in the forward, one reduce-scatter in
the backward), then the whole model (heads, embeddings, temperature). Parameters become DTensors
sharded along dim 0 over the ranks; gradients are averaged over ranks as with DDP, so the loss,
gradients and updated weights equal the single-process full-batch ones (tested on 2 CPU ranks with
gloo). Checkpoints are gathered into a full, plain state dict
(``torch.distributed.checkpoint.state_dict.get_model_state_dict`` with ``full_state_dict=True``), so
they load with :func:`xmodal.models.io.load_checkpoint` like any other.

In the trainer (``train.fsdp: true`` under torchrun with several ranks) every rank evaluates (it
already did), training checkpoints hold the gathered full weights and optimizer state in the usual
layout, and the final model is a plain unsharded copy on rank 0. GradCache works unchanged (each
micro-batch's backward reduce-scatters and accumulates), and so does ``--resume``
(:func:`restore_sharded`). The best-validation weights stay as local shards and are not written into
training checkpoints, so a resumed FSDP run selects its best among the steps after the resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from xmodal.errors import CheckpointError
from xmodal.models.clip import CLIP
from xmodal.train.checkpoint import (
    MODEL_FILE,
    OPTIM_FILE,
    STATE_FILE,
    check_state_dict,
    optimizer_from_flat,
    read_safetensors,
    read_state,
    staged_dir,
)


def shard_clip(model: CLIP) -> CLIP:
    """Shard ``model`` in place over all ranks of the default process group and return it.

    Every trainable block of both towers becomes its own FSDP unit, then the model itself; the
    ``encode_image``/``encode_text`` methods are registered as forward methods so they gather the
    root's parameters too. Fully frozen blocks are left to the root unit.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    mesh = init_device_mesh(device, (dist.get_world_size(),))
    for tower in (model.image_encoder, model.text_encoder):
        for block in tower.blocks():
            if any(p.requires_grad for p in block.parameters()):
                fully_shard(block, mesh=mesh)
    # FSDP2 refuses 0-dim parameters: the temperature stays replicated. Its gradient needs no
    # averaging: every rank computes the same global (all-gathered) loss, hence the same d loss/d scale.
    fully_shard(model, mesh=mesh, ignored_params={model.log_logit_scale})
    for method in ("encode_image", "encode_text", "image_pooled", "text_pooled"):
        register_fsdp_forward_method(model, method)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """The full (unsharded) state dict on rank 0 and ``{}`` elsewhere; a collective: call on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state: dict[str, Any] = get_model_state_dict(model, options=options)
    return state


def save_full_model(folder: Path, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Gather the full state dict (collective: call on every rank) and let rank 0 write the usual
    ``model.safetensors`` + ``state.json`` folder (``state`` must hold the ``config``)."""
    from safetensors.torch import save_file

    full = full_state_dict(model)
    if dist.get_rank() == 0:
        with staged_dir(Path(folder)) as tmp:
            save_file({k: v.contiguous() for k, v in full.items()}, str(tmp / MODEL_FILE))
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))


class FullState:
    """A gathered full state dict standing in for a module or optimizer where only ``state_dict()`` is
    read (:func:`xmodal.train.checkpoint.save_training_checkpoint`, ``save_model_dir``)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, Any]:
        """The gathered state."""
        return self.state


def full_training_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    """Full model and optimizer state (collective; meaningful on rank 0), in the layout of an
    unsharded model's ``state_dict()`` and optimizer's ``state_dict()`` (parameters numbered in
    param-group order), so FSDP checkpoints are ordinary xmodal checkpoints."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd, optim_raw = get_state_dict(model, optimizer, options=options)
    optim_sd: Any = optim_raw  # {"state": {name: {...}}, "param_groups": [{"params": [name, ...]}]}
    if dist.get_rank() != 0:
        return FullState({}), FullState({})
    index: dict[str, int] = {}
    groups = []
    for group in optim_sd["param_groups"]:
        ids = []
        for name in group["params"]:
            index[name] = len(index)
            ids.append(index[name])
        groups.append({**group, "params": ids})
    state = {index[name]: value for name, value in optim_sd["state"].items()}
    return FullState(model_sd), FullState({"state": state, "param_groups": groups})


def unsharded_copy(model: CLIP, build: Any) -> CLIP:
    """Gather ``model`` (collective); rank 0 gets a plain model from ``build()`` holding the full
    weights, the other ranks get ``model`` back."""
    full = full_state_dict(model)
    if dist.get_rank() != 0:
        return model
    plain: CLIP = build()
    plain.load_state_dict(full, strict=True)
    return plain


def restore_sharded(
    folder: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """:func:`xmodal.train.checkpoint.restore_training_checkpoint` for a sharded model: every rank
    reads the full checkpoint and keeps its shards (``set_state_dict`` with ``full_state_dict``).

    Returns ``(state, extra_tensors)`` like the unsharded version.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    state = read_state(folder)
    weights = read_safetensors(folder / MODEL_FILE)
    check_state_dict(model, weights, str(folder / MODEL_FILE))
    flat = read_safetensors(folder / OPTIM_FILE)
    if "rng.torch" not in flat or "optimizer_param_groups" not in state or "scheduler" not in state:
        raise CheckpointError(f"{folder} is not a training checkpoint (no optimizer/RNG/scheduler state)")
    saved = optimizer_from_flat(flat, state["optimizer_param_groups"])
    # parameters are numbered in param-group order; set_state_dict wants their names
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    if sum(len(g["params"]) for g in saved["param_groups"]) != len(order):
        raise CheckpointError(f"{folder}: optimizer parameter groups differ from this run's")
    optim_sd: Any = {
        "state": {order[i]: v for i, v in saved["state"].items()},
        "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]],
    }
    model_sd: dict[str, Any] = dict(weights)
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_sd,
        optim_state_dict=optim_sd,
        options=StateDictOptions(full_state_dict=True),
    )
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(flat["rng.torch"])
    extra = {k[len("extra.") :]: v for k, v in flat.items() if k.startswith("extra.")}
    return state, extra
