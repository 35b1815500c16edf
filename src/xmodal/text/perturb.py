"""Deterministic caption perturbations: hard negatives for training, ARO probes and text corruptions.

One module for every caption edit xmodal makes, so training negatives, compositionality probes and
robustness corruptions all mean the same thing:

* order probes (Yuksekgonul et al. 2023, "When and why vision-language models behave like bags-of-words",
  https://arxiv.org/abs/2210.01936, §3): :func:`shuffle_words`, :func:`shuffle_trigrams`;
* binding probes (ARO's VG-Attribution and VG-Relation): :func:`swap_attributes` ("a red cube and a blue
  ball" → "a blue cube and a red ball") and :func:`swap_relation` ("the horse is eating the grass" → "the
  grass is eating the horse");
* corruptions (as in Qiu et al. 2022, "Are multimodal models robust to image and text perturbations?",
  https://arxiv.org/abs/2212.08044): :func:`typos` (seeded character edits) and :func:`token_dropout`.

Every function is pure: the same text and the same ``random.Random`` state give the same output. Words are
whitespace-separated tokens; punctuation stays attached to its word. Swaps return ``None`` when the caption
has nothing to swap, so callers can skip and count such captions instead of scoring an unchanged text.
"""

from __future__ import annotations

import random
import re
import string

_ATTRIBUTE_WORDS = """
red orange yellow green blue purple violet pink brown black white grey gray gold golden silver
light dark pale bright small large big little tiny huge tall short long wide narrow thick thin
old young new wooden metal plastic glass stone open closed empty full hot cold wet dry round square
striped spotted happy sad angry smiling frowning crying sleeping
"""
ATTRIBUTES = frozenset(_ATTRIBUTE_WORDS.split())
"""Attribute words (colour, size, material, state) that :func:`swap_attributes` exchanges between nouns."""

RELATIONS: tuple[tuple[str, ...], ...] = tuple(
    tuple(r.split())
    for r in (
        # longest first, so "in front of" wins over "in" and "on top of" over "on"
        "to the left of",
        "to the right of",
        "on top of",
        "in front of",
        "next to",
        "left of",
        "right of",
        "on",
        "in",
        "with",
        "under",
        "above",
        "below",
        "behind",
        "beside",
        "near",
        "inside",
        "holding",
        "wearing",
        "riding",
        "eating",
        "watching",
        "carrying",
        "chasing",
        "touching",
    )
)
"""Relation phrases (prepositions and transitive verbs) whose arguments :func:`swap_relation` exchanges."""

_AUXILIARIES = frozenset({"is", "are", "was", "were"})
_CLAUSE_BREAK = re.compile(r"[,;:()\[\]]")


def _core(word: str) -> str:
    """A word lower-cased without surrounding punctuation: ``"Cube,"`` → ``"cube"``."""
    return word.strip(string.punctuation).lower()


def _moving_permutation(n: int, rng: random.Random) -> list[int]:
    """A random permutation of range(n) that moves every element (a derangement), for n >= 2."""
    while True:  # the expected number of tries is e ≈ 2.7
        perm = list(range(n))
        rng.shuffle(perm)
        if all(p != i for i, p in enumerate(perm)):
            return perm


