"""Flamingo training sequences: every reference caption trains, and RICES-neighbour sequences."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import XmodalError
from xmodal.train.flamingo import CaptionSequences, FlamingoTokens, SequenceSampler

TOKENS = FlamingoTokens(bos=0, image=1, chunk=2, pad=3, eos=None)


def sampler(share: float, seed: int = 0) -> SequenceSampler:
    # 12 items; items 0-5 have two captions each, 6-11 one: 18 captions
    image_of = [i for i in range(12) for _ in range(2 if i < 6 else 1)]
    neighbours = torch.tensor([[(i + 1) % 12, (i + 2) % 12, (i + 3) % 12] for i in range(12)])
    return SequenceSampler(image_of, neighbours, m=3, batch_size=4, similar_share=share, seed=seed)


def test_similar_rows_hold_an_anchor_and_its_neighbours_and_resume_exactly():
    s = sampler(0.5)
    for step in range(10):
        rows = s.rows(step)
        assert rows.shape == (4, 3)
        assert torch.equal(rows, sampler(0.5).rows(step))  # depends only on (seed, step)
        items = s.image_of[rows]
        for r in items[:2].tolist():  # the similar ones: one item and two of its neighbours
            assert any(set(r) <= {a, (a + 1) % 12, (a + 2) % 12, (a + 3) % 12} for a in r)
            assert len(set(r)) == 3
        # the random share is exactly the plain epoch permutation
        assert torch.equal(rows[2:], sampler(0.0).rows(step)[2:])


def test_similar_sequences_use_every_reference_of_an_item():
    s = sampler(1.0)
    seen = {int(c) for step in range(60) for c in s.rows(step).flatten()}
    assert seen == set(range(18))


def test_bad_share_or_too_few_neighbours_is_a_clear_error():
    with pytest.raises(XmodalError, match="similar_share"):
        sampler(1.5)
    with pytest.raises(XmodalError, match="need at least 2 neighbours"):
        SequenceSampler([0, 1, 2], torch.tensor([[1], [2], [0]]), m=3, batch_size=1, similar_share=0.5)


def test_training_batch_shows_each_captions_own_image():
    seqs = CaptionSequences([[10], [11], [12, 13]], TOKENS, max_len=32, image_of=[0, 0, 1])
    table = torch.arange(2.0)[:, None, None].expand(2, 1, 1)  # image i's token is the value i
    batch = seqs.training_batch(torch.tensor([[2, 0], [1, 2]]), table)
    assert batch["media"].flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    assert batch["input_ids"][0].tolist()[:6] == [0, 1, 12, 13, 2, 1]


def test_prompts_that_overflow_the_context_lose_their_first_demonstrations_counted():
    seqs = CaptionSequences([[10] * 5, [11] * 5, [12] * 5], TOKENS, max_len=20)
    # bos + 3 × (image + 5 + chunk) + image + 2 query tokens = 25; with 3 new tokens room: 28 > 20
    assert seqs.length([[10] * 5] * 3, [7, 7]) == 25
    kept, shortened, dropped = seqs.fit_demonstrations([[0, 1, 2], [2], []], [[7, 7], [7, 7], [7]], room=3)
    assert kept == [[2], [2], []]  # the first (least similar under RICES) go first
    assert (shortened, dropped) == (1, 2)
    assert len(seqs.sequence([seqs.captions[2]], [7, 7])) + 3 <= 20
    with pytest.raises(XmodalError, match="exceed the context"):
        seqs.fit_demonstrations([[0]], [[7] * 30], room=3)
