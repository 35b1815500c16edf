"""BLEU-1..4 exactly as pycocoevalcap's ``Bleu(4)`` computes it, vectorised over the corpus.

BLEU (Papineni et al., 2002, https://aclanthology.org/P02-1040/): the geometric mean of clipped n-gram
precisions times a brevity penalty. pycocoevalcap (``bleu/bleu_scorer.py``, David Chiang's scorer) scores
the *corpus*: clipped matches and candidate n-grams are summed over all images before dividing, the
reference length of an image is the reference length closest to its candidate's (ties: the shorter one),
``tiny = 1e-15`` and ``small = 1e-9`` guard the divisions, and BLEU-k uses the running product of the
first k precisions. Its per-image scores apply the same formulas to each image alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from xmodal.metrics.ngrams import (
    CorpusLayout,
    NgramCounts,
    count_ngrams,
    encode,
    group_max,
    lookup,
    pair_code,
)

TINY, SMALL = 1e-15, 1e-9


def bleu(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], n: int = 4
) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n and per-image BLEU-1..n of tokenised captions.

    Args:
        references: for each of N images, its M_i >= 1 tokenised reference captions (words joined by
            spaces, as :func:`xmodal.metrics.ptb_tokenizer.tokenize_captions` returns them).
        hypotheses: the N tokenised candidate captions.
        n: the longest n-gram.

    Returns:
        ``(corpus, per_image)``: ``corpus[k]`` is BLEU-(k+1) of the corpus; ``per_image`` is (n, N) with
        ``per_image[k, i]`` BLEU-(k+1) of image i alone.
    """
    layout = CorpusLayout.of(references, hypotheses)
    enc = encode(layout.sentences(references, hypotheses), on_space=False)
    return bleu_from_counts(count_ngrams(enc, n), enc.lengths, layout)


def bleu_from_counts(
    tables: Sequence[NgramCounts], lengths: np.ndarray, layout: CorpusLayout
) -> tuple[list[float], np.ndarray]:
    """:func:`bleu` from the n-gram tables of ``layout``'s sentences (candidates first, then references)."""
    num, n, ref_image = layout.num_images, len(tables), layout.ref_image
    testlen, reflens = lengths[:num], lengths[num:]
    reflen = _closest_reflen(testlen, reflens, ref_image)
    image_of = layout.image_of
    correct = np.zeros((n, num))
    guess = np.maximum(0, testlen[None, :] - np.arange(n)[:, None]).astype(np.float64)
    for k, table in enumerate(tables):
        is_ref = table.sent >= num
        image = image_of[table.sent]
        codes, most = group_max(image[is_ref], table.gram[is_ref], table.count[is_ref], table.num_grams)
        hyp = ~is_ref
        queries = pair_code(image[hyp], table.gram[hyp], table.num_grams)
        clip = np.minimum(table.count[hyp], lookup(codes, most, queries))
        correct[k] = np.bincount(image[hyp], weights=clip, minlength=num)

    per_image = np.empty((n, num))
    score = np.ones(num)
    for k in range(n):
        score = score * ((correct[k] + TINY) / (guess[k] + SMALL))
        per_image[k] = score ** (1.0 / (k + 1))
    ratio = (testlen + TINY) / (reflen + SMALL)
    short = ratio < 1
    per_image[:, short] *= np.exp(1 - 1 / ratio[short])

    total_correct, total_guess = correct.sum(axis=1), guess.sum(axis=1)
    corpus, product = [], 1.0
    for k in range(n):
        product *= float(total_correct[k] + TINY) / (total_guess[k] + SMALL)
        corpus.append(product ** (1.0 / (k + 1)))
    ratio_all = (float(testlen.sum()) + TINY) / (float(reflen.sum()) + SMALL)
    if ratio_all < 1:
        corpus = [b * math.exp(1 - 1 / ratio_all) for b in corpus]
    return corpus, per_image


def _closest_reflen(testlen: np.ndarray, reflens: np.ndarray, ref_image: np.ndarray) -> np.ndarray:
    """Per image, the reference length closest to the candidate's; ties go to the shorter reference."""
    diff = np.abs(reflens - testlen[ref_image])
    order = np.lexsort((reflens, diff, ref_image))
    first = np.r_[True, ref_image[order][1:] != ref_image[order][:-1]]
    out = np.zeros(len(testlen), dtype=np.int64)
    out[ref_image[order][first]] = reflens[order][first]
    return out
