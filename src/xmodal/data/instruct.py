"""Tokenised chat samples with images for LLaVA-style training: truncation and masking, counted.

A sample is a conversation (``<image>`` placeholders inside user turns) and the rows of its images in a
feature table. Encoding applies the LM's chat template (:func:`xmodal.lm.encode_chat`: labels on answer
tokens only), truncates the text so that text + image tokens fit the LM's context (each ``<image>``
becomes T positions), counts truncated samples and samples left without an answer token, and refuses a
context too small to hold a sample's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from xmodal.errors import XmodalError
from xmodal.lm.chat import encode_chat, encode_prompt, render
from xmodal.lm.sequences import IGNORE_INDEX, MaskedCounter, TruncationCounter, truncate


@dataclass
class ChatSample:
    """One encoded sample: token ids, labels (-100 outside answers) and its images' feature rows."""

    input_ids: list[int]
    labels: list[int]
    images: list[int]


def _text_budget(n_images: int, tokens_per_image: int, max_length: int) -> int:
    budget = max_length - n_images * (tokens_per_image - 1)
    if budget < n_images + 1:
        raise XmodalError(
            f"a sample with {n_images} image(s) of {tokens_per_image} tokens does not fit the LM's context "
            f"of {max_length} positions"
        )
    return budget


def encode_samples(
    tokenizer: object,
    conversations: Sequence[list[dict[str, str]]],
    images: Sequence[list[int]],
    *,
    image_token_id: int,
    tokens_per_image: int,
    max_length: int,
    truncation: TruncationCounter,
    masked: MaskedCounter,
) -> list[ChatSample]:
    """Encode conversations for training; ``masked.check()`` is left to the caller (after all sources).

    Args:
        conversations: one message list per sample.
        images: per sample, the feature-table rows of its images, in placeholder order.
        tokens_per_image: T, the positions each ``<image>`` expands to.
        max_length: the LM's context (text + image positions).

    Raises:
        XmodalError: a conversation whose placeholder count differs from its images (or that truncation
            would cut an image out of).
    """
    if len(conversations) != len(images):
        raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
    out = []
    for i, (conv, rows) in enumerate(zip(conversations, images, strict=True)):
        enc = encode_chat(tokenizer, conv)
        n = enc.input_ids.count(image_token_id)
        if n != len(rows):
            raise XmodalError(f"sample {i}: {n} <image> placeholder(s) but {len(rows)} image(s)")
        budget = _text_budget(len(rows), tokens_per_image, max_length)
        ids = truncate(enc.input_ids, budget, truncation)
        labels = enc.labels[: len(ids)]
        if ids.count(image_token_id) != n:
            raise XmodalError(f"sample {i}: truncation to the context would cut out an image")
        masked.record(labels)
        out.append(ChatSample(ids, labels, list(rows)))
    return out


def _generation_prompt_length(tokenizer: Any, conv: list[dict[str, str]]) -> int:
    """Tokens the template adds for ``add_generation_prompt`` (e.g. " ASSISTANT:"; 0 for Llama-2's)."""
    with_prompt = render(tokenizer, conv, add_generation_prompt=True)
    plain = render(tokenizer, conv)
    if not with_prompt.startswith(plain):
        return 0
    return len(tokenizer(with_prompt[len(plain) :], add_special_tokens=False)["input_ids"])


def encode_prompts(
    tokenizer: object,
    conversations: Sequence[list[dict[str, str]]],
    *,
    image_token_id: int,
    tokens_per_image: int,
    max_length: int,
    max_new_tokens: int,
    truncation: TruncationCounter,
) -> list[list[int]]:
    """Generation prompts (conversations ending in a user turn) that leave room for the answer.

    A prompt too long for ``max_length - max_new_tokens`` positions loses tokens from its middle (the
    question text after the last ``<image>``), so the images and the template's generation prompt at the
    end stay; each cut is counted in ``truncation``.

    Raises:
        XmodalError: a context too small for the images and the generation prompt.
    """
    out = []
    for i, conv in enumerate(conversations):
        ids = encode_prompt(tokenizer, conv)
        n = ids.count(image_token_id)
        budget = _text_budget(n, tokens_per_image, max_length - max_new_tokens)
        head = len(ids) - ids[::-1].index(image_token_id) if n else 0  # up to the last placeholder
        truncation.seen += 1
        if len(ids) > budget:
            keep_tail = budget - head
            if keep_tail < max(1, _generation_prompt_length(tokenizer, conv)):
                raise XmodalError(f"prompt {i}: the context cannot hold its images and an answer")
            truncation.truncated += 1
            truncation.tokens_dropped += len(ids) - budget
            ids = ids[:head] + ids[len(ids) - keep_tail :]
        out.append(ids)
    return out


def collate(
    rows: Sequence[Sequence[int]], pad_id: int, labels: Sequence[Sequence[int]] | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Right-padded (B, L) input ids, attention mask and labels (-100 at padding)."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    lab = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long) if labels is not None else None
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, : len(r)] = 1
        if lab is not None and labels is not None:
            lab[b, : len(r)] = torch.tensor(labels[b], dtype=torch.long)
    return ids, mask, lab
