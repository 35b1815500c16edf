"""Cross-modal retrieval metrics: recall@K, median and mean rank of the first correct item.

The protocol of CLIP (Radford et al., 2021, https://arxiv.org/abs/2103.00020, Table 13) and VSE++
(Faghri et al., 2018, https://arxiv.org/abs/1707.05612): each query ranks the whole gallery by similarity
and is a hit at K when one of its top-K gallery items is a correct match. Correctness is decided by *ids*,
not positions: every gallery item that shares the query's id is correct, so an image with several captions
(or a caption id with several images) is scored right.

Every metric is a function of one number per query, the rank of its first correct item, found without
sorting the gallery::

    rank = 1 + #{incorrect gallery items scoring >= the best correct item}

Ties are counted against the query (pessimistic), so a collapsed model that embeds everything alike scores
R@1 = 0 rather than 1. Queries are processed in chunks: at most ``chunk_size × G`` scores exist at a time,
and ``retrieval_metrics`` computes them from the embeddings chunk by chunk, so a 10k × 10k evaluation never
holds the full similarity matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch
from torch import Tensor

Ids = Tensor | np.ndarray | Sequence[Hashable]
"""Ids of queries or gallery items: an integer tensor/array, or any hashables (e.g. emoji codes)."""


def encode_ids(query_ids: Ids, gallery_ids: Ids) -> tuple[Tensor, Tensor]:
    """Both id lists as int64 tensors, (Q,) and (G,), with equal ids mapped to equal integers.

    Integer tensors and arrays pass through; anything else (strings, tuples) is mapped through one shared
    vocabulary so that a query id and a gallery id compare equal exactly when the originals do.
    """

    def is_int(x: Ids) -> bool:
        if isinstance(x, Tensor):
            return not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool
        return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer)

    if is_int(query_ids) and is_int(gallery_ids):
        q = torch.as_tensor(query_ids, dtype=torch.long).reshape(-1)
        g = torch.as_tensor(gallery_ids, dtype=torch.long).reshape(-1)
        return q, g
    vocab: dict[Hashable, int] = {}

    def encode(ids: Ids) -> Tensor:
        values = ids.tolist() if isinstance(ids, Tensor | np.ndarray) else list(ids)
        return torch.tensor([vocab.setdefault(v, len(vocab)) for v in values], dtype=torch.long)

    return encode(query_ids), encode(gallery_ids)


def _correct_pairs(query_ids: Tensor, sorted_ids: Tensor, order: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Every (query, gallery item) pair with equal ids, found by binary search instead of a (Q, G) mask.

    Args:
        query_ids: (q,) ids; sorted_ids: (G,) gallery ids sorted; order: (G,) their original positions.

    Returns:
        pair_query (P,) in [0, q), ascending; pair_gallery (P,) in [0, G); counts (q,) pairs per query.
    """
    lo = torch.searchsorted(sorted_ids, query_ids)  # (q,) first gallery slot with the query's id
    counts = torch.searchsorted(sorted_ids, query_ids, right=True) - lo  # (q,) correct items per query
    pair_query = torch.repeat_interleave(torch.arange(query_ids.numel()), counts)  # (P,)
    # pair p of query i sits at sorted slot lo[i] + (p - first pair of i)
    shift = torch.repeat_interleave(lo - (counts.cumsum(0) - counts), counts)  # (P,)
    return pair_query, order[shift + torch.arange(pair_query.numel())], counts


