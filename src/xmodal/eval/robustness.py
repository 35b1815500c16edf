"""Robustness of a dual encoder to corrupted and missing modalities, beside unimodal baselines.

Two tasks, each scored clean and then per condition × severity (0 = clean, 1-5 graded):

* retrieval on an image–caption split (emoji test): R@1, the mean of image→text and text→image;
* zero-shot classification (Fashion-MNIST test subset): top-1 accuracy.

Conditions: image corruptions and text corruptions (:mod:`xmodal.eval.corruptions`, ImageNet-C style),
and a missing modality, where severity s removes a seeded s/5 share of that side's inputs (images; captions
or class prompts) and fills their embeddings with zeros, the mean embedding over the evaluation set, or the
model's learned null embedding (``model.null_image_embedding`` / ``null_text_embedding``, an (E,) tensor,
as in models trained with modality dropout, Ma et al. 2022, https://arxiv.org/abs/2204.05454). A model
without a null embedding gets "n/a". Ties count against the query (``retrieval_ranks``), so a zero-filled
query scores 0, never a lucky tie.

Baselines beside the curves: chance; a text-only prior (every image replaced by the mean image embedding:
what the text side alone ranks first); and for zero-shot an image-only 1-nearest-neighbour classifier on
the image tower's features with ``k`` labelled support images per class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from xmodal.eval.corruptions import (
    IMAGE_CORRUPTIONS,
    SEVERITIES,
    TEXT_CORRUPTIONS,
    corrupt_image,
    corrupt_text,
)
from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts, evaluating, model_device
from xmodal.eval.zero_shot import Template, fill_template
from xmodal.metrics.retrieval import encode_ids, retrieval_metrics

MISSING_FILLS = ("zeros", "mean", "null")


@dataclass
class RetrievalData:
    """An image–caption split in memory: N_i images with ids, N_t distinct captions with ids."""

    images: list[Image.Image]
    image_ids: list[Any]
    texts: list[str]
    text_ids: list[Any]

    @classmethod
    def from_dataset(cls, dataset: Any, max_images: int | None = None) -> RetrievalData:
        """From a dataset (``items``, ``load(i)``): its first ``max_images`` images and their texts."""
        n = len(dataset.items) if max_images is None else min(max_images, len(dataset.items))
        images = [dataset.load(i)[0] for i in range(n)]
        ids = [dataset.items[i].emoji_id for i in range(n)]
        # the distinct (id, caption) pairs in first-seen order, as retrieval evaluation counts texts
        pairs = dict.fromkeys((item.emoji_id, item.caption) for item in dataset.items[:n])
        texts, text_ids = [c for _, c in pairs], [i for i, _ in pairs]
        return cls(images=images, image_ids=ids, texts=texts, text_ids=text_ids)


@dataclass
class ZeroShotData:
    """Labelled images, class names and prompt templates; optional labelled support images (k-NN)."""

    images: list[Image.Image]
    labels: Tensor  # (N,) int64
    classnames: Sequence[str]
    templates: Sequence[Template]
    support_images: list[Image.Image] = field(default_factory=list)
    support_labels: Tensor | None = None  # (S,) int64


def null_embedding(model: Any, modality: str) -> Tensor | None:
    """The model's learned null embedding for a missing ``modality`` ("image" or "text"), (E,), or None."""
    null = getattr(model, f"null_{modality}_embedding", None)
    if callable(null) and not isinstance(null, Tensor):
        null = null()
    return None if null is None else torch.as_tensor(null).detach().float().cpu().reshape(-1)


def missing_fraction(severity: int) -> float:
    """The share of inputs removed at a missing-modality severity: severity / 5."""
    return severity / len(SEVERITIES)


def drop_rows(emb: Tensor, fraction: float, fill: Tensor, *, seed: int) -> Tensor:
    """A copy of ``emb`` (N, E) with a seeded ``round(fraction · N)`` rows replaced by ``fill`` (E,).

    The rows are the first ones of one seeded permutation, so a larger fraction removes a superset.
    """
    n = emb.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = emb.clone()
    out[order[: round(fraction * n)]] = fill.to(emb.dtype)
    return out


