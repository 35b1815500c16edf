"""The Flamingo recipe's data, training and few-shot evaluation (used by :mod:`xmodal.tasks.flamingo`).

Training sequences interleave ``m`` random emoji of the training split, ``<bos> (<image> caption
<|endofchunk|>) × m`` (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198, §2.4: the M3W-style
interleaved format); the loss covers the caption and ``<|endofchunk|>`` tokens. Evaluation captions each
held-out test emoji after k in-context examples from the training split (:mod:`xmodal.eval.few_shot`:
random, or RICES on the frozen encoder's mean token), greedy until ``<|endofchunk|>``, scored with
:func:`xmodal.metrics.caption_scores` beside the nearest-neighbour-caption baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.data.vl import CaptionItem
from xmodal.errors import XmodalError
from xmodal.eval.few_shot import Method, few_shot_text, gather_media, select_demonstrations
from xmodal.lm.sequences import IGNORE_INDEX, TruncationCounter, truncate
from xmodal.models.flamingo import Flamingo


@dataclass
class FlamingoTokens:
    """The ids sequences are made of: ``bos`` (None: none), ``image``, ``chunk`` end, ``pad``, ``eos``."""

    bos: int | None
    image: int
    chunk: int
    pad: int
    eos: int | None

    @classmethod
    def of(cls, tokenizer: Any, ids: dict[str, int]) -> FlamingoTokens:
        """From a tokenizer and :func:`xmodal.lm.add_multimodal_tokens`'s ids."""
        from xmodal.lm.loading import CHUNK_TOKEN, IMAGE_TOKEN

        return cls(
            tokenizer.bos_token_id,
            ids[IMAGE_TOKEN],
            ids[CHUNK_TOKEN],
            tokenizer.pad_token_id,
            tokenizer.eos_token_id,
        )


@dataclass
class CaptionSequences:
    """Tokenised captions and interleaved sequences built from them.

    Args:
        captions: token ids of each caption: the first reference of each item (demonstrations), or every
            (item, reference) pair for training.
        tokens: the special ids.
        max_len: the context (sequences longer are truncated and counted).
        image_of: the image-table row of each caption (None: caption i shows image i).
    """

    captions: list[list[int]]
    tokens: FlamingoTokens
    max_len: int
    truncation: TruncationCounter = field(default_factory=TruncationCounter)
    image_of: list[int] | None = None

    def __post_init__(self) -> None:
        self._image_rows = None if self.image_of is None else torch.tensor(self.image_of, dtype=torch.long)

    def sequence(self, demo_captions: Sequence[list[int]], query: list[int] | None) -> list[int]:
        """``<bos> (<image> caption <|endofchunk|>)*`` then, for a prompt, ``<image>`` + ``query`` ids."""
        t = self.tokens
        ids = [] if t.bos is None else [t.bos]
        for cap in demo_captions:
            ids += [t.image, *cap, t.chunk]
        if query is not None:
            ids += [t.image, *query]
        n_images = ids.count(t.image)
        ids = truncate(ids, self.max_len, self.truncation)
        if ids.count(t.image) != n_images:
            raise XmodalError(
                f"a sequence of {n_images} images is longer than the context ({self.max_len} tokens) and "
                "truncation would drop an <image>: use fewer images per sequence or shots"
            )
        return ids

    def length(self, demo_captions: Sequence[list[int]], query: list[int]) -> int:
        """The untruncated length of :meth:`sequence`'s prompt ``demo_captions`` + ``query``."""
        bos = 0 if self.tokens.bos is None else 1
        return bos + sum(len(c) + 2 for c in demo_captions) + 1 + len(query)

    def fit_demonstrations(
        self, demos: Sequence[Sequence[int]], queries: Sequence[list[int]], room: int
    ) -> tuple[list[list[int]], int, int]:
        """Drop each prompt's first (for RICES: least similar) demonstrations until it and ``room`` new
        tokens fit the context.

        Returns:
            (the kept demonstrations, prompts shortened, demonstrations dropped): counted, never silent.

        Raises:
            XmodalError: a query alone (no demonstration) does not fit.
        """
        kept: list[list[int]] = []
        shortened = dropped = 0
        for d, q in zip(demos, queries, strict=True):
            d = list(d)
            n = len(d)
            while self.length([self.captions[j] for j in d], q) + room > self.max_len:
                if not d:
                    raise XmodalError(
                        f"a query of {len(q)} tokens and {room} new ones exceed the context ({self.max_len})"
                    )
                d = d[1:]
            shortened += len(d) < n
            dropped += n - len(d)
            kept.append(d)
        return kept, shortened, dropped

    def training_batch(self, rows: Tensor, table: Tensor) -> dict[str, Tensor]:
        """rows (B, m) caption indices → padded ids, mask, labels and media (B, m, T, C)."""
        seqs = [self.sequence([self.captions[int(i)] for i in row], None) for row in rows]
        if self._image_rows is not None:
            rows = self._image_rows[rows]
        ids, mask = pad(seqs, self.tokens.pad, left=False)
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX).masked_fill(ids == self.tokens.image, IGNORE_INDEX)
        if self.tokens.bos is not None:
            labels[:, 0] = IGNORE_INDEX
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "media": table[rows]}


