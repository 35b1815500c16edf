"""ROUGE-L exactly as pycocoevalcap's ``Rouge()`` computes it, with a vectorised bit-parallel LCS.

ROUGE-L (Lin, 2004, https://aclanthology.org/W04-1013/): the longest common subsequence (LCS) of
candidate and reference, as precision ``lcs / len(candidate)`` and recall ``lcs / len(reference)``.
pycocoevalcap (``rouge/rouge.py``) splits captions on single spaces, takes the *best* precision and the
best recall over an image's references separately, combines them with ``beta = 1.2``::

    F = (1 + beta**2) P R / (R + beta**2 P)      (0 if P or R is 0)

and averages F over images. The LCS of every (candidate, reference) pair is computed at once with the
bit-vector algorithm of Allison and Dix (1986) in Hyyrö's form (2004): with ``M[w]`` the bit mask of the
candidate positions holding word ``w``, each reference word updates ``V <- (V + (V & M)) | (V & ~M)`` and the
LCS is the number of zero bits among the candidate's ``m`` bits. Candidates of up to 64 words use one
``uint64`` per pair; longer ones use Python integers. LCS is symmetric, so the bit vectors run over the
candidate's words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.metrics.ngrams import CorpusLayout, Encoded, encode

BETA = 1.2
_WORD_BITS = 64


def rouge_l(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], beta: float = BETA
) -> tuple[float, np.ndarray]:
    """Mean and per-image ROUGE-L of tokenised captions (pycocoevalcap's ``Rouge().compute_score``).

    Args:
        references: for each of N images, its M_i >= 1 tokenised reference captions.
        hypotheses: the N tokenised candidate captions.

    Returns:
        ``(mean, per_image)`` with ``per_image`` of shape (N,).
    """
    layout = CorpusLayout.of(references, hypotheses)
    return rouge_from_encoded(encode(layout.sentences(references, hypotheses), on_space=True), layout, beta)


def rouge_from_encoded(enc: Encoded, layout: CorpusLayout, beta: float = BETA) -> tuple[float, np.ndarray]:
    """:func:`rouge_l` from ``layout``'s sentences split on single spaces (candidates first)."""
    num, ref_image = layout.num_images, layout.ref_image
    lcs = lcs_lengths(enc, ref_image, np.arange(num, num + len(ref_image))).astype(np.float64)
    prec = lcs / enc.lengths[ref_image]
    rec = lcs / enc.lengths[num:]
    prec_max = np.full(num, -np.inf)
    rec_max = np.full(num, -np.inf)
    np.maximum.at(prec_max, ref_image, prec)
    np.maximum.at(rec_max, ref_image, rec)
    ok = (prec_max != 0) & (rec_max != 0)
    score = np.zeros(num)
    score[ok] = ((1 + beta**2) * prec_max[ok] * rec_max[ok]) / (rec_max[ok] + beta**2 * prec_max[ok])
    return float(np.mean(score)), score


def lcs_lengths(enc: Encoded, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """LCS length of sentences ``first[p]`` and ``second[p]`` of ``enc`` for every pair p, shape (P,).

    The bit vectors run over the words of ``first``; pairs whose ``first`` sentence has more than 64 words
    use Python integers.
    """
    lengths, words = enc.lengths, enc.words
    starts = np.cumsum(lengths) - lengths
    out = np.zeros(len(first), dtype=np.int64)
    short = lengths[first] <= _WORD_BITS
    if short.any():
        out[short] = _lcs_uint64(enc, starts, first[short], second[short])
    for p in np.flatnonzero(~short).tolist():
        a, b = first[p], second[p]
        seq_a = words[starts[a] : starts[a] + lengths[a]].tolist()
        out[p] = _lcs_bigint(seq_a, words[starts[b] : starts[b] + lengths[b]].tolist())
    return out


def _lcs_uint64(enc: Encoded, starts: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Bit-parallel LCS for ``first`` sentences of at most 64 words, all pairs advanced together."""
    lengths, words, vocab = enc.lengths, enc.words, max(enc.vocab_size, 1)
    # bit mask of every (sentence, word) over the distinct sentences used as `first`
    cands = np.unique(first)
    sent = np.repeat(cands, lengths[cands])
    pos = np.arange(len(sent)) - np.repeat(np.cumsum(lengths[cands]) - lengths[cands], lengths[cands])
    code = sent * vocab + words[starts[sent] + pos]
    order = np.argsort(code, kind="stable")
    code, bits = code[order], np.left_shift(np.uint64(1), pos[order].astype(np.uint64))
    head = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, dtype=np.int64)
    code, masks = np.r_[code[head], -1], np.r_[np.bitwise_or.reduceat(bits, head) if len(head) else bits, 0]
    code_order = np.argsort(code)
    code, masks = code[code_order], masks[code_order].astype(np.uint64)

    # the `second` sentences as a padded (P, width) matrix of word ids (-1: padding)
    width = int(lengths[second].max(initial=0))
    other = np.full((len(second), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(second)), lengths[second])
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths[second]) - lengths[second], lengths[second])
    other[rows, cols] = words[starts[second[rows]] + cols]

    v = np.full(len(first), np.iinfo(np.uint64).max, dtype=np.uint64)
    for j in range(width):
        word = other[:, j]
        query = first * vocab + word
        idx = np.minimum(np.searchsorted(code, query), len(code) - 1)
        # padding and words absent from the first sentence match nothing: V stays as it is
        m = np.where((word >= 0) & (code[idx] == query), masks[idx], np.uint64(0))
        v = (v + (v & m)) | (v & ~m)
    m_len = lengths[first]
    low = np.array([(1 << int(n)) - 1 for n in m_len.tolist()], dtype=np.uint64)
    return m_len - _popcount(v & low)


def _lcs_bigint(a: Sequence[int], b: Sequence[int]) -> int:
    """The same bit-parallel LCS with Python integers, for any length of ``a``."""
    masks: dict[int, int] = {}
    for i, w in enumerate(a):
        masks[w] = masks.get(w, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for w in b:
        mw = masks.get(w, 0)
        v = ((v + (v & mw)) | (v & ~mw)) & full
    return len(a) - bin(v).count("1")


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    as_bytes = x.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1).astype(np.int64)
