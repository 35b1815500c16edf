"""Two CPU ranks on gloo: gathered-loss (CLIP + SigLIP) gradients equal single-process full-batch ones."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from xmodal.losses import clip_loss
from xmodal.losses.distributed import gathered_loss, world_size
from xmodal.losses.siglip import siglip_loss


class DualTower(nn.Module):
    """Two tiny towers and a temperature; forward gives this rank's normalised features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
        self.text = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 8))
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zi = nn.functional.normalize(self.image(x), dim=-1)
        zt = nn.functional.normalize(self.text(y), dim=-1)
        return zi, zt, self.scale.exp()


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 12, generator=g), torch.randn(n, 10, generator=g)


def _worker(rank: int, world: int, out: str) -> None:
    # a rendezvous file, not a TCP port: no race with other processes for a free port
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = DualTower()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y = _data(16)
        b = 16 // world
        mine = slice(rank * b, (rank + 1) * b)
        zi, zt, scale = ddp(x[mine], y[mine])
        loss = gathered_loss(clip_loss, zi, zt, scale) + gathered_loss(siglip_loss, zi, zt, scale, -1.0)
        loss.backward()  # the gather sums feature gradients; DDP averages parameter gradients
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads, "world": world_size()}, f"{out}/rank{rank}.pt")
    finally:
        dist.barrier()  # let every rank finish its collectives before tearing gloo down
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    model = DualTower()
    x, y = _data(16)
    zi, zt, scale = model(x, y)
    loss = clip_loss(zi, zt, scale) + siglip_loss(zi, zt, scale, -1.0)
    loss.backward()
    ref = {n: p.grad for n, p in model.named_parameters()}
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["world"] == 2
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-7)
        for name, g in ref.items():
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_one_rank_is_the_plain_loss() -> None:
    x, y = _data(8)
    zi, zt, scale = DualTower()(x, y)
    assert world_size() == 1
    assert torch.equal(gathered_loss(clip_loss, zi, zt, scale), clip_loss(zi, zt, scale))
