"""Train/eval contamination audit: training items that copy, nearly copy or share captions with eval items.

Evaluation numbers mean little when the evaluation images (or their captions) were trained on. This audit
pairs every training item with every evaluation item it duplicates, by

* ``exact_pixels``: equal SHA-256 of the decoded RGB pixels (:func:`~xmodal.audit.hashing.pixel_sha256`);
* ``phash`` (or ``dhash``): perceptual hashes within a Hamming radius (distance: differing bits);
* ``embedding``: cosine similarity of an image encoder's pooled features at or above a threshold
  (distance: 1 − cosine); optional, it runs a network over both sets;
* ``caption_exact`` / ``caption_ngram``: normalised equal captions, or a shared long word n-gram
  (:mod:`xmodal.audit.captions`).

A pair with equal pixels is reported as ``exact_pixels`` only. Images are decoded once per distinct file.

Default thresholds, validated on Fashion-MNIST test (10,000) against all 3,786 emoji: pHash distances of
modified copies (resized ×2 and back, resized to 64 px, JPEG quality 75, brightness ×0.9 / ×1.1) have
99th percentiles of 4–6 bits; unrelated images: 2 emoji lie within 6 bits of some Fashion-MNIST image
(0.05%), 39 within 8 (1%). Radius 6 keeps both error rates near 1%. Fashion-MNIST itself holds natural
near-duplicates (3 exact, ~440 of the first 2,000 within 4 bits of another test image): they are real
near-duplicates, not errors. pHash distances are even: both hashes have exactly 32 bits set.

The embedding test's threshold depends on the encoder and the domain. EfficientNet-Lite0 (ImageNet, 128 px,
pooled head) on the same data: cosine of modified copies ≥ 0.99 (64 px), ≥ 0.95 (brightness), ≥ 0.88
(×2 and back), ≥ 0.78 (JPEG 75 of a 28 px image); emoji against Fashion-MNIST at most 0.62; a Fashion-MNIST
image against its nearest *other* test image: median 0.77, 99th percentile 0.91. The default 0.9 flags the
gentle edits and few distinct images of one class; pHash is the main near-duplicate test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xmodal.audit.captions import caption_pairs
from xmodal.audit.hashing import (
    HASH_SIZE,
    PHASH_SIZE,
    dhash_batch,
    grey_thumbnail,
    hamming_pairs,
    phash_batch,
    pixel_sha256,
)
from xmodal.audit.sources import Source
from xmodal.data.images import BadImage

KINDS = ("exact_pixels", "phash", "dhash", "embedding", "caption_exact", "caption_ngram")


@dataclass(frozen=True)
class AuditSettings:
    """Thresholds of the audit.

    Attributes:
        hash: "phash", "dhash" or "none" (no perceptual-hash search).
        radius: largest Hamming distance (bits of 64) reported as a near duplicate.
        embed: a registered image encoder for the embedding test (None: skip it).
        embed_size: image side fed to that encoder.
        cosine: smallest cosine similarity reported as a near duplicate.
        ngram: words in the shared-n-gram caption test (0: exact captions only).
        block_size: rows per block of the pairwise searches.
    """

    hash: str = "phash"
    radius: int = 6
    embed: str | None = None
    embed_size: int = 128
    cosine: float = 0.9
    ngram: int = 8
    block_size: int = 1024


@dataclass(frozen=True)
class Pair:
    """A training item that duplicates an evaluation item."""

    train: int
    eval: int
    kind: str
    distance: float


@dataclass
class Fingerprints:
    """Per distinct image of a source: SHA-256, perceptual hash, embedding; and the item → image map.

    Attributes:
        image_of: (N_items,) index of each item's distinct image.
        sha: one hex digest per distinct image (None when it could not be decoded).
        hashes: (N_images,) uint64 perceptual hashes (0 for undecodable images, masked by ``ok``).
        ok: (N_images,) bool, decoded.
        embeddings: (N_images, E) unit features, or None.
    """

    image_of: np.ndarray
    sha: list[str | None]
    hashes: np.ndarray
    ok: np.ndarray
    embeddings: torch.Tensor | None = None
    bad: list[str] = field(default_factory=list)


def _embedder(name: str, size: int) -> Any:
    """``images (list of PIL) → (B, E) unit features`` with a registered image encoder."""
    import xmodal  # noqa: F401  (registers the encoders)
    from xmodal.data.transforms import ImagePreprocess
    from xmodal.registry import IMAGE_ENCODERS

    encoder = IMAGE_ENCODERS.get(name)().eval()
    preprocess = ImagePreprocess(size=size, mean=encoder.image_mean, std=encoder.image_std)

    def embed(images: list[Any]) -> torch.Tensor:
        with torch.inference_mode():
            x = torch.stack([preprocess(im) for im in images])  # (B, 3, S, S)
            return F.normalize(encoder(x).pooled.float(), dim=-1)  # (B, E)

    return embed


def fingerprint(source: Source, settings: AuditSettings, embed: Any = None) -> Fingerprints:
    """Decode each distinct image of ``source`` once; hash it (and embed it when ``embed`` is given)."""
    first: dict[str, int] = {}
    image_of = np.empty(len(source), dtype=np.int64)
    for i, item in enumerate(source.items):
        image_of[i] = first.setdefault(item.image_key, len(first))
    owners = [-1] * len(first)  # distinct image u is first seen at item owners[u]
    for i in range(len(source)):
        u = int(image_of[i])
        if owners[u] < 0:
            owners[u] = i
    size = (PHASH_SIZE, PHASH_SIZE) if settings.hash != "dhash" else (HASH_SIZE + 1, HASH_SIZE)
    thumbs = np.zeros((len(owners), size[1], size[0]), dtype=np.uint8)
    sha: list[str | None] = [None] * len(owners)
    ok = np.zeros(len(owners), dtype=bool)
    bad: list[str] = []
    chunks: list[torch.Tensor] = []
    pending: list[Any] = []
    for u, i in enumerate(owners):
        try:
            image = source.load(i)
        except BadImage as e:
            bad.append(f"{source.items[i].key}: {e.reason}")
            if embed is not None:
                pending.append(None)
            continue
        sha[u] = pixel_sha256(image)
        thumbs[u] = grey_thumbnail(image, size)
        ok[u] = True
        if embed is not None:
            pending.append(image)
            if len(pending) == 64:
                chunks.append(_embed_batch(embed, pending))
                pending = []
    if embed is not None and pending:
        chunks.append(_embed_batch(embed, pending))
    hashes = np.zeros(len(owners), dtype=np.uint64)
    if settings.hash != "none":
        hasher = phash_batch if settings.hash == "phash" else dhash_batch
        for a in range(0, len(owners), 4096):
            hashes[a : a + 4096] = hasher(thumbs[a : a + 4096].astype(np.float64))
    embeddings = torch.cat(chunks) if chunks else None
    return Fingerprints(image_of, sha, hashes, ok, embeddings, bad)


def _embed_batch(embed: Any, images: list[Any]) -> torch.Tensor:
    """Embeds the decodable images; undecodable ones (None) get a zero row (cosine 0 with everything)."""
    good = [im for im in images if im is not None]
    feats = embed(good) if good else torch.zeros(0, 1)
    out = torch.zeros(len(images), feats.shape[1] if good else 1)
    out[[k for k, im in enumerate(images) if im is not None]] = feats
    return out


def _image_pairs(
    train: Fingerprints, evaluation: Fingerprints, settings: AuditSettings
) -> Iterator[tuple[int, int, str, float]]:
    """(train image, eval image, kind, distance) over distinct images."""
    by_sha: dict[str, list[int]] = defaultdict(list)
    for v, digest in enumerate(evaluation.sha):
        if digest is not None:
            by_sha[digest].append(v)
    exact: set[tuple[int, int]] = set()
    for u, digest in enumerate(train.sha):
        for v in by_sha.get(digest, []) if digest is not None else []:
            exact.add((u, v))
            yield u, v, "exact_pixels", 0.0
    if settings.hash != "none":
        tr_idx, ev_idx = np.nonzero(train.ok)[0], np.nonzero(evaluation.ok)[0]
        blocks = hamming_pairs(
            train.hashes[tr_idx], evaluation.hashes[ev_idx], settings.radius, block_size=settings.block_size
        )
        for i, j, d in blocks:
            for u, v, dist in zip(tr_idx[i].tolist(), ev_idx[j].tolist(), d.tolist(), strict=True):
                if (u, v) not in exact:
                    yield u, v, settings.hash, float(dist)
    if train.embeddings is not None and evaluation.embeddings is not None:
        ev = evaluation.embeddings
        for a in range(0, len(train.embeddings), settings.block_size):
            cos = train.embeddings[a : a + settings.block_size] @ ev.T  # (blk, M)
            rows, cols = torch.nonzero(cos >= settings.cosine, as_tuple=True)
            for u, v, c in zip((rows + a).tolist(), cols.tolist(), cos[rows, cols].tolist(), strict=True):
                if (u, v) not in exact and train.ok[u] and evaluation.ok[v]:
                    yield u, v, "embedding", 1.0 - c


@dataclass
class AuditResult:
    """Pairs found between a training and an evaluation source, by item index."""

    train: Source
    evaluation: Source
    settings: AuditSettings
    pairs: list[Pair]
    unreadable: dict[str, list[str]]

    def flagged_train(self) -> set[int]:
        """Indices of training items in at least one pair."""
        return {p.train for p in self.pairs}

    def summary(self) -> dict[str, Any]:
        """Counts per kind: pairs, distinct train items, distinct eval items; totals and settings."""
        per_kind: dict[str, Any] = {}
        for kind in KINDS:
            ps = [p for p in self.pairs if p.kind == kind]
            if ps:
                per_kind[kind] = {
                    "pairs": len(ps),
                    "train_items": len({p.train for p in ps}),
                    "eval_items": len({p.eval for p in ps}),
                }
        flagged = self.flagged_train()
        return {
            "train": self.train.spec,
            "eval": self.evaluation.spec,
            "n_train": len(self.train),
            "n_eval": len(self.evaluation),
            "settings": vars(self.settings),
            "kinds": per_kind,
            "pairs": len(self.pairs),
            "flagged_train_items": len(flagged),
            "flagged_eval_items": len({p.eval for p in self.pairs}),
            "flagged_train_fraction": len(flagged) / max(len(self.train), 1),
            "unreadable": {k: len(v) for k, v in self.unreadable.items()},
        }


def audit(train: Source, evaluation: Source, settings: AuditSettings | None = None) -> AuditResult:
    """Find every training item that duplicates an evaluation item (see the module docstring).

    Args:
        train: the training source; evaluation: the evaluation source.
        settings: thresholds (:class:`AuditSettings`; defaults validated as the module docstring says).

    Returns:
        An :class:`AuditResult` whose pairs are sorted by (train item, eval item, kind).
    """
    settings = settings or AuditSettings()
    if settings.hash not in ("phash", "dhash", "none"):
        raise ValueError(f"hash must be 'phash', 'dhash' or 'none', got {settings.hash!r}")
    embed = _embedder(settings.embed, settings.embed_size) if settings.embed else None
    fp_train = fingerprint(train, settings, embed)
    fp_eval = fingerprint(evaluation, settings, embed)
    train_items, eval_items = _items_of(fp_train.image_of), _items_of(fp_eval.image_of)
    pairs = [
        Pair(i, j, kind, dist)
        for u, v, kind, dist in _image_pairs(fp_train, fp_eval, settings)
        for i in train_items[u]
        for j in eval_items[v]
    ]
    captions = caption_pairs(
        [it.caption for it in train.items], [it.caption for it in evaluation.items], ngram=settings.ngram
    )
    pairs += [Pair(i, j, kind, dist) for i, j, kind, dist in captions]
    pairs.sort(key=lambda p: (p.train, p.eval, KINDS.index(p.kind)))
    return AuditResult(train, evaluation, settings, pairs, {"train": fp_train.bad, "eval": fp_eval.bad})


def _items_of(image_of: np.ndarray) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(int(image_of.max()) + 1 if len(image_of) else 0)]
    for i, u in enumerate(image_of.tolist()):
        out[u].append(i)
    return out


def write_audit(result: AuditResult, out: Path, exclude: Path | None = None) -> dict[str, Any]:
    """Writes ``out/pairs.jsonl``, ``out/summary.json`` and the cleaned training list; returns the summary.

    ``pairs.jsonl``: one ``{"train", "eval", "kind", "distance", "train_index", "eval_index"}`` per pair
    (keys of :class:`~xmodal.audit.sources.AuditItem`). ``exclude``: the training items in no pair, one
    ``record`` per line.
    """
    out.mkdir(parents=True, exist_ok=True)
    tr, ev = result.train.items, result.evaluation.items
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as f:
        for p in result.pairs:
            row = {
                "train": tr[p.train].key,
                "eval": ev[p.eval].key,
                "kind": p.kind,
                "distance": p.distance,
                "train_index": p.train,
                "eval_index": p.eval,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = result.summary()
    if exclude is not None:
        flagged = result.flagged_train()
        exclude.parent.mkdir(parents=True, exist_ok=True)
        kept = [it.record for i, it in enumerate(tr) if i not in flagged]
        exclude.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
        summary["excluded"] = {"path": str(exclude), "kept": len(kept), "removed": len(flagged)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """Rows per kind: pairs, training items, evaluation items; then the totals."""
    rows = [(k, v["pairs"], v["train_items"], v["eval_items"]) for k, v in summary["kinds"].items()]
    rows.append(("any", summary["pairs"], summary["flagged_train_items"], summary["flagged_eval_items"]))
    head = ("kind", "pairs", "train items", "eval items")
    widths = [max(len(str(r[c])) for r in [head, *rows]) for c in range(4)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    n, m = summary["n_train"], summary["n_eval"]
    lines.append(f"{summary['flagged_train_items']} of {n} training items pair with {m} evaluation items")
    return "\n".join(lines)
