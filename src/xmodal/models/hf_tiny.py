"""Tiny randomly initialised Hugging Face CLIP / SigLIP folders, written offline (tests and smoke runs).

The folders have the published layout (``config.json``, ``model.safetensors``, tokenizer files,
``preprocessor_config.json``) with transformers' own classes, so anything that loads
``openai/clip-vit-base-patch32`` or ``google/siglip-base-patch16-224`` loads them; only the sizes differ
(hidden 32, 2 layers, 4 heads, 32-px images in 8-px patches, a few hundred tokens), as in transformers'
model testers. CLIP gets a byte-level BPE (CLIP's pre-tokenizer and ``</w>`` word ends) over the 256
byte symbols plus a few merges; SigLIP a SentencePiece unigram model trained on a handful of captions.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

CAPTIONS = (
    "a photo of a cat",
    "a dog on the grass",
    "two birds in the sky",
    "the red car near a house",
    "a smiling face with sunglasses",
    "an apple and a banana on a table",
)
"""The text the tiny tokenizers are built from."""

_MERGES = [("a", "t</w>"), ("c", "at</w>"), ("o", "g</w>"), ("d", "og</w>"), ("t", "h"), ("th", "e</w>")]
_LAYERS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def _clip_tokenizer(folder: Path) -> tuple[int, int, int]:
    """Write a tiny CLIPTokenizer; returns (vocab size, bos id, eos id)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    for a, b in _MERGES:
        vocab[a + b] = len(vocab)
    bos, eos = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = bos, eos
    tok = CLIPTokenizer(vocab=vocab, merges=list(_MERGES), model_max_length=77)  # type: ignore[arg-type]
    tok.save_pretrained(str(folder))
    return len(vocab), bos, eos


def _siglip_tokenizer(folder: Path) -> int:
    """Write a tiny SiglipTokenizer (SentencePiece unigram; pad = eos = 1, unk = 2); returns its size."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CAPTIONS) * 10),
        model_writer=buf,
        vocab_size=48,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    spiece = folder / "spiece.model"
    spiece.write_bytes(buf.getvalue())
    tok = SiglipTokenizer(vocab_file=str(spiece), model_max_length=64)
    tok.save_pretrained(str(folder))
    return len(tok)


def save_tiny_hf_model(
    folder: str | Path, model_type: str = "clip", *, seed: int = 0, logit_scale: float = math.log(10.0)
) -> Path:
    """Write a randomly initialised CLIP or SigLIP model, tokenizer and image processor to ``folder``.

    Args:
        folder: created if missing.
        model_type: "clip" or "siglip".
        seed: torch seed of the weights.
        logit_scale: the stored log scale (SigLIP also gets logit_bias −10, as the paper's init).

    Returns:
        The folder.
    """
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision = {**_LAYERS, "image_size": 32, "patch_size": 8}
    torch.manual_seed(seed)
    if model_type == "clip":
        vocab, bos, eos = _clip_tokenizer(folder)
        text: dict[str, Any] = {**_LAYERS, "vocab_size": vocab, "max_position_embeddings": 77}
        text.update(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
        model: Any = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor: Any = CLIPImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif model_type == "siglip":
        vocab = _siglip_tokenizer(folder)
        text = {**_LAYERS, "vocab_size": vocab, "max_position_embeddings": 64, "projection_size": 32}
        text.update(bos_token_id=None, eos_token_id=1, pad_token_id=1)
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    else:
        raise ValueError(f"model_type must be 'clip' or 'siglip', got {model_type!r}")
    with torch.no_grad():
        model.logit_scale.fill_(logit_scale)
        if model_type == "siglip":
            model.logit_bias.fill_(-10.0)
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(str(folder))
    return folder
