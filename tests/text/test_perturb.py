"""Tests for the caption perturbations shared by training negatives, ARO probes and corruptions."""

from __future__ import annotations

import random

import pytest

from xmodal.text.perturb import (
    shuffle_trigrams,
    shuffle_words,
    swap_attributes,
    swap_relation,
    token_dropout,
    typos,
)

CAPTION = "a small red cube sits on a big blue ball near the old wooden door"


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_shuffle_words_is_a_seeded_permutation_that_moves_the_words():
    out = shuffle_words(CAPTION, random.Random(3))
    assert sorted(out.split()) == sorted(CAPTION.split())
    assert out != CAPTION
    assert out == shuffle_words(CAPTION, random.Random(3))
    assert out != shuffle_words(CAPTION, random.Random(4))
    words, moved = CAPTION.split(), out.split()
    # fraction 1 moves every word position to another word (equal words "a" may land on each other)
    assert sum(w == m for w, m in zip(words, moved, strict=True)) <= words.count("a")


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_shuffle_words_fraction_moves_that_share_of_positions(fraction):
    text = " ".join(f"w{i}" for i in range(20))
    out = shuffle_words(text, random.Random(0), fraction).split()
    changed = sum(a != b for a, b in zip(text.split(), out, strict=True))
    assert changed == round(fraction * 20)
    assert shuffle_words(text, random.Random(0), 0.0) == text
    assert shuffle_words("one", random.Random(0)) == "one"


def test_shuffle_trigrams_keeps_trigrams_whole():
    text = "a b c d e f g h"
    out = shuffle_trigrams(text, random.Random(1))
    assert out != text and sorted(out.split()) == sorted(text.split())
    assert "a b c" in out and "d e f" in out and "g h" in out
    assert shuffle_trigrams("too short", random.Random(1)) == "too short"


def test_swap_attributes_exchanges_two_attributes_between_their_nouns():
    assert swap_attributes("a red cube and a blue ball", random.Random(0)) == "a blue cube and a red ball"
    assert swap_attributes("A red cube and a blue ball.", random.Random(0)) == "A blue cube and a red ball."
    assert swap_attributes("grinning face, smileys", random.Random(0)) is None
    assert swap_attributes("a red cube and a red ball", random.Random(0)) is None  # same attribute twice
    # attributes in different clauses, or not directly before a noun, are left alone
    assert (
        swap_attributes("up pointing small red triangle (arrow up small), symbols", random.Random(0)) is None
    )
    face = "face with open mouth and cold sweat (cold sweat), smileys"
    expected = "face with cold mouth and open sweat (cold sweat), smileys"
    assert {swap_attributes(face, random.Random(s)) for s in range(10)} == {expected}
    outs = {swap_attributes(CAPTION, random.Random(s)) for s in range(30)}
    assert len(outs) > 1 and None not in outs
    for out in outs:
        assert sorted(out.split()) == sorted(CAPTION.split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the horse is eating the grass", "the grass is eating the horse"),
        ("a mug in some grass", "some grass in a mug"),
        ("man with white cane, people & body", "white cane with man, people & body"),
        ("a cat on top of a box", "a box on top of a cat"),
        ("smileys, a dog next to a tree (park)", "smileys, a tree next to a dog (park)"),
    ],
)
def test_swap_relation_exchanges_the_arguments(text, expected):
    assert swap_relation(text) == expected


@pytest.mark.parametrize("text", ["grinning face", "on the mat", "the mat on", "a cat with a cat", ""])
def test_swap_relation_returns_none_without_two_different_arguments(text):
    assert swap_relation(text) is None


def test_typos_are_seeded_bounded_character_edits():
    assert typos(CAPTION, random.Random(0), 0.0) == CAPTION
    out = typos(CAPTION, random.Random(0), 0.1)
    assert out == typos(CAPTION, random.Random(0), 0.1)
    assert out != CAPTION
    n_edits = round(0.1 * sum(c.isalpha() for c in CAPTION))
    assert 1 <= levenshtein(out, CAPTION) <= 2 * n_edits  # a transposition costs two
    assert typos("x", random.Random(0), 1.0) != ""  # the last letter is never deleted
    with pytest.raises(ValueError):
        typos(CAPTION, random.Random(0), -0.1)


def test_token_dropout_keeps_an_ordered_subset_and_at_least_one_word():
    assert token_dropout(CAPTION, random.Random(0), 0.0) == CAPTION
    out = token_dropout(CAPTION, random.Random(0), 0.5).split()
    words = iter(CAPTION.split())
    assert all(w in words for w in out)  # a subsequence of the caption
    assert 0 < len(out) < len(CAPTION.split())
    assert len(token_dropout(CAPTION, random.Random(0), 1.0).split()) == 1
    with pytest.raises(ValueError):
        token_dropout(CAPTION, random.Random(0), 1.5)
