"""In-context demonstrations for few-shot evaluation of Flamingo-style models.

Flamingo (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198, §3 and App. A.2) prompts the model with
k (image, text) examples before the query image. They are drawn from the *training* split, either at
random or by RICES (Retrieval-based In-Context Example Selection, Yang et al. 2022,
https://arxiv.org/abs/2109.05014): the k training images nearest the query by the frozen image encoder's
cosine similarity, the most similar placed last (next to the query), as in open_flamingo.

A pool item that shows the query's own image (same ``image_id``) is never a demonstration.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from xmodal.lm.loading import CHUNK_TOKEN, IMAGE_TOKEN

Method = Literal["random", "rices"]


def select_demonstrations(
    query_ids: Sequence[str],
    pool_ids: Sequence[str],
    k: int,
    *,
    method: Method = "random",
    query_features: Tensor | None = None,
    pool_features: Tensor | None = None,
    seed: int = 0,
) -> list[list[int]]:
    """Indices into the training pool of each query's k demonstrations.

    Args:
        query_ids: Q image ids of the queries (test images).
        pool_ids: N image ids of the training pool.
        k: demonstrations per query (0 gives empty lists).
        method: "random" (seeded per query) or "rices" (nearest by cosine similarity).
        query_features: (Q, D) frozen image-encoder features (pooled), needed for "rices".
        pool_features: (N, D) the same for the pool.
        seed: base seed of "random" (query q uses ``seed + q``, so the choice does not depend on batching).

    Returns:
        Q lists of k pool indices; for "rices" in increasing similarity (most similar last).

    Raises:
        ValueError: fewer than k eligible pool items, an unknown method, or missing/mismatched features.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    eligible = len(pool_ids) - (1 if set(query_ids) & set(pool_ids) else 0)
    if k > eligible:
        raise ValueError(f"{k} demonstrations requested but the pool has {len(pool_ids)} items")
    index_of: dict[str, list[int]] = {}
    for i, pid in enumerate(pool_ids):
        index_of.setdefault(pid, []).append(i)
    if method == "random":
        out = []
        for q, qid in enumerate(query_ids):
            rng = random.Random(seed + q)
            banned = set(index_of.get(qid, []))
            picks: list[int] = []
            while len(picks) < k:
                i = rng.randrange(len(pool_ids))
                if i not in banned and i not in picks:
                    picks.append(i)
            out.append(picks)
        return out
    if method != "rices":
        raise ValueError(f"unknown demonstration method {method!r} (random or rices)")
    if query_features is None or pool_features is None:
        raise ValueError("rices needs query_features and pool_features")
    if query_features.shape[0] != len(query_ids) or pool_features.shape[0] != len(pool_ids):
        raise ValueError("features and ids disagree in number")
    sims = (
        F.normalize(query_features.float(), dim=-1) @ F.normalize(pool_features.float(), dim=-1).T
    )  # (Q, N)
    for q, qid in enumerate(query_ids):
        for i in index_of.get(qid, []):
            sims[q, i] = float("-inf")
    if k == 0:
        return [[] for _ in query_ids]
    top = sims.topk(k, dim=-1).indices.flip(-1)  # (Q, k), most similar last
    return [[int(i) for i in row] for row in top]


def few_shot_text(demo_texts: Sequence[str], *, prefix: str = "", query_text: str = "") -> str:
    """The interleaved prompt ``<image>{prefix}{demo}<|endofchunk|>`` × k, then ``<image>{prefix}{query}``.

    The query's images follow the demonstrations' in the same order (k + 1 images in all).
    """
    shots = "".join(f"{IMAGE_TOKEN}{prefix}{t}{CHUNK_TOKEN}" for t in demo_texts)
    return f"{shots}{IMAGE_TOKEN}{prefix}{query_text}"


def gather_media(query_media: Tensor, pool_media: Tensor, demos: list[list[int]]) -> Tensor:
    """Stack each query's demonstration images before its own.

    Args:
        query_media: (Q, ...) one image (or its encoder tokens) per query.
        pool_media: (N, ...) the pool's, same trailing shape.
        demos: from :func:`select_demonstrations`, Q lists of k indices.

    Returns:
        (Q, k + 1, ...).
    """
    rows = [torch.cat([pool_media[idx], query_media[q : q + 1]]) for q, idx in enumerate(demos)]
    return torch.stack(rows)
