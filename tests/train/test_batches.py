"""Tests for xmodal.train.batches: the batch at step s is a pure function of (seed, s)."""

from __future__ import annotations

import pytest
import torch

from xmodal.train.batches import BatchPlan


def groups(n: int = 23) -> list[list[int]]:
    """n captions; every third one has three images (skin-tone variants), the others one."""
    out, idx = [], 0
    for g in range(n):
        size = 3 if g % 3 == 0 else 1
        out.append(list(range(idx, idx + size)))
        idx += size
    return out


def test_same_seed_same_batches_in_any_order():
    a = BatchPlan(groups(), batch_size=5, seed=3, views=4)
    b = BatchPlan(groups(), batch_size=5, seed=3, views=4)
    forward = [a.batch(s) for s in range(12)]
    backward = [b.batch(s) for s in reversed(range(12))][::-1]
    assert forward == backward  # no hidden state: a resumed run asks for step 7 first
    assert a.batch(7) == a.batch(7)


def test_global_rng_does_not_matter():
    plan = BatchPlan(groups(), batch_size=5, seed=3)
    torch.manual_seed(0)
    first = plan.batch(2)
    torch.manual_seed(12345)
    torch.rand(100)
    assert plan.batch(2) == first


def test_different_seed_or_step_differs():
    plan = BatchPlan(groups(), batch_size=5, seed=3)
    assert plan.batch(0) != BatchPlan(groups(), batch_size=5, seed=4).batch(0)
    assert plan.batch(0) != plan.batch(1)


def test_no_group_twice_in_a_batch_and_each_epoch_is_a_partition():
    plan = BatchPlan(groups(23), batch_size=5, seed=0, views=3)
    assert plan.steps_per_epoch == 4  # 23 // 5: the last partial batch is dropped
    for epoch in range(3):
        seen: list[int] = []
        for b in range(plan.steps_per_epoch):
            step = epoch * plan.steps_per_epoch + b
            batch = plan.batch(step)
            assert len(batch) == 5
            g = [e.group for e in batch]
            assert len(set(g)) == len(g)
            seen += g
        assert len(set(seen)) == len(seen) == 20  # no group twice within an epoch


def test_items_belong_to_their_group_and_views_are_in_range():
    gs = groups()
    plan = BatchPlan(gs, batch_size=6, seed=1, views=4)
    entries = [e for s in range(30) for e in plan.batch(s)]
    assert all(e.item in gs[e.group] for e in entries)
    assert {e.view for e in entries} == {0, 1, 2, 3}
    # groups with several images use more than one of them
    assert len({e.item for e in entries if e.group == 0}) > 1
    assert len({e.aug_seed for e in entries}) == len(entries)


def test_position_and_epochs_reshuffle():
    plan = BatchPlan(groups(20), batch_size=5, seed=0)
    assert plan.position(0) == {"epoch": 0, "batch": 0}
    assert plan.position(9) == {"epoch": 2, "batch": 1}
    order = [[e.group for s in range(e0 * 4, e0 * 4 + 4) for e in plan.batch(s)] for e0 in range(2)]
    assert sorted(order[0]) == sorted(order[1]) == list(range(20))
    assert order[0] != order[1]


def test_batch_size_capped_and_empty_rejected():
    plan = BatchPlan(groups(4), batch_size=256, seed=0)
    assert plan.batch_size == 4 and plan.steps_per_epoch == 1
    assert sorted(e.group for e in plan.batch(5)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no training pairs"):
        BatchPlan([], batch_size=4, seed=0)
