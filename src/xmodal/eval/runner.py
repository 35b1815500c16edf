"""Evaluate a trained dual encoder on the targets of a config: retrieval and zero-shot.

Targets are ``"dataset:split"`` strings (``emoji:test``, ``fashion-mnist:test``) naming registered
datasets. A locked image tower's pooled features come from the feature cache, so evaluating many
heads (seeds, ablations) embeds each image once.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmodal.config import ExperimentConfig
from xmodal.errors import ConfigError
from xmodal.eval.zero_shot import classify_embeddings, zero_shot_classifier
from xmodal.models.clip import CLIP
from xmodal.models.factory import image_preprocess
from xmodal.registry import DATASETS
from xmodal.train.features import FeatureCache
from xmodal.train.logging import progress_bar
from xmodal.train.loop import evaluate_pairs, frozen, image_tower_key, pair_data
from xmodal.train.pairs import embed_pooled_images


def parse_target(target: str) -> tuple[str, str]:
    """``"name:split"`` → (name, split), checking the name is a registered dataset."""
    name, _, split = target.partition(":")
    if name not in DATASETS:
        raise ConfigError(
            f"eval target {target!r}: unknown dataset {name!r} (registered: {', '.join(DATASETS.names())})"
        )
    return name, split or "test"


def metrics_key(name: str, split: str, kind: str) -> str:
    """The key of a target in metrics.json: ``emoji_test``, ``fashion_mnist_zero_shot``."""
    base = name.replace("-", "_")
    return (
        f"{base}_zero_shot"
        if kind == "zero_shot" and split == "test"
        else f"{base}_{split}" + ("_zero_shot" if kind == "zero_shot" else "")
    )


def zero_shot_image_embeddings(model: CLIP, cfg: ExperimentConfig, dataset: Any, *, progress: bool) -> Tensor:
    """(N, E) image embeddings of a labelled dataset, through the feature cache when the tower is locked."""
    preprocess = image_preprocess(model, cfg.model.image_size)
    n = len(dataset)
    if cfg.eval.max_images is not None:
        n = min(n, cfg.eval.max_images)

    def compute() -> Tensor:
        bar = progress_bar(n, "embedding zero-shot images") if progress else None
        out = embed_pooled_images(
            model, lambda i: preprocess(dataset.load(i)[0]), n, batch_size=cfg.eval.batch_size, progress=bar
        )
        if bar is not None:
            bar.close()
        return out

    if cfg.train.cache_features and frozen(model.image_encoder) and hasattr(dataset, "images"):
        data_hash = hashlib.sha256(np.ascontiguousarray(dataset.images[:n]).tobytes()).hexdigest()[:16]
        parts = {
            "kind": "zero-shot",
            "dataset": type(dataset).__name__,
            "data": data_hash,
            "n": n,
            **image_tower_key(cfg, model),
        }
        pooled = FeatureCache().get_or_compute(parts, compute)
    else:
        pooled = compute()
    with torch.inference_mode():
        return model.encode_image(pooled=pooled)


def evaluate_model(model: CLIP, cfg: ExperimentConfig, *, progress: bool = False) -> dict[str, Any]:
    """All of ``cfg.eval``'s targets → ``{"emoji_test": {...}, "fashion_mnist_zero_shot": {...}}``.

    Retrieval entries hold ``n`` and R@1/5/10 (+ median/mean rank) per direction; zero-shot entries
    hold ``n``, ``top1``, ``top5``, ``per_class`` and ``confusion`` (rows: true class).
    """
    model.eval()
    results: dict[str, Any] = {}
    for target in cfg.eval.retrieval:
        name, split = parse_target(target)
        ds = DATASETS.get(name)(split=split, variants=False, max_skip_fraction=cfg.data.max_skip_fraction)
        data = pair_data(cfg, model, ds, train=False, progress=progress)
        out = evaluate_pairs(model, data)
        out["n_texts"] = len(data.captions)
        out["skipped"] = ds.skips.summary()
        results[metrics_key(name, split, "retrieval")] = out
    for target in cfg.eval.zero_shot:
        name, split = parse_target(target)
        ds = DATASETS.get(name)(split=split)
        img = zero_shot_image_embeddings(model, cfg, ds, progress=progress)
        with torch.inference_mode():
            classifier = zero_shot_classifier(model, ds.classnames, ds.templates)
        labels = torch.as_tensor(np.asarray(ds.labels[: img.shape[0]]))
        out = classify_embeddings(img, classifier, labels, ds.classnames)
        out["templates"] = list(ds.templates)
        results[metrics_key(name, split, "zero_shot")] = out
    return results
