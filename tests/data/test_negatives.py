"""Hard-negative generators and the user file: deterministic, never the caption itself, skips counted."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from xmodal.data.negatives import (
    NEGATIVE_GENERATORS,
    build_negatives,
    generate_negatives,
    load_negatives_file,
)
from xmodal.errors import ConfigError

CAPTIONS = [
    "a red cube and a blue ball",
    "a cat to the left of a dog",
    "man with white cane, people & body, person",
    "red heart, symbols, heart",
    "avocado",
]


def test_registry_lists_the_rule_based_generators() -> None:
    assert {"shuffle_words", "swap_attributes", "swap_relation"} <= set(NEGATIVE_GENERATORS.names())


@pytest.mark.parametrize("name", ["shuffle_words", "swap_attributes", "swap_relation"])
def test_every_generator_is_seeded_and_never_returns_the_caption(name: str) -> None:
    fn = NEGATIVE_GENERATORS.get(name)
    for caption in [*CAPTIONS, "a a a", "dog", "", "the horse is eating the grass"]:
        a = [fn(caption, random.Random(s)) for s in range(5)]
        b = [fn(caption, random.Random(s)) for s in range(5)]
        assert a == b
        assert all(x is None or x.lower() != caption.lower() for x in a)


def test_expected_perturbations() -> None:
    rng = random.Random(0)
    assert NEGATIVE_GENERATORS.get("swap_attributes")(CAPTIONS[0], rng) == "a blue cube and a red ball"
    assert NEGATIVE_GENERATORS.get("swap_relation")(CAPTIONS[1], rng) == "a dog to the left of a cat"
    swapped = NEGATIVE_GENERATORS.get("swap_relation")(CAPTIONS[2], rng)
    assert swapped == "white cane with man, people & body, person"
    assert NEGATIVE_GENERATORS.get("swap_attributes")("red heart, symbols", rng) is None
    assert NEGATIVE_GENERATORS.get("swap_relation")("avocado, food", rng) is None
    shuffled = NEGATIVE_GENERATORS.get("shuffle_words")(CAPTIONS[0], rng)
    assert shuffled is not None and sorted(shuffled.split()) == sorted(CAPTIONS[0].split())


def test_generate_negatives_is_distinct_deterministic_and_seed_dependent() -> None:
    names = ["swap_attributes", "swap_relation", "shuffle_words"]
    negs = generate_negatives(CAPTIONS[0], names, 4, seed=0)
    assert len(negs) == 4 and len(set(negs)) == 4 and CAPTIONS[0] not in negs
    assert negs[0] == "a blue cube and a red ball"  # generators are taken in turn
    assert generate_negatives(CAPTIONS[0], names, 4, seed=0) == negs
    assert generate_negatives(CAPTIONS[0], names, 4, seed=1) != negs
    assert generate_negatives("avocado", names, 3) == []  # nothing to perturb
    assert generate_negatives("red heart", ["swap_relation", "swap_attributes"], 3) == []


def test_build_negatives_counts_skips_and_prefers_the_user_file() -> None:
    user = {"red heart, symbols, heart": ["blue heart", "red heart, symbols, heart"], "E1": ["no avocado"]}
    out = build_negatives(
        CAPTIONS, k=2, generators=["swap_relation"], user=user, keys=["E0", "E2", "E3", "E4", "E1"], seed=0
    )
    assert out.per_caption[0] == []  # no relation in it
    assert out.per_caption[1] == ["a dog to the left of a cat"]
    assert out.per_caption[3] == ["blue heart"]  # the caption itself is dropped from the user list
    assert out.per_caption[4] == ["no avocado"]  # found by sample key
    assert out.summary() == {
        "captions": 5,
        "negatives": 4,
        "from_file": 2,
        "without_negatives": 1,
        "fewer_than_k": 5,
    }


def test_build_negatives_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown generator 'nope'"):
        build_negatives(CAPTIONS, k=1, generators=["nope"])
    with pytest.raises(ConfigError, match="per_image must be >= 1"):
        build_negatives(CAPTIONS, k=0, generators=["shuffle_words"])


def test_user_file_round_trip_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "negs.json"
    good.write_text(json.dumps({"a cat": ["a dog", "two cats"]}))
    assert load_negatives_file(good) == {"a cat": ["a dog", "two cats"]}
    with pytest.raises(ConfigError, match="does not exist"):
        load_negatives_file(tmp_path / "missing.json")
    for bad, msg in [
        ("[1, 2]", "JSON object"),
        ("{oops", "not valid JSON"),
        ('{"a": "b"}', "list of non-empty"),
    ]:
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            load_negatives_file(tmp_path / "bad.json")
