"""A small byte-level BPE tokenizer trained offline with ``tokenizers`` (Sennrich et al. 2016,
https://arxiv.org/abs/1508.07909; byte-level as GPT-2, Radford et al. 2019).

No pretrained decoder-only LM (nor its tokenizer) can be had here, so xmodal's stage-0 LM and the tests'
tiny random LMs use a tokenizer trained on the training text. Byte-level BPE encodes any string, so there
is never an unknown token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EOS_TOKEN = "<|endoftext|>"


def train_bpe_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 2000,
    min_frequency: int = 2,
    eos_token: str = EOS_TOKEN,
    bos_token: str | None = None,
) -> Any:
    """Train a byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        texts: training strings.
        vocab_size: target vocabulary size (the 256 byte symbols and ``eos_token`` included).
        min_frequency: least count for a merge.
        eos_token: end of text; also pad and unk (byte-level BPE never needs unk).
        bos_token: a separate beginning-of-text token (Llama's ``<s>``); default: ``eos_token``, as GPT-2.

    Returns:
        a ``PreTrainedTokenizerFast`` (``save_pretrained`` writes tokenizer.json + tokenizer_config.json).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(dict.fromkeys([bos_token or eos_token, eos_token])),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token or eos_token,
        eos_token=eos_token,
        unk_token=eos_token,
        pad_token=eos_token,
    )
