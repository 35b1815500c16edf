"""Tiny random causal LMs saved to disk, GPT-2- and Llama-shaped, for tests and smoke runs.

They exercise the "any local ``AutoModelForCausalLM`` folder" contract without any download: a
byte-level BPE tokenizer trained on the given text, a randomly initialised model, ``save_pretrained``
with safetensors. The Llama-shaped folder carries its own Llama-2-style chat template (so the path that
uses a folder's ``chat_template`` is exercised); the GPT-2-shaped one has none (xmodal's default applies).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from xmodal.lm.loading import _quiet_transformers
from xmodal.lm.tokenizer import train_bpe_tokenizer

Arch = Literal["gpt2", "llama"]

LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }} {{ eos_token }}"
    "{% endif %}{% endfor %}"
)

DEFAULT_TEXT = (
    "a grinning face with big eyes",
    "a cat face",
    "what is shown in the picture? a red apple",
    "is this a shirt? yes",
    "which of these is it: a dog or a cat? a cat",
)


def save_tiny_lm(
    folder: str | Path,
    arch: Arch = "gpt2",
    *,
    texts: Iterable[str] = DEFAULT_TEXT,
    vocab_size: int = 400,
    dim: int = 32,
    layers: int = 2,
    heads: int = 2,
    context: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tiny random causal LM + tokenizer to ``folder`` (safetensors); returns the folder.

    Args:
        arch: "gpt2" (learned positions, tied embeddings, GELU MLP) or "llama" (RoPE, RMSNorm, SwiGLU,
            grouped-query attention with half as many kv heads, untied output layer, ``<s>``/``</s>``).
        texts: text the BPE tokenizer is trained on (repeated so merges reach ``min_frequency``).
        dim, layers, heads, context: model width, depth, attention heads, maximum sequence length.
    """
    _quiet_transformers()
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    corpus = [t for t in texts for _ in range(3)]
    if arch == "gpt2":
        tok = train_bpe_tokenizer(corpus, vocab_size=vocab_size)
    elif arch == "llama":
        tok = train_bpe_tokenizer(corpus, vocab_size=vocab_size, eos_token="</s>", bos_token="<s>")
        tok.chat_template = LLAMA2_CHAT_TEMPLATE
    else:
        raise ValueError(f"unknown tiny LM architecture {arch!r} (gpt2 or llama)")
    torch.manual_seed(seed)
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    if arch == "gpt2":
        model: torch.nn.Module = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=len(tok), n_embd=dim, n_layer=layers, n_head=heads, n_positions=context, **ids
            )
        )
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tok),
                hidden_size=dim,
                intermediate_size=2 * dim,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=max(1, heads // 2),
                max_position_embeddings=context,
                tie_word_embeddings=False,
                **ids,
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))  # type: ignore[operator]
    tok.save_pretrained(str(folder))
    return folder
