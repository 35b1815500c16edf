"""CIDEr-D exactly as pycocoevalcap's ``Cider()`` computes it, vectorised over the corpus.

CIDEr (Vedantam, Zitnick and Parikh, 2015, https://arxiv.org/abs/1411.5726), in pycocoevalcap's CIDEr-D
form (``cider/cider_scorer.py``): every caption becomes, for n = 1..4, a vector of n-gram counts weighted by
``log(N) - log(max(1, df))``, where N is the number of images evaluated and ``df`` the number of images
whose references contain the n-gram (document frequencies come from the evaluated references, not a
fixed corpus). For each reference the candidate scores, per n, the cosine-like
``sum(min(v_cand, v_ref) * v_ref) / (|v_cand| |v_ref|)`` (clipping), times the Gaussian length penalty
``e ** (-(l_cand - l_ref)**2 / (2 sigma**2))``; the image's score is the mean over n, averaged over its
references, times 10. pycocoevalcap's caption "length" in that penalty is its number of *bigrams*
(``len - 1``), a quirk kept here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xmodal.metrics.ngrams import (
    CorpusLayout,
    NgramCounts,
    count_ngrams,
    encode,
    lookup,
    pair_code,
    unique_counts,
)


def cider_d(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], n: int = 4, sigma: float = 6.0
) -> tuple[float, np.ndarray]:
    """Corpus CIDEr-D (the mean over images) and per-image CIDEr-D of tokenised captions.

    Args:
        references: for each of N images, its M_i >= 1 tokenised reference captions.
        hypotheses: the N tokenised candidate captions.
        n: the longest n-gram; sigma: the length penalty's standard deviation.

    Returns:
        ``(mean, per_image)`` with ``per_image`` of shape (N,).
    """
    layout = CorpusLayout.of(references, hypotheses)
    enc = encode(layout.sentences(references, hypotheses), on_space=False)
    return cider_from_counts(count_ngrams(enc, n), enc.lengths, layout, sigma)


def cider_from_counts(
    tables: Sequence[NgramCounts], lengths: np.ndarray, layout: CorpusLayout, sigma: float = 6.0
) -> tuple[float, np.ndarray]:
    """:func:`cider_d` from the n-gram tables of ``layout``'s sentences (candidates, then references)."""
    num, ref_image, image_of = layout.num_images, layout.ref_image, layout.image_of
    num_sent, num_ref = len(lengths), len(ref_image)
    bigrams = np.maximum(lengths - 1, 0).astype(np.float64)  # pycocoevalcap's "length"
    log_n = np.log(float(num))
    val = np.zeros((len(tables), num_ref))
    norm = np.zeros((len(tables), num_sent))
    for k, table in enumerate(tables):
        is_ref = table.sent >= num
        # document frequency: the number of images whose references hold the n-gram
        img_gram, _ = unique_counts(
            pair_code(image_of[table.sent[is_ref]], table.gram[is_ref], table.num_grams)
        )
        df = np.bincount(img_gram % table.num_grams, minlength=table.num_grams)
        weight = log_n - np.log(np.maximum(1.0, df.astype(np.float64)))
        vec = table.count * weight[table.gram]
        norm[k] = np.sqrt(np.bincount(table.sent, weights=vec * vec, minlength=num_sent))
        hyp = ~is_ref
        hyp_codes = pair_code(table.sent[hyp], table.gram[hyp], table.num_grams)  # sorted, as the rows are
        ref_sent, v_ref = table.sent[is_ref], vec[is_ref]
        v_hyp = lookup(
            hyp_codes, vec[hyp], pair_code(image_of[ref_sent], table.gram[is_ref], table.num_grams)
        )
        val[k] = np.bincount(ref_sent - num, weights=np.minimum(v_hyp, v_ref) * v_ref, minlength=num_ref)

    norm_hyp, norm_ref = norm[:, ref_image], norm[:, num:]
    both = (norm_hyp != 0) & (norm_ref != 0)
    val[both] /= (norm_hyp * norm_ref)[both]
    delta = bigrams[ref_image] - bigrams[num:]
    val *= np.power(np.e, -(delta**2) / (2 * sigma**2))
    per_image = np.bincount(ref_image, weights=val.mean(axis=0), minlength=num) / layout.num_refs * 10.0
    return float(np.mean(per_image)), per_image
