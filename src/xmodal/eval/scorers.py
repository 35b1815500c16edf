"""Image–text scorers: one ``score(images, texts) -> (N,)`` interface for every kind of model.

Compositionality benchmarks (Winoground, Thrush et al. 2022, https://arxiv.org/abs/2204.03162; ARO,
Yuksekgonul et al. 2023, https://arxiv.org/abs/2210.01936) only need to know which of two captions a model
prefers for an image, so any model that gives an aligned pair a score fits:

* a dual encoder: the cosine of its image and text embeddings (:func:`dual_encoder_scorer`);
* an image–text matching head, e.g. BLIP's ITM logit (:func:`itm_scorer`);
* a generative model: the log-likelihood of the caption given the image, summed or per token
  (:func:`caption_likelihood_scorer`), as Winoground scores captioners.

A :data:`Scorer` takes N images and N texts, pair i being ``(images[i], texts[i])``, and returns an (N,)
float tensor, higher meaning a better match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from PIL import Image
from torch import Tensor

from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts

Scorer = Callable[[Sequence[Image.Image], Sequence[str]], Tensor]
"""Aligned pairs → scores: ``scorer(images (N PIL), texts (N str)) -> (N,)`` float tensor."""


def _check(scores: Tensor | Sequence[float], n: int, what: str) -> Tensor:
    out = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    if out.numel() != n:
        raise ValueError(f"{what} returned {out.numel()} scores for {n} image–text pairs")
    if not out.isfinite().all():
        raise ValueError(f"{what} returned NaN or infinite scores")
    return out


def dual_encoder_scorer(model: DualEncoder, preprocess: Preprocess, *, batch_size: int = 64) -> Scorer:
    """Cosine similarity of a dual encoder's L2-normalised embeddings (CLIP, Radford et al. 2021).

    Each distinct image object and each distinct text of a call is embedded once, so scoring one image
    against many captions costs one image forward pass.

    Args:
        model: ``encode_image`` (B, 3, H, W) → (B, E) and ``encode_text`` (B strings) → (B, E), unit vectors.
        preprocess: PIL image → (3, H, W) tensor.
        batch_size: images per forward pass.
    """

    def score(images: Sequence[Image.Image], texts: Sequence[str]) -> Tensor:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        if not images:
            return torch.zeros(0)
        image_slot: dict[int, int] = {}
        unique_images: list[Image.Image] = []
        for im in images:
            if id(im) not in image_slot:
                image_slot[id(im)] = len(unique_images)
                unique_images.append(im)
        text_slot = {t: i for i, t in enumerate(dict.fromkeys(texts))}
        img = embed_images(model, unique_images, preprocess, batch_size=batch_size, progress=False)  # (I, E)
        txt = embed_texts(model, list(text_slot), progress=False)  # (T, E)
        rows = torch.tensor([image_slot[id(im)] for im in images])  # (N,)
        cols = torch.tensor([text_slot[t] for t in texts])  # (N,)
        return (img[rows] * txt[cols]).sum(dim=-1)  # (N,)

    return score


def itm_scorer(head: Callable[[Sequence[Image.Image], Sequence[str]], Tensor | Sequence[float]]) -> Scorer:
    """An image–text matching head as a scorer: ``head(images, texts)`` gives (N,) match logits.

    The head sees the pairs as given (a cross-encoder such as BLIP's ITM, Li et al. 2022,
    https://arxiv.org/abs/2201.12086); its output is checked for length and finiteness.
    """

    def score(images: Sequence[Image.Image], texts: Sequence[str]) -> Tensor:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        return _check(head(images, texts), len(texts), "the matching head")

    return score


def caption_likelihood_scorer(
    log_likelihood: Callable[[Sequence[Image.Image], Sequence[str]], Tensor | Sequence[float]],
    *,
    reduction: Literal["sum", "mean"] = "sum",
    count_tokens: Callable[[str], int] | None = None,
) -> Scorer:
    """A generative model as a scorer: the log-likelihood log p(text | image) of each caption.

    Args:
        log_likelihood: ``(images, texts) -> (N,)`` summed log-probabilities of each text's tokens given
            its image (any captioner: teacher-forced cross-entropy, negated and summed).
        reduction: "sum" scores the whole caption (Winoground's protocol for generative models); "mean"
            divides by the caption's token count, which removes the bias toward short captions.
        count_tokens: text → number of tokens for "mean" (the model's tokenizer); default: word count.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    counter = count_tokens or (lambda t: len(t.split()))

    def score(images: Sequence[Image.Image], texts: Sequence[str]) -> Tensor:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        ll = _check(log_likelihood(images, texts), len(texts), "the caption likelihood")
        if reduction == "mean":
            ll = ll / torch.tensor([max(1, counter(t)) for t in texts], dtype=torch.float32)
        return ll

    return score


def pointwise_scorer(score_one: Callable[[Image.Image, str], float]) -> Scorer:
    """A scorer from a function of one pair, ``score_one(image, text) -> float`` (called pair by pair)."""

    def score(images: Sequence[Image.Image], texts: Sequence[str]) -> Tensor:
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        return _check(
            [float(score_one(im, t)) for im, t in zip(images, texts, strict=True)], len(texts), "score"
        )

    return score
