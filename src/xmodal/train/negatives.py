"""Hard negatives in training: per-caption negative texts, their tower inputs, their embeddings, the loss.

The negatives of every caption are fixed once (:func:`xmodal.data.negatives.build_negatives`, seeded
per caption), so a locked text tower embeds them once and caches them like the captions. A batch of
B samples carries B·K negative *slots* (``negative_mask`` (B, K) marks the real ones): the same shape
on every rank, so the features can be all-gathered for the global NegCLIP loss
(:func:`xmodal.losses.distributed.gathered_negatives_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.config import HardNegativesConfig
from xmodal.data.negatives import NegativeSet, build_negatives, load_negatives_file
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.distributed import gathered_loss, gathered_negatives_loss
from xmodal.models.clip import CLIP
from xmodal.train.batches import BatchEntry
from xmodal.train.features import FeatureCache, texts_fingerprint
from xmodal.train.pairs import PairData, embed_pooled_texts


def enabled(cfg: HardNegativesConfig) -> bool:
    """Whether the config asks for hard negatives (generators or a file)."""
    return bool(cfg.generators) or cfg.file is not None


class NegativeTexts:
    """The hard negatives of every group of a :class:`PairData`, as tower inputs per batch.

    Args:
        negatives: K negatives (or fewer) per group, in group order.
        model: the CLIP model (tokeniser; text tower for the cache).
        cache: a FeatureCache to store the negatives' pooled text features in, or None.
        cache_text: whether the text tower is locked (only then are pooled features cached).
        text_key: the text tower's cache-key parts (encoder, arguments, weights hash).
    """

    def __init__(
        self,
        negatives: NegativeSet,
        model: CLIP,
        *,
        cache: FeatureCache | None,
        cache_text: bool,
        text_key: dict[str, Any],
    ) -> None:
        self.set = negatives
        self.k = negatives.k
        self.model = model
        self.texts = [t for negs in negatives.per_caption for t in negs]
        self.spans: list[tuple[int, int]] = []  # per group: (first index into texts, count)
        start = 0
        for negs in negatives.per_caption:
            self.spans.append((start, len(negs)))
            start += len(negs)
        self.pooled: Tensor | None = None  # (n_texts, P) when the text tower is locked and cached
        if cache_text and cache is not None and self.texts:
            parts = dict(text_key, data=texts_fingerprint(self.texts), kind="text")
            self.pooled = cache.get_or_compute(parts, lambda: embed_pooled_texts(model, self.texts))

    def batch_inputs(self, batch: list[BatchEntry]) -> dict[str, Any]:
        """``negative_mask`` (B, K) bool, and ``negative_text`` tokens of B·K texts or
        ``negative_pooled`` (B·K, P) features in slot order.

        Padding slots hold an empty caption (zeros when cached): every batch embeds exactly B·K
        negatives, so every rank runs the same collectives (FSDP) and the same work.
        """
        mask = torch.zeros(len(batch), self.k, dtype=torch.bool)
        index = torch.full((len(batch), self.k), -1, dtype=torch.long)  # into self.texts; -1: padding
        for row, entry in enumerate(batch):
            first, count = self.spans[entry.group]
            mask[row, :count] = True
            index[row, :count] = torch.arange(first, first + count)
        flat = index.reshape(-1).tolist()
        if self.pooled is not None:
            pooled = torch.zeros(len(flat), self.pooled.shape[1], dtype=self.pooled.dtype)
            pooled[mask.reshape(-1)] = self.pooled[[i for i in flat if i >= 0]]
            return {"negative_mask": mask, "negative_pooled": pooled}
        texts = [self.texts[i] if i >= 0 else "" for i in flat]
        return {"negative_mask": mask, "negative_text": self.model.tokenize(texts)}


def hard_negatives(
    cfg: HardNegativesConfig,
    model: CLIP,
    data: PairData,
    *,
    seed: int,
    cache: FeatureCache | None,
    text_key: dict[str, Any],
) -> NegativeTexts | None:
    """The hard negatives of ``data``'s groups for this config, or None when they are off."""
    if not enabled(cfg):
        return None
    user = load_negatives_file(cfg.file) if cfg.file is not None else None
    items = data.dataset.items
    keys = [str(getattr(items[m[0]], "emoji_id", None) or items[m[0]].caption) for m in data.groups]
    negatives = build_negatives(
        data.captions, k=cfg.per_image, generators=cfg.generators, user=user, keys=keys, seed=seed
    )
    locked = not any(p.requires_grad for p in model.text_encoder.parameters())
    return NegativeTexts(negatives, model, cache=cache, cache_text=locked, text_key=text_key)


class WithNegatives(nn.Module):
    """``model``'s forward plus the negatives' embeddings, so DDP and GradCache see one module.

    ``forward(negative_mask, negative_text=None, negative_pooled=None, **pair_inputs)`` (B·K negative
    tokens or pooled features, as :meth:`NegativeTexts.batch_inputs` gives) returns the model's dict
    plus ``negative_features`` (B, K, E) (zeros in padding slots) and ``negative_mask``.
    """

    def __init__(self, model: CLIP) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        negative_mask: Tensor,
        negative_text: dict[str, Tensor] | None = None,
        negative_pooled: Tensor | None = None,
        **inputs: Any,
    ) -> dict[str, Tensor]:
        """See the class docstring; ``inputs`` are the model's (``image``/``image_pooled``, ``text``/…)."""
        out = dict(self.model(**inputs))
        b, k = negative_mask.shape
        z = self.model.encode_text(negative_text, pooled=negative_pooled)  # (B·K, E)
        mask = negative_mask.to(z.device)
        out["negative_features"] = z.reshape(b, k, -1).masked_fill(~mask[..., None], 0.0)
        out["negative_mask"] = mask
        return out


def contrastive_loss(
    image_features: Tensor,
    text_features: Tensor,
    logit_scale: Tensor,
    negative_features: Tensor | None = None,
    negative_mask: Tensor | None = None,
    *,
    negative_weight: float = 1.0,
    plain_loss: Callable[..., Tensor] = clip_loss,
) -> Tensor:
    """The trainer's loss over the global batch: CLIP, or NegCLIP when negatives are given.

    Features are this rank's; they are all-gathered with gradients (identity on one rank).
    ``plain_loss`` is the loss without negatives (``clip_loss``; the trainer passes its own name so
    that it can be swapped).
    """
    if negative_features is None:
        return gathered_loss(plain_loss, image_features, text_features, logit_scale)
    return gathered_negatives_loss(
        image_features,
        text_features,
        negative_features,
        logit_scale,
        negative_mask=negative_mask,
        negative_weight=negative_weight,
    )
