"""Tiny instances of the Flamingo and BLIP-2 models for the registry-wide model test.

Registered in :data:`xmodal.registry.VL_MODELS`; tests/models/test_registry_vl_models.py builds each
(tiny random LMs saved to a scratch folder), runs forward + backward, checks the trainable set and the
save → load round trip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xmodal.fusion.qformer import QFormer
from xmodal.fusion.resampler import PerceiverResampler
from xmodal.lm.loading import CHUNK_TOKEN, IMAGE_TOKEN
from xmodal.lm.sequences import IGNORE_INDEX
from xmodal.models.blip2 import Blip2LM, Blip2Stage1
from xmodal.models.cases import TinyCase
from xmodal.models.flamingo import Flamingo
from xmodal.registry import VL_MODELS


# -- Flamingo -----------------------------------------------------------------------------------------
def _tiny_case(workdir: Path, arch: Literal["gpt2", "llama"]) -> TinyCase:
    """A tiny Flamingo on a tiny random LM saved to ``workdir``: 2 images per sample, blocks every 2 layers.

    The gates are opened to 0.5 (as after some training) so that every trainable parameter, not only
    the gates, receives a gradient; at 0 the blocks are exactly the identity (tested separately).
    """
    from xmodal.lm import add_multimodal_tokens, load_causal_lm
    from xmodal.lm.tiny import save_tiny_lm

    folder = save_tiny_lm(workdir / arch, arch, layers=4)

    def make() -> Flamingo:
        lm, tok = load_causal_lm(folder)
        ids = add_multimodal_tokens(tok, lm)
        torch.manual_seed(0)
        resampler = PerceiverResampler(
            dim=24, depth=1, n_latents=3, dim_head=8, heads=2, in_dim=20, max_num_media=2
        )
        model = Flamingo(
            lm=lm,
            resampler=resampler,
            media_token_id=ids[IMAGE_TOKEN],
            cross_attn_every=2,
            xattn_heads=2,
            xattn_dim_head=8,
        )
        for block in model.xattn_blocks():
            nn.init.constant_(block.attn_gate, 0.5)
            nn.init.constant_(block.ff_gate, 0.5)
        return model

    model = make()
    _, tok = load_causal_lm(folder)
    add_multimodal_tokens(tok)
    texts = [
        f"{IMAGE_TOKEN}a cat face{CHUNK_TOKEN}{IMAGE_TOKEN}a dog{CHUNK_TOKEN}",
        f"{IMAGE_TOKEN}yes{CHUNK_TOKEN}{IMAGE_TOKEN}a red apple{CHUNK_TOKEN}",
    ]
    enc = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
    labels = labels.masked_fill(enc["input_ids"] == model.media_token_id, IGNORE_INDEX)
    media = torch.randn(2, 2, 5, 20, generator=torch.Generator().manual_seed(0))
    inputs = {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "media": media,
        "labels": labels,
    }
    return TinyCase(
        model, inputs, make, trainable=lambda name: ".xattn." in name or name.startswith("resampler.")
    )


@VL_MODELS.register("flamingo-tiny-gpt2")
def flamingo_tiny_gpt2(workdir: Path) -> TinyCase:
    """Flamingo (resampler + gated cross-attention) on a tiny random GPT-2-shaped LM, frozen."""
    return _tiny_case(workdir, "gpt2")


@VL_MODELS.register("flamingo-tiny-llama")
def flamingo_tiny_llama(workdir: Path) -> TinyCase:
    """Flamingo (resampler + gated cross-attention) on a tiny random Llama-shaped LM, frozen."""
    return _tiny_case(workdir, "llama")


# -- BLIP-2 -------------------------------------------------------------------------------------------
def _tiny_stage1() -> Blip2Stage1:
    torch.manual_seed(0)
    qformer = QFormer(
        num_queries=4,
        dim=32,
        depth=2,
        num_heads=2,
        encoder_dim=20,
        vocab_size=50,
        max_text_len=16,
        dropout=0.0,
    )
    return Blip2Stage1(qformer=qformer, embed_dim=16, dec_token_id=2, pad_token_id=0)


@VL_MODELS.register("blip2-stage1-tiny")
def blip2_stage1_tiny(workdir: Path) -> TinyCase:
    """BLIP-2 stage 1 (Q-Former, ITC + ITM + ITG) on 3 pairs of random frozen features."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 50, (3, 6), generator=gen)
    ids[:, 0] = 1  # [CLS]
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 5 + [0]])
    inputs = {
        "text_ids": ids.masked_fill(mask == 0, 0),
        "text_mask": mask,
        "features": torch.randn(3, 7, 20, generator=gen),
        "seed": 0,
    }
    return TinyCase(_tiny_stage1(), inputs, _tiny_stage1, trainable=lambda name: True)


@VL_MODELS.register("blip2-tiny-gpt2")
def blip2_tiny_gpt2(workdir: Path) -> TinyCase:
    """BLIP-2 stage 2: Q-Former queries → linear → soft prefix of a tiny random GPT-2-shaped LM, frozen."""
    from xmodal.lm import load_causal_lm
    from xmodal.lm.tiny import save_tiny_lm

    folder = save_tiny_lm(workdir / "gpt2", "gpt2")

    def make() -> Blip2LM:
        lm, _ = load_causal_lm(folder)
        return Blip2LM(stage1=_tiny_stage1(), lm=lm)

    _, tok = load_causal_lm(folder)
    enc = tok(["a cat face", "a red apple"], padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
    features = torch.randn(2, 7, 20, generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    trained = ("stage1.qformer.", "stage1.ln_vision.", "proj.")
    text_path = ("word_embeddings", "position_embeddings", "ffn_text")
    return TinyCase(
        make(),
        inputs | {"features": features},
        make,
        trainable=lambda name: name.startswith(trained) and not any(t in name for t in text_path),
    )
