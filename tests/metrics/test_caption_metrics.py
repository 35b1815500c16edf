"""Tests for xmodal.metrics.{bleu,rouge,cider,ngrams}: hand-computed cases, and parity with pycocoevalcap's
scorers (a test dependency) on tokenised captions, per image and for the corpus."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from xmodal.metrics.bleu import SMALL, TINY, bleu
from xmodal.metrics.cider import cider_d
from xmodal.metrics.ngrams import count_ngrams, encode
from xmodal.metrics.rouge import lcs_lengths, rouge_l


def lcs_dp(a: list[str], b: list[str]) -> int:
    """Plain dynamic-programming LCS (pycocoevalcap's my_lcs)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            same = a[i - 1] == b[j - 1]
            table[i][j] = table[i - 1][j - 1] + 1 if same else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_ngram_counts():
    enc = encode(["a b a b", "b a", ""], on_space=False)
    assert enc.lengths.tolist() == [4, 2, 0]
    uni, bi, tri = count_ngrams(enc, 3)
    # sentence 0: a x2, b x2; sentence 1: a, b
    assert sorted(zip(uni.sent.tolist(), uni.count.tolist(), strict=True)) == [(0, 2), (0, 2), (1, 1), (1, 1)]
    assert bi.num_grams == 2  # "a b" and "b a"
    assert sorted(zip(bi.sent.tolist(), bi.count.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 1)]
    assert tri.count.tolist() == [1, 1]  # "a b a", "b a b"
    # split(" ") keeps empty words; split() does not
    assert encode(["", "a  b"], on_space=True).lengths.tolist() == [1, 3]
    assert encode(["", "a  b"], on_space=False).lengths.tolist() == [0, 2]


def test_bleu_by_hand():
    corpus, per = bleu([["the cat is on the mat"]], ["the cat sat on the mat"])
    # clipped precisions 5/6, 3/5, 1/4, 0/3
    p = [(5 + TINY) / (6 + SMALL), (3 + TINY) / (5 + SMALL), (1 + TINY) / (4 + SMALL), TINY / (3 + SMALL)]
    ratio = (6 + TINY) / (6 + SMALL)  # just below 1: pycocoevalcap applies a (tiny) brevity penalty
    expected = [math.prod(p[: k + 1]) ** (1 / (k + 1)) * math.exp(1 - 1 / ratio) for k in range(4)]
    assert corpus == pytest.approx(expected, rel=1e-12)
    assert per[:, 0] == pytest.approx(expected, rel=1e-12)
    assert expected[1] == pytest.approx(math.sqrt(0.5), rel=1e-8)
    # brevity penalty with the closest reference length (ties: the shorter one)
    corpus, _ = bleu([["a b c d e f", "a b c d"]], ["a b c"])
    assert corpus[0] == pytest.approx(math.exp(1 - 4 / 3), rel=1e-9)


def test_rouge_by_hand_and_lcs():
    score, per = rouge_l([["the cat is on the mat", "a dog"]], ["the cat sat on the mat"])
    # LCS 5 with the first reference: P = R = 5/6; the second adds nothing
    assert score == pytest.approx(5 / 6) and per.tolist() == pytest.approx([5 / 6])
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e"]
    pairs = [
        (
            [rng.choice(words) for _ in range(rng.randint(1, 80))],
            [rng.choice(words) for _ in range(rng.randint(1, 30))],
        )
        for _ in range(300)
    ]
    enc = encode([" ".join(s) for pair in pairs for s in pair], on_space=True)
    got = lcs_lengths(enc, np.arange(0, 600, 2), np.arange(1, 600, 2))
    assert got.tolist() == [lcs_dp(a, b) for a, b in pairs]  # includes candidates over 64 words


def test_cider_by_hand():
    # each candidate repeats its only reference and shares no n-gram with the other image: weight log(2)
    # for every n-gram, cosine 1 for every n, no length penalty -> 10; no overlap at all -> 0
    score, per = cider_d([["a red sports car"], ["two small dogs"]], ["a red sports car", "one cat"])
    assert per.tolist() == pytest.approx([10.0, 0.0])
    assert score == pytest.approx(5.0)
    # an n-gram in every image's references weighs log(N) - log(N) = 0
    _, per = cider_d([["the dog"], ["the cat"]], ["the", "the"])
    assert per.tolist() == [0.0, 0.0]


def random_corpus(seed: int, n_images: int) -> tuple[list[list[str]], list[str]]:
    """Tokenised captions with repeats, rare words, empty and very long candidates, non-breaking spaces."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)] + ["a", "the", "dog", "5\u00a07/8", "-lrb-"]

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(vocab[: rng.randint(5, len(vocab))]) for _ in range(rng.randint(lo, hi)))

    refs = [[sentence(1, 16) for _ in range(rng.randint(1, 6))] for _ in range(n_images)]
    hyps = [sentence(0, 14) for _ in range(n_images)]
    hyps[0], hyps[1] = "", " ".join(["dog"] * 90)
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_pycocoevalcap_scorers(seed):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs, hyps = random_corpus(seed, 300)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [h] for i, h in enumerate(hyps)}
    b_ref, b_ref_per = Bleu(4).compute_score(gts, res, verbose=0)
    r_ref, r_ref_per = Rouge().compute_score(gts, res)
    c_ref, c_ref_per = Cider().compute_score(gts, res)
    b, b_per = bleu(refs, hyps)
    r, r_per = rouge_l(refs, hyps)
    c, c_per = cider_d(refs, hyps)
    np.testing.assert_allclose(b, b_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b_per, np.array(b_ref_per), rtol=0, atol=1e-12)
    assert r == pytest.approx(r_ref, abs=1e-12)
    np.testing.assert_allclose(r_per, r_ref_per, rtol=0, atol=1e-12)
    assert c == pytest.approx(c_ref, abs=1e-12)
    np.testing.assert_allclose(c_per, c_ref_per, rtol=0, atol=1e-12)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="reference lists"):
        bleu([["a"]], ["a", "b"])
    with pytest.raises(ValueError, match="at least one reference"):
        cider_d([[], ["a"]], ["a", "b"])
