"""Caption overlap between a training and an evaluation set: normalised exact matches and long shared n-grams.

The long n-gram test is the one GPT-3 used to find benchmark text in its training data (Brown et al., 2020,
https://arxiv.org/abs/2005.14165, Appendix C: 13-gram collisions); captions are short, so the default here
is 8 words. Normalisation: Unicode lower case, every run of characters that are not letters or digits
becomes one space (punctuation, underscores and whitespace alike), trimmed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_caption(text: str) -> str:
    """``"A Man, riding -- a WAVE!"`` → ``"a man riding a wave"``."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of n-word sequences of a normalised caption (empty when it has fewer than n words)."""
    words = text.split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def caption_pairs(
    train: Sequence[str | None], evaluation: Sequence[str | None], *, ngram: int = 8
) -> Iterator[tuple[int, int, str, float]]:
    """Every (train i, eval j) caption pair that matches, each pair once.

    Args:
        train, evaluation: captions (None: the item has none).
        ngram: n of the shared-n-gram test; 0 disables it.

    Yields:
        ``(i, j, kind, distance)``: kind "caption_exact" (normalised captions equal, distance 0) or
        "caption_ngram" (at least one shared n-gram; distance = 1 − shared / n-grams of the shorter).
    """
    if ngram < 0:
        raise ValueError(f"ngram must be >= 0, got {ngram}")
    norm_eval = [normalise_caption(c) if c else "" for c in evaluation]
    by_text: dict[str, list[int]] = defaultdict(list)
    by_gram: dict[tuple[str, ...], list[int]] = defaultdict(list)
    eval_grams: list[set[tuple[str, ...]]] = []
    for j, text in enumerate(norm_eval):
        if text:
            by_text[text].append(j)
        grams = word_ngrams(text, ngram) if ngram else set()
        eval_grams.append(grams)
        for g in grams:
            by_gram[g].append(j)
    for i, caption in enumerate(train):
        text = normalise_caption(caption) if caption else ""
        if not text:
            continue
        exact = by_text.get(text, [])
        for j in exact:
            yield i, j, "caption_exact", 0.0
        if not ngram:
            continue
        grams = word_ngrams(text, ngram)
        shared: dict[int, int] = defaultdict(int)
        for g in grams:
            for j in by_gram.get(g, ()):
                shared[j] += 1
        exact_set = set(exact)
        for j in sorted(shared):
            if j not in exact_set:
                yield i, j, "caption_ngram", 1.0 - shared[j] / min(len(grams), len(eval_grams[j]))
