"""Tokens for the captioner and the generative VQA model: Whisper's GPT-2 BPE and teacher-forcing batches.

:class:`BPETokenizer` wraps Whisper tiny.en's ``tokenizer.json`` (byte-level BPE, Radford et al. 2019).
``full`` keeps its 51,864 ids (the pretrained Whisper decoder needs them); ``compact`` keeps only the BPE
ids that occur in the training texts plus five specials, so a from-scratch decoder has a small output
layer. Text is encoded with a leading space, as Whisper transcripts begin.

:func:`teacher_forcing` builds ``input_ids`` and ``labels`` (the next token, or ``IGNORE`` for padding and
prompt positions) from token sequences, truncating to ``max_len`` and counting what it cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from xmodal.models.captioner import IGNORE
from xmodal.models.whisper_ct2 import EOT, NO_TIMESTAMPS, SOT, whisper_tokenizer

PAD, BOS, EOS, SEP, UNK = range(5)  # the compact vocabulary's specials
_SPECIALS = 5


class BPETokenizer:
    """Whisper's BPE, with the full or a compact vocabulary.

    Args:
        keep: BPE ids of the compact vocabulary (None: the full vocabulary).

    Attributes:
        vocab_size, bos (list), eos, pad, sep (the question/answer separator).
    """

    def __init__(self, keep: Sequence[int] | None = None) -> None:
        self._tok = whisper_tokenizer()
        self.keep = sorted(set(keep)) if keep is not None else None
        if self.keep is None:
            self.vocab_size = 51864  # the model's output size (the tokenizer file lacks the timestamp tokens)
            self.bos, self.eos, self.pad = [SOT, NO_TIMESTAMPS], EOT, EOT
            self.sep = int(self._tok.encode(" answer:", add_special_tokens=False).ids[-1])
            self._to_compact: dict[int, int] = {}
        else:
            self.vocab_size = _SPECIALS + len(self.keep)
            self.bos, self.eos, self.pad, self.sep = [BOS], EOS, PAD, SEP
            self._to_compact = {bpe: _SPECIALS + i for i, bpe in enumerate(self.keep)}

    @classmethod
    def compact(cls, texts: Sequence[str]) -> BPETokenizer:
        """A compact vocabulary: the BPE ids of ``texts`` (the training captions / questions / answers)."""
        tok = whisper_tokenizer()
        ids = {
            i for enc in tok.encode_batch([f" {t}" for t in texts], add_special_tokens=False) for i in enc.ids
        }
        return cls(sorted(ids))

    def state(self) -> dict[str, Any]:
        """JSON-able description (recorded in checkpoints); :meth:`from_state` rebuilds it."""
        return {"keep": self.keep}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BPETokenizer:
        """The tokenizer :meth:`state` described."""
        return cls(state.get("keep"))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``" " + text`` (no specials); unknown BPE pieces become ``UNK`` in compact mode."""
        ids = self._tok.encode(f" {text}", add_special_tokens=False).ids
        if self.keep is None:
            return list(ids)
        return [self._to_compact.get(i, UNK) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids (specials dropped), stripped."""
        if self.keep is None:
            bpe = [i for i in ids if i < EOT]
        else:
            bpe = [self.keep[i - _SPECIALS] for i in ids if i >= _SPECIALS]
        return str(self._tok.decode(bpe)).strip()


def teacher_forcing(
    prompts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    *,
    eos: int,
    pad: int,
    max_len: int,
) -> tuple[Tensor, Tensor, int]:
    """Inputs and next-token labels for ``prompt + target + [eos]`` sequences, right-padded.

    The loss covers the target tokens and ``eos`` only (labels ``IGNORE`` on prompt and padding).
    A target is cut so the whole sequence fits in ``max_len + 1`` tokens (``eos`` kept).

    Returns:
        input_ids (B, t) int64, labels (B, t) int64, and how many targets were truncated.
    """
    seqs, starts, truncated = [], [], 0
    for prompt, target in zip(prompts, targets, strict=True):
        room = max_len + 1 - len(prompt) - 1
        if room < 1:
            raise ValueError(f"prompt of {len(prompt)} tokens leaves no room in max_len={max_len}")
        if len(target) > room:
            truncated += 1
        seqs.append([*prompt, *target[:room], eos])
        starts.append(len(prompt))
    t = max(len(s) for s in seqs) - 1
    input_ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    labels = torch.full((len(seqs), t), IGNORE, dtype=torch.long)
    for row, (seq, start) in enumerate(zip(seqs, starts, strict=True)):
        input_ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        labels[row, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return input_ids, labels, truncated
