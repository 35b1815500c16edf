"""Tests for xmodal.train.features (the locked-tower feature cache) and its use in PairData."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from xmodal.data.transforms import TrainAugment
from xmodal.models.factory import build_model, clip_vit_tiny, image_preprocess
from xmodal.train.batches import BatchEntry
from xmodal.train.features import FeatureCache, files_fingerprint, texts_fingerprint, weights_fingerprint
from xmodal.train.pairs import PairData

PARTS = {"encoder": "vit", "args": {"depth": 2}, "weights": "abc", "size": 32, "data": "d1", "kind": "image"}


class Counter:
    """``compute`` callback that counts its calls and returns a fixed tensor."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return self.value


def test_second_call_hits(tmp_path):
    cache = FeatureCache(tmp_path)
    compute = Counter(torch.arange(12.0).view(3, 4))
    first = cache.get_or_compute(PARTS, compute)
    second = cache.get_or_compute(dict(PARTS), compute)
    assert compute.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first, second) and torch.equal(second, compute.value)
    # a new cache object on the same folder (a new process) also hits
    other = FeatureCache(tmp_path)
    assert torch.equal(other.get_or_compute(PARTS, compute), compute.value) and compute.calls == 1
    key = FeatureCache.key(PARTS)
    assert (tmp_path / f"{key}.safetensors").is_file() and (tmp_path / f"{key}.json").is_file()


@pytest.mark.parametrize(
    "change",
    [
        {"encoder": "efficientnet_lite0"},
        {"args": {"depth": 3}},
        {"weights": "abd"},
        {"size": 64},
        {"data": "d2"},
        {"kind": "text"},
        {"views": 2},
    ],
)
def test_any_changed_key_part_misses(tmp_path, change):
    cache = FeatureCache(tmp_path)
    compute = Counter(torch.ones(2, 2))
    cache.get_or_compute(PARTS, compute)
    cache.get_or_compute({**PARTS, **change}, compute)
    assert compute.calls == 2 and cache.misses == 2 and cache.hits == 0


def test_key_ignores_dict_order():
    assert FeatureCache.key({"a": 1, "b": [1, 2]}) == FeatureCache.key({"b": [1, 2], "a": 1})


@pytest.mark.parametrize(
    "garbage", [b"", b"not a safetensors file at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{"]
)
def test_corrupt_cache_file_is_recomputed(tmp_path, garbage):
    cache = FeatureCache(tmp_path)
    compute = Counter(torch.full((2, 3), 7.0))
    cache.get_or_compute(PARTS, compute)
    (tmp_path / f"{FeatureCache.key(PARTS)}.safetensors").write_bytes(garbage)
    again = FeatureCache(tmp_path)
    assert torch.equal(again.get_or_compute(PARTS, compute), compute.value)
    assert compute.calls == 2 and again.misses == 1
    assert torch.equal(FeatureCache(tmp_path).get_or_compute(PARTS, compute), compute.value)
    assert compute.calls == 2  # the rewritten file is good again


def test_fingerprints_track_what_they_hash(tmp_path):
    model = build_model(clip_vit_tiny())
    enc = model.image_encoder
    fp = weights_fingerprint(enc)
    assert fp == weights_fingerprint(enc) and len(fp) == 16
    with torch.no_grad():
        enc.norm.weight[0] += 1e-6
    assert weights_fingerprint(enc) != fp
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"1")
    b.write_bytes(b"2")
    fa = files_fingerprint([a, b])
    assert fa != files_fingerprint([b, a])
    b.write_bytes(b"3")
    assert fa != files_fingerprint([a, b])
    assert texts_fingerprint(["x", "y"]) != texts_fingerprint(["x y"])


# -- PairData: cached pooled features equal recomputed ones ------------------------------------------
@dataclass(frozen=True)
class Item:
    image_path: Path
    caption: str
    emoji_id: str


class TinyPairs:
    """Five coloured squares with captions; items 0 and 1 share a caption (one group)."""

    def __init__(self, root: Path) -> None:
        self.items = []
        colours = [(255, 0, 0), (200, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 0)]
        captions = ["red square", "red square", "green square", "blue square", "yellow square"]
        for i, (c, cap) in enumerate(zip(colours, captions, strict=True)):
            path = root / f"{i}.png"
            img = Image.new("RGB", (40, 40), (255, 255, 255))
            img.paste(Image.new("RGB", (20, 20), c), (5 + i, 10))
            img.save(path)
            self.items.append(Item(path, cap, cap))

    def load(self, i: int) -> tuple[Image.Image, str]:
        return Image.open(self.items[i].image_path).convert("RGB"), self.items[i].caption


def locked_tiny_model():
    cfg = clip_vit_tiny()
    cfg.image_encoder.unlocked_blocks = 0
    cfg.text_encoder.unlocked_blocks = 0
    torch.manual_seed(0)
    return build_model(cfg).train()


def test_pair_data_cached_features_match_recomputed(tmp_path):
    ds = TinyPairs(tmp_path)
    model = locked_tiny_model()
    pre = image_preprocess(model, 32)
    aug = TrainAugment(size=32, mean=model.image_encoder.image_mean, std=model.image_encoder.image_std)
    key_parts = {"image": {"encoder": "vit", "weights": weights_fingerprint(model.image_encoder)}, "text": {}}
    cache = FeatureCache(tmp_path / "cache")

    def make() -> PairData:
        return PairData(
            ds,
            model,
            preprocess=pre,
            augment=aug,
            cache=cache,
            cache_image=True,
            cache_text=True,
            views=3,
            key_parts=key_parts,
        )

    data = make()
    assert data.groups == [[0, 1], [2], [3], [4]] and data.views == 3
    assert data.image_cache is not None and data.image_cache.shape == (5, 3, 64)
    assert data.text_cache is not None and data.text_cache.shape == (4, 64)
    assert cache.misses == 2
    again = make()
    assert cache.hits == 2 and torch.equal(again.image_cache, data.image_cache)

    batch = [BatchEntry(group=0, item=1, view=0, aug_seed=0), BatchEntry(group=3, item=4, view=2, aug_seed=0)]
    inputs = data.batch_inputs(batch, train=True)
    with torch.no_grad():
        model.eval()
        clean = model.image_pooled(pre(ds.load(1)[0])[None])[0]
        text = model.text_pooled(model.tokenize(["red square", "yellow square"]))
    torch.testing.assert_close(inputs["image_pooled"][0], clean)
    torch.testing.assert_close(inputs["text_pooled"], text)
    assert not torch.allclose(inputs["image_pooled"][1], data.image_cache[4, 0])  # an augmented view

    uncached = PairData(
        ds,
        model,
        preprocess=pre,
        augment=aug,
        cache=None,
        cache_image=False,
        cache_text=False,
        views=3,
        key_parts=key_parts,
    )
    assert uncached.views == 1 and uncached.image_cache is None
    torch.testing.assert_close(uncached.image_embeddings(), data.image_embeddings())
    torch.testing.assert_close(uncached.text_embeddings(), data.text_embeddings())
