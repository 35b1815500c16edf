"""Run a dual encoder on public benchmarks read from their official files (:mod:`xmodal.benchmarks`).

* Karpathy-split retrieval (COCO 5k, Flickr30K 1k): every image and every caption embedded once, then
  :func:`xmodal.metrics.retrieval_recall` (several captions per image, CLIP_benchmark's protocol).
* MMBench multiple choice, zero-shot with a dual encoder: the picked option is the one whose text
  ``"<question> <option>"`` is most similar to the image (CLIP's zero-shot classification, Radford et al.,
  2021, https://arxiv.org/abs/2103.00020, with the options as the classes), scored with CircularEval. A dual
  encoder sees no letters and no order, so its picks follow the options through every rotation and its
  circular accuracy equals its vanilla accuracy up to exact ties; a generative model's need not.
* VQAv2, zero-shot with a dual encoder: the answer is the candidate (the most frequent annotated answers)
  whose text ``"<question> <answer>"`` is most similar to the image, scored with the official VQA accuracy.
  A baseline for what a contrastive model knows, far from what a generative VQA model reaches.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

from xmodal.benchmarks.karpathy import KarpathyImage, caption_index
from xmodal.benchmarks.mmbench import MMBenchItem, circular_eval
from xmodal.benchmarks.vqav2 import VQAQuestion
from xmodal.data.images import load_image
from xmodal.errors import DataError
from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts
from xmodal.metrics.caption_retrieval import retrieval_recall
from xmodal.metrics.vqa import vqa_accuracy


def evaluate_karpathy_retrieval(
    model: DualEncoder,
    preprocess: Preprocess,
    images: Sequence[KarpathyImage],
    *,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 64,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Image→text and text→image recall@K of ``model`` on a Karpathy split.

    Returns:
        ``{"n_images", "n_captions", "image_to_text": {"R@1", ..., "median_rank", "mean_rank"},
        "text_to_image": {...}}``.
    """
    texts, index = caption_index(list(images))
    image_emb = embed_images(
        model, (load_image(im.path) for im in images), preprocess, batch_size=batch_size, progress=progress
    )  # (N_i, E)
    text_emb = embed_texts(model, texts, progress=progress)  # (N_t, E)
    metrics = retrieval_recall(image_emb, text_emb, torch.tensor(index), ks)
    return {"n_images": len(images), "n_captions": len(texts), **metrics}


def option_text(item: MMBenchItem, letter: str) -> str:
    """The text a dual encoder compares with the image for one option: ``"<question> <option>"``."""
    return f"{item.question} {item.options[letter]}".strip()


def dual_encoder_chooser(model: DualEncoder, preprocess: Preprocess) -> Callable[[MMBenchItem], str]:
    """``item → letter``: the option whose :func:`option_text` is most similar to the image.

    Embeddings are cached (by item index for images, by string for texts), so CircularEval's rotations
    cost no extra forward passes. Ties go to the first letter.
    """
    image_cache: dict[str, torch.Tensor] = {}
    text_cache: dict[str, torch.Tensor] = {}

    def choose(item: MMBenchItem) -> str:
        if item.index not in image_cache:
            image_cache[item.index] = embed_images(model, [item.image()], preprocess, progress=False)[
                0
            ]  # (E,)
        letters = list(item.options)
        texts = [option_text(item, k) for k in letters]
        new = [t for t in dict.fromkeys(texts) if t not in text_cache]
        if new:
            for t, e in zip(new, embed_texts(model, new, progress=False), strict=True):
                text_cache[t] = e
        scores = torch.stack([text_cache[t] for t in texts]) @ image_cache[item.index]  # (N_options,)
        return letters[int(scores.argmax())]

    return choose


def evaluate_mmbench(
    model: DualEncoder, preprocess: Preprocess, items: Sequence[MMBenchItem]
) -> dict[str, Any]:
    """Vanilla and CircularEval accuracy of a dual encoder on MMBench items (see the module docstring)."""
    return circular_eval(dual_encoder_chooser(model, preprocess), items)


def vqa_candidates(questions: Sequence[VQAQuestion], n: int) -> list[str]:
    """The ``n`` most frequent ``multiple_choice_answer`` values (ties: first seen first)."""
    counts: dict[str, int] = {}
    for q in questions:
        if q.multiple_choice_answer:
            counts[q.multiple_choice_answer] = counts.get(q.multiple_choice_answer, 0) + 1
    return sorted(counts, key=lambda a: -counts[a])[:n]


def evaluate_vqav2_zero_shot(
    model: DualEncoder,
    preprocess: Preprocess,
    questions: Sequence[VQAQuestion],
    *,
    num_candidates: int = 100,
    text_batch_size: int = 256,
) -> dict[str, Any]:
    """VQA accuracy of a dual encoder choosing among the most frequent answers (see the module docstring).

    Args:
        questions: read with annotations and an image root (:func:`xmodal.benchmarks.read_vqav2`).
        num_candidates: answers to choose from.

    Returns:
        ``{"accuracy": the official dictionary (percentages), "candidates": [...], "results": [{"question_id",
        "answer"}]}`` (``results`` is the official results-file format).
    """
    if not questions:
        raise DataError("no VQAv2 questions to evaluate")
    if any(q.annotation is None or q.image_path is None for q in questions):
        raise DataError("zero-shot VQAv2 needs the annotations file and the image folder")
    candidates = vqa_candidates(questions, num_candidates)
    image_cache: dict[Path, torch.Tensor] = {}
    text_cache: dict[str, torch.Tensor] = {}
    results: list[dict[str, Any]] = []
    answers: dict[Hashable, str] = {}
    for q in questions:
        assert q.image_path is not None
        if q.image_path not in image_cache:
            image_cache[q.image_path] = embed_images(
                model, [load_image(q.image_path)], preprocess, progress=False
            )[0]
        texts = [f"{q.question} {a}" for a in candidates]
        new = [t for t in texts if t not in text_cache]
        for start in range(0, len(new), text_batch_size):
            chunk = new[start : start + text_batch_size]
            for t, e in zip(chunk, embed_texts(model, chunk, progress=False), strict=True):
                text_cache[t] = e
        scores = torch.stack([text_cache[t] for t in texts]) @ image_cache[q.image_path]  # (C,)
        answers[q.question_id] = candidates[int(scores.argmax())]
        results.append({"question_id": q.question_id, "answer": answers[q.question_id]})
    annotations = [q.annotation for q in questions if q.annotation is not None]
    return {"accuracy": vqa_accuracy(annotations, answers), "candidates": candidates, "results": results}