def _fill(kind: str, model: Any, modality: str, emb: Tensor) -> Tensor | None:
    if kind == "zeros":
        return torch.zeros(emb.shape[1])
    if kind == "mean":
        return F.normalize(emb.mean(dim=0), dim=0)
    if kind == "null":
        return null_embedding(model, modality)
    raise ValueError(f"unknown missing-modality fill {kind!r}; known: {', '.join(MISSING_FILLS)}")


def retrieval_r1(image_emb: Tensor, text_emb: Tensor, data: RetrievalData) -> dict[str, float]:
    """``{"R@1": mean of both directions, "image_to_text": R@1, "text_to_image": R@1}``."""
    m = retrieval_metrics(image_emb, text_emb, data.image_ids, data.text_ids, ks=(1,))
    i2t, t2i = m["image_to_text"]["R@1"], m["text_to_image"]["R@1"]
    return {"R@1": (i2t + t2i) / 2, "image_to_text": i2t, "text_to_image": t2i}


def retrieval_chance(data: RetrievalData) -> float:
    """Expected R@1 of a random ranking (mean of both directions): avg of #correct / gallery."""
    img, txt = encode_ids(data.image_ids, data.text_ids)
    per_image = (img[:, None] == txt[None, :]).double()  # (N_i, N_t)
    i2t = per_image.sum(1).div(len(data.texts)).mean().item()
    t2i = per_image.sum(0).div(len(data.images)).mean().item()
    return (i2t + t2i) / 2


def class_embeddings(prompt_emb: Tensor, n_classes: int) -> Tensor:
    """(C·T, E) class-major prompt embeddings → (C, E) prompt-ensembled classifier (CLIP §3.1.4)."""
    e = F.normalize(prompt_emb, dim=-1).view(n_classes, -1, prompt_emb.shape[-1])  # (C, T, E)
    return F.normalize(e.mean(dim=1), dim=-1)


