"""Tests for xmodal.eval.few_shot: random and RICES demonstrations from the training split only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.data.vl import emoji_caption_items
from xmodal.eval.few_shot import few_shot_text, gather_media, select_demonstrations


@pytest.fixture(scope="module")
def emoji_splits():
    """Real emoji caption items: the train pool and 40 test queries, with 8×8 pixel features."""
    train, test = emoji_caption_items("train"), emoji_caption_items("test")[:40]

    def feats(items):
        return torch.tensor(
            np.stack([np.asarray(it.load().resize((8, 8)), dtype=np.float32).ravel() for it in items])
        )

    return train, test, feats(train), feats(test)


@pytest.mark.parametrize("method", ["random", "rices"])
@pytest.mark.parametrize("k", [0, 2, 4])
def test_demonstrations_come_from_the_training_split_and_never_show_the_query(emoji_splits, method, k):
    train, test, f_train, f_test = emoji_splits
    queries = [t.image_id for t in test]
    demos = select_demonstrations(
        queries, [t.image_id for t in train], k, method=method, query_features=f_test, pool_features=f_train
    )
    assert len(demos) == len(test) and all(len(d) == k == len(set(d)) for d in demos)
    train_ids = {t.image_id for t in train}
    assert not train_ids & set(queries)  # the splits share no image ...
    assert {train[i].image_id for d in demos for i in d} <= train_ids  # ... and demonstrations are train
    # a pool that (by mistake) also holds test[0], its own nearest neighbour: never its own demonstration
    pool = [*train, test[0]]
    demos = select_demonstrations(
        queries,
        [p.image_id for p in pool],
        k,
        method=method,
        query_features=f_test,
        pool_features=torch.cat([f_train, f_test[:1]]),
    )
    for query, idx in zip(test, demos, strict=True):
        assert query.image_id not in {pool[i].image_id for i in idx}


def test_rices_picks_the_nearest_images_most_similar_last():
    pool = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, 1.0], [-1.0, 0.0]])
    query = torch.tensor([[1.0, 0.1], [1.0, 0.1]])
    ids = [f"p{i}" for i in range(5)]
    demos = select_demonstrations(
        ["q0", "p2"], ids, 2, method="rices", query_features=query, pool_features=pool
    )
    assert demos[0] == [0, 2]  # cos 0.995 (p0) < 1.0 (p2): most similar last
    assert demos[1] == [3, 0]  # the query's own image p2 is excluded: p0 (0.995), then p3 (0.774)


def test_random_is_seeded_per_query_and_varies_across_queries():
    ids = [f"p{i}" for i in range(50)]
    a = select_demonstrations(["q0", "q1", "q2"], ids, 4, seed=3)
    b = select_demonstrations(["q0", "q1"], ids, 4, seed=3)
    assert a[:2] == b and a[0] != a[1]
    assert select_demonstrations(["q0"], ids, 4, seed=4) != b[:1]


def test_bad_requests_are_clear_errors():
    with pytest.raises(ValueError, match="3 demonstrations requested but the pool has 2"):
        select_demonstrations(["q"], ["a", "b"], 3)
    with pytest.raises(ValueError, match="rices needs"):
        select_demonstrations(["q"], ["a", "b"], 1, method="rices")
    with pytest.raises(ValueError, match="unknown demonstration method"):
        select_demonstrations(["q"], ["a", "b"], 1, method="knn")  # type: ignore[arg-type]


def test_prompt_text_and_media_layout():
    assert few_shot_text(["a cat", "a dog"], prefix="Output:") == (
        "<image>Output:a cat<|endofchunk|><image>Output:a dog<|endofchunk|><image>Output:"
    )
    assert few_shot_text([]) == "<image>"
    pool, query = torch.arange(5.0)[:, None], torch.tensor([[10.0], [11.0]])
    media = gather_media(query, pool, [[3, 1], [0, 4]])
    assert media.shape == (2, 3, 1)
    assert media[:, :, 0].tolist() == [[3.0, 1.0, 10.0], [0.0, 4.0, 11.0]]
    assert gather_media(query, pool, [[], []]).shape == (2, 1, 1)
