"""Tests for xmodal.metrics.caption_retrieval: the blockwise pass against its plain reference, the id-based
ranks of xmodal.metrics.retrieval, hand-computed cases, and CLIP_benchmark's ``recall_at_k``.

CLIP_benchmark is a test-only dependency (``pip install --no-deps clip-benchmark==1.6.2``); its module
``clip_benchmark.metrics.zeroshot_retrieval`` imports only torch and tqdm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal.metrics import retrieval_recall
from xmodal.metrics.caption_retrieval import caption_retrieval_ranks, caption_retrieval_ranks_reference
from xmodal.metrics.retrieval import retrieval_metrics


def features(n_images: int, captions: int, d: int, seed: int = 0, noise: float = 1.5):
    """Unit image features and ``captions`` noisy captions per image (shuffled), continuous: no ties."""
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_images, d, generator=g), dim=-1)
    index = torch.arange(n_images).repeat_interleave(captions)
    index = index[torch.randperm(len(index), generator=g)]
    txt = F.normalize(img[index] + noise * torch.randn(len(index), d, generator=g) / d**0.5, dim=-1)
    return img, txt, index


def clip_benchmark_metrics(img, txt, index, ks, batch_size=64):
    """CLIP_benchmark's ``evaluate`` after embedding, call for call (zeroshot_retrieval.py, v1.6.2)."""
    from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

    scores = txt @ img.t()
    positive_pairs = torch.zeros_like(scores, dtype=bool)
    positive_pairs[torch.arange(len(scores)), index.tolist()] = True
    out = {}
    for k in ks:
        i = (batchify(recall_at_k, scores, positive_pairs, batch_size, "cpu", k=k) > 0).float().mean().item()
        t = (batchify(recall_at_k, scores.T, positive_pairs.T, batch_size, "cpu", k=k) > 0).float().mean()
        out[f"image_retrieval_recall@{k}"] = i
        out[f"text_retrieval_recall@{k}"] = t.item()
    return out


@pytest.mark.parametrize(("n_images", "captions", "block_size"), [(300, 5, 64), (257, 3, 1000), (50, 1, 7)])
def test_matches_clip_benchmark(n_images, captions, block_size):
    ks = (1, 5, 10)
    img, txt, index = features(n_images, captions, 32, seed=n_images)
    ours = retrieval_recall(img, txt, index, ks, block_size=block_size)
    theirs = clip_benchmark_metrics(img, txt, index, ks)
    for k in ks:
        # CLIP_benchmark's float32 mean vs our float64 mean of the same hits
        assert ours["image_to_text"][f"R@{k}"] == pytest.approx(
            theirs[f"text_retrieval_recall@{k}"], abs=1e-6
        )
        assert ours["text_to_image"][f"R@{k}"] == pytest.approx(
            theirs[f"image_retrieval_recall@{k}"], abs=1e-6
        )
    # the features are informative but imperfect, so the comparison is not trivially 0 or 1
    assert 0.05 < ours["text_to_image"]["R@1"] < 0.95


@pytest.mark.parametrize("block_size", [1, 5, 16, 10_000])
def test_blockwise_equals_plain_reference_with_ties(block_size):
    # features on a coarse integer grid: many exact ties, identical in any summation order
    g = torch.Generator().manual_seed(1)
    img = torch.randint(-2, 3, (40, 6), generator=g).float()
    index = torch.cat([torch.arange(40), torch.randint(0, 40, (60,), generator=g)])
    txt = torch.randint(-2, 3, (100, 6), generator=g).float()
    want = caption_retrieval_ranks_reference(img, txt, index)
    got = caption_retrieval_ranks(img, txt, index, block_size=block_size)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    # and the id-based chunked ranks of xmodal.metrics.retrieval agree
    ids = retrieval_metrics(img, txt, torch.arange(40), index, ks=(1, 3))
    ours = retrieval_recall(img, txt, index, ks=(1, 3), block_size=block_size)
    assert ours == ids  # the same ranks, summarised by the same function


def test_hand_computed():
    # 2 images, 3 captions: captions 0, 1 of image 0, caption 2 of image 1
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.6, 0.5]])
    i2t, t2i = caption_retrieval_ranks(img, txt, [0, 0, 1], block_size=1)
    # image 0 scores captions (0.2, 0.8, 0.6): own best 0.8 → rank 1; image 1: (0.9, 0.1, 0.5), own 0.5 → 2
    assert i2t.tolist() == [1, 2]
    # caption 0 scores images (0.2, 0.9): own 0.2 → 2; caption 1: own 0.8 → 1; caption 2: own 0.5 < 0.6 → 2
    assert t2i.tolist() == [2, 1, 2]
    r = retrieval_recall(img, txt, [0, 0, 1], ks=(1,))
    assert r["image_to_text"]["R@1"] == pytest.approx(0.5)
    assert r["text_to_image"]["R@1"] == pytest.approx(1 / 3)


def test_collapsed_model_scores_zero_not_one():
    img, txt = torch.ones(4, 3), torch.ones(8, 3)
    r = retrieval_recall(img, txt, torch.arange(4).repeat(2), ks=(1,))
    assert r["image_to_text"]["R@1"] == 0.0 and r["text_to_image"]["R@1"] == 0.0


@pytest.mark.parametrize(
    ("index", "match"),
    [([0, 0, 0], "image 1 has no caption"), ([0, 2, 1], "outside"), ([0, 1], "2 image indices for 3")],
)
def test_bad_index_raises(index, match):
    with pytest.raises(ValueError, match=match):
        retrieval_recall(torch.randn(2, 4), torch.randn(3, 4), index)


def test_nan_raises():
    txt = torch.randn(2, 4)
    txt[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall(torch.randn(2, 4), txt, [0, 1])
