"""Image–text retrieval evaluation on an image–caption split (e.g. emoji).

The gallery/query sets follow the usual COCO/Flickr protocol used by CLIP (Radford et al., 2021,
https://arxiv.org/abs/2103.00020, Table 13): every image of the split is one image, and the texts are
the distinct captions of each id (``emoji_id``), so an id with several images (skin-tone variants) or
several captions is scored as a set of correct matches, never as a position on a diagonal.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, overload

import torch

from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts
from xmodal.metrics.retrieval import retrieval_metrics


class CaptionItem(Protocol):
    """One image–caption pair of a split (read-only attributes)."""

    @property
    def image_path(self) -> Path | str: ...
    @property
    def caption(self) -> str: ...
    @property
    def emoji_id(self) -> Hashable: ...


class CaptionDataset(Protocol):
    """A split: ``items`` and ``load(i) -> (PIL image, caption)``."""

    @property
    def items(self) -> Sequence[CaptionItem]: ...

    def load(self, i: int) -> tuple[Any, str]:
        """The i-th image (PIL) and its caption."""
        ...


@dataclass
class RetrievalEmbeddings:
    """The embedded split, kept for reports and error analysis.

    Attributes:
        image_emb: (N_i, E) image embeddings, one per item, in item order.
        text_emb: (N_t, E) embeddings of the distinct (id, caption) texts.
        image_ids: N_i ids; text_ids: N_t ids.
        texts: N_t captions; image_paths: N_i image files.
    """

    image_emb: torch.Tensor
    text_emb: torch.Tensor
    image_ids: list[Hashable]
    text_ids: list[Hashable]
    texts: list[str]
    image_paths: list[Path]


def unique_captions(dataset: CaptionDataset) -> tuple[list[str], list[Hashable]]:
    """The distinct (caption, id) pairs of a split, in first-seen order: (captions, ids)."""
    seen: dict[tuple[Hashable, str], None] = {}
    for item in dataset.items:
        seen.setdefault((item.emoji_id, item.caption), None)
    return [c for _, c in seen], [i for i, _ in seen]


def embed_split(
    model: DualEncoder,
    preprocess: Preprocess,
    dataset: CaptionDataset,
    *,
    batch_size: int = 64,
    text_batch_size: int = 256,
    progress: bool | None = None,
) -> RetrievalEmbeddings:
    """Embeds every image of ``dataset`` and each of its distinct captions once."""
    texts, text_ids = unique_captions(dataset)
    return RetrievalEmbeddings(
        image_emb=embed_images(model, dataset, preprocess, batch_size=batch_size, progress=progress),
        text_emb=embed_texts(model, texts, batch_size=text_batch_size, progress=progress),
        image_ids=[item.emoji_id for item in dataset.items],
        text_ids=text_ids,
        texts=texts,
        image_paths=[Path(item.image_path) for item in dataset.items],
    )


@overload
def evaluate_retrieval(
    model: DualEncoder,
    preprocess: Preprocess,
    dataset: CaptionDataset,
    *,
    batch_size: int = ...,
    ks: Sequence[int] = ...,
    return_embeddings: Literal[False] = ...,
    progress: bool | None = ...,
) -> dict[str, Any]: ...


@overload
def evaluate_retrieval(
    model: DualEncoder,
    preprocess: Preprocess,
    dataset: CaptionDataset,
    *,
    batch_size: int = ...,
    ks: Sequence[int] = ...,
    return_embeddings: Literal[True],
    progress: bool | None = ...,
) -> tuple[dict[str, Any], RetrievalEmbeddings]: ...


def evaluate_retrieval(
    model: DualEncoder,
    preprocess: Preprocess,
    dataset: CaptionDataset,
    *,
    batch_size: int = 64,
    ks: Sequence[int] = (1, 5, 10),
    return_embeddings: bool = False,
    progress: bool | None = None,
) -> dict[str, Any] | tuple[dict[str, Any], RetrievalEmbeddings]:
    """Image→text and text→image recall@K and ranks of ``model`` on a caption split.

    Args:
        model: a dual encoder.
        preprocess: PIL image → (3, H, W) tensor.
        dataset: the split; images are all its items, texts its distinct captions per ``emoji_id``.
        batch_size: images per forward pass.
        ks: recall cut-offs.
        return_embeddings: also return the :class:`RetrievalEmbeddings` (for the report's examples).
        progress: show tqdm bars (None: only on a terminal).

    Returns:
        ``{"n": N_i, "n_texts": N_t, "image_to_text": {"R@1", "R@5", "R@10", "median_rank", "mean_rank"},
        "text_to_image": {...}}``, and the embeddings when asked.
    """
    emb = embed_split(model, preprocess, dataset, batch_size=batch_size, progress=progress)
    metrics: dict[str, Any] = {
        "n": emb.image_emb.shape[0],
        "n_texts": emb.text_emb.shape[0],
        **retrieval_metrics(emb.image_emb, emb.text_emb, emb.image_ids, emb.text_ids, ks),
    }
    return (metrics, emb) if return_embeddings else metrics


def text_to_image_examples(
    emb: RetrievalEmbeddings,
    *,
    queries: Sequence[int] | None = None,
    num_queries: int = 6,
    k: int = 5,
    seed: int = 0,
) -> list[tuple[str, list[Path], list[bool]]]:
    """Top-K retrieved images for a few text queries, as ``write_report`` draws them.

    Args:
        emb: an embedded split.
        queries: indices into ``emb.texts``; None picks ``num_queries`` at random (seeded).
        k: images per query.

    Returns:
        One ``(caption, [K image paths, best first], [K bools: image has the caption's id])`` per query.
    """
    if queries is None:
        g = torch.Generator().manual_seed(seed)
        n = min(num_queries, len(emb.texts))
        queries = torch.randperm(len(emb.texts), generator=g)[:n].tolist()
    k = min(k, emb.image_emb.shape[0])
    scores = emb.text_emb[list(queries)] @ emb.image_emb.T  # (Q, N_i)
    top = scores.topk(k, dim=1).indices.tolist()  # (Q, k)
    return [
        (
            emb.texts[q],
            [emb.image_paths[j] for j in row],
            [emb.image_ids[j] == emb.text_ids[q] for j in row],
        )
        for q, row in zip(queries, top, strict=True)
    ]