def pad(seqs: Sequence[list[int]], pad_id: int, *, left: bool) -> tuple[Tensor, Tensor]:
    """Pad id lists to one length → (ids (B, N), mask (B, N)); ``left`` for generation prompts."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(n - len(s), n) if left else slice(0, len(s))
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def flamingo_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The generic trainer's loss: next-token cross-entropy on the labelled tokens."""
    loss = model(
        batch["input_ids"],
        media=batch["media"],
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
    ).loss
    assert loss is not None
    return loss  # type: ignore[no-any-return]


@torch.no_grad()
def few_shot_captions(
    model: Flamingo,
    tokenizer: Any,
    seqs: CaptionSequences,
    *,
    train_items: Sequence[CaptionItem],
    train_table: Tensor,
    test_items: Sequence[CaptionItem],
    test_table: Tensor,
    k: int,
    method: Method,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 12,
    beam_size: int = 1,
    alpha: float = 0.0,
    log: Callable[[str], None] | None = None,
    prefix_ids: list[int] | None = None,
) -> tuple[list[str], list[list[int]], dict[str, int]]:
    """Caption each test image after k demonstrations from the training split: greedy (``beam_size`` 1,
    with the LM's key/value cache) or beam search with GNMT length penalty ``alpha``. ``prefix_ids``: the
    caption prefix's ids (e.g. open_flamingo's "Output:"), after each query's ``<image>``; the
    demonstrations in ``seqs`` carry it already (:func:`caption_chunk`).

    A prompt that would not fit the LM's context with ``max_new_tokens`` more loses its first (for RICES:
    least similar) demonstrations (:meth:`CaptionSequences.fit_demonstrations`), counted.

    Returns:
        (one caption per test item, the demonstrations' training indices per test item,
        ``{"prompts_shortened": n, "demonstrations_dropped": m}``).
    """
    demos = select_demonstrations(
        [it.image_id for it in test_items],
        [it.image_id for it in train_items],
        k,
        method=method,
        query_features=test_table.mean(dim=1),
        pool_features=train_table.mean(dim=1),
        seed=seed,
    )
    queries = [list(prefix_ids or []) for _ in test_items]
    demos, shortened, dropped = seqs.fit_demonstrations(demos, queries, max_new_tokens)
    out = few_shot_generate(
        model,
        tokenizer,
        seqs,
        demos=demos,
        queries=queries,
        pool_table=train_table,
        query_table=test_table,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        beam_size=beam_size,
        alpha=alpha,
        log=None if log is None else lambda n: log(f"few-shot k={k} {method}: {n}/{len(test_items)}"),  # type: ignore[misc]
    )
    return out, demos, {"prompts_shortened": shortened, "demonstrations_dropped": dropped}


@torch.no_grad()
def few_shot_generate(
    model: Flamingo,
    tokenizer: Any,
    seqs: CaptionSequences,
    *,
    demos: Sequence[Sequence[int]],
    queries: Sequence[list[int]],
    pool_table: Tensor,
    query_table: Tensor,
    pool_rows: Sequence[int] | None = None,
    query_rows: Sequence[int] | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 12,
    beam_size: int = 1,
    alpha: float = 0.0,
    log: Callable[[int], None] | None = None,
) -> list[str]:
    """Continue ``(<image> demo <|endofchunk|>) × k <image> query`` for each query until
    ``<|endofchunk|>`` / eos: greedy (``beam_size`` 1, with the LM's key/value cache) or beam search with
    GNMT length penalty ``alpha``.

    Args:
        seqs: the demonstrations' texts (``seqs.captions[j]``) and the special ids.
        demos: per query, its demonstrations' indices into ``seqs.captions``.
        queries: per query, the token ids after its ``<image>`` ([] for a caption).
        pool_table: (N_pool, T, C) image tokens; demonstration j shows row ``pool_rows[j]`` (default j).
        query_table: (N_query, T, C); query q shows row ``query_rows[q]`` (default q).
        log: called with the number of queries done after each batch.

    Returns:
        The generated text of each query (special tokens dropped, stripped).
    """
    model.eval()
    if len(demos) != len(queries):
        raise ValueError(f"{len(demos)} demonstration lists for {len(queries)} queries")
    t = seqs.tokens
    stops = [i for i in (t.chunk, t.eos) if i is not None]
    p_rows = list(range(len(pool_table))) if pool_rows is None else list(pool_rows)
    q_rows = list(range(len(query_table))) if query_rows is None else list(query_rows)
    out: list[str] = [""] * len(queries)
    done = 0
    for idx in _batches_by_shots(demos, batch_size):  # one number of images per batch
        prompts = [seqs.sequence([seqs.captions[j] for j in demos[q]], queries[q]) for q in idx]
        ids, mask = pad(prompts, t.pad, left=True)
        media = gather_media(
            query_table[[q_rows[q] for q in idx]], pool_table, [[p_rows[j] for j in demos[q]] for q in idx]
        )  # (b, k+1, T, C)
        if beam_size > 1:
            rows = model.beam_search(
                ids,
                media=media,
                attention_mask=mask,
                eos=stops,
                max_new_tokens=max_new_tokens,
                beam_size=beam_size,
                alpha=alpha,
            ).tokens
        else:
            rows = model.generate(
                ids,
                media=media,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=stops,
                pad_token_id=t.pad,
            ).tolist()
        for q, row in zip(idx, rows, strict=True):
            kept = [i for i in row if i not in stops and i != t.pad]
            out[q] = tokenizer.decode(kept, skip_special_tokens=True).strip()
        done += len(idx)
        if log is not None:
            log(done)
    return out


