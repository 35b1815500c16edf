"""Evaluating a LLaVA model: captions (BLEU-4, CIDEr-D) and visual questions (VQA accuracy) by generation.

Prompts go through the LM's chat template (:func:`xmodal.lm.encode_prompt`), batches are generated
greedily by ``transformers``' ``generate`` on the spliced embeddings (left-padded; batched output equals
one-by-one output, tested), and the text is scored only by :mod:`xmodal.metrics` (``caption_scores``,
``vqa_accuracy``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from xmodal.data.instruct import collate, encode_prompts
from xmodal.lm.chat import user_turn
from xmodal.lm.sequences import TruncationCounter
from xmodal.metrics import caption_scores, vqa_accuracy
from xmodal.models.llava import Llava


def decode_answer(tokenizer: Any, ids: Sequence[int]) -> str:
    """Generated ids → text: cut at the first eos, special tokens dropped, whitespace trimmed."""
    ids = list(ids)
    eos = tokenizer.eos_token_id
    if eos is not None and eos in ids:
        ids = ids[: ids.index(eos)]
    return " ".join(str(tokenizer.decode(ids, skip_special_tokens=True)).split())


@torch.no_grad()
def generate_answers(
    model: Llava,
    tokenizer: Any,
    questions: Sequence[str],
    image_tokens: Tensor,
    *,
    batch_size: int = 64,
    max_new_tokens: int = 12,
    truncation: TruncationCounter | None = None,
    progress: Callable[[int, int], None] | None = None,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """One answer per (question, image); ``image_tokens`` (N, T, C) in question order.

    Greedy unless ``generate_kwargs`` says otherwise (e.g. ``{"num_beams": 3, "length_penalty": 1.0}``:
    ``transformers``' beam search).
    """
    model.eval()
    convs = [[user_turn(q)] for q in questions]
    max_length = model.max_length or 10**9
    prompts = encode_prompts(
        tokenizer,
        convs,
        image_token_id=model.image_token_id,
        tokens_per_image=image_tokens.shape[1],
        max_length=max_length,
        max_new_tokens=max_new_tokens,
        truncation=truncation if truncation is not None else TruncationCounter(),
    )
    answers: list[str] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask, _ = collate(prompts[i : i + batch_size], tokenizer.pad_token_id)
        out = model.generate(
            ids,
            image_tokens[i : i + batch_size],
            mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **dict(generate_kwargs or {}),
        )
        answers += [decode_answer(tokenizer, row.tolist()) for row in out]
        if progress is not None:
            progress(len(answers), len(prompts))
    return answers


def evaluate_captions(
    model: Llava,
    tokenizer: Any,
    references: Mapping[Hashable, Sequence[str]],
    image_tokens: Tensor,
    *,
    prompt: str | Sequence[str],
    **kwargs: Any,
) -> tuple[dict[str, Any], dict[Hashable, str]]:
    """Caption every image (``image_tokens`` in ``references`` order) → (caption_scores, predictions).

    ``prompt``: one request for every image, or one per image (in ``references`` order)."""
    ids = list(references)
    prompts = [prompt] * len(ids) if isinstance(prompt, str) else list(prompt)
    if len(prompts) != len(ids):
        raise ValueError(f"{len(prompts)} prompts for {len(ids)} images")
    preds = generate_answers(model, tokenizer, prompts, image_tokens, **kwargs)
    predictions: dict[Hashable, str] = dict(zip(ids, preds, strict=True))
    return caption_scores(references, predictions, meteor=False), predictions


def evaluate_vqa(
    model: Llava,
    tokenizer: Any,
    annotations: Sequence[dict[str, Any]],
    questions: Sequence[str],
    image_tokens: Tensor,
    **kwargs: Any,
) -> tuple[dict[str, Any], dict[Hashable, str]]:
    """Answer every question (``image_tokens`` in question order) → (vqa_accuracy, predictions)."""
    preds = generate_answers(model, tokenizer, questions, image_tokens, **kwargs)
    predictions: dict[Hashable, str] = {
        int(a["question_id"]): p for a, p in zip(annotations, preds, strict=True)
    }
    return vqa_accuracy(annotations, predictions), predictions
