"""Tests for xmodal.data.caption_tokens: Whisper BPE (full and compact) and teacher-forcing batches."""

from __future__ import annotations

import pytest
import torch

from xmodal.data.caption_tokens import BOS, EOS, PAD, UNK, BPETokenizer, teacher_forcing
from xmodal.models.captioner import IGNORE
from xmodal.models.whisper_ct2 import EOT, NO_TIMESTAMPS, SOT


def test_full_vocabulary_is_whispers():
    tok = BPETokenizer()
    assert tok.vocab_size == 51864 and tok.bos == [SOT, NO_TIMESTAMPS] and tok.eos == EOT
    ids = tok.encode("grinning face")
    assert ids == [18107, 1986] or all(i < EOT for i in ids)
    assert tok.decode([*ids, EOT]) == "grinning face"


def test_compact_vocabulary_round_trips_and_marks_unknown_pieces():
    tok = BPETokenizer.compact(["grinning face", "red heart"])
    assert tok.bos == [BOS] and tok.eos == EOS and tok.pad == PAD
    assert tok.vocab_size == 5 + len(tok.keep)
    for text in ("grinning face", "red heart", "heart face"):
        ids = tok.encode(text)
        assert min(ids) >= 5 and tok.decode(ids) == text
    assert UNK in tok.encode("zebra")
    again = BPETokenizer.from_state(tok.state())
    assert again.encode("red heart") == tok.encode("red heart")


def test_teacher_forcing_scores_targets_and_eos_only():
    ids, labels, cut = teacher_forcing([[1], [1, 7]], [[10, 11, 12], [20]], eos=2, pad=0, max_len=4)
    assert ids.tolist() == [[1, 10, 11, 12], [1, 7, 20, 0]]
    assert labels.tolist() == [[10, 11, 12, 2], [IGNORE, 20, 2, IGNORE]]
    assert cut == 0
    ids, labels, cut = teacher_forcing([[1]], [[10, 11, 12, 13, 14]], eos=2, pad=0, max_len=3)
    assert ids.tolist() == [[1, 10, 11]] and labels.tolist() == [[10, 11, 2]] and cut == 1
    with pytest.raises(ValueError, match="no room"):
        teacher_forcing([[1, 2, 3]], [[4]], eos=2, pad=0, max_len=2)
    assert ids.dtype == labels.dtype == torch.long
