"""Two CPU ranks on gloo: the gathered hard-negative loss equals one process with the whole batch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from xmodal.losses import clip_loss_with_negatives
from xmodal.losses.distributed import gathered_negatives_loss

B, K = 8, 2  # global batch, negatives per image


class Towers(nn.Module):
    """A tiny image tower, a tiny text tower (shared by captions and negatives) and a temperature."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
        self.text = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 8))
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        norm = nn.functional.normalize
        return (
            norm(self.image(x), dim=-1),
            norm(self.text(y), dim=-1),
            norm(self.text(n), dim=-1),
            self.scale.exp(),
        )


def _data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x, y, n = (
        torch.randn(B, 12, generator=g),
        torch.randn(B, 10, generator=g),
        torch.randn(B * K, 10, generator=g),
    )
    mask = torch.rand(B * K, generator=g) > 0.3  # some captions have fewer than K negatives
    return x, y, n, mask


def _worker(rank: int, world: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = Towers()
        ddp = nn.parallel.DistributedDataParallel(model)
        x, y, n, mask = _data()
        b = B // world
        mine, mine_neg = slice(rank * b, (rank + 1) * b), slice(rank * b * K, (rank + 1) * b * K)
        zi, zt, zn, scale = ddp(x[mine], y[mine], n[mine_neg])
        loss = gathered_negatives_loss(
            zi, zt, zn, scale, negative_mask=mask[mine_neg], negative_weight=0.7, chunk_size=3
        )
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out}/rank{rank}.pt")
    finally:
        dist.barrier()
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    model = Towers()
    x, y, n, mask = _data()
    zi, zt, zn, scale = model(x, y, n)
    loss = clip_loss_with_negatives(zi, zt, zn, scale, negative_mask=mask, negative_weight=0.7)
    loss.backward()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-6, atol=1e-7)
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_one_rank_is_the_plain_function() -> None:
    x, y, n, mask = _data()
    zi, zt, zn, scale = Towers()(x, y, n)
    got = gathered_negatives_loss(zi, zt, zn.reshape(B, K, 8), scale, negative_mask=mask.reshape(B, K))
    assert torch.equal(got, clip_loss_with_negatives(zi, zt, zn, scale, negative_mask=mask))
