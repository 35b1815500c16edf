"""Shared utilities for connecting vision to causal language models (LLaVA, Flamingo, BLIP-2).

* :mod:`~xmodal.lm.loading`: any local ``AutoModelForCausalLM`` folder + tokenizer, offline;
  ``<image>`` / ``<|endofchunk|>`` special tokens.
* :mod:`~xmodal.lm.sequences`: truncation to the context and label masking, both counted.
* :mod:`~xmodal.lm.chat`: the chat template and answer-only labels.
* :mod:`~xmodal.lm.tokenizer`: a byte-level BPE trained offline; :mod:`~xmodal.lm.pretrain`: the stage-0 LM.
"""

from xmodal.lm.chat import DEFAULT_CHAT_TEMPLATE, Encoded, encode_chat, encode_prompt, render, user_turn
from xmodal.lm.loading import (
    CHUNK_TOKEN,
    IMAGE_TOKEN,
    add_multimodal_tokens,
    check_lm_folder,
    context_length,
    load_causal_lm,
)
from xmodal.lm.sequences import IGNORE_INDEX, MaskedCounter, TruncationCounter, mask_labels, truncate
from xmodal.lm.tokenizer import train_bpe_tokenizer

__all__ = [
    "CHUNK_TOKEN",
    "DEFAULT_CHAT_TEMPLATE",
    "IGNORE_INDEX",
    "IMAGE_TOKEN",
    "Encoded",
    "MaskedCounter",
    "TruncationCounter",
    "add_multimodal_tokens",
    "check_lm_folder",
    "context_length",
    "encode_chat",
    "encode_prompt",
    "load_causal_lm",
    "mask_labels",
    "render",
    "train_bpe_tokenizer",
    "truncate",
    "user_turn",
]
