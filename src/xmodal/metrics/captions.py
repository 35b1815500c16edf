"""Caption metrics as pycocoevalcap's ``COCOEvalCap`` reports them: BLEU-1..4, ROUGE-L, CIDEr-D (+ METEOR).

``caption_scores`` tokenises references and predictions the way pycocoevalcap does (Stanford PTBTokenizer
3.4.1 rules, lowercased, punctuation dropped; :mod:`xmodal.metrics.ptb_tokenizer`, no Java) and scores them
with vectorised re-implementations of pycocoevalcap's scorers (:mod:`~xmodal.metrics.bleu`,
:mod:`~xmodal.metrics.rouge`, :mod:`~xmodal.metrics.cider`) that agree with it to floating-point rounding.

METEOR (Banerjee and Lavie, 2005) is a Java program: it runs, through the jar that pycocoevalcap ships,
only when ``java`` is on PATH and pycocoevalcap is installed (:mod:`xmodal.metrics.meteor`). SPICE runs the
same way where its requirements are met: Java plus the Stanford CoreNLP 3.6.0 jars that pycocoevalcap
downloads on first use and xmodal never does (:mod:`xmodal.metrics.spice` says what is missing).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from xmodal.errors import DataError
from xmodal.metrics.bleu import bleu_from_counts
from xmodal.metrics.cider import cider_from_counts
from xmodal.metrics.meteor import meteor_availability, meteor_score
from xmodal.metrics.ngrams import CorpusLayout, count_ngrams, encode
from xmodal.metrics.ptb_tokenizer import tokenize_captions
from xmodal.metrics.rouge import rouge_from_encoded
from xmodal.metrics.spice import spice_availability, spice_score

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")
"""The metrics :func:`caption_scores` always returns, in pycocoevalcap's names."""


def _id_list(ids: Sequence[Hashable], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f"{shown}{', ...' if len(ids) > limit else ''} ({len(ids)} in all)"


def check_ids(references: Mapping[Hashable, Sequence[str]], predictions: Mapping[Hashable, str]) -> None:
    """Raise :class:`~xmodal.errors.DataError` unless every image has references and one prediction."""
    missing = [i for i in references if i not in predictions]
    extra = [i for i in predictions if i not in references]
    problems = []
    if extra:
        problems.append(f"predictions without references: {_id_list(extra)}")
    if missing:
        problems.append(f"images without a prediction: {_id_list(missing)}")
    empty = [i for i, refs in references.items() if isinstance(refs, str) or len(refs) == 0]
    if empty:
        problems.append(f"images whose references are not a non-empty list of captions: {_id_list(empty)}")
    bad = [i for i, p in predictions.items() if not isinstance(p, str)]
    bad += [
        i
        for i, refs in references.items()
        if not isinstance(refs, str) and not all(isinstance(r, str) for r in refs)
    ]
    if bad:
        problems.append(f"captions that are not strings for ids {_id_list(bad)}")
    if problems:
        raise DataError("; ".join(problems))


def score_tokenized(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of already tokenised captions, corpus-level and per image.

    Args:
        references: N lists of tokenised references (words joined by spaces).
        hypotheses: the N tokenised candidates.

    Returns:
        ``(corpus, per_image)``: ``{metric: value}`` and ``{metric: [value per image]}`` for :data:`METRICS`.
    """
    layout = CorpusLayout.of(references, hypotheses)
    sentences = layout.sentences(references, hypotheses)
    enc = encode(sentences, on_space=False)
    tables = count_ngrams(enc, 4)
    bleu, bleu_per = bleu_from_counts(tables, enc.lengths, layout)
    rouge, rouge_per = rouge_from_encoded(encode(sentences, on_space=True), layout)
    cider, cider_per = cider_from_counts(tables, enc.lengths, layout)
    corpus = {f"Bleu_{k + 1}": float(bleu[k]) for k in range(4)}
    corpus.update(ROUGE_L=rouge, CIDEr=cider)
    per_image = {f"Bleu_{k + 1}": bleu_per[k].tolist() for k in range(4)}
    per_image.update(ROUGE_L=rouge_per.tolist(), CIDEr=cider_per.tolist())
    return corpus, per_image


def caption_scores(
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[Hashable, str],
    *,
    per_image: bool = False,
    meteor: bool | None = None,
    spice: bool | None = None,
) -> dict[str, Any]:
    """pycocoevalcap's caption metrics for one prediction per image.

    Args:
        references: ``{image_id: [reference caption, ...]}`` (raw text; at least one per image).
        predictions: ``{image_id: predicted caption}`` with exactly the ids of ``references``.
        per_image: also return ``"per_image": {image_id: {metric: value}}`` (pycocoevalcap's ``imgToEval``).
        meteor: run METEOR through pycocoevalcap's jar: ``None`` when available, ``True`` always (error if
            it cannot run), ``False`` never.
        spice: the same for SPICE (:mod:`xmodal.metrics.spice`; needs the Stanford CoreNLP 3.6.0 jars).

    Returns:
        ``{"Bleu_1": ..., "Bleu_2": ..., "Bleu_3": ..., "Bleu_4": ..., "ROUGE_L": ..., "CIDEr": ...}`` (plus
        ``"METEOR"`` and ``"SPICE"`` when they ran, and ``"per_image"`` on request). Values are fractions as
        pycocoevalcap reports them (CIDEr-D is on its usual 0..10 scale).

    Raises:
        DataError: ids that do not match (listed, first few and a count) or captions that are not strings.
    """
    check_ids(references, predictions)
    ids = list(references)
    refs_tok = tokenize_captions({i: list(references[i]) for i in ids})
    preds_tok = tokenize_captions({i: [predictions[i]] for i in ids})
    refs = [refs_tok[i] for i in ids]
    hyps = [preds_tok[i][0] for i in ids]
    corpus, per = score_tokenized(refs, hyps)
    result: dict[str, Any] = dict(corpus)
    available, why = meteor_availability()
    if meteor is True and not available:
        raise DataError(f"METEOR requested but {why}")
    if (meteor is None and available) or meteor is True:
        result["METEOR"], per["METEOR"] = meteor_score(refs, hyps)
    available, why = spice_availability()
    if spice is True and not available:
        raise DataError(f"SPICE requested but {why}")
    if (spice is None and available) or spice is True:
        result["SPICE"], per["SPICE"] = spice_score(refs, hyps)
    if per_image:
        names = list(per)
        rows = zip(*(per[m] for m in names), strict=True)
        result["per_image"] = {
            i: dict(zip(names, row, strict=True)) for i, row in zip(ids, rows, strict=True)
        }
    return result
