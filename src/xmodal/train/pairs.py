"""The training/evaluation view of an image–caption dataset: groups, pooled features, batches.

:class:`PairData` turns a dataset of items (``image_path``, ``caption``, ``emoji_id``) into groups
(one caption, one or more images) and produces the tower inputs of a batch — either cached pooled
features of a locked tower (several augmented views per image, computed once) or fresh tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from xmodal.models.clip import CLIP
from xmodal.train.batches import BatchEntry, _generator
from xmodal.train.features import FeatureCache, files_fingerprint, texts_fingerprint


def group_items(items: list[Any]) -> tuple[list[str], list[list[int]], list[int]]:
    """Group dataset items by pair id (``emoji_id``, else the caption).

    Returns:
        captions: one per group; members: dataset indices per group; item_group: group of each item.
    """
    index: dict[str, int] = {}
    captions: list[str] = []
    members: list[list[int]] = []
    item_group: list[int] = []
    for i, it in enumerate(items):
        gid = str(getattr(it, "emoji_id", None) or it.caption)
        if gid not in index:
            index[gid] = len(captions)
            captions.append(it.caption)
            members.append([])
        members[index[gid]].append(i)
        item_group.append(index[gid])
    return captions, members, item_group


@torch.inference_mode()
def embed_pooled_images(
    model: CLIP, images: Callable[[int], Tensor], n: int, *, batch_size: int = 64, progress: Any = None
) -> Tensor:
    """Image-tower pooled features of ``n`` inputs: ``images(i)`` → (3, S, S); returns (n, P)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, n, batch_size):
        x = torch.stack([images(i) for i in range(start, min(n, start + batch_size))])
        out.append(model.image_pooled(x))
        if progress is not None:
            progress.update(x.shape[0])
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


@torch.inference_mode()
def embed_pooled_texts(model: CLIP, texts: list[str], *, batch_size: int = 256) -> Tensor:
    """Text-tower pooled features of ``texts``: (n, P)."""
    was_training = model.training
    model.eval()
    out = [
        model.text_pooled(model.tokenize(texts[s : s + batch_size])) for s in range(0, len(texts), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out)


class PairData:
    """Image–caption pairs prepared for one model.

    Args:
        dataset: items with ``image_path``/``caption``/``emoji_id`` and ``load(i) -> (PIL, caption)``.
        model: the CLIP model (its towers decide what is cached).
        preprocess: eval preprocessing, PIL → (3, S, S).
        augment: training augmentation ``(PIL, generator) -> (3, S, S)`` or None.
        cache: a FeatureCache, or None to never cache.
        cache_image / cache_text: cache that tower's pooled outputs (only valid for a locked tower).
        views: augmented views per image to cache (view 0 is the clean image).
        key_parts: extra cache-key parts (encoder names/args, preprocessing description).
    """

    def __init__(
        self,
        dataset: Any,
        model: CLIP,
        *,
        preprocess: Callable[[Any], Tensor],
        augment: Callable[[Any, torch.Generator], Tensor] | None,
        cache: FeatureCache | None,
        cache_image: bool,
        cache_text: bool,
        views: int,
        key_parts: dict[str, Any],
        progress: Callable[[int, str], Any] | None = None,
    ) -> None:
        self.dataset = dataset
        self.model = model
        self.preprocess = preprocess
        self.augment = augment
        self.captions, self.groups, self.item_group = group_items(dataset.items)
        tok: Any = model.text_encoder.tokenizer
        before = int(getattr(tok, "num_truncated", 0))
        tok(self.captions)
        self.truncated = int(getattr(tok, "num_truncated", 0)) - before  # captions cut at the token limit
        self.views = views if (cache_image and augment is not None) else 1
        self.image_cache: Tensor | None = None  # (n_items, V, P)
        self.text_cache: Tensor | None = None  # (n_groups, P)
        if cache_image and cache is not None:
            paths = [it.image_path for it in dataset.items]
            parts = dict(key_parts["image"], data=files_fingerprint(paths), views=self.views, kind="image")
            n = len(paths)
            self.image_cache = cache.get_or_compute(parts, lambda: self._embed_views(n, progress))
        if cache_text and cache is not None:
            parts = dict(key_parts["text"], data=texts_fingerprint(self.captions), kind="text")
            self.text_cache = cache.get_or_compute(parts, lambda: embed_pooled_texts(model, self.captions))

    def _view(self, i: int, v: int) -> Tensor:
        img, _ = self.dataset.load(i)
        if v == 0 or self.augment is None:
            return self.preprocess(img)
        return self.augment(img, _generator(7, i, v))  # cache views do not depend on the run's seed

    def _embed_views(self, n: int, progress: Callable[[int, str], Any] | None) -> Tensor:
        bar = progress(n * self.views, "embedding images (locked tower, cached)") if progress else None
        per_view = [
            embed_pooled_images(self.model, functools.partial(self._view, v=v), n, progress=bar)
            for v in range(self.views)
        ]
        if bar is not None:
            bar.close()
        return torch.stack(per_view, dim=1)  # (n, V, P)

    def batch_inputs(self, batch: list[BatchEntry], *, train: bool) -> dict[str, Any]:
        """Model keyword inputs for a batch: ``image`` or ``image_pooled``, ``text`` or ``text_pooled``."""
        out: dict[str, Any] = {}
        if self.image_cache is not None:
            out["image_pooled"] = self.image_cache[[e.item for e in batch], [e.view for e in batch]]
        else:
            imgs = []
            for e in batch:
                img, _ = self.dataset.load(e.item)
                if train and self.augment is not None:
                    imgs.append(self.augment(img, torch.Generator().manual_seed(e.aug_seed)))
                else:
                    imgs.append(self.preprocess(img))
            out["image"] = torch.stack(imgs)
        if self.text_cache is not None:
            out["text_pooled"] = self.text_cache[[e.group for e in batch]]
        else:
            out["text"] = self.model.tokenize([self.captions[e.group] for e in batch])
        return out

    def image_embeddings(self, batch_size: int = 128) -> Tensor:
        """Eval embeddings (B, E) of every item's clean image (view 0)."""
        m = self.model
        if self.image_cache is not None:
            with torch.inference_mode():
                return m.encode_image(pooled=self.image_cache[:, 0])
        pooled = embed_pooled_images(
            m,
            lambda i: self.preprocess(self.dataset.load(i)[0]),
            len(self.dataset.items),
            batch_size=batch_size,
        )
        with torch.inference_mode():
            return m.encode_image(pooled=pooled)

    def text_embeddings(self) -> Tensor:
        """Eval embeddings (G, E) of every group's caption."""
        m = self.model
        pooled = self.text_cache if self.text_cache is not None else embed_pooled_texts(m, self.captions)
        with torch.inference_mode():
            return m.encode_text(pooled=pooled)
