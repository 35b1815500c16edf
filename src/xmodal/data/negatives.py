"""Hard negative captions per image (NegCLIP, Yuksekgonul et al. 2023, "When and why vision-language
models behave like bags-of-words, and what to do about it", https://arxiv.org/abs/2210.01936, §4).

A hard negative is a caption that shares the true caption's words but not its meaning: shuffled word
order, attributes swapped between nouns, a relation's arguments exchanged. They come from pluggable
generators (:data:`NEGATIVE_GENERATORS`, built on :mod:`xmodal.text.perturb`) or from a user file,
and enlarge the text side of the image→text logits only
(:func:`xmodal.losses.negatives.clip_loss_with_negatives`).

A generator is ``(caption, rng) -> str | None``; it never returns the caption itself (None when no
perturbation exists: such captions are counted and get fewer negatives). Everything is seeded per
caption, so a caption's negatives do not depend on the order or the rest of the data set.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xmodal.errors import ConfigError
from xmodal.registry import Registry
from xmodal.text import perturb

Generator = Callable[[str, random.Random], str | None]

NEGATIVE_GENERATORS: Registry[Generator] = Registry("negative generator")
"""Name → ``(caption, rng) -> negative caption or None``."""


def _changed(caption: str, candidate: str | None) -> str | None:
    """``candidate`` unless it is None or the caption again (ignoring case and spacing)."""
    if candidate is None or " ".join(candidate.lower().split()) == " ".join(caption.lower().split()):
        return None
    return candidate


@NEGATIVE_GENERATORS.register("shuffle_words")
def shuffle_words(caption: str, rng: random.Random) -> str | None:
    """Every word moved to another position ("red heart, symbols" → "symbols heart, red")."""
    return _changed(caption, perturb.shuffle_words(caption, rng))


@NEGATIVE_GENERATORS.register("swap_attributes")
def swap_attributes(caption: str, rng: random.Random) -> str | None:
    """Two attribute words exchanged between their nouns ("a red cube and a blue ball" → "a blue cube
    and a red ball"); None without two different attributes."""
    return _changed(caption, perturb.swap_attributes(caption, rng))


@NEGATIVE_GENERATORS.register("swap_relation")
def swap_relation(caption: str, rng: random.Random) -> str | None:
    """A relation's arguments exchanged ("a cat left of a dog" → "a dog left of a cat", "man with white
    cane" → "white cane with man"); None without a relation. Deterministic: ``rng`` is unused."""
    del rng
    return _changed(caption, perturb.swap_relation(caption))


def caption_rng(seed: int, caption: str) -> random.Random:
    """A ``random.Random`` seeded from (seed, caption) only: stable across runs, orders and processes."""
    digest = hashlib.sha256(f"{seed}\x00{caption}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def generate_negatives(caption: str, generators: Sequence[str], k: int, *, seed: int = 0) -> list[str]:
    """Up to ``k`` distinct negatives of ``caption``, taking the generators in turn.

    Args:
        caption: the true caption.
        generators: registered generator names, tried round-robin (each as often as it still gives
            new negatives; a deterministic generator gives at most one).
        k: how many negatives to return at most.
        seed: the run's seed (with the caption it seeds the generators' RNG).

    Returns:
        0 to k negatives, none equal to the caption or to each other.
    """
    fns = [NEGATIVE_GENERATORS.get(name) for name in generators]
    rng = caption_rng(seed, caption)
    out: list[str] = []
    live = list(range(len(fns)))
    misses = [0] * len(fns)
    while len(out) < k and live:
        for i in list(live):
            if len(out) == k:
                break
            neg = fns[i](caption, rng)
            if neg is None or neg in out:
                misses[i] += 1
                if neg is None or misses[i] >= 4:  # no perturbation, or nothing new after 4 tries
                    live.remove(i)
                continue
            out.append(neg)
    return out


def load_negatives_file(path: str | Path) -> dict[str, list[str]]:
    """A user file of hard negatives: a JSON object mapping a caption (or a sample key such as an
    emoji id) to a list of negative captions. Raises :class:`ConfigError` on anything else."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data.hard_negatives.file: {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"data.hard_negatives.file: {p} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"data.hard_negatives.file: {p} must hold a JSON object {{caption: [negatives]}}")
    for key, negs in data.items():
        if not isinstance(negs, list) or not all(isinstance(n, str) and n.strip() for n in negs):
            raise ConfigError(
                f"data.hard_negatives.file: {p}: entry {key!r} must be a list of non-empty strings"
            )
    return {str(k): list(v) for k, v in data.items()}


@dataclass
class NegativeSet:
    """Hard negatives of a list of captions: ``per_caption[i]`` holds 0 to k negatives of caption i.

    ``skipped`` counts the captions that got none and ``short`` those that got fewer than k.
    """

    per_caption: list[list[str]]
    k: int
    skipped: int = 0
    short: int = 0
    from_file: int = 0

    def summary(self) -> dict[str, int]:
        """Counts for logs and ``summary.json``."""
        return {
            "captions": len(self.per_caption),
            "negatives": sum(len(n) for n in self.per_caption),
            "from_file": self.from_file,
            "without_negatives": self.skipped,
            "fewer_than_k": self.short,
        }


def build_negatives(
    captions: Sequence[str],
    *,
    k: int,
    generators: Sequence[str] = (),
    user: dict[str, list[str]] | None = None,
    keys: Sequence[str] | None = None,
    seed: int = 0,
) -> NegativeSet:
    """Up to ``k`` hard negatives per caption: the user's first (looked up by caption, then by key),
    then generated ones to fill up.

    Args:
        captions: the true captions (one per group of images).
        k: negatives per caption (≥ 1).
        generators: registered generator names (unknown ones raise :class:`ConfigError`).
        user: ``{caption or key: [negatives]}`` from :func:`load_negatives_file`.
        keys: a sample key per caption (e.g. the emoji id) for the user lookup.
        seed: the run's seed.
    """
    if k < 1:
        raise ConfigError(f"data.hard_negatives.per_image must be >= 1, got {k}")
    for name in generators:
        if name not in NEGATIVE_GENERATORS:
            known = ", ".join(NEGATIVE_GENERATORS.names())
            raise ConfigError(f"data.hard_negatives.generators: unknown generator {name!r} (known: {known})")
    if keys is not None and len(keys) != len(captions):
        raise ValueError(f"{len(keys)} keys for {len(captions)} captions")
    user = user or {}
    out = NegativeSet(per_caption=[], k=k)
    for i, caption in enumerate(captions):
        given = user.get(caption)
        if given is None and keys is not None:
            given = user.get(keys[i])
        negs = [n for n in dict.fromkeys(given or []) if _changed(caption, n) is not None][:k]
        out.from_file += len(negs)
        if len(negs) < k and generators:
            extra = generate_negatives(caption, generators, k, seed=seed)
            negs += [n for n in extra if n not in negs][: k - len(negs)]
        out.per_caption.append(negs)
        out.skipped += not negs
        out.short += len(negs) < k
    return out
