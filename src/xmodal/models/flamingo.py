"""Flamingo-style model: a frozen causal LM that looks at images through gated cross-attention.

Alayrac et al. 2022, "Flamingo: a Visual Language Model for Few-Shot Learning",
https://arxiv.org/abs/2204.14198 (and open_flamingo's ``FlamingoLMMixin``): frozen image-encoder tokens
→ :class:`~xmodal.fusion.resampler.PerceiverResampler` → ``n_latents`` tokens per image; a
:class:`~xmodal.fusion.gated_xattn.GatedCrossAttentionBlock` is inserted before every k-th decoder layer
of ANY ``transformers`` causal LM (the layers are wrapped in place; the LM is frozen). Text is interleaved
``<image> caption <|endofchunk|> <image> ...``; each text token attends to the image whose ``<image>``
marker precedes it most recently. With the gates at 0 the model's logits are exactly the LM's.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.errors import XmodalError
from xmodal.fusion.gated_xattn import GatedCrossAttentionBlock
from xmodal.fusion.resampler import PerceiverResampler
from xmodal.generate import Generation, beam_search
from xmodal.lm.sequences import next_token_loss

# where transformers keeps the decoder layers, by model family (Llama/Mistral/Qwen, GPT-2, OPT, GPT-NeoX, MPT)
DECODER_LAYER_PATHS = (
    "model.layers",
    "transformer.h",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.blocks",
)


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_decoder_layers(lm: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder-layer list of a ``transformers`` causal LM: (dotted path, ModuleList).

    Raises:
        XmodalError: no known layer list (names the paths it looked for).
    """
    for path in DECODER_LAYER_PATHS:
        layers = _get_path(lm, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return path, layers
    raise XmodalError(
        f"cannot find the decoder layers of {type(lm).__name__}: looked for "
        f"{', '.join(DECODER_LAYER_PATHS)}; add its path to xmodal.models.flamingo.DECODER_LAYER_PATHS"
    )


@dataclass
class MediaState:
    """What the wrapped layers read during one LM forward (set by :class:`Flamingo`, then cleared).

    Attributes:
        media: (B, T_img, L, D_visual) resampled visual tokens.
        locations: (B, N) bool, True at ``<image>`` tokens.
        offset: (B,) long, images already seen before these tokens (incremental decoding), or None.
    """

    media: Tensor | None = None
    locations: Tensor | None = None
    offset: Tensor | None = None

    def text_time(self) -> Tensor | None:
        """(B, N) images seen at each token when decoding incrementally; None: ``cumsum(locations)``."""
        if self.offset is None or self.locations is None:
            return None
        return self.offset[:, None] + self.locations.long().cumsum(-1)


class FlamingoLayer(nn.Module):
    """A frozen decoder layer with an optional gated cross-attention block before it (open_flamingo order).

    Attributes not found here are looked up on the wrapped layer, so LM code that reads layer attributes
    (``attention_type`` ...) still works.
    """

    def __init__(
        self, decoder_layer: nn.Module, xattn: GatedCrossAttentionBlock | None, state: MediaState
    ) -> None:
        super().__init__()
        self.decoder_layer = decoder_layer
        self.xattn = xattn
        self._state = state

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["decoder_layer"], name)

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        """hidden_states (B, N, D) → the wrapped layer's output on the cross-attended states."""
        if self.xattn is not None:
            if self._state.media is None or self._state.locations is None:
                raise RuntimeError("a Flamingo layer ran outside Flamingo.forward (no media set)")
            state = self._state
            hidden_states = self.xattn(
                hidden_states, state.media, state.locations, text_time=state.text_time()
            )
        return self.decoder_layer(hidden_states, *args, **kwargs)


@dataclass
class FlamingoOutput:
    """logits (B, N, vocab); loss: mean next-token cross-entropy over labelled tokens, or None."""

    logits: Tensor
    loss: Tensor | None = None