def _first_match_ranks(
    scores: Callable[[int, int], Tensor], query_ids: Tensor, gallery_ids: Tensor, chunk_size: int
) -> Tensor:
    """Ranks (Q,) of the first correct item; ``scores(start, end)`` gives the (end - start, G) block.

    Per chunk the only (q, G) work besides the scores is one comparison and one sum: the correct items
    are gathered as a sparse list of pairs.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_queries = query_ids.numel()
    sorted_ids, order = gallery_ids.sort()
    ranks = torch.empty(num_queries, dtype=torch.long)
    for start in range(0, num_queries, chunk_size):
        end = min(start + chunk_size, num_queries)
        pair_q, pair_g, counts = _correct_pairs(query_ids[start:end], sorted_ids, order)  # (P,), (P,), (q,)
        if not counts.all():
            i = start + int((counts == 0).nonzero()[0])
            raise ValueError(f"query {i} has no gallery item with its id")
        s = scores(start, end).float()  # (q, G)
        pair_s = s[pair_q, pair_g]  # (P,) scores of the correct items
        best = torch.full((end - start,), float("-inf")).scatter_reduce(0, pair_q, pair_s, "amax")  # (q,)
        at_least_best = (s >= best[:, None]).sum(dim=1, dtype=torch.int32)  # (q,) includes correct items
        correct_at_least_best = torch.zeros(end - start, dtype=torch.int32).scatter_add_(
            0, pair_q, (pair_s >= best[pair_q]).int()
        )  # (q,)
        ranks[start:end] = 1 + at_least_best - correct_at_least_best
    return ranks


def retrieval_ranks(
    similarity: Tensor, query_ids: Ids, gallery_ids: Ids, *, chunk_size: int = 1024
) -> Tensor:
    """1-based rank of each query's first correct gallery item (ties counted against the query).

    Args:
        similarity: (Q, G) query-by-gallery scores, higher is more similar.
        query_ids: (Q,) id of each query.
        gallery_ids: (G,) id of each gallery item; every query needs at least one item with its id.
        chunk_size: queries scored at a time.

    Returns:
        (Q,) int64 ranks in [1, G].
    """
    q_ids, g_ids = encode_ids(query_ids, gallery_ids)
    if similarity.ndim != 2 or similarity.shape != (q_ids.numel(), g_ids.numel()):
        raise ValueError(
            f"similarity has shape {tuple(similarity.shape)}, expected ({q_ids.numel()}, {g_ids.numel()})"
        )
    if torch.isnan(similarity).any():
        raise ValueError("similarity has NaN entries")
    return _first_match_ranks(lambda a, b: similarity[a:b], q_ids, g_ids, chunk_size)


def rank_summary(ranks: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K for each K, plus median and mean rank, from first-correct ranks (Q,).

    Returns:
        ``{"R@1": .., "R@5": .., "R@10": .., "median_rank": .., "mean_rank": ..}``; recalls in [0, 1]; the
        median of an even count is the mean of the two middle ranks (as ``numpy.median``).
    """
    if ranks.numel() == 0:
        raise ValueError("no queries to summarise")
    out = {f"R@{k}": (ranks <= k).double().mean().item() for k in ks}
    out["median_rank"] = float(np.median(ranks.cpu().numpy()))
    out["mean_rank"] = ranks.double().mean().item()
    return out


def recall_at_k(
    similarity: Tensor,
    query_ids: Ids,
    gallery_ids: Ids,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Fraction of queries with a correct gallery item among their top K, for each K.

    Args:
        similarity: (Q, G) query-by-gallery scores.
        query_ids: (Q,) ids; gallery_ids: (G,) ids. A gallery item is correct for a query when ids match.
        ks: the cut-offs.

    Returns:
        ``{"R@1": float, "R@5": float, ...}``.
    """
    ranks = retrieval_ranks(similarity, query_ids, gallery_ids, chunk_size=chunk_size)
    return {f"R@{k}": (ranks <= k).double().mean().item() for k in ks}


def retrieval_metrics(
    image_emb: Tensor,
    text_emb: Tensor,
    image_ids: Ids,
    text_ids: Ids,
    ks: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """Image→text and text→image retrieval metrics from embeddings, scored chunk by chunk.

    Similarity is the dot product, i.e. cosine similarity for L2-normalised embeddings.

    Args:
        image_emb: (N_i, E) image embeddings; image_ids: (N_i,) their ids.
        text_emb: (N_t, E) text embeddings; text_ids: (N_t,) their ids.
        ks: recall cut-offs.
        chunk_size: queries scored at a time (memory is chunk_size × gallery size).

    Returns:
        ``{"image_to_text": {"R@1", .., "median_rank", "mean_rank"}, "text_to_image": {...}}``.
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"embeddings must be (N, E) with one E, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    i_ids, t_ids = encode_ids(image_ids, text_ids)
    if i_ids.numel() != image_emb.shape[0] or t_ids.numel() != text_emb.shape[0]:
        raise ValueError(
            f"{i_ids.numel()} image ids for {image_emb.shape[0]} images, "
            f"{t_ids.numel()} text ids for {text_emb.shape[0]} texts"
        )
    if not (image_emb.isfinite().all() and text_emb.isfinite().all()):
        raise ValueError("embeddings have NaN or infinite entries")
    i2t = _first_match_ranks(lambda a, b: image_emb[a:b] @ text_emb.T, i_ids, t_ids, chunk_size)
    t2i = _first_match_ranks(lambda a, b: text_emb[a:b] @ image_emb.T, t_ids, i_ids, chunk_size)
    return {"image_to_text": rank_summary(i2t, ks), "text_to_image": rank_summary(t2i, ks)}
