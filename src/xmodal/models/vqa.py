"""VQA as classification over an answer vocabulary, with soft targets and binary cross-entropy.

The question's tokens and the frozen image tokens (projected by
:class:`~xmodal.models.captioner.ImageMemory`) are joined behind a learned ``[CLS]`` token and read by a
small transformer encoder (early fusion, as in VisualBERT, Li et al. 2019, https://arxiv.org/abs/1908.03557);
the ``[CLS]`` output scores every answer. Training uses the soft VQA targets ``min(#humans / 3, 1)`` with
a sigmoid per answer (Teney et al. 2018, https://arxiv.org/abs/1708.02711). With ``use_image=False`` the
same model sees the question only: the language-prior baseline every VQA model must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.layers.transformer import Transformer
from xmodal.models.captioner import ImageMemory
from xmodal.registry import VL_MODELS


class VQAClassifier(nn.Module):
    """Question tokens + image tokens → answer logits (B, A).

    Args:
        vocab_size: question token vocabulary.
        num_answers: A.
        image_dim: C of the image tokens; num_image_tokens: T.
        dim, depth, num_heads, dropout: the fusion transformer.
        max_question_len: the longest question (learned positions).
        use_image: False gives the question-only model (image tokens are ignored).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_answers: int,
        image_dim: int = 1280,
        num_image_tokens: int = 16,
        dim: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        max_question_len: int = 40,
        use_image: bool = True,
    ) -> None:
        super().__init__()
        self.use_image = use_image
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(max_question_len, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.type_embed = nn.Parameter(torch.zeros(2, dim))  # 0: text, 1: image
        for p in (self.pos, self.cls, self.type_embed):
            nn.init.normal_(p, std=0.02)
        self.image = (
            ImageMemory(in_dim=image_dim, dim=dim, num_tokens=num_image_tokens) if use_image else None
        )
        self.encoder = Transformer(dim=dim, depth=depth, num_heads=num_heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, num_answers)
        )

    def forward(
        self,
        question_ids: Tensor,
        question_mask: Tensor,
        image_tokens: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> VQAOutput:
        """question_ids (B, L) int64, question_mask (B, L) bool True=real, image_tokens (B, T, C), targets
        (B, A) soft scores → logits (B, A) and, with targets, the soft-target BCE (summed over answers,
        averaged over questions, as in BUTD)."""
        B, L = question_ids.shape
        text = self.embed(question_ids) + self.pos[:L] + self.type_embed[0]  # (B, L, D)
        parts, masks = [self.cls.expand(B, -1, -1), text], [torch.ones(B, 1, dtype=torch.bool), question_mask]
        if self.image is not None:
            if image_tokens is None:
                raise ValueError("this VQA classifier needs image tokens")
            img = self.image(image_tokens) + self.type_embed[1]  # (B, T, D)
            parts.append(img)
            masks.append(torch.ones(B, img.shape[1], dtype=torch.bool))
        x = self.encoder(torch.cat(parts, 1), torch.cat(masks, 1).to(question_ids.device))
        logits = self.head(self.norm(x[:, 0]))
        loss = None
        if targets is not None:
            loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(targets)
        return VQAOutput(logits=logits, loss=loss)


@dataclass
class VQAOutput:
    """logits (B, A); loss: the soft-target BCE when targets were given."""

    logits: Tensor
    loss: Tensor | None = None


def _tiny_case(use_image: bool) -> Any:
    from xmodal.models.cases import TinyCase

    def build() -> VQAClassifier:
        torch.manual_seed(0)
        return VQAClassifier(
            vocab_size=30, num_answers=7, image_dim=24, num_image_tokens=4, dim=32, depth=1, num_heads=4,
            use_image=use_image,
        )  # fmt: skip

    g = torch.Generator().manual_seed(0)
    inputs: dict[str, Any] = {
        "question_ids": torch.randint(0, 30, (3, 5), generator=g),
        "question_mask": torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]]),
        "targets": torch.rand(3, 7, generator=g),
    }
    if use_image:
        inputs["image_tokens"] = torch.randn(3, 4, 24, generator=g)
    return TinyCase(model=build(), inputs=inputs, rebuild=build)


@VL_MODELS.register("vqa-classifier-tiny")
def vqa_classifier_tiny(workdir: Path) -> Any:
    """A tiny VQA classifier (image + question)."""
    return _tiny_case(True)


@VL_MODELS.register("vqa-question-only-tiny")
def vqa_question_only_tiny(workdir: Path) -> Any:
    """The tiny question-only classifier (the language-prior baseline)."""
    return _tiny_case(False)