class Flamingo(nn.Module):
    """Frozen image encoder + resampler + frozen causal LM with gated cross-attention every k layers.

    Args:
        lm: a ``transformers`` causal LM whose vocabulary already holds the media token (see
            :func:`xmodal.lm.add_multimodal_tokens`); frozen and wrapped in place.
        resampler: maps encoder tokens to ``n_latents`` per image; its ``dim`` is the visual width.
        media_token_id: id of ``<image>``.
        vision_encoder: optional frozen xmodal image encoder (``EncoderOutput.tokens``); without it
            :meth:`forward` takes precomputed encoder tokens (cached features).
        cross_attn_every: insert a block before decoder layer i when ``(i + 1) % k == 0``.
        xattn_heads, xattn_dim_head, ff_mult: gated block sizes.
        only_attend_immediate_media: see :func:`xmodal.fusion.gated_xattn.media_attention_mask`.
        gate_scale: see :class:`~xmodal.fusion.gated_xattn.GatedCrossAttentionBlock` (1: the paper's gate).
        train_token_ids: ids (e.g. ``<image>``, ``<|endofchunk|>``) whose input and output embedding rows
            train (copies of the LM's rows at first), as open_flamingo does: a frozen LM never learned to
            emit ``<|endofchunk|>``. Default none: only the resampler and the gated blocks train.
        train_lm: also train the LM's own weights (a departure from Flamingo, whose 70B LM stays frozen;
            at initialisation the model still equals the LM exactly). Default False: frozen.
    """

    def __init__(
        self,
        *,
        lm: nn.Module,
        resampler: PerceiverResampler,
        media_token_id: int,
        vision_encoder: nn.Module | None = None,
        cross_attn_every: int = 1,
        xattn_heads: int = 8,
        xattn_dim_head: int = 64,
        ff_mult: int = 4,
        only_attend_immediate_media: bool = True,
        gate_scale: float = 1.0,
        train_token_ids: tuple[int, ...] = (),
        train_lm: bool = False,
    ) -> None:
        super().__init__()
        if cross_attn_every < 1:
            raise ValueError(f"cross_attn_every must be >= 1, got {cross_attn_every}")
        self.train_lm = train_lm
        self.label_smoothing = 0.0  # of the training loss (xmodal.lm.sequences.next_token_loss)
        lm.requires_grad_(train_lm)
        if vision_encoder is not None:
            vision_encoder.requires_grad_(False)
        self.lm = lm
        self.vision_encoder = vision_encoder
        self.resampler = resampler
        self.media_token_id = media_token_id
        self._state = MediaState()
        path, layers = find_decoder_layers(lm)
        dim = lm.get_input_embeddings().embedding_dim  # type: ignore[operator]
        wrapped = []
        for i, layer in enumerate(layers):
            block = None
            if (i + 1) % cross_attn_every == 0:
                block = GatedCrossAttentionBlock(
                    dim=dim,
                    dim_visual=resampler.dim,
                    dim_head=xattn_dim_head,
                    heads=xattn_heads,
                    ff_mult=ff_mult,
                    only_attend_immediate_media=only_attend_immediate_media,
                    gate_scale=gate_scale,
                )
            wrapped.append(FlamingoLayer(layer, block, self._state))
        parent_path, _, name = path.rpartition(".")
        setattr(_get_path(lm, parent_path), name, nn.ModuleList(wrapped))
        self.decoder_layers_path = path
        self.new_token_ids = [int(i) for i in train_token_ids]
        if self.new_token_ids:
            rows = torch.tensor(self.new_token_ids)
            head = lm.get_output_embeddings()  # type: ignore[operator]
            if head is None:
                raise XmodalError(f"{type(lm).__name__} has no output embedding layer to train token rows of")
            self.new_token_in = nn.Parameter(lm.get_input_embeddings().weight[rows].detach().clone())  # type: ignore[operator]
            self.new_token_out = nn.Parameter(head.weight[rows].detach().clone())

    def train(self, mode: bool = True) -> Flamingo:
        """Train mode for the trainable parts; a frozen LM and the encoder always stay in eval mode."""
        super().train(mode)
        self.lm.train(mode and self.train_lm)
        if self.vision_encoder is not None:
            self.vision_encoder.eval()
        for block in self.xattn_blocks():
            block.train(mode)
        return self

    def xattn_blocks(self) -> list[GatedCrossAttentionBlock]:
        """The inserted gated cross-attention blocks, in layer order."""
        return [m for m in self.lm.modules() if isinstance(m, GatedCrossAttentionBlock)]

    @torch.no_grad()
    def encode_media(self, images: Tensor) -> Tensor:
        """Frozen encoder tokens. images (B, T_img, 3, H, W) → (B, T_img, V, D_in)."""
        if self.vision_encoder is None:
            raise XmodalError("this Flamingo model has no vision encoder: pass encoder tokens as media=")
        B, T = images.shape[:2]
        tokens = self.vision_encoder(images.flatten(0, 1)).tokens  # (B*T, V, D_in)
        return tokens.view(B, T, *tokens.shape[1:])  # type: ignore[no-any-return]

    def check_media_count(self, input_ids: Tensor, num_media: int) -> None:
        """Every sample must hold exactly as many ``<image>`` tokens as images.

        Raises:
            XmodalError: naming the first sample whose counts differ.
        """
        counts = (input_ids == self.media_token_id).sum(dim=1)
        bad = (counts != num_media).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise XmodalError(
                f"sample {i} has {int(counts[i])} <image> placeholder(s) but {num_media} image(s) were given"
            )

    def forward(
        self,
        input_ids: Tensor,
        *,
        images: Tensor | None = None,
        media: Tensor | None = None,
        media_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> FlamingoOutput:
        """Interleaved text + images → next-token logits.

        Args:
            input_ids: (B, N) with one ``<image>`` per image, in order.
            images: (B, T_img, 3, H, W) pixels (needs ``vision_encoder``), or
            media: (B, T_img, V, D_in) or (B, T_img, F, V, D_in) precomputed encoder tokens.
            media_mask: bool mask of real encoder tokens, shaped as ``media`` without its last axis.
            attention_mask: (B, N) 1 for real tokens (left padding allowed).
            labels: (B, N) target ids aligned with ``input_ids`` (shifted inside), ``-100`` = ignore.

        Returns:
            :class:`FlamingoOutput`.

        Raises:
            XmodalError: a sample with more or fewer ``<image>`` tokens than images.
        """
        if (images is None) == (media is None):
            raise XmodalError("pass exactly one of images= or media=")
        if images is not None:
            media = self.encode_media(images)
        assert media is not None
        self.check_media_count(input_ids, media.shape[1])
        position_ids = None
        if attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        logits = self._lm_step(
            self.resampler(media, media_mask), input_ids, attention_mask, position_ids, offset=None
        ).logits
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels, self.label_smoothing)
        return FlamingoOutput(logits=logits, loss=loss)

    def _lm_step(
        self,
        resampled: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
        *,
        offset: Tensor | None,
        **lm_kwargs: Any,
    ) -> Any:
        """One LM call with the wrapped layers conditioned on ``resampled`` (B, T_img, L, D) media."""
        state = self._state
        state.media, state.locations, state.offset = resampled, input_ids == self.media_token_id, offset
        if not self.new_token_ids:
            try:
                return self.lm(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **lm_kwargs
                )
            finally:
                state.media = state.locations = state.offset = None
        # trainable rows for the new tokens: swapped into the input embeddings, and their logits computed
        # from the hidden state that enters the (frozen) output layer
        embeds = self.lm.get_input_embeddings()(input_ids)  # type: ignore[operator]  # (B, N, D)
        for j, tid in enumerate(self.new_token_ids):
            embeds = torch.where((input_ids == tid)[..., None], self.new_token_in[j].to(embeds.dtype), embeds)
        head = self.lm.get_output_embeddings()  # type: ignore[operator]
        seen: list[Tensor] = []
        hook = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
        try:
            out = self.lm(
                inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, **lm_kwargs
            )
        finally:
            hook.remove()
            state.media = state.locations = state.offset = None
        bias = None if head.bias is None else head.bias[self.new_token_ids]
        new = F.linear(seen[0], self.new_token_out.to(seen[0].dtype), bias)  # (B, N, n_new)
        idx = torch.tensor(self.new_token_ids, device=new.device).expand_as(new)
        out.logits = out.logits.scatter(-1, idx, new.to(out.logits.dtype))
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        *,
        images: Tensor | None = None,
        media: Tensor | None = None,
        attention_mask: Tensor | None = None,
        max_new_tokens: int = 20,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int = 0,
        use_cache: bool = True,
    ) -> Tensor:
        """Greedy decoding after left-padded prompts.

        Args:
            input_ids: (B, N) prompts, left-padded; attention_mask (B, N) marks the real tokens.
            eos_token_id: stop a sample at any of these ids (it is not returned).
            use_cache: reuse the LM's key/value cache (new tokens attend to every image so far through
                :class:`MediaState` ``offset``); False recomputes the whole prefix each step (the reference).

        Returns:
            (B, ≤ max_new_tokens) generated ids, ``pad_token_id`` after a sample's end.
        """
        if (images is None) == (media is None):
            raise XmodalError("pass exactly one of images= or media=")
        if images is not None:
            media = self.encode_media(images)
        assert media is not None
        self.check_media_count(input_ids, media.shape[1])
        resampled = self.resampler(media)  # once for the whole decoding
        stops = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []))
        B = input_ids.shape[0]
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        offset = (input_ids == self.media_token_id).sum(dim=1)  # (B,) images in the prompt
        cache_kw = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        out = self._lm_step(resampled, input_ids, mask, positions, offset=None, use_cache=use_cache)
        done = torch.zeros(B, dtype=torch.bool)
        generated: list[Tensor] = []
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].clone()  # (B, vocab)
            logits[:, self.media_token_id] = float("-inf")  # an image cannot be generated
            nxt = logits.argmax(-1)
            done |= torch.isin(nxt.cpu(), stops)
            nxt = nxt.masked_fill(done.to(nxt.device), pad_token_id)
            generated.append(nxt)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if use_cache:
                positions = positions[:, -1:] + 1
                cache = getattr(out, cache_kw)
                kw = {cache_kw: cache, "use_cache": True}
                out = self._lm_step(resampled, nxt[:, None], mask, positions, offset=offset, **kw)
            else:
                input_ids = torch.cat([input_ids, nxt[:, None]], dim=1)
                positions = (mask.cumsum(-1) - 1).clamp_min(0)
                out = self._lm_step(resampled, input_ids, mask, positions, offset=None, use_cache=False)
        return torch.stack(generated, dim=1) if generated else input_ids.new_zeros(B, 0)

    @torch.no_grad()
    def beam_search(
        self,
        input_ids: Tensor,
        *,
        media: Tensor,
        attention_mask: Tensor | None = None,
        eos: int | Sequence[int],
        max_new_tokens: int = 20,
        beam_size: int = 3,
        alpha: float = 0.0,
    ) -> Generation:
        """:func:`xmodal.generate.beam_search` after left-padded prompts (shapes as :meth:`generate`).

        Each step reruns the whole prefix through the LM (no cache: exact, and cheap at caption lengths);
        ``<image>`` is never generated; any id of ``eos`` ends a hypothesis (it is not returned). With
        ``beam_size=1`` the tokens equal :meth:`generate`'s greedy ones (tested).
        """
        self.check_media_count(input_ids, media.shape[1])
        resampled = self.resampler(media)  # once for the whole search
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        n0 = input_ids.shape[1]

        def step(tokens: Tensor, state: tuple[Tensor, Tensor]) -> Tensor:
            res, prompt_mask = state
            m = torch.cat([prompt_mask, prompt_mask.new_ones(len(tokens), tokens.shape[1] - n0)], dim=1)
            positions = (m.cumsum(-1) - 1).clamp_min(0)
            logits = self._lm_step(res, tokens, m, positions, offset=None, use_cache=False).logits[:, -1]
            return logits.index_fill(
                -1, torch.tensor([self.media_token_id], device=logits.device), float("-inf")
            )

        return beam_search(
            step,
            (resampled, mask),
            input_ids,
            eos=eos,
            max_new_tokens=max_new_tokens,
            beam_size=beam_size,
            alpha=alpha,
        )
