"""CLIP-style dual encoder (Radford et al. 2021, https://arxiv.org/abs/2103.00020) with LiT locking
(Zhai et al. 2022, https://arxiv.org/abs/2111.07991).

Two towers (any registered image and text encoder) feed projection heads into a joint space;
embeddings are L2-normalised and compared with a learned temperature, initialised to 1/0.07 and
clamped at 100 as in CLIP. ``forward`` returns a dict that goes straight into the loss
(``loss(**model(image=..., text=...))``, as in open_clip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.encoders.base import Encoder
from xmodal.models.locking import keep_frozen_in_eval


class CLIP(nn.Module):
    """A dual encoder.

    Args:
        image_encoder: built image tower; ``image_encoder(images).pooled`` is (B, P_img).
        text_encoder: built text tower with a ``tokenizer``; ``text_encoder(**tokens).pooled`` is (B, P_txt).
        image_head: (B, P_img) → (B, E).
        text_head: (B, P_txt) → (B, E).
        init_temperature: τ₀; the logit scale starts at 1/τ₀.
        max_logit_scale: the clamp on exp(log_scale) (CLIP: 100).
        learn_temperature: whether the scale is a trainable parameter.
    """

    def __init__(
        self,
        *,
        image_encoder: Encoder,
        text_encoder: Encoder,
        image_head: nn.Module,
        text_head: nn.Module,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        learn_temperature: bool = True,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_head = image_head
        self.text_head = text_head
        self.log_logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature
        )
        self.max_logit_scale = max_logit_scale

    # -- towers -------------------------------------------------------------------------------
    def image_pooled(self, images: Tensor) -> Tensor:
        """Tower features before the head: images (B, 3, H, W) → (B, P_img)."""
        return self.image_encoder(images).pooled

    def text_pooled(self, tokens: dict[str, Tensor]) -> Tensor:
        """Tower features before the head: tokens {input_ids, attention_mask} (B, L) → (B, P_txt)."""
        return self.text_encoder(tokens["input_ids"], tokens["attention_mask"]).pooled

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenise with the text tower's tokenizer (truncation is counted there)."""
        return self.text_encoder.tokenizer(list(texts))  # type: ignore[no-any-return, operator]

    # -- embeddings ---------------------------------------------------------------------------
    def encode_image(
        self, images: Tensor | None = None, *, pooled: Tensor | None = None, normalize: bool = True
    ) -> Tensor:
        """Images (B, 3, H, W) — or precomputed tower features (B, P_img) — → embeddings (B, E)."""
        if pooled is None:
            if images is None:
                raise ValueError("encode_image needs images or pooled features")
            pooled = self.image_pooled(images)
        z = self.image_head(pooled)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(
        self,
        texts: Sequence[str] | dict[str, Tensor] | None = None,
        *,
        pooled: Tensor | None = None,
        normalize: bool = True,
    ) -> Tensor:
        """Captions (list of B strings or tokenised dict) — or tower features (B, P_txt) — → (B, E)."""
        if pooled is None:
            if texts is None:
                raise ValueError("encode_text needs texts or pooled features")
            tokens = texts if isinstance(texts, dict) else self.tokenize(texts)
            device = self.log_logit_scale.device
            pooled = self.text_pooled({k: v.to(device) for k, v in tokens.items()})
        z = self.text_head(pooled)
        return F.normalize(z, dim=-1) if normalize else z

    @property
    def logit_scale(self) -> Tensor:
        """exp(log scale), clamped at ``max_logit_scale``; a scalar tensor."""
        return self.log_logit_scale.exp().clamp(max=self.max_logit_scale)

    def forward(
        self,
        image: Tensor | None = None,
        text: Sequence[str] | dict[str, Tensor] | None = None,
        *,
        image_pooled: Tensor | None = None,
        text_pooled: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Embed both sides; returns ``{"image_features" (B,E), "text_features" (B,E), "logit_scale"}``."""
        return {
            "image_features": self.encode_image(image, pooled=image_pooled),
            "text_features": self.encode_text(text, pooled=text_pooled),
            "logit_scale": self.logit_scale,
        }

    def train(self, mode: bool = True) -> CLIP:
        """Train mode everywhere except fully frozen sub-trees (locked towers keep BN stats/dropout off)."""
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)
        return self
