"""Tests for the emoji dataset: captions, items and variants, skipped bad files, splits, the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xmodal.data.emoji import EmojiDataset, emoji_caption, read_splits
from xmodal.data.prepare import split_of
from xmodal.errors import DataError
from xmodal.registry import DATASETS


def _write_splits(root: Path, splits: dict[str, list[str]]) -> None:
    (root / "splits.json").write_text(json.dumps({"splits": splits}), encoding="utf-8")


@pytest.fixture
def root(tmp_path: Path, make_package) -> Path:
    """A prepared-looking emoji folder: the fake package plus a hand-made split."""
    folder = make_package(tmp_path).folder
    _write_splits(folder, {"train": ["1F600", "1F385"], "val": [], "test": ["2B05-FE0F"]})
    return folder


def test_caption_format() -> None:
    entry = {
        "name": "GRINNING FACE",
        "short_names": ["grinning"],
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
    }
    assert emoji_caption(entry) == "grinning face (grinning), smileys & emotion, face smiling"


def test_caption_drops_duplicates_and_normalises() -> None:
    entry = {
        "name": "LEFTWARDS BLACK ARROW",
        "short_names": ["arrow_left", "leftwards_black_arrow", "arrow-left"],
        "category": "Symbols",
        "subcategory": "arrow",
    }
    assert emoji_caption(entry) == "leftwards black arrow (arrow left), symbols, arrow"
    assert emoji_caption({"name": "", "short_names": ["flag-va", "va"], "category": "Flags"}) == (
        "flag va (va), flags"
    )
    assert emoji_caption({"name": "", "short_names": [], "category": "Symbols"}) == ""


def test_items_and_variants(root: Path) -> None:
    ds = EmojiDataset(root)
    assert len(ds) == 5 and ds.skips.total == 0 and ds.n_seen == 5
    assert ds.emoji_ids() == ["1F600", "1F385", "2B05-FE0F"]
    santa = [item for item in ds.items if item.emoji_id == "1F385"]
    assert [item.unified for item in santa] == ["1F385", "1F385-1F3FB", "1F385-1F3FF"]
    assert {item.caption for item in santa} == {"father christmas (santa), people & body, person fantasy"}
    assert santa[1].image_path.name == "1f385-1f3fb.png" and santa[1].category == "People & Body"
    assert len(EmojiDataset(root, variants=False)) == 3
    assert DATASETS.get("emoji") is EmojiDataset


def test_load_gives_rgb_over_white(root: Path) -> None:
    img, caption = EmojiDataset(root).load(0)
    pixels = np.asarray(img)
    assert img.mode == "RGB" and pixels.shape == (64, 64, 3)
    assert pixels[0, 0].tolist() == [255, 255, 255]  # transparent corner
    assert pixels[32, 32].tolist() == [0, 0, 200]  # the fixture's opaque square, first emoji
    assert caption.startswith("grinning face")


def test_bad_files_and_empty_captions_are_skipped_and_counted(root: Path, fake_entries) -> None:
    images = root / "img" / "google" / "64"
    (images / "1f600.png").write_bytes(b"")
    data = (images / "1f385.png").read_bytes()
    (images / "1f385.png").write_bytes(data[: len(data) // 2])
    (images / "1f385-1f3fb.png").write_text("not an image")
    (images / "1f385-1f3ff.png").unlink()
    fake_entries[2]["name"], fake_entries[2]["short_names"] = "", []
    (root / "emoji.json").write_text(json.dumps(fake_entries), encoding="utf-8")

    with pytest.raises(DataError, match=r"5 of 5 skipped \(100.00%, limit 1.00%\)"):
        EmojiDataset(root)
    ds = EmojiDataset(root, max_skip_fraction=1.0)
    assert len(ds) == 0
    assert ds.skips.counts == {
        "empty_file": 1,
        "truncated": 1,
        "unreadable": 1,
        "missing": 1,
        "empty_caption": 1,
    }
    assert ds.skips.examples["empty_caption"] == ["2B05-FE0F"]


def test_one_bad_image_within_the_limit(root: Path) -> None:
    (root / "img" / "google" / "64" / "1f385-1f3ff.png").write_bytes(b"")
    ds = EmojiDataset(root, max_skip_fraction=0.25)  # 1 of 5 = 20 %
    assert len(ds) == 4 and ds.skips.total == 1


def test_split_filter_follows_splits_json(root: Path) -> None:
    train = EmojiDataset(root, split="train")
    test = EmojiDataset(root, split="test")
    assert train.emoji_ids() == ["1F600", "1F385"] and len(train) == 4  # santa's variants come along
    assert test.emoji_ids() == ["2B05-FE0F"] and len(EmojiDataset(root, split="val")) == 0
    assert read_splits(root)["1F385"] == "train"


def test_emoji_missing_from_splits_is_counted(root: Path) -> None:
    _write_splits(root, {"train": ["1F600", "1F385"], "val": [], "test": []})
    ds = EmojiDataset(root, split="test", max_skip_fraction=1.0)
    assert len(ds) == 0 and ds.skips.counts == {"no_split": 1}


def test_missing_data_tells_how_to_prepare(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DataError, match="run `xmodal data prepare emoji`"):
        EmojiDataset(tmp_path / "nowhere")
    (root / "splits.json").unlink()
    assert len(EmojiDataset(root)) == 5  # "all" needs no split file
    with pytest.raises(DataError, match=r"splits\.json is missing"):
        EmojiDataset(root, split="train")
    (root / "emoji.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read emoji list"):
        EmojiDataset(root)


@pytest.mark.slow
def test_real_emoji(real_emoji_root: Path) -> None:
    full = EmojiDataset(real_emoji_root)
    assert len(full.emoji_ids()) == 1_911 and len(full) == 3_786 and full.skips.total == 0
    splits = {name: EmojiDataset(real_emoji_root, split=name) for name in ("train", "val", "test")}
    ids = {name: set(ds.emoji_ids()) for name, ds in splits.items()}
    assert len(ids["test"]) >= 300
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert sum(len(ds) for ds in splits.values()) == 3_786
    # variants follow their base emoji, and the saved split is the hash rule
    for name, ds in splits.items():
        assert all(split_of(item.emoji_id) == name for item in ds.items)
    assert any(item.unified != item.emoji_id for item in splits["test"].items)
    saved = read_splits(real_emoji_root)
    assert [list(saved.values()).count(name) for name in ("train", "val", "test")] == [1_333, 183, 395]
    again = EmojiDataset(real_emoji_root, split="test")
    assert [item.unified for item in again.items] == [item.unified for item in splits["test"].items]
    img, caption = splits["test"].load(0)
    assert img.size == (64, 64) and img.mode == "RGB" and caption
