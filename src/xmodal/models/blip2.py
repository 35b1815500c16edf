"""BLIP-2-style models: Q-Former stage 1 (ITC + ITM + ITG) and stage 2 (queries → a frozen causal LM).

Li et al. 2023, "BLIP-2", https://arxiv.org/abs/2301.12597. Stage 1 (§3.2) trains the
:class:`~xmodal.fusion.qformer.QFormer` on frozen image features with three losses sharing one model:

* ITC: image–text contrast; the image–text similarity is the *maximum* over the queries of
  query·text-[CLS] (both projected and L2-normalised), with a learned temperature.
* ITM: binary matched / not matched from the mean of the query outputs under the bidirectional mask;
  one hard negative text per image and one hard negative image per text, sampled from the in-batch
  similarity with softmax weights (the positive's weight zeroed), as LAVIS's ``Blip2Qformer``.
* ITG: image-grounded generation: the text (first token replaced by ``[DEC]``) under the multimodal
  causal mask attends to the queries, which alone see the image.

Stage 2 (§3.3) projects the query outputs linearly into the LM's input embeddings as a soft prefix; the
LM and the image encoder stay frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.fusion.qformer import QFormer, QFormerLayer
from xmodal.generate import Generation, beam_search
from xmodal.lm.sequences import IGNORE_INDEX, next_token_loss


class LMHead(nn.Module):
    """BERT's prediction head: ``Linear → GELU → LayerNorm → (tied word embeddings) + bias``."""

    def __init__(self, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        dim = word_embeddings.embedding_dim
        self.dense, self.norm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=1e-12)
        self.word_embeddings = word_embeddings  # tied, not a copy
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, N, D) → logits (B, N, vocab)."""
        return F.linear(self.norm(F.gelu(self.dense(x))), self.word_embeddings.weight, self.bias)


def sample_hard_negatives(
    sim: Tensor, generator: torch.Generator | None = None, positives: Tensor | None = None
) -> Tensor:
    """For each row, one column that is not a positive, drawn with probability ``softmax(sim_row)``.

    Args:
        sim: (B, B) similarities.
        positives: (B, B) bool, True where column j matches row i (default: the diagonal), e.g. the same
            image under another caption; such columns are never drawn (LAVIS masks them by image id).

    Returns:
        (B,) long indices. The +1e-4 keeps every negative possible (LAVIS).

    Raises:
        ValueError: a row with no negative (every pair in the batch shows the same image).
    """
    if positives is None:
        positives = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    if bool(positives.all(dim=1).any()):
        raise ValueError("ITM needs at least 2 distinct images in a batch")
    weights = (F.softmax(sim.float(), dim=1) + 1e-4).masked_fill(positives, 0.0)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


@dataclass
class Blip2Stage1Output:
    """Stage-1 losses (scalars; ``loss`` = itc + itm + itg), ``sim_i2t`` (B, B) ITC logits, ``logits``
    (B, N, vocab) the ITG predictions."""

    loss: Tensor
    itc: Tensor
    itm: Tensor
    itg: Tensor
    sim_i2t: Tensor
    logits: Tensor


@dataclass
class Blip2LMOutput:
    """logits (B, Q+N, vocab) over prefix + text; loss: next-token cross-entropy on labelled text, or None."""

    logits: Tensor
    loss: Tensor | None = None


class Blip2Stage1(nn.Module):
    """Q-Former pre-training on frozen image features: ITC, ITM (hard negatives) and ITG.

    Args:
        qformer: the Q-Former (its ``encoder_dim`` = the image feature width).
        embed_dim: ITC projection width.
        dec_token_id: id of ``[DEC]``, the first text token for ITG (``[CLS]`` is used for ITC/ITM).
        pad_token_id: padding id (masked in the ITG labels).
        init_temperature: initial ITC temperature (BLIP-2: 0.07), learned.
        vision_encoder: optional frozen encoder giving ``EncoderOutput.tokens``; else pass features.
        feature_dropout: while training, dropout on the normalised frozen image features (not in BLIP-2;
            against memorising a small training set's features). 0: none.
    """

    def __init__(
        self,
        *,
        qformer: QFormer,
        embed_dim: int = 256,
        dec_token_id: int,
        pad_token_id: int = 0,
        init_temperature: float = 0.07,
        vision_encoder: nn.Module | None = None,
        feature_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dim = qformer.dim
        self.qformer = qformer
        self.vision_encoder = vision_encoder
        if vision_encoder is not None:
            vision_encoder.requires_grad_(False)
        self.ln_vision = nn.LayerNorm(qformer.encoder_dim)  # BLIP-2's trainable norm on the frozen features
        self.feature_drop = nn.Dropout(feature_dropout)
        self.vision_proj, self.text_proj = nn.Linear(dim, embed_dim), nn.Linear(dim, embed_dim)
        self.itm_head = nn.Linear(dim, 2)
        self.lm_head = LMHead(qformer.word_embeddings)
        self.log_temp = nn.Parameter(torch.tensor(math.log(init_temperature)))
        self.dec_token_id, self.pad_token_id = dec_token_id, pad_token_id

    def train(self, mode: bool = True) -> Blip2Stage1:
        """Train mode everywhere except the frozen vision encoder."""
        super().train(mode)
        if self.vision_encoder is not None:
            self.vision_encoder.eval()
        return self

    def image_features(self, images: Tensor | None, features: Tensor | None) -> Tensor:
        """(B, V, encoder_dim) normalised frozen features from pixels or precomputed encoder tokens."""
        if (images is None) == (features is None):
            raise ValueError("pass exactly one of images= or features=")
        if images is not None:
            if self.vision_encoder is None:
                raise ValueError("no vision encoder: pass encoder tokens as features=")
            with torch.no_grad():
                features = self.vision_encoder(images).tokens
        assert features is not None
        return self.feature_drop(self.ln_vision(features))  # type: ignore[no-any-return]

    def forward(
        self,
        text_ids: Tensor,
        text_mask: Tensor,
        *,
        images: Tensor | None = None,
        features: Tensor | None = None,
        seed: int | None = None,
        image_ids: Tensor | None = None,
    ) -> Blip2Stage1Output:
        """The three stage-1 losses on one batch of matched pairs.

        Args:
            text_ids: (B, N) with ``[CLS]`` first; text_mask: (B, N) 1 for real tokens; B >= 2.
            images: (B, 3, H, W) or features: (B, V, encoder_dim).
            seed: seeds the hard-negative sampling (None: the global generator).
            image_ids: (B,) ids of the images: pairs sharing an image are all ITC positives of each other
                and never ITM negatives (default: every image distinct).

        Returns:
            :class:`Blip2Stage1Output`.
        """
        image = self.image_features(images, features)  # (B, V, E)
        B = image.shape[0]
        if B < 2:
            raise ValueError("ITC/ITM need at least 2 pairs in a batch")
        # ITC: queries alone (image side), text alone (text side); max over queries
        queries, _ = self.qformer(image=image)
        assert queries is not None
        _, text = self.qformer(text_ids=text_ids, text_mask=text_mask)
        assert text is not None
        img_feats = F.normalize(self.vision_proj(queries), dim=-1)  # (B, Q, e)
        txt_feat = F.normalize(self.text_proj(text[:, 0]), dim=-1)  # (B, e)
        sim_q = torch.einsum("bqe,ce->bcq", img_feats, txt_feat)  # (B images, B texts, Q)
        sim_i2t = sim_q.max(dim=-1).values / self.log_temp.exp()  # (B, B)
        if image_ids is None:
            image_ids = torch.arange(B, device=image.device)
        same = image_ids[:, None] == image_ids[None, :]  # (B, B)
        target = same.float() / same.sum(dim=1, keepdim=True)  # symmetric rows: one target for both ways
        itc = (
            -(
                (sim_i2t.log_softmax(dim=1) * target).sum(1).mean()
                + (sim_i2t.T.log_softmax(dim=1) * target).sum(1).mean()
            )
            / 2
        )
        # ITM: positives, a hard negative text per image, a hard negative image per text
        generator = None
        if seed is not None:
            generator = torch.Generator(device=image.device).manual_seed(seed)
        with torch.no_grad():
            neg_text = sample_hard_negatives(sim_i2t.detach(), generator, same)  # (B,)
            neg_image = sample_hard_negatives(sim_i2t.detach().T, generator, same)  # (B,)
        itm_image = torch.cat([image, image, image[neg_image]])
        itm_ids = torch.cat([text_ids, text_ids[neg_text], text_ids])
        itm_mask = torch.cat([text_mask, text_mask[neg_text], text_mask])
        itm_queries, _ = self.qformer(
            image=itm_image, text_ids=itm_ids, text_mask=itm_mask, mode="bidirectional"
        )
        assert itm_queries is not None
        itm_logits = self.itm_head(itm_queries).mean(dim=1)  # (3B, 2)
        itm_labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(image.device)
        itm = F.cross_entropy(itm_logits, itm_labels)
        # ITG: [DEC] + text, causal over text, attending to the queries
        dec_ids = text_ids.clone()
        dec_ids[:, 0] = self.dec_token_id
        _, dec = self.qformer(image=image, text_ids=dec_ids, text_mask=text_mask, mode="causal")
        assert dec is not None
        logits = self.lm_head(dec)  # (B, N, vocab)
        labels = dec_ids.masked_fill(~text_mask.bool(), IGNORE_INDEX)
        itg = F.cross_entropy(
            logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX
        )
        return Blip2Stage1Output(itc + itm + itg, itc, itm, itg, sim_i2t, logits)


class Blip2LM(nn.Module):
    """Stage 2: Q-Former query outputs → linear projection → soft prefix of a causal LM.

    Args:
        stage1: a (stage-1 trained) :class:`Blip2Stage1`; its Q-Former and ``ln_vision`` keep training.
        lm: any ``transformers`` causal LM, frozen as in BLIP-2.
        train_lm: also train the LM in stage 2 (a departure from the paper, whose LLMs are strong enough
            to stay frozen; a small LM pretrained on little text is not).
    """

    def __init__(self, *, stage1: Blip2Stage1, lm: nn.Module, train_lm: bool = False) -> None:
        super().__init__()
        self.stage1 = stage1
        self.train_lm = train_lm
        self.label_smoothing = 0.0  # of the caption loss (xmodal.lm.sequences.next_token_loss)
        self.lm = lm.requires_grad_(False)
        lm_dim = lm.get_input_embeddings().embedding_dim  # type: ignore[operator]
        self.proj = nn.Linear(stage1.qformer.dim, lm_dim)
        self.set_stage(2)

    def set_stage(self, stage: int) -> None:
        """What trains: stage 1 the whole :class:`Blip2Stage1` (not the projection); stage 2 the Q-Former's
        query path, ``ln_vision`` and the projection (the stage-1 heads and the text path play no part),
        and the LM with ``train_lm``. The vision encoder is always frozen, the LM is in stage 1."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        s1, qf = self.stage1, self.stage1.qformer
        s1.requires_grad_(True)
        if s1.vision_encoder is not None:
            s1.vision_encoder.requires_grad_(False)
        self.proj.requires_grad_(stage == 2)
        self.lm.requires_grad_(stage == 2 and self.train_lm)
        if stage == 2:
            unused = [s1.vision_proj, s1.text_proj, s1.itm_head, s1.lm_head]
            unused += [qf.word_embeddings, qf.position_embeddings]
            unused += [layer.ffn_text for layer in cast(list[QFormerLayer], qf.layers)]
            for module in unused:
                module.requires_grad_(False)
            s1.log_temp.requires_grad_(False)

    def train(self, mode: bool = True) -> Blip2LM:
        """Train mode for the Q-Former and projection (and a trained LM); a frozen LM and the vision encoder
        stay in eval mode."""
        super().train(mode)
        self.lm.train(mode and self.train_lm)
        self.stage1.train(mode)
        return self

    def prefix(self, images: Tensor | None = None, features: Tensor | None = None) -> Tensor:
        """(B, Q, lm_dim) soft visual prompt."""
        queries, _ = self.stage1.qformer(image=self.stage1.image_features(images, features))
        assert queries is not None
        return self.proj(queries)  # type: ignore[no-any-return]

    def forward(
        self,
        input_ids: Tensor,
        *,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        images: Tensor | None = None,
        features: Tensor | None = None,
        prefix: Tensor | None = None,
    ) -> Blip2LMOutput:
        """Prefix + text → :class:`Blip2LMOutput`; ``labels`` (B, N) align with ``input_ids``, -100 = ignore.

        ``prefix`` (B, Q, lm_dim), when given, replaces ``images``/``features`` (reused while decoding).
        """
        if prefix is None:
            prefix = self.prefix(images, features)  # (B, Q, d)
        B, Q = prefix.shape[:2]
        tokens = self.lm.get_input_embeddings()(input_ids)  # type: ignore[operator]  # (B, N, d)
        embeds = torch.cat([prefix.to(tokens.dtype), tokens], dim=1)  # (B, Q+N, d)
        mask = torch.ones(B, input_ids.shape[1], dtype=torch.long, device=input_ids.device)
        if attention_mask is not None:
            mask = attention_mask.long()
        mask = torch.cat([torch.ones(B, Q, dtype=mask.dtype, device=mask.device), mask], dim=1)
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = self.lm(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).logits
        loss = None
        if labels is not None:
            full = torch.cat([labels.new_full((B, Q), IGNORE_INDEX), labels], dim=1)
            loss = next_token_loss(logits, full, self.label_smoothing)
        return Blip2LMOutput(logits, loss)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        *,
        images: Tensor | None = None,
        features: Tensor | None = None,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 20,
        eos_token_id: int | None = None,
        pad_token_id: int = 0,
        beam_size: int = 1,
        alpha: float = 0.0,
    ) -> Tensor:
        """Greedy decoding (or, with ``beam_size`` > 1, :func:`xmodal.generate.beam_search` with GNMT length
        penalty ``alpha``) after the visual prefix and a (B, N) prompt → (B, ≤ max_new_tokens) ids, padded
        with ``pad_token_id`` after each sample's end (eos kept in greedy output, dropped from beams).

        ``attention_mask`` (B, N): prompts of different lengths, left-padded (greedy only); each row's
        output equals its own unpadded decoding.
        """
        prefix = self.prefix(images, features)
        if beam_size > 1:
            if eos_token_id is None:
                raise ValueError("beam search needs eos_token_id")
            if attention_mask is not None and not bool(attention_mask.all()):
                raise ValueError("beam search takes prompts of one length (no padding)")
            found = self.beam_search(
                input_ids,
                prefix,
                eos=eos_token_id,
                max_new_tokens=max_new_tokens,
                beam_size=beam_size,
                alpha=alpha,
            )
            width = max([len(t) for t in found.tokens] + [1])
            out_ids = input_ids.new_full((input_ids.shape[0], width), pad_token_id)
            for b, toks in enumerate(found.tokens):
                out_ids[b, : len(toks)] = torch.tensor(toks, dtype=out_ids.dtype)
            return out_ids
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        out = []
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        for _ in range(max_new_tokens):
            nxt = self(input_ids, prefix=prefix, attention_mask=mask).logits[:, -1].argmax(-1)
            if eos_token_id is not None:
                done |= nxt == eos_token_id
            nxt = nxt.masked_fill(done, pad_token_id)
            out.append(nxt)
            if bool(done.all()):
                break
            input_ids = torch.cat([input_ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        return torch.stack(out, dim=1) if out else input_ids.new_zeros(input_ids.shape[0], 0)

    @torch.no_grad()
    def beam_search(
        self,
        input_ids: Tensor,
        prefix: Tensor,
        *,
        eos: int,
        max_new_tokens: int,
        beam_size: int,
        alpha: float = 0.0,
    ) -> Generation:
        """:func:`xmodal.generate.beam_search` over the LM after ``prefix`` (B, Q, lm_dim) and the (B, N)
        prompt; each step reruns prefix + text (no cache: captions are short)."""

        def step(tokens: Tensor, state: Tensor) -> Tensor:
            return self(tokens, prefix=state).logits[:, -1]  # type: ignore[no-any-return]

        return beam_search(
            step, prefix, input_ids, eos=eos, max_new_tokens=max_new_tokens, beam_size=beam_size, alpha=alpha
        )
