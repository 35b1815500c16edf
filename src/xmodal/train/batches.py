"""Deterministic batch plans: the batch at step ``s`` is a pure function of (seed, s).

That is what makes ``--resume`` exact without saving a data loader's state: the data position is
the step. Pairs are drawn per *group* (one caption, one or more images: an emoji and its skin-tone
variants), so a batch never holds the same caption twice (no false negatives in InfoNCE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _generator(*keys: int) -> torch.Generator:
    """A torch.Generator seeded from integer keys (independent of the global RNG)."""
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + k) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class BatchEntry:
    """One sample of a batch: the group (caption), the image item within it, the augmented view."""

    group: int
    item: int
    view: int
    aug_seed: int


class BatchPlan:
    """Epochs are permutations of groups; each sample picks one of the group's images and a view.

    Args:
        groups: for each group (caption), the dataset indices of its images.
        batch_size: groups per batch (capped at the number of groups); the last partial batch of an
            epoch is dropped.
        seed: the run's seed.
        views: how many augmented views exist per image (cached features) — 1 when augmenting online.
    """

    def __init__(self, groups: list[list[int]], *, batch_size: int, seed: int, views: int = 1) -> None:
        if not groups:
            raise ValueError("no training pairs")
        self.groups = groups
        self.batch_size = min(batch_size, len(groups))
        self.seed = seed
        self.views = views
        self.steps_per_epoch = len(groups) // self.batch_size

    def position(self, step: int) -> dict[str, int]:
        """The data position of ``step``: epoch and batch index within it."""
        return {"epoch": step // self.steps_per_epoch, "batch": step % self.steps_per_epoch}

    def batch(self, step: int) -> list[BatchEntry]:
        """The samples of the batch at ``step``."""
        pos = self.position(step)
        perm = torch.randperm(len(self.groups), generator=_generator(self.seed, 1, pos["epoch"]))
        chosen = perm[pos["batch"] * self.batch_size : (pos["batch"] + 1) * self.batch_size].tolist()
        g = _generator(self.seed, 2, step)
        out = []
        for gi in chosen:
            members = self.groups[gi]
            item = members[int(torch.randint(len(members), (1,), generator=g))]
            view = int(torch.randint(self.views, (1,), generator=g))
            aug_seed = int(torch.randint(2**62, (1,), generator=g))
            out.append(BatchEntry(group=gi, item=item, view=view, aug_seed=aug_seed))
        return out