def _batches_by_shots(demos: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Query indices in batches of at most ``batch_size`` whose prompts hold equally many demonstrations
    (in query order within each count; the model takes one number of images per batch)."""
    by_count: dict[int, list[int]] = {}
    for q, d in enumerate(demos):
        by_count.setdefault(len(d), []).append(q)
    return [
        group[i : i + batch_size]
        for _, group in sorted(by_count.items())
        for i in range(0, len(group), batch_size)
    ]


def caption_chunk(prefix: str, caption: str) -> str:
    """The text of a caption chunk: ``caption``, or ``"{prefix} {caption}"`` (e.g. "Output: hash key", so
    that the prompt's "Output:" tokenises as the chunk's start does)."""
    return f"{prefix} {caption}" if prefix else caption


def example_prompt(train_items: Sequence[CaptionItem], demos: list[int], prefix: str = "") -> str:
    """The text of one prompt (for the report): the demonstrations' captions around ``<image>`` markers."""
    return few_shot_text(
        [caption_chunk(prefix, train_items[j].captions[0]) for j in demos], query_text=prefix
    )


class SequenceSampler:
    """Which captions make each training sequence: random ones, or an anchor with its nearest neighbours.

    A share ``similar_share`` of the sequences holds an anchor image and ``m - 1`` of its ``pool`` nearest
    training images (RICES neighbours, Yang et al. 2022, https://arxiv.org/abs/2109.05014), in random
    order; the rest hold random images. Related images in one sequence reward using the in-context
    captions (Flamingo's M3W pages hold related images; Alayrac et al. 2022, §2.4), which random sequences
    never do. (On the emoji recipe with the 2-layer stage-0 LM it did not help: RICES k = 4 CIDEr-D 0.29
    with share 0.5 against 0.38 without; see the README.) Every batch depends only on (seed, step), so
    resuming is exact.

    Args:
        image_of: (P,) the image (item) of each caption; several captions may show one image.
        neighbours: (N_items, pool) nearest other items of each item, or None (random sequences only).
        m: images per sequence.
        batch_size: sequences per batch.
        similar_share: share of the sequences built from neighbours (0: all random).
        seed: the run's seed.
    """

    def __init__(
        self,
        image_of: Sequence[int],
        neighbours: Tensor | None,
        *,
        m: int,
        batch_size: int,
        similar_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        from xmodal.train.generic import EpochSampler

        if not 0.0 <= similar_share <= 1.0:
            raise XmodalError(f"similar_share must be in [0, 1], got {similar_share}")
        if similar_share > 0 and (neighbours is None or neighbours.shape[1] < m - 1):
            raise XmodalError(f"similar sequences of {m} images need at least {m - 1} neighbours per image")
        self.image_of = torch.as_tensor(list(image_of), dtype=torch.long)
        self.neighbours, self.m, self.seed = neighbours, m, seed
        self.n_similar = round(batch_size * similar_share)
        self.epochs = EpochSampler(len(self.image_of), batch_size=batch_size * m, seed=seed)
        self.batch_size = self.epochs.batch_size // m  # capped by the number of captions
        n_items = int(self.image_of.max()) + 1
        self.captions_of: list[list[int]] = [[] for _ in range(n_items)]
        for p, i in enumerate(self.image_of.tolist()):
            self.captions_of[i].append(p)

    def rows(self, step: int) -> Tensor:
        """(batch_size, m) caption indices of the sequences at ``step``."""
        rows = self.epochs.indices(step)[: self.batch_size * self.m].view(-1, self.m).clone()
        if self.n_similar == 0 or self.neighbours is None:
            return rows
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        anchors = self.image_of[rows[: self.n_similar, 0]]  # (S,) anchor items
        pool = self.neighbours.shape[1]
        pick = torch.rand(len(anchors), pool, generator=gen).argsort(dim=1)[:, : self.m - 1]
        items = torch.cat([anchors[:, None], self.neighbours[anchors].gather(1, pick)], dim=1)  # (S, m)
        items = items.gather(1, torch.rand(items.shape, generator=gen).argsort(dim=1))
        which = torch.rand(items.shape, generator=gen)
        caps = [
            [self.captions_of[i][int(w * len(self.captions_of[i]))] for i, w in zip(r, ws, strict=True)]
            for r, ws in zip(items.tolist(), which.tolist(), strict=True)
        ]
        rows[: self.n_similar] = torch.tensor(caps, dtype=torch.long)
        return rows
