"""LLaVA: frozen image-encoder tokens → projector → spliced into a causal LM at each ``<image>``.

Liu et al. 2023, "Visual Instruction Tuning", https://arxiv.org/abs/2304.08485; LLaVA-1.5 (Liu et al.
2023, https://arxiv.org/abs/2310.03744) uses the 2-layer GELU MLP projector. Two-stage training:

* stage 1 (feature alignment): only the projector trains, on captions; the LM is frozen;
* stage 2 (instruction tuning): projector + LM train (fully, or LoRA adapters through ``peft``, Hu et al.
  2021, https://arxiv.org/abs/2106.09685), loss on answer tokens only.

The LM is any ``transformers`` ``AutoModelForCausalLM`` (:func:`xmodal.lm.load_causal_lm`): the model only
uses ``get_input_embeddings()``, ``forward(inputs_embeds=, attention_mask=, labels=)`` and ``generate``.
Image tokens come from a frozen encoder (``EncoderOutput.tokens``, (N_img, T, C)); the recipe caches them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.lm.sequences import IGNORE_INDEX, next_token_loss

ImageTokens = Tensor | list[Tensor]


@dataclass
class LlavaOutput:
    """What :meth:`Llava.forward` returns.

    Attributes:
        loss: mean next-token cross-entropy over answer tokens (None without labels).
        logits: (B, L', V) over the spliced sequence.
        labels: (B, L') the labels after splicing (-100 at image tokens, padding and prompts).
        attention_mask: (B, L') 1 for real positions.
    """

    loss: Tensor | None
    logits: Tensor
    labels: Tensor | None
    attention_mask: Tensor


class Llava(nn.Module):
    """Projector + causal LM with image tokens spliced in at ``<image>`` placeholders.

    Args:
        lm: a causal LM (``AutoModelForCausalLM`` or a ``peft`` wrapper of one) whose vocabulary holds
            ``<image>`` (:func:`xmodal.lm.add_multimodal_tokens`).
        projector: (..., C) → (..., D_lm) (:mod:`xmodal.fusion.projector`).
        image_token_id: the id of ``<image>``.
        max_length: the LM's context (spliced sequences longer than it are an error here; the data
            pipeline truncates and counts beforehand).
    """

    def __init__(
        self, *, lm: nn.Module, projector: nn.Module, image_token_id: int, max_length: int | None = None
    ) -> None:
        super().__init__()
        self.lm = lm
        self.projector = projector
        self.label_smoothing = 0.0  # of the training loss (xmodal.lm.sequences.next_token_loss)
        self.image_token_id = int(image_token_id)
        self.max_length = max_length

    # -- stages ---------------------------------------------------------------------------------
    def set_stage(self, stage: Literal[1, 2]) -> None:
        """Stage 1: only the projector trains. Stage 2: projector and LM (LoRA-wrapped LMs: adapters only)."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        for p in self.projector.parameters():
            p.requires_grad_(True)
        lora = is_lora(self.lm)
        for name, p in self.lm.named_parameters():
            p.requires_grad_(stage == 2 and (not lora or "lora_" in name))

    # -- splicing -------------------------------------------------------------------------------
    def _per_sample(self, input_ids: Tensor, image_tokens: ImageTokens) -> list[Tensor]:
        """Image tokens of each sample, checking their count against the ``<image>`` placeholders."""
        n_placeholders = (input_ids == self.image_token_id).sum(dim=1).tolist()
        if isinstance(image_tokens, Tensor):
            if image_tokens.ndim != 3:
                raise ValueError(f"image_tokens must be (B, T, C), got {tuple(image_tokens.shape)}")
            per = [image_tokens[i : i + 1] for i in range(image_tokens.shape[0])]
        else:
            per = list(image_tokens)
        if len(per) != input_ids.shape[0]:
            raise XmodalError(f"{input_ids.shape[0]} prompts but images for {len(per)} samples")
        for i, (n, imgs) in enumerate(zip(n_placeholders, per, strict=True)):
            if n != imgs.shape[0]:
                raise XmodalError(
                    f"sample {i}: the prompt has {n} <image> placeholder(s) but {imgs.shape[0]} image(s) "
                    "were given; put exactly one <image> per image"
                )
        return per

    def splice(
        self,
        input_ids: Tensor,
        image_tokens: ImageTokens,
        *,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Replace every ``<image>`` by its projected image tokens.

        Args:
            input_ids: (B, L) with one ``<image>`` per image.
            image_tokens: (B, T, C) (one image per sample) or a list of B tensors (n_i, T, C).
            attention_mask: (B, L), 1 for real tokens (default: all).
            labels: (B, L) with -100 where no loss falls.
            padding_side: where the expanded sequences are padded ("left" for generation).

        Returns:
            inputs_embeds (B, L', D), attention_mask (B, L'), labels (B, L') or None; each image
            placeholder becomes T positions with label -100.

        Raises:
            XmodalError: a prompt with more or fewer placeholders than images; a spliced sequence
                longer than ``max_length``.
        """
        per = self._per_sample(input_ids, image_tokens)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        text = self.lm.get_input_embeddings()(input_ids)  # type: ignore[operator]  # (B, L, D)
        rows_e, rows_l = [], []
        for b in range(input_ids.shape[0]):
            keep = mask[b].bool()
            ids, emb = input_ids[b][keep], text[b][keep]  # drop the incoming padding
            lab = labels[b][keep] if labels is not None else None
            img = self.projector(per[b].to(emb.dtype)) if per[b].shape[0] else None  # (n, T, D)
            pos = (ids == self.image_token_id).nonzero().flatten().tolist()
            pieces_e, pieces_l, start = [], [], 0
            for k, p in enumerate(pos):
                assert img is not None
                pieces_e += [emb[start:p], img[k]]
                if lab is not None:
                    pieces_l += [lab[start:p], lab.new_full((img.shape[1],), IGNORE_INDEX)]
                start = p + 1
            pieces_e.append(emb[start:])
            rows_e.append(torch.cat(pieces_e))
            if lab is not None:
                pieces_l.append(lab[start:])
                rows_l.append(torch.cat(pieces_l))
        longest = max(r.shape[0] for r in rows_e)
        if self.max_length is not None and longest > self.max_length:
            raise XmodalError(
                f"a spliced sequence has {longest} positions (image tokens included), more than the LM's "
                f"context {self.max_length}; truncate the text first (xmodal.lm.truncate)"
            )
        embeds = text.new_zeros(len(rows_e), longest, text.shape[-1])
        out_mask = mask.new_zeros(len(rows_e), longest)
        out_labels = input_ids.new_full((len(rows_e), longest), IGNORE_INDEX) if labels is not None else None
        for b, row in enumerate(rows_e):
            n = row.shape[0]
            sl = slice(longest - n, longest) if padding_side == "left" else slice(0, n)
            embeds[b, sl] = row
            out_mask[b, sl] = 1
            if out_labels is not None:
                out_labels[b, sl] = rows_l[b]
        return embeds, out_mask, out_labels

    # -- training and generation ----------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        image_tokens: ImageTokens,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> LlavaOutput:
        """Splice, run the LM, and (with ``labels``) the LM's shifted cross-entropy on answer tokens.

        Shapes: input_ids / attention_mask / labels (B, L); image_tokens (B, T, C) or [(n_i, T, C)].
        """
        embeds, mask, lab = self.splice(input_ids, image_tokens, attention_mask=attention_mask, labels=labels)
        if lab is not None and self.label_smoothing > 0:
            out = self.lm(inputs_embeds=embeds, attention_mask=mask)
            loss = next_token_loss(out.logits, lab, self.label_smoothing)
            return LlavaOutput(loss=loss, logits=out.logits, labels=lab, attention_mask=mask)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, labels=lab)
        return LlavaOutput(loss=out.loss, logits=out.logits, labels=lab, attention_mask=mask)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        image_tokens: ImageTokens,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int = 16,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Greedy (or any ``transformers`` ``generate`` option) continuation of prompts with images.

        Returns:
            (B, N ≤ max_new_tokens) the generated token ids only (eos and padding included).
        """
        embeds, mask, _ = self.splice(
            input_ids, image_tokens, attention_mask=attention_mask, padding_side="left"
        )
        kwargs.setdefault("do_sample", False)
        return self.lm.generate(  # type: ignore[operator, no-any-return]
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **kwargs,
        )


def is_lora(lm: nn.Module) -> bool:
    """True when ``lm`` carries LoRA adapters (``peft``)."""
    return any("lora_" in name for name, _ in lm.named_parameters())


def add_lora(lm: nn.Module, *, rank: int = 8, alpha: int = 16, dropout: float = 0.0) -> nn.Module:
    """Wrap ``lm`` with LoRA adapters on every linear layer but the output layer (``peft``'s "all-linear").

    "all-linear" needs no per-architecture module names, so it works for any causal LM (GPT-2's Conv1D
    included). B is initialised to zero, so the wrapped LM computes exactly what ``lm`` did.
    """
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear")
    with warnings.catch_warnings():  # GPT-2's Conv1D: peft notes that it transposes, as it should
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(lm, cfg)  # type: ignore[arg-type, no-any-return]