def top1(image_emb: Tensor, classifier: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of ``image_emb`` (N, E) against a (C, E) classifier; ties go to the lowest class."""
    return (image_emb @ classifier.T).argmax(dim=1).eq(labels).double().mean().item()


def tower_features(
    model: Any, preprocess: Preprocess, images: Sequence[Image.Image], batch_size: int
) -> Tensor:
    """(N, P) image-tower features before the projection head (``model.image_pooled``), L2-normalised."""
    pooled = getattr(model, "image_pooled", None)
    if pooled is None:
        return embed_images(model, images, preprocess, batch_size=batch_size, progress=False)
    device, chunks = model_device(model), []
    with evaluating(model), torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = torch.stack([preprocess(im) for im in images[s : s + batch_size]]).to(device)  # (B, 3, H, W)
            chunks.append(F.normalize(pooled(x).float().cpu(), dim=-1))  # (B, P)
    return torch.cat(chunks)


def nearest_neighbour_top1(query: Tensor, support: Tensor, support_labels: Tensor, labels: Tensor) -> float:
    """1-NN top-1 (cosine) of query features (N, P) against labelled support features (S, P)."""
    return support_labels[(query @ support.T).argmax(dim=1)].eq(labels).double().mean().item()


def condition_curves(
    metric: Callable[[Tensor, Tensor], dict[str, float]],
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    corrupted_images: Callable[[str, int], Tensor],
    corrupted_texts: Callable[[str, int], Tensor],
    model: Any,
    image_corruptions: Sequence[str],
    text_corruptions: Sequence[str],
    missing: Sequence[str],
    severities: Sequence[int],
    seed: int,
) -> tuple[dict[str, float], dict[str, dict[str, list[float]] | None]]:
    """The clean metric and one curve per condition, ``[clean, severity 1, ...]`` per metric key.

    Args:
        metric: (image side (N, E), text side (M, E)) → ``{name: value}``.
        image_emb, text_emb: the clean embeddings of both sides.
        corrupted_images: (corruption, severity) → the image side re-embedded from corrupted images.
        corrupted_texts: (corruption, severity) → the text side re-embedded from corrupted texts.
        model: looked up for a learned null embedding.
        missing: fills from :data:`MISSING_FILLS`; a fill the model lacks gives a None curve ("n/a").
    """
    clean = metric(image_emb, text_emb)

    def curve(score: Callable[[int], dict[str, float]]) -> dict[str, list[float]]:
        points = [clean, *(score(s) for s in severities)]
        return {k: [p[k] for p in points] for k in clean}

    curves: dict[str, dict[str, list[float]] | None] = {}
    for c in image_corruptions:
        curves[f"image {c}"] = curve(lambda s, c=c: metric(corrupted_images(c, s), text_emb))  # type: ignore[misc]
    for c in text_corruptions:
        curves[f"text {c}"] = curve(lambda s, c=c: metric(image_emb, corrupted_texts(c, s)))  # type: ignore[misc]
    for kind in missing:
        for modality, emb in (("image", image_emb), ("text", text_emb)):
            fill = _fill(kind, model, modality, emb)
            name = f"missing {modality} ({kind})"
            if fill is None:
                curves[name] = None
                continue

            def score(s: int, m: str = modality, e: Tensor = emb, f: Tensor = fill) -> dict[str, float]:
                dropped = drop_rows(e, missing_fraction(s), f, seed=seed)
                return metric(dropped, text_emb) if m == "image" else metric(image_emb, dropped)

            curves[name] = curve(score)
    return clean, curves


def robustness_retrieval(
    model: DualEncoder,
    preprocess: Preprocess,
    data: RetrievalData,
    *,
    image_corruptions: Sequence[str] = IMAGE_CORRUPTIONS,
    text_corruptions: Sequence[str] = TEXT_CORRUPTIONS,
    missing: Sequence[str] = MISSING_FILLS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Retrieval R@1 (image→text, text→image and their mean) per condition and severity.

    Returns:
        ``{"metric": "R@1", "n_images", "n_texts", "severities": [0, 1, ...], "clean": {...},
        "curves": {condition: {"R@1": [...], "image_to_text": [...], "text_to_image": [...]} or None},
        "baselines": {"chance", "text-only prior", "image-only": None}}``.
    """

    def emb_images(images: Sequence[Image.Image]) -> Tensor:
        return embed_images(model, images, preprocess, batch_size=batch_size, progress=False)

    def corrupted_images(c: str, s: int) -> Tensor:
        return emb_images([corrupt_image(im, c, s, seed=seed, index=i) for i, im in enumerate(data.images)])

    def corrupted_texts(c: str, s: int) -> Tensor:
        texts = [corrupt_text(t, c, s, seed=seed, index=i) for i, t in enumerate(data.texts)]
        return embed_texts(model, texts, progress=False)

    img, txt = emb_images(data.images), embed_texts(model, data.texts, progress=False)
    clean, curves = condition_curves(
        lambda i, t: retrieval_r1(i, t, data),
        img,
        txt,
        corrupted_images=corrupted_images,
        corrupted_texts=corrupted_texts,
        model=model,
        image_corruptions=image_corruptions,
        text_corruptions=text_corruptions,
        missing=missing,
        severities=severities,
        seed=seed,
    )
    prior = retrieval_r1(F.normalize(img.mean(0), dim=0).expand_as(img), txt, data)
    return {
        "metric": "R@1",
        "n_images": len(data.images),
        "n_texts": len(data.texts),
        "severities": [0, *severities],
        "clean": clean,
        "curves": curves,
        "baselines": {"chance": retrieval_chance(data), "text-only prior": prior["R@1"], "image-only": None},
    }


def robustness_zero_shot(
    model: DualEncoder,
    preprocess: Preprocess,
    data: ZeroShotData,
    *,
    image_corruptions: Sequence[str] = IMAGE_CORRUPTIONS,
    text_corruptions: Sequence[str] = TEXT_CORRUPTIONS,
    missing: Sequence[str] = MISSING_FILLS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Zero-shot top-1 per condition and severity; text corruptions edit the class prompts.

    Missing text removes whole classes' prompt ensembles (a share of the C class embeddings).

    Returns:
        ``{"metric": "top1", "n_images", "n_support", "severities", "clean": {"top1"}, "curves": {condition:
        {"top1": [...]} or None}, "baselines": {"chance", "text-only prior", "image-only" (1-NN on the
        image tower's features with the support set; None without one)}}``.
    """
    n_classes = len(data.classnames)
    prompts = [fill_template(t, c) for c in data.classnames for t in data.templates]  # class-major (C·T,)
    labels = data.labels

    def emb_images(images: Sequence[Image.Image]) -> Tensor:
        return embed_images(model, images, preprocess, batch_size=batch_size, progress=False)

    def corrupted_images(c: str, s: int) -> Tensor:
        return emb_images([corrupt_image(im, c, s, seed=seed, index=i) for i, im in enumerate(data.images)])

    def corrupted_classifier(c: str, s: int) -> Tensor:
        bad = [corrupt_text(p, c, s, seed=seed, index=i) for i, p in enumerate(prompts)]
        return class_embeddings(embed_texts(model, bad, progress=False), n_classes)

    img = emb_images(data.images)  # (N, E)
    classifier = class_embeddings(embed_texts(model, prompts, progress=False), n_classes)  # (C, E)
    clean, curves = condition_curves(
        lambda i, c: {"top1": top1(i, c, labels)},
        img,
        classifier,
        corrupted_images=corrupted_images,
        corrupted_texts=corrupted_classifier,
        model=model,
        image_corruptions=image_corruptions,
        text_corruptions=text_corruptions,
        missing=missing,
        severities=severities,
        seed=seed,
    )
    baselines: dict[str, float | None] = {
        "chance": 1.0 / n_classes,
        "text-only prior": top1(F.normalize(img.mean(0), dim=0).expand_as(img), classifier, labels),
        "image-only": None,
    }
    if data.support_images and data.support_labels is not None:
        query = tower_features(model, preprocess, data.images, batch_size)
        support = tower_features(model, preprocess, data.support_images, batch_size)
        baselines["image-only"] = nearest_neighbour_top1(query, support, data.support_labels, labels)
    return {
        "metric": "top1",
        "n_images": len(data.images),
        "n_support": len(data.support_images),
        "severities": [0, *severities],
        "clean": clean,
        "curves": curves,
        "baselines": baselines,
    }


def load_zero_shot_data(
    dataset: Any, *, max_images: int | None = 500, support: Any = None, shots: int = 10
) -> ZeroShotData:
    """A labelled dataset (``to_pil(i)``, ``labels``, ``classnames``, ``templates``) as :class:`ZeroShotData`.

    Args:
        dataset: e.g. :class:`~xmodal.data.fashion_mnist.FashionMNIST` (test split).
        max_images: its first ``max_images`` images (Fashion-MNIST's test order is class-mixed).
        support: a labelled dataset of the same classes (the train split) for the image-only baseline.
        shots: support images per class (the first ones of each class).
    """
    n = len(dataset.labels) if max_images is None else min(max_images, len(dataset.labels))
    data = ZeroShotData(
        images=[dataset.to_pil(i) for i in range(n)],
        labels=torch.as_tensor(dataset.labels[:n], dtype=torch.long),
        classnames=list(dataset.classnames),
        templates=list(dataset.templates),
    )
    if support is not None and shots > 0:
        labels = torch.as_tensor(support.labels, dtype=torch.long)
        picks = [int(j) for c in range(len(data.classnames)) for j in (labels == c).nonzero()[:shots, 0]]
        data.support_images = [support.to_pil(j) for j in picks]
        data.support_labels = labels[picks]
    return data


def evaluate_robustness(
    model: DualEncoder,
    preprocess: Preprocess,
    *,
    retrieval: RetrievalData | None = None,
    zero_shot: ZeroShotData | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Both tasks (whichever are given): ``{"retrieval": ..., "zero_shot": ..., "settings": {...}}``.

    ``options`` go to :func:`robustness_retrieval` and :func:`robustness_zero_shot` (corruptions, missing
    fills, severities, seed, batch size).
    """
    if retrieval is None and zero_shot is None:
        raise ValueError("nothing to evaluate: give retrieval and/or zero_shot data")
    out: dict[str, Any] = {
        "settings": {
            "seed": options.get("seed", 0),
            "severities": [0, *options.get("severities", SEVERITIES)],
            "missing_fraction": [missing_fraction(s) for s in (0, *options.get("severities", SEVERITIES))],
        }
    }
    if retrieval is not None:
        out["retrieval"] = robustness_retrieval(model, preprocess, retrieval, **options)
    if zero_shot is not None:
        out["zero_shot"] = robustness_zero_shot(model, preprocess, zero_shot, **options)
    return out
