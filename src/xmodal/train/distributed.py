"""torch.distributed set-up for ``torchrun --nproc_per_node N -m xmodal train CONFIG``.

No launcher of xmodal's own: torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*`` and
:func:`setup` initialises the default process group from them (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0


def setup() -> DistContext:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one rank."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    return DistContext(dist.get_rank(), dist.get_world_size(), local)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op on one)."""
    if ctx.world > 1:
        dist.barrier()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` on one rank)."""
    if ctx.world == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def teardown() -> None:
    """Destroy the process group if one was initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every rank done with its collectives before gloo/NCCL is torn down
        dist.destroy_process_group()


def broadcast_module(ctx: DistContext, module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (what DDP does when it wraps a model)."""
    if ctx.world == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(ctx: DistContext, params: list[torch.nn.Parameter]) -> None:
    """Average ``params``' gradients over ranks in one flat all-reduce (DDP's averaging, done by hand).

    Used by GradCache on several ranks, whose backward passes run outside DDP: a parameter without a
    gradient counts as zeros, so every rank reduces the same buffer.
    """
    if ctx.world == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
