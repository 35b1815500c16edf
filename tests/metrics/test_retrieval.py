"""Tests for xmodal.metrics.retrieval against hand-computed cases and a plain Python reference."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.metrics.retrieval import (
    _first_match_ranks,
    encode_ids,
    rank_summary,
    recall_at_k,
    retrieval_metrics,
    retrieval_ranks,
)


def reference(sim: list[list[float]], qids: list, gids: list, ks: tuple[int, ...]) -> tuple[list[int], dict]:
    """Plain loops: sort each query's gallery (ties: incorrect items first), read off ranks and top-K hits."""
    ranks, hits = [], {k: 0 for k in ks}
    for i, row in enumerate(sim):
        order = sorted(range(len(row)), key=lambda j, i=i, row=row: (-row[j], gids[j] == qids[i]))
        ranks.append(next(r for r, j in enumerate(order, start=1) if gids[j] == qids[i]))
        for k in ks:
            hits[k] += any(gids[j] == qids[i] for j in order[:k])
    return ranks, {f"R@{k}": hits[k] / len(sim) for k in ks}


def test_hand_computed_3x3():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.5],  # query 0: its item (0.9) is best → rank 1
            [0.8, 0.3, 0.7],  # query 1: 0.8 and 0.7 beat its 0.3 → rank 3
            [0.2, 0.6, 0.4],  # query 2: 0.6 beats its 0.4 → rank 2
        ]
    )
    ids = [0, 1, 2]
    assert retrieval_ranks(sim, ids, ids).tolist() == [1, 3, 2]
    r = recall_at_k(sim, ids, ids, ks=(1, 2, 3))
    assert r == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0})
    s = rank_summary(torch.tensor([1, 3, 2]), ks=(1,))
    assert s == pytest.approx({"R@1": 1 / 3, "median_rank": 2.0, "mean_rank": 2.0})


def test_several_captions_per_image_count_any_match():
    # gallery: captions 0,1 belong to image 0; captions 2,3 to image 1; caption 4 to image 2
    gallery_ids = [0, 0, 1, 1, 2]
    sim = torch.tensor(
        [
            [0.2, 0.7, 0.9, 0.1, 0.0],  # image 0: best own caption 0.7, beaten by 0.9 → rank 2
            [0.9, 0.1, 0.2, 0.8, 0.3],  # image 1: best own 0.8, beaten by 0.9 → rank 2
            [0.1, 0.2, 0.3, 0.4, 0.5],  # image 2: its caption is best → rank 1
        ]
    )
    assert retrieval_ranks(sim, [0, 1, 2], gallery_ids).tolist() == [2, 2, 1]
    assert recall_at_k(sim, [0, 1, 2], gallery_ids, ks=(1, 2)) == pytest.approx({"R@1": 1 / 3, "R@2": 1.0})


def test_several_images_share_an_id():
    # two images of id "a" (skin-tone variants) and one of "b"; text queries
    sim = torch.tensor([[0.1, 0.6, 0.5], [0.9, 0.95, 0.2]])
    ranks = retrieval_ranks(sim, ["a", "b"], ["a", "a", "b"])
    assert ranks.tolist() == [1, 3]  # "a": image 1 (0.6) is best overall; "b": 0.2 is last


def test_ties_count_against_the_query():
    sim = torch.zeros(3, 4)  # a collapsed model: every score equal
    ranks = retrieval_ranks(sim, [0, 1, 2], [0, 1, 2, 2])
    assert ranks.tolist() == [4, 4, 3]  # 1 + number of incorrect items tied with the correct one
    assert recall_at_k(sim, [0, 1, 2], [0, 1, 2, 2], ks=(1,))["R@1"] == 0.0


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
@pytest.mark.parametrize("discrete", [False, True])
def test_matches_reference_on_random_inputs(chunk_size, discrete):
    g = torch.Generator().manual_seed(0)
    q, n = 40, 60
    sim = torch.randint(0, 4, (q, n), generator=g).float() if discrete else torch.randn(q, n, generator=g)
    gids = torch.randint(0, 15, (n,), generator=g)
    gids[:15] = torch.arange(15)  # every id has at least one item, several have more
    qids = torch.randint(0, 15, (q,), generator=g)
    ks = (1, 5, 10)
    ref_ranks, ref_recall = reference(sim.tolist(), qids.tolist(), gids.tolist(), ks)
    assert retrieval_ranks(sim, qids, gids, chunk_size=chunk_size).tolist() == ref_ranks
    assert recall_at_k(sim, qids, gids, ks, chunk_size=chunk_size) == pytest.approx(ref_recall)


