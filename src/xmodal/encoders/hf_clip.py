"""The towers and tokenizer of a Hugging Face CLIP or SigLIP model, as xmodal encoders.

CLIP (Radford et al. 2021, https://arxiv.org/abs/2103.00020): a ViT whose pooled output is the
post-LayerNormed class token, and a causal text Transformer pooled at the end-of-text token (older
configs with ``eos_token_id == 2`` pool at the argmax of the ids, which is the EOT token in CLIP's BPE).
SigLIP (Zhai et al. 2023, https://arxiv.org/abs/2303.15343): a ViT pooled by a multi-head attention
"MAP" head, and a bidirectional text Transformer pooled at the *last* position through a linear head,
trained on texts padded to 64 tokens without an attention mask.

The towers run the transformers modules themselves (``CLIPVisionModel``, ``SiglipTextModel``, ...), so
their outputs are transformers' own; this file adapts their inputs and outputs to
:class:`~xmodal.encoders.base.EncoderOutput` and gives LiT-style locking its list of blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.encoders.base import Encoder, EncoderOutput
from xmodal.encoders.tokenizer import Tokenizer
from xmodal.errors import XmodalError


class HFVisionTower(Encoder):
    """The vision half of a transformers CLIP/SigLIP model.

    Args:
        model: a ``CLIPVisionModel`` / ``SiglipVisionModel`` (children ``embeddings``, ``encoder.layers``,
            ``post_layernorm``; CLIP also ``pre_layrnorm``, SigLIP ``head``).
        mean, std: the normalisation of its image processor (used by xmodal's training augmentation).

    ``forward(images (B, 3, H, W))`` → tokens (B, N, D) = last hidden states, pooled (B, D) = the model's
    ``pooler_output`` (CLIP: LayerNormed class token; SigLIP: attention-pooled).
    """

    def __init__(self, model: Any, *, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model: Any = model
        self.token_dim = self.pooled_dim = int(model.config.hidden_size)
        self.image_mean, self.image_std = tuple(mean), tuple(std)

    def forward(self, images: Tensor) -> EncoderOutput:
        """images (B, 3, H, W) normalised → EncoderOutput (no mask: every patch is real)."""
        out = self.model(pixel_values=images)
        return EncoderOutput(tokens=out.last_hidden_state, pooled=out.pooler_output)

    def blocks(self) -> list[nn.Module]:
        """[patch + position embeddings (+ CLIP's pre-LayerNorm), each encoder layer]."""
        first = nn.ModuleList([self.model.embeddings])
        if getattr(self.model, "pre_layrnorm", None) is not None:
            first.append(self.model.pre_layrnorm)
        return [first, *self.model.encoder.layers]

    def output_only_modules(self) -> list[nn.Module]:
        """The final LayerNorm and, for SigLIP, the attention-pooling head."""
        return [m for m in (self.model.post_layernorm, getattr(self.model, "head", None)) if m is not None]


class HFTextTower(Encoder):
    """The text half of a transformers CLIP/SigLIP model.

    Args:
        model: a ``CLIPTextModel`` / ``SiglipTextModel``.
        tokenizer: the folder's tokenizer (:class:`HFFolderTokenizer`).
        use_attention_mask: pass the attention mask to the model (CLIP: yes; SigLIP was trained on
            max-length padded texts without one, and transformers' processor gives it none).

    ``forward(input_ids (B, L), attention_mask (B, L))`` → tokens (B, L, D) = last hidden states,
    pooled (B, P) = ``pooler_output`` (CLIP: the EOT state, P = D; SigLIP: head(last state)).
    """

    def __init__(self, model: Any, tokenizer: HFFolderTokenizer, *, use_attention_mask: bool) -> None:
        super().__init__()
        self.model: Any = model
        self.tokenizer = tokenizer
        self.use_attention_mask = use_attention_mask
        self.token_dim = int(model.config.hidden_size)
        head = getattr(model, "head", None)
        self.pooled_dim = int(head.out_features) if head is not None else self.token_dim

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """input_ids (B, L) long, attention_mask (B, L) 0/1 (default: all ones) → EncoderOutput."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask_in = attention_mask if self.use_attention_mask else None
        out = self.model(input_ids=input_ids, attention_mask=mask_in)
        return EncoderOutput(
            tokens=out.last_hidden_state, pooled=out.pooler_output, mask=attention_mask.bool()
        )

    def blocks(self) -> list[nn.Module]:
        """[token + position embeddings, each encoder layer]."""
        return [self.model.embeddings, *self.model.encoder.layers]

    def output_only_modules(self) -> list[nn.Module]:
        """The final LayerNorm and, for SigLIP, the linear head on the last token."""
        return [m for m in (self.model.final_layer_norm, getattr(self.model, "head", None)) if m is not None]


class HFFolderTokenizer(Tokenizer):
    """The tokenizer a Hugging Face model folder ships, through ``transformers.AutoTokenizer`` (offline).

    Ids are exactly transformers' (CLIP's BPE with ``<|startoftext|>``/``<|endoftext|>``; SigLIP's
    SentencePiece with its lower-casing and punctuation stripping, then ``</s>``). Truncation keeps the
    special tokens, as transformers' ``truncation=True`` does, and is counted in ``num_truncated``.

    Args:
        folder: the model folder (``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` or ``spiece.model``,
            with ``tokenizer_config.json``).
        max_length: the longest sequence, special tokens included (the model's position count).
        pad_to_max_length: pad every batch to ``max_length`` (SigLIP) rather than to its longest text.
    """

    def __init__(self, folder: str | Path, *, max_length: int, pad_to_max_length: bool) -> None:
        super().__init__(max_length=max_length)
        from transformers import AutoTokenizer

        try:
            tok: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, ImportError, TypeError) as e:
            raise XmodalError(
                f"cannot load the tokenizer of {folder}: {str(e).strip().splitlines()[0]}"
            ) from None
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise XmodalError(f"the tokenizer of {folder} has neither a padding nor an end-of-text token")
        tok.model_max_length = 10**9  # xmodal counts truncation itself; no length warning per long text
        self._tok = tok
        self.pad_id = int(pad)
        self.pad_to_max_length = pad_to_max_length
        self.path = Path(folder)

    @property
    def vocab_size(self) -> int:
        return len(self._tok)

    def _encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        ids: list[list[int]] = [list(x) for x in self._tok(texts)["input_ids"]]
        long = [i for i, x in enumerate(ids) if len(x) > self.max_length]
        if long:
            cut = self._tok([texts[i] for i in long], truncation=True, max_length=self.max_length)[
                "input_ids"
            ]
            for i, x in zip(long, cut, strict=True):
                ids[i] = list(x)
        truncated = [False] * len(ids)
        for i in long:
            truncated[i] = True
        return ids, truncated

    def __call__(self, texts: list[str]) -> dict[str, Tensor]:
        """As :meth:`Tokenizer.__call__`; with ``pad_to_max_length`` every row has ``max_length`` ids."""
        out = super().__call__(texts)
        if not self.pad_to_max_length:
            return out
        b, length = out["input_ids"].shape
        extra = self.max_length - length
        if extra > 0:
            out["input_ids"] = torch.cat(
                [out["input_ids"], out["input_ids"].new_full((b, extra), self.pad_id)], 1
            )
            out["attention_mask"] = torch.cat(
                [out["attention_mask"], out["attention_mask"].new_zeros((b, extra))], 1
            )
        return out

    def decode(self, ids: list[int] | Tensor) -> str:
        """The text of one id sequence (special tokens dropped)."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        return str(self._tok.decode(values, skip_special_tokens=True))
