"""Vectorised word and n-gram counting for the caption metrics: every sentence of a corpus at once.

Words get integer ids; an n-gram gets the id of the pair (its (n-1)-gram prefix, its last word), assigned
by sorting, so n-gram ids are exact (no hashing) and the counts of every n-gram in every sentence come
from one sort per order instead of per-sentence Python dictionaries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_OTHER_WHITESPACE = re.compile(r"[^\S ]")


@dataclass(frozen=True)
class Encoded:
    """S sentences as word ids: ``words`` (T,) concatenated, ``lengths`` (S,), ``vocab_size`` words."""

    words: np.ndarray
    lengths: np.ndarray
    vocab_size: int

    @property
    def sent(self) -> np.ndarray:
        """(T,) the sentence of every word."""
        return np.repeat(np.arange(len(self.lengths), dtype=np.int64), self.lengths)


@dataclass(frozen=True)
class CorpusLayout:
    """How a corpus of N images is laid out as sentences: the N candidates first, then every image's
    references in image order. ``ref_image`` (R,) is the image of each reference."""

    num_images: int
    ref_image: np.ndarray

    @classmethod
    def of(cls, references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> CorpusLayout:
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(references)} reference lists for {len(hypotheses)} hypotheses")
        counts = [len(refs) for refs in references]
        if min(counts, default=1) < 1:
            raise ValueError("every image needs at least one reference")
        return cls(len(hypotheses), np.repeat(np.arange(len(hypotheses)), counts))

    @property
    def image_of(self) -> np.ndarray:
        """(N + R,) the image of every sentence."""
        return np.concatenate([np.arange(self.num_images), self.ref_image])

    @property
    def num_refs(self) -> np.ndarray:
        """(N,) references per image."""
        return np.bincount(self.ref_image, minlength=self.num_images)

    @staticmethod
    def sentences(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> list[str]:
        """Candidates, then references."""
        return [*hypotheses, *(r for refs in references for r in refs)]


@dataclass(frozen=True)
class NgramCounts:
    """Distinct n-grams of one order per sentence: ``count[i]`` occurrences of n-gram ``gram[i]`` in
    sentence ``sent[i]``; rows sorted by ``(sent, gram)``; ``num_grams`` distinct n-grams in the corpus."""

    sent: np.ndarray
    gram: np.ndarray
    count: np.ndarray
    num_grams: int


def encode(sentences: Sequence[str], *, on_space: bool) -> Encoded:
    """Split sentences into words and number the words.

    Args:
        sentences: S strings.
        on_space: split as ``s.split(" ")`` (pycocoevalcap's ROUGE-L: ``""`` is one empty word) instead of
            ``s.split()`` (its BLEU and CIDEr: any whitespace, no empty words).
    """
    if not on_space:  # normalise the rare sentence whose split() differs from split(" ")
        sentences = [
            " ".join(s.split())
            if (not s or "  " in s or s[0] == " " or s[-1] == " " or _OTHER_WHITESPACE.search(s))
            else s
            for s in sentences
        ]
        lengths = np.array([s.count(" ") + 1 if s else 0 for s in sentences], dtype=np.int64)
        words = " ".join(s for s in sentences if s).split(" ") if lengths.any() else []
    else:
        lengths = np.array([s.count(" ") + 1 for s in sentences], dtype=np.int64)
        words = " ".join(sentences).split(" ") if sentences else []
    index = {w: i for i, w in enumerate(dict.fromkeys(words))}
    ids = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
    return Encoded(ids, lengths, len(index))


def count_ngrams(enc: Encoded, max_n: int) -> list[NgramCounts]:
    """Counts of the 1- to ``max_n``-grams of every sentence; table ``k`` holds the (k+1)-grams."""
    words, lengths = enc.words, enc.lengths
    sent = enc.sent
    starts = np.cumsum(lengths) - lengths
    remaining = lengths[sent] - (np.arange(len(words)) - starts[sent])  # words from each position to the end
    base = max(enc.vocab_size, 1)
    tables = []
    gram, num = words, base
    for n in range(1, max_n + 1):
        if n > 1:  # extend the (n-1)-gram at position p by the word at p + n - 1
            pos = np.flatnonzero(remaining >= n)
            gram_ids, num = unique_inverse(gram[pos] * base + words[pos + n - 1])
            gram = np.full(len(words), -1, dtype=np.int64)
            gram[pos] = gram_ids
        valid = gram >= 0
        codes, count = unique_counts(sent[valid] * num + gram[valid])
        tables.append(NgramCounts(codes // num, codes % num, count, num))
    return tables


def unique_counts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``a`` and how often each occurs."""
    s = np.sort(a)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, dtype=np.int64)
    return s[first], np.diff(np.r_[first, len(s)])


def unique_inverse(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ids (0..K-1, in sorted order of the values) for the values of ``a``, and K."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    new = np.r_[True, s[1:] != s[:-1]] if len(s) else np.zeros(0, dtype=bool)
    ids = np.empty(len(a), dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids, int(new.sum())


def pair_code(group: np.ndarray, key: np.ndarray, num_keys: int) -> np.ndarray:
    """One int64 per ``(group, key)`` pair: ``group * num_keys + key``."""
    return group.astype(np.int64) * num_keys + key


def group_max(
    group: np.ndarray, key: np.ndarray, value: np.ndarray, num_keys: int
) -> tuple[np.ndarray, np.ndarray]:
    """The largest ``value`` of each distinct ``(group, key)``: (sorted :func:`pair_code` codes, maxima)."""
    code = pair_code(group, key, num_keys)
    order = np.argsort(code, kind="stable")
    code = code[order]
    first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if len(code) else np.zeros(0, dtype=np.int64)
    return code[first], np.maximum.reduceat(value[order], first) if len(first) else value[:0]


def lookup(codes: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at the positions of ``queries`` in the sorted ``codes`` (0 where a query is absent)."""
    if len(codes) == 0:
        return np.zeros(len(queries), dtype=values.dtype)
    idx = np.minimum(np.searchsorted(codes, queries), len(codes) - 1)
    return np.where(codes[idx] == queries, values[idx], 0)
