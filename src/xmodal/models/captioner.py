"""Image captioner: frozen image tokens → a text decoder with cross-attention, trained by teacher forcing.

The image side is a :class:`ImageMemory`: a linear projection of the (cached, frozen) EfficientNet-Lite0
map tokens (B, T, 1280) to the decoder width, plus a learned position per token. Two decoders read it:

* :class:`ScratchDecoder`: pre-norm blocks (causal self-attention → cross-attention → MLP), learned
  positions, output tied to the token embedding (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762;
  "Show, Attend and Tell", Xu et al. 2015, https://arxiv.org/abs/1502.03044 for attention over image
  regions);
* :class:`WhisperTextDecoder`: Whisper tiny.en's pretrained decoder (4 layers, d=384, GPT-2 BPE,
  :mod:`xmodal.models.whisper_ct2`), whose cross-attention, trained on audio frames, now reads image tokens.

Both are called as ``decoder(input_ids, encoder_hidden_states) -> logits``, which is what
:func:`xmodal.generate.decoder_step` drives. Training: ``[bos…] caption [eos]`` with the labels shifted by
one and label smoothing (Szegedy et al. 2016, https://arxiv.org/abs/1512.00567).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal.generate import Generation, beam_search, decoder_step, greedy_search
from xmodal.layers.attention import CrossAttention, SelfAttention
from xmodal.layers.mlp import Mlp
from xmodal.models.whisper_ct2 import EOT, NO_TIMESTAMPS, SOT
from xmodal.registry import VL_MODELS

IGNORE = -100  # label of positions without a loss (padding, prompts)


class ImageMemory(nn.Module):
    """Image tokens → decoder memory: ``LayerNorm(proj(tokens) + position)``.

    ``proj`` is one linear layer (``depth`` 1), or LLaVA-1.5's MLP: ``depth`` linear layers with GELU
    between them (Liu et al. 2023, https://arxiv.org/abs/2310.03744).

    Args:
        in_dim: image token width C (1280 for EfficientNet-Lite0).
        dim: decoder width D.
        num_tokens: T, the number of image tokens (16 at 128 px).
        depth: linear layers of the projection (1: linear).
    """

    def __init__(self, *, in_dim: int, dim: int, num_tokens: int, depth: int = 1) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"ImageMemory depth must be >= 1, got {depth}")
        layers: list[nn.Module] = [nn.Linear(in_dim, dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(dim, dim)]
        self.proj: nn.Module = layers[0] if depth == 1 else nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.zeros(num_tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, T, C) → memory (B, T, D)."""
        return self.norm(self.proj(tokens) + self.pos)


class DecoderBlock(nn.Module):
    """``x + self_attn(norm(x))`` (causal), ``x + cross_attn(norm(x), memory)``, ``x + mlp(norm(x))``."""

    def __init__(self, *, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim=dim, num_heads=num_heads, dropout=dropout, causal=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim=dim, num_heads=num_heads, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_dim=dim, hidden_dim=int(dim * mlp_ratio), out_dim=dim, dropout=dropout)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """x (B, t, D), memory (B, M, D) → (B, t, D)."""
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.mlp(self.norm3(x))


class ScratchDecoder(nn.Module):
    """A transformer decoder trained from scratch, its output layer tied to the token embedding.

    Args:
        vocab_size: V.
        dim, depth, num_heads, mlp_ratio, dropout: the blocks.
        max_len: the longest token sequence (learned positions).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        dim: int = 256,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        max_len: int = 64,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, input_ids: Tensor, encoder_hidden_states: Tensor, last_only: bool = False) -> Tensor:
        """input_ids (B, t) int64, memory (B, M, D) → logits (B, t, V) ((B, 1, V) if last_only)."""
        t = input_ids.shape[1]
        if t > self.pos.shape[0]:
            raise ValueError(
                f"sequence of {t} tokens is longer than the decoder's max_len {self.pos.shape[0]}"
            )
        x = self.drop(self.embed(input_ids) + self.pos[:t])
        for block in self.blocks:
            x = block(x, encoder_hidden_states)
        if last_only:
            x = x[:, -1:]
        return self.norm(x) @ self.embed.weight.T  # tied output projection


class WhisperTextDecoder(nn.Module):
    """A ``transformers`` Whisper decoder and its tied output projection, as ``(input_ids, memory) → logits``.

    Args:
        decoder: a ``WhisperDecoder`` (``WhisperForConditionalGeneration.model.decoder``).
    """

    def __init__(self, decoder: Any) -> None:
        super().__init__()
        self.decoder: Any = decoder
        self.dim = int(decoder.config.d_model)

    def forward(self, input_ids: Tensor, encoder_hidden_states: Tensor, last_only: bool = False) -> Tensor:
        """input_ids (B, t), encoder_hidden_states (B, M, D) → logits (B, t, V) ((B, 1, V) if last_only)."""
        h = self.decoder(
            input_ids=input_ids, encoder_hidden_states=encoder_hidden_states, use_cache=False
        ).last_hidden_state
        if last_only:
            h = h[:, -1:]
        return h @ self.decoder.embed_tokens.weight.T  # Whisper ties proj_out to embed_tokens


def pretrained_whisper_decoder() -> WhisperTextDecoder:
    """Whisper tiny.en's decoder with its pretrained weights (the encoder is dropped)."""
    from xmodal.models.whisper_ct2 import load_whisper_tiny_en

    return WhisperTextDecoder(load_whisper_tiny_en().model.decoder)


def tiny_whisper_decoder(vocab_size: int = 51864, dim: int = 64) -> WhisperTextDecoder:
    """A randomly initialised Whisper-shaped decoder (2 layers, d=``dim``) for tests."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperDecoder

    cfg = WhisperConfig(
        vocab_size=vocab_size,
        d_model=dim,
        decoder_layers=2,
        decoder_attention_heads=4,
        decoder_ffn_dim=2 * dim,
        encoder_layers=1,
        encoder_attention_heads=4,
        max_target_positions=64,
        pad_token_id=EOT,
        bos_token_id=EOT,
        eos_token_id=EOT,
        decoder_start_token_id=SOT,
    )
    return WhisperTextDecoder(WhisperDecoder(cfg))


@dataclass
class CaptionerOutput:
    """logits (B, t, V); loss: scalar cross-entropy when labels were given."""

    logits: Tensor
    loss: Tensor | None = None


class Captioner(nn.Module):
    """Image tokens → :class:`ImageMemory` → a text decoder with cross-attention.

    Args:
        decoder: a :class:`ScratchDecoder` or :class:`WhisperTextDecoder` (anything with ``.dim`` and
            ``forward(input_ids, encoder_hidden_states) -> logits``).
        image_dim: C, the width of the image tokens.
        num_image_tokens: T.
        bos: the start tokens every sequence begins with (Whisper: ``<|startoftranscript|><|notimestamps|>``).
        eos: the end token.
        memory_depth: linear layers of the image projection (:class:`ImageMemory`).
    """

    def __init__(
        self,
        *,
        decoder: Any,
        image_dim: int,
        num_image_tokens: int,
        bos: list[int],
        eos: int,
        memory_depth: int = 1,
    ) -> None:
        super().__init__()
        self.memory = ImageMemory(
            in_dim=image_dim, dim=int(decoder.dim), num_tokens=num_image_tokens, depth=memory_depth
        )
        self.decoder: Any = decoder
        self.bos = list(bos)
        self.eos = eos

    def forward(
        self,
        image_tokens: Tensor,
        input_ids: Tensor,
        labels: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> CaptionerOutput:
        """image_tokens (B, T, C), input_ids (B, t) → next-token logits (B, t, V), and with ``labels``
        (B, t) (the next tokens, ``IGNORE`` where unscored) the teacher-forced cross-entropy."""
        logits = self.decoder(input_ids, self.memory(image_tokens))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(),
                labels.flatten(),
                ignore_index=IGNORE,
                label_smoothing=label_smoothing,
            )
        return CaptionerOutput(logits=logits, loss=loss)

    def loss(
        self, image_tokens: Tensor, input_ids: Tensor, labels: Tensor, label_smoothing: float = 0.0
    ) -> Tensor:
        """The teacher-forced cross-entropy of :meth:`forward`."""
        loss = self(image_tokens, input_ids, labels, label_smoothing).loss
        assert loss is not None
        return loss

    @torch.no_grad()
    def generate(
        self,
        image_tokens: Tensor,
        prompt: Tensor | None = None,
        *,
        max_new_tokens: int = 24,
        beam_size: int = 1,
        alpha: float = 0.0,
    ) -> Generation:
        """Decode from image tokens (B, T, C); ``prompt`` (B, t0) defaults to ``bos`` (greedy when beam 1)."""
        if prompt is None:
            prompt = torch.tensor([self.bos] * image_tokens.shape[0], dtype=torch.long)
        memory = self.memory(image_tokens)
        step = decoder_step(self.decoder, last_only=True)
        if beam_size == 1:
            return greedy_search(step, memory, prompt, eos=self.eos, max_new_tokens=max_new_tokens)
        return beam_search(
            step,
            memory,
            prompt,
            eos=self.eos,
            max_new_tokens=max_new_tokens,
            beam_size=beam_size,
            alpha=alpha,
        )


WHISPER_BOS = [SOT, NO_TIMESTAMPS]


def _tiny_case(decoder_fn: Any, vocab: int, *, frozen_embeddings: bool) -> Any:
    from xmodal.models.cases import TinyCase

    def build() -> Captioner:
        torch.manual_seed(0)
        model = Captioner(decoder=decoder_fn(), image_dim=32, num_image_tokens=4, bos=[1], eos=2)
        if frozen_embeddings:
            model.decoder.decoder.embed_tokens.weight.requires_grad_(False)
        return model

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 6), generator=g)
    labels = torch.roll(ids, -1, dims=1)
    labels[1, 4:] = IGNORE
    inputs = {"image_tokens": torch.randn(2, 4, 32, generator=g), "input_ids": ids, "labels": labels}
    return TinyCase(
        model=build(),
        inputs=inputs,
        rebuild=build,
        trainable=(lambda n: "embed_tokens" not in n) if frozen_embeddings else None,
    )


@VL_MODELS.register("captioner-scratch-tiny")
def captioner_scratch_tiny(workdir: Path) -> Any:
    """A tiny from-scratch captioner (vocabulary 50, d=32)."""
    return _tiny_case(
        lambda: ScratchDecoder(vocab_size=50, dim=32, depth=2, num_heads=4), 50, frozen_embeddings=False
    )


@VL_MODELS.register("captioner-whisper-tiny")
def captioner_whisper_tiny(workdir: Path) -> Any:
    """A captioner on a random Whisper-shaped decoder (2 layers, d=64, Whisper's vocabulary, frozen embed)."""
    return _tiny_case(tiny_whisper_decoder, 51864, frozen_embeddings=True)