def shuffle_words(text: str, rng: random.Random, fraction: float = 1.0) -> str:
    """Moves a share of the words to other word positions (ARO's order probe when ``fraction`` is 1).

    Args:
        text: the caption.
        rng: the source of randomness.
        fraction: in [0, 1]; ``round(fraction · n)`` of the n words (at least two when fraction > 0) are
            chosen and permuted so that each of them changes position.

    Returns:
        The shuffled caption; the input itself when it has fewer than two words or ``fraction`` is 0
        (equal words may also leave it unchanged).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    words = text.split()
    k = min(len(words), max(2, round(fraction * len(words)))) if fraction > 0 else 0
    if k < 2:
        return text
    chosen = sorted(rng.sample(range(len(words)), k))
    perm = _moving_permutation(k, rng)
    out = list(words)
    for dst, src in zip(chosen, perm, strict=True):
        out[dst] = words[chosen[src]]
    return " ".join(out)


def shuffle_trigrams(text: str, rng: random.Random) -> str:
    """Cuts the caption into consecutive word trigrams and shuffles their order (ARO's trigram probe).

    Returns the input unchanged when it has at most one trigram (three words or fewer).
    """
    words = text.split()
    grams = [words[i : i + 3] for i in range(0, len(words), 3)]
    if len(grams) < 2:
        return text
    perm = _moving_permutation(len(grams), rng)
    return " ".join(w for p in perm for w in grams[p])


def swap_attributes(text: str, rng: random.Random) -> str | None:
    """Exchanges two different attribute words that each precede a noun (ARO's VG-Attribution probe).

    "a red cube and a blue ball" → "a blue cube and a red ball". An attribute is a word of
    :data:`ATTRIBUTES` directly followed (no punctuation between) by a word that is not one; the two
    must lie in the same clause (text between commas, semicolons or brackets), so "red (arrow up
    small)" is never mixed up. Each word keeps its own punctuation.

    Returns:
        The caption with one pair of attributes swapped (the pair drawn from ``rng`` when there are
        several), or None when no clause has two different attribute words.
    """
    words = text.split()
    clauses, clause = [], 0
    for w in words:
        clause += w[:1] in "(["  # an opening bracket starts a new clause
        clauses.append(clause)
        clause += w[-1:] in ",;:)]"  # so does the word after a comma or a closing bracket
    slots = [
        i
        for i in range(len(words) - 1)
        if _core(words[i]) in ATTRIBUTES
        and words[i][-1] not in string.punctuation
        and _core(words[i + 1]) not in ATTRIBUTES
        and _core(words[i + 1])
    ]
    pairs = [
        (a, b)
        for a in slots
        for b in slots
        if a < b and clauses[a] == clauses[b] and _core(words[a]) != _core(words[b])
    ]
    if not pairs:
        return None
    a, b = pairs[rng.randrange(len(pairs))]
    out = list(words)
    core_a, core_b = words[a].strip(string.punctuation), words[b].strip(string.punctuation)
    out[a] = words[a].replace(core_a, core_b, 1)
    out[b] = words[b].replace(core_b, core_a, 1)
    return " ".join(out)


def _find_relation(cores: list[str]) -> tuple[int, int] | None:
    """(start, end) word span of the first relation phrase with a word before and after it."""
    for start in range(1, len(cores) - 1):
        for rel in RELATIONS:
            end = start + len(rel)
            if end < len(cores) and tuple(cores[start:end]) == rel:
                return start, end
    return None


def swap_relation(text: str) -> str | None:
    """Exchanges the two arguments of the first relation (ARO's VG-Relation probe).

    "the horse is eating the grass" → "the grass is eating the horse"; "man with white cane, people" →
    "white cane with man, people". The relation is the first phrase of :data:`RELATIONS` inside a clause
    (text between commas, semicolons or brackets) with words on both sides; its subject is the clause
    before it (less a trailing "is"/"are", which stays in place) and its object the clause after it.

    Returns:
        The edited caption, or None when no clause holds a relation with two different arguments.
    """
    pos = 0
    for piece in [*_CLAUSE_BREAK.split(text)]:
        start_char = text.index(piece, pos)
        pos = start_char + len(piece)
        words = piece.split()
        found = _find_relation([_core(w) for w in words])
        if found is None:
            continue
        start, end = found
        subject, aux = words[:start], list[str]()
        if len(subject) > 1 and _core(subject[-1]) in _AUXILIARIES:
            subject, aux = subject[:-1], subject[-1:]
        obj = words[end:]
        if [_core(w) for w in subject] == [_core(w) for w in obj]:
            continue
        swapped = " ".join([*obj, *aux, *words[start:end], *subject])
        lead = piece[: len(piece) - len(piece.lstrip())]
        trail = piece[len(piece.rstrip()) :]
        return text[:start_char] + lead + swapped + trail + text[pos:]
    return None


def typos(text: str, rng: random.Random, rate: float) -> str:
    """Seeded character-level typos: ``round(rate · letters)`` edits (at least one when rate > 0).

    Each edit picks a letter and substitutes it, deletes it, inserts a letter after it, or swaps it
    with the next character (each with probability 1/4), as keyboard noise benchmarks do.

    Args:
        text: the caption.
        rng: the source of randomness.
        rate: edits per letter, >= 0; 0 returns the text unchanged.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    chars = list(text)
    n_letters = sum(c.isalpha() for c in chars)
    n_edits = max(1, round(rate * n_letters)) if rate > 0 and n_letters else 0
    letters = string.ascii_lowercase
    for _ in range(n_edits):
        positions = [i for i, c in enumerate(chars) if c.isalpha()]
        if not positions:
            break
        i = positions[rng.randrange(len(positions))]
        op = rng.randrange(4)
        if op == 0:  # substitute with a different letter
            chars[i] = rng.choice([c for c in letters if c != chars[i].lower()])
        elif op == 1 and len(positions) > 1:  # delete (never the last letter)
            del chars[i]
        elif op == 2:  # insert
            chars.insert(i + 1, rng.choice(letters))
        elif i + 1 < len(chars) and chars[i + 1] != chars[i]:  # transpose with the next character
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:  # nothing to transpose (or a lone letter to delete): substitute instead
            chars[i] = rng.choice([c for c in letters if c != chars[i].lower()])
    return "".join(chars)


def token_dropout(text: str, rng: random.Random, p: float) -> str:
    """Drops each word independently with probability ``p``, keeping at least one word.

    Args:
        text: the caption.
        rng: the source of randomness (one draw per word, whatever ``p`` is).
        p: drop probability in [0, 1]; 0 returns the text unchanged.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    words = text.split()
    if not words:
        return text
    draws = [rng.random() for _ in words]
    kept = [w for w, u in zip(words, draws, strict=True) if u >= p]
    if not kept:
        kept = [words[rng.randrange(len(words))]]
    return text if p == 0 else " ".join(kept)