def test_retrieval_metrics_from_embeddings_matches_reference():
    g = torch.Generator().manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(45, 8, generator=g), dim=-1)
    img_ids = [f"e{i % 20}" for i in range(30)]  # 10 ids with two images
    txt_ids = [f"e{i % 20}" for i in range(40)] + ["e0", "e1", "e2", "e3", "e4"]  # 2-3 captions each
    out = retrieval_metrics(img, txt, img_ids, txt_ids, ks=(1, 5, 10), chunk_size=4)
    sim = (img @ txt.T).tolist()
    for direction, s, q, gal in [
        ("image_to_text", sim, img_ids, txt_ids),
        ("text_to_image", [list(c) for c in zip(*sim, strict=True)], txt_ids, img_ids),
    ]:
        ranks, recall = reference(s, q, gal, (1, 5, 10))
        ranks_sorted = sorted(ranks)
        mid = len(ranks) // 2
        median = ranks_sorted[mid] if len(ranks) % 2 else (ranks_sorted[mid - 1] + ranks_sorted[mid]) / 2
        expected = {**recall, "median_rank": median, "mean_rank": sum(ranks) / len(ranks)}
        assert out[direction] == pytest.approx(expected)


def test_seeded_golden_values():
    g = torch.Generator().manual_seed(2)
    img = torch.nn.functional.normalize(torch.randn(20, 4, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img + 0.8 * torch.randn(20, 4, generator=g), dim=-1)
    out = retrieval_metrics(img, txt, list(range(20)), list(range(20)), ks=(1, 5))
    assert out["image_to_text"] == pytest.approx(
        {"R@1": 0.2, "R@5": 0.5, "median_rank": 5.5, "mean_rank": 6.15}
    )
    assert out["text_to_image"] == pytest.approx(
        {"R@1": 0.15, "R@5": 0.55, "median_rank": 5.0, "mean_rank": 6.15}
    )


def test_median_of_even_count_averages_middle_ranks():
    s = rank_summary(torch.tensor([1, 2, 3, 10]), ks=(1, 5))
    assert s == pytest.approx({"R@1": 0.25, "R@5": 0.75, "median_rank": 2.5, "mean_rank": 4.0})


def test_encode_ids_shares_vocabulary_and_passes_integers_through():
    q, g = encode_ids(["b", "a"], ["a", "c", "b"])
    assert (q[:, None] == g[None, :]).tolist() == [[False, False, True], [True, False, False]]
    qi, gi = encode_ids(torch.tensor([7, 3]), torch.tensor([3, 7]))
    assert qi.tolist() == [7, 3] and gi.tolist() == [3, 7]


def test_errors():
    sim = torch.rand(2, 3)
    with pytest.raises(ValueError, match="query 1 has no gallery item"):
        retrieval_ranks(sim, [0, 5], [0, 1, 2])
    with pytest.raises(ValueError, match=r"shape \(2, 3\), expected \(2, 4\)"):
        retrieval_ranks(sim, [0, 1], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(torch.full((2, 3), math.nan), [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="NaN or infinite"):
        retrieval_metrics(torch.full((2, 3), math.inf), torch.rand(2, 3), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="query 5 has no gallery item"):
        retrieval_ranks(torch.rand(6, 3), [0, 1, 2, 0, 1, 9], [0, 1, 2], chunk_size=4)
    with pytest.raises(ValueError, match="embeddings must be"):
        retrieval_metrics(torch.rand(2, 3), torch.rand(2, 4), [0, 1], [0, 1])


def test_scores_are_requested_one_chunk_at_a_time():
    sim = torch.randn(10, 6, generator=torch.Generator().manual_seed(3))
    blocks = []

    def scores(a: int, b: int) -> torch.Tensor:
        blocks.append((a, b))
        return sim[a:b]

    ids = torch.arange(10) % 6
    ranks = _first_match_ranks(scores, ids, torch.arange(6), chunk_size=4)
    assert blocks == [(0, 4), (4, 8), (8, 10)]
    assert ranks.tolist() == retrieval_ranks(sim, ids, torch.arange(6)).tolist()
