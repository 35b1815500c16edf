"""Zero-shot image classification with a prompt-ensembled text classifier.

CLIP (Radford et al., 2021, https://arxiv.org/abs/2103.00020, §3.1.4): each class name is written into
several prompt templates ("a photo of a {}."), every prompt is embedded and L2-normalised, the embeddings
of one class are averaged and re-normalised. The resulting (C, E) matrix is a linear classifier on image
embeddings: ``logits = logit_scale · image_emb @ classifier.T``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts
from xmodal.metrics.classification import Labels, confusion_matrix, per_class_accuracy, topk_accuracy

Template = str | Callable[[str], str]
"""A prompt template: a format string with one ``{}`` for the class name, or a function of the name."""


def fill_template(template: Template, classname: str) -> str:
    """The prompt for ``classname``: ``template.format(classname)`` or ``template(classname)``."""
    if callable(template):
        return template(classname)
    if "{}" not in template and "{0}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{}}' for the class name")
    return template.format(classname)


def zero_shot_classifier(
    model: DualEncoder,
    classnames: Sequence[str],
    templates: Sequence[Template],
    *,
    batch_size: int = 256,
    progress: bool | None = False,
) -> Tensor:
    """Class embeddings from a prompt ensemble (CLIP §3.1.4).

    Args:
        model: a dual encoder; its ``encode_text`` embeds the prompts.
        classnames: C class names.
        templates: T prompt templates.
        batch_size: prompts per forward pass.
        progress: show a tqdm bar (None: only on a terminal).

    Returns:
        (C, E) unit vectors: per class, the mean of its T normalised prompt embeddings, re-normalised.
    """
    if not classnames or not templates:
        raise ValueError(f"need class names and templates, got {len(classnames)} and {len(templates)}")
    prompts = [fill_template(t, c) for c in classnames for t in templates]  # class-major: C * T
    emb = embed_texts(model, prompts, batch_size=batch_size, progress=progress)  # (C * T, E)
    emb = F.normalize(emb, dim=-1).view(len(classnames), len(templates), -1)  # (C, T, E)
    return F.normalize(emb.mean(dim=1), dim=-1)  # (C, E)


def evaluate_zero_shot(
    model: DualEncoder,
    preprocess: Preprocess,
    images: Iterable[Image.Image] | Any,
    labels: Labels,
    classnames: Sequence[str],
    templates: Sequence[Template],
    *,
    batch_size: int = 64,
    logit_scale: float = 100.0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Zero-shot classification accuracy of ``model`` on labelled images.

    Args:
        model: a dual encoder.
        preprocess: PIL image → (3, H, W) tensor.
        images: N PIL images (an iterable or a dataset ``embed_images`` accepts).
        labels: (N,) true class indices.
        classnames: C class names in index order; templates: the prompt ensemble.
        batch_size: images per forward pass.
        logit_scale: CLIP's temperature (100); it does not change accuracy.
        progress: show tqdm bars (None: only on a terminal).

    Returns:
        ``{"n": N, "top1": float, "top5": float, "per_class": {name: acc}, "confusion": C×C nested list
        (rows true, columns predicted)}``.
    """
    classifier = zero_shot_classifier(model, classnames, templates, progress=progress)  # (C, E)
    image_emb = embed_images(model, images, preprocess, batch_size=batch_size, progress=progress)  # (N, E)
    return classify_embeddings(image_emb, classifier, labels, classnames, logit_scale=logit_scale)


def classify_embeddings(
    image_emb: Tensor,
    classifier: Tensor,
    labels: Labels,
    classnames: Sequence[str],
    *,
    logit_scale: float = 100.0,
) -> dict[str, Any]:
    """Zero-shot metrics from image embeddings (N, E) and class embeddings (C, E); see evaluate_zero_shot."""
    y = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))  # (N,)
    if len(y) != image_emb.shape[0]:
        raise ValueError(f"{image_emb.shape[0]} images but {len(y)} labels")
    logits = logit_scale * image_emb @ classifier.T  # (N, C)
    preds = logits.argmax(dim=1)  # (N,)
    return {
        "n": image_emb.shape[0],
        **topk_accuracy(logits, y, ks=(1, 5)),
        "per_class": per_class_accuracy(preds, y, classnames),
        "confusion": confusion_matrix(preds, y, len(classnames)).tolist(),
    }
