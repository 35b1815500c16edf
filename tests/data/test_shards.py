"""Writing WebDataset shards (img2dataset layout) from real emoji data, the manifest, and the CLI."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.cli import main
from xmodal.data.emoji import EmojiDataset
from xmodal.data.fashion_mnist import FashionMNIST
from xmodal.data.shards import dataset_records, resolve_shards, write_shards
from xmodal.errors import ConfigError


@pytest.fixture(scope="module")
def val_emoji(real_emoji_root: Path) -> EmojiDataset:
    return EmojiDataset(real_emoji_root, split="val")


def members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def test_layout_keys_metadata_and_manifest(tmp_path: Path, val_emoji: EmojiDataset) -> None:
    items = val_emoji.items[:25]
    records = itertools.islice(dataset_records(val_emoji), 25)
    manifest = write_shards(records, tmp_path, prefix="emoji", shard_size=10, info={"dataset": "emoji"})
    names = [s["name"] for s in manifest["shards"]]
    assert names == ["emoji-000000.tar", "emoji-000001.tar", "emoji-000002.tar"]
    assert [s["samples"] for s in manifest["shards"]] == [10, 10, 5] and manifest["samples"] == 25
    assert manifest["pattern"] == "emoji-{000000..000002}.tar"
    assert json.loads((tmp_path / "shards.json").read_text()) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "shards.json"]  # no temporary files
    for shard in manifest["shards"]:
        assert hashlib.sha256((tmp_path / shard["name"]).read_bytes()).hexdigest() == shard["sha256"]
    files = dict(members(tmp_path / "emoji-000001.tar"))
    assert sorted(files) == sorted(f"{k:09d}.{e}" for k in range(10, 20) for e in ("png", "txt", "json"))
    item = items[13]
    assert files["000000013.png"] == item.image_path.read_bytes()  # the file's own bytes
    assert files["000000013.txt"].decode() == item.caption
    meta = json.loads(files["000000013.json"])
    assert meta == {
        "key": "000000013",
        "caption": item.caption,
        "width": 64,
        "height": 64,
        "emoji_id": item.emoji_id,
        "unified": item.unified,
        "category": item.category,
        "subcategory": item.subcategory,
        "image_path": item.image_path.name,
    }


def test_same_data_gives_byte_identical_shards(tmp_path: Path, val_emoji: EmojiDataset) -> None:
    a = write_shards(
        itertools.islice(dataset_records(val_emoji), 12), tmp_path / "a", prefix="e", shard_size=5
    )
    b = write_shards(
        itertools.islice(dataset_records(val_emoji), 12), tmp_path / "b", prefix="e", shard_size=5
    )
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]


def test_labelled_dataset_gets_prompt_captions_and_png(real_fashion_mnist_root: Path) -> None:
    fm = FashionMNIST(real_fashion_mnist_root, split="test")
    rec = next(iter(dataset_records(fm)))
    label = int(fm.labels[0])
    assert rec.caption == fm.templates[0].format(fm.classnames[label])
    assert rec.fields == {"label": label, "classname": fm.classnames[label], "index": 0}
    img = Image.open(io.BytesIO(rec.image))
    assert rec.ext == "png" and img.size == (28, 28)
    assert np.array_equal(np.asarray(img.convert("RGB")), np.asarray(fm.load(0)[0]))


def test_resolve_folder_pattern_and_errors(tmp_path: Path, val_emoji: EmojiDataset) -> None:
    write_shards(itertools.islice(dataset_records(val_emoji), 9), tmp_path, prefix="e", shard_size=3)
    by_folder = resolve_shards(str(tmp_path))
    assert [Path(p).name for p in by_folder.paths] == ["e-000000.tar", "e-000001.tar", "e-000002.tar"]
    assert set(by_folder.counts.values()) == {3}
    by_pattern = resolve_shards(str(tmp_path / "e-{000001..000002}.tar"))
    assert [Path(p).name for p in by_pattern.paths] == ["e-000001.tar", "e-000002.tar"]
    assert by_pattern.counts == {p: 3 for p in by_pattern.paths}  # counts from the folder's manifest
    (tmp_path / "shards.json").unlink()
    assert resolve_shards(str(tmp_path)).paths == by_folder.paths and not resolve_shards(str(tmp_path)).counts
    with pytest.raises(ConfigError, match="1 of 2 shards do not exist"):
        resolve_shards(str(tmp_path / "e-{000002..000003}.tar"))
    with pytest.raises(ConfigError, match="empty"):
        resolve_shards(" ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \.tar shards"):
        resolve_shards(str(tmp_path / "empty"))


def test_cli_writes_shards_and_rejects_a_bad_dataset(tmp_path: Path, real_emoji_root: Path, capsys) -> None:
    out = tmp_path / "shards"
    code = main(["data", "shard", "emoji", "--split", "val", "--out", str(out), "--shard-size", "200"])
    assert code == 0
    manifest = json.loads((out / "shards.json").read_text())
    assert manifest["dataset"] == "emoji" and manifest["split"] == "val"
    assert manifest["samples"] == len(EmojiDataset(real_emoji_root, split="val"))
    assert [s["samples"] for s in manifest["shards"]][:2] == [200, 200]
    assert "shards" in capsys.readouterr().out
    assert main(["data", "shard", "no-such-dataset", "--out", str(tmp_path / "x")]) == 2
    assert "unknown dataset 'no-such-dataset'" in capsys.readouterr().err
    assert main(["data", "shard", "emoji", "--out", str(tmp_path / "y"), "--shard-size", "0"]) == 2
