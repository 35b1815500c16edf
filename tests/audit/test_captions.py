"""Tests for xmodal.audit.captions: normalisation, exact and long-n-gram caption matches."""

from __future__ import annotations

import pytest

from xmodal.audit.captions import caption_pairs, normalise_caption, word_ngrams


def test_normalise_caption():
    assert normalise_caption("  A Man, riding -- a WAVE!  ") == "a man riding a wave"
    assert normalise_caption("Café_au-lait\tCUP") == "café au lait cup"
    assert normalise_caption("...") == ""


def test_word_ngrams():
    assert word_ngrams("a b c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert word_ngrams("a b", 3) == set()


def test_exact_and_ngram_pairs():
    train = [
        "A dog runs on the beach.",  # exact match of eval 0 (after normalisation)
        "a man riding a red bike down a steep hill in the rain",  # shares 8-grams with eval 1
        "a cat sleeping",  # nothing
        None,
    ]
    evaluation = [
        "a dog runs on the beach",
        "yesterday a man riding a red bike down a steep hill was seen",
        "the dog runs on the beach",  # 5 words in common: below 8-gram length, not a match
        None,
    ]
    pairs = list(caption_pairs(train, evaluation, ngram=8))
    assert [(i, j, k) for i, j, k, _ in pairs] == [(0, 0, "caption_exact"), (1, 1, "caption_ngram")]
    # both have 13 words (6 8-grams); "a man riding a red bike down a steep hill" (10 words) gives 3 shared
    assert pairs[1][3] == pytest.approx(1 - 3 / 6)
    assert list(caption_pairs(train, evaluation, ngram=0)) == [(0, 0, "caption_exact", 0.0)]
    with pytest.raises(ValueError):
        list(caption_pairs(train, evaluation, ngram=-1))
