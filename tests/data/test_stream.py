"""Streaming shards with injected corrupt samples: every corrupt one counted by reason, none lost.

Real emoji data (120 validation images) is written as 8 shards of 15 samples, then damaged: a
truncated PNG, a non-image PNG, a missing caption, an empty caption, invalid JSON, and a shard cut
inside a member. The stream is read by 1 process, 2 data-loader workers, and 2 simulated ranks × 2
workers; the counts and the set of usable keys must be the same every time.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from xmodal.data.emoji import EmojiDataset
from xmodal.data.shards import dataset_records, resolve_shards, write_shards
from xmodal.data.transforms import ImagePreprocess, TrainAugment
from xmodal.errors import ConfigError, DataError
from xmodal.train.stream import ImageFn, ShardBatches

N, SHARD = 120, 15
EXPECTED = {
    "image_truncated": 1,  # 000000002.png cut in half
    "image_unreadable": 1,  # 000000005.png is text
    "missing_caption": 1,  # 000000016.txt removed
    "empty_caption": 1,  # 000000020.txt is blank
    "bad_json": 1,  # 000000033.json is not JSON
    "truncated_member": 1,  # shard 3 ends inside 000000050.png
    "truncated_shard": 9,  # 000000051 ... 000000059, listed in shards.json, never came
}
BAD_KEYS = {2, 5, 16, 20, 33, *range(50, 60)}
GOOD = sorted(f"{k:09d}" for k in range(N) if k not in BAD_KEYS)


def rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite a shard with some members replaced (bytes) or removed (None)."""
    with tarfile.open(path) as tar:
        files = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w") as tar:
        for name, data in files:
            data = change.get(name, data)
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def cut_inside(path: Path, member: str) -> None:
    """Truncate the shard file in the middle of ``member``'s data."""
    with tarfile.open(path) as tar:
        info = tar.getmember(member)
    data = path.read_bytes()
    path.write_bytes(data[: info.offset_data + info.size // 2])


@pytest.fixture(scope="module")
def shard_dir(real_emoji_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    records = list(dataset_records(EmojiDataset(real_emoji_root, split="val")))[:N]
    write_shards(iter(records), out, prefix="emoji", shard_size=SHARD)
    with tarfile.open(out / "emoji-000000.tar") as tar:
        half = tar.extractfile("000000002.png").read()  # type: ignore[union-attr]
    rewrite(
        out / "emoji-000000.tar", {"000000002.png": half[: len(half) // 2], "000000005.png": b"not a png"}
    )
    rewrite(out / "emoji-000001.tar", {"000000016.txt": None, "000000020.txt": b"  \n"})
    rewrite(out / "emoji-000002.tar", {"000000033.json": b"{not json"})
    cut_inside(out / "emoji-000003.tar", "000000050.png")
    return out


def image_fn(augment: bool = False) -> ImageFn:
    pre = ImagePreprocess(size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    aug = TrainAugment(size=16, mean=(0.5,) * 3, std=(0.5,) * 3) if augment else None
    return ImageFn(pre, aug)


def batches(shards: str, **kw: object) -> ShardBatches:
    fn = kw.pop("fn", None) or image_fn()
    args: dict = {"batch_size": 1, "seed": 3, "shuffle_buffer": 20, "max_skip_fraction": 1.0, **kw}
    return ShardBatches(shards, fn, lambda texts: texts, **args)  # type: ignore[arg-type]


def one_epoch(source: ShardBatches) -> tuple[list[dict], list[dict]]:
    """(usable samples, skip events) of one epoch of ``source``."""
    ok, skipped = [], []
    while (event := source.next_event()) is not None:
        (ok if event["kind"] == "ok" else skipped).append(event)
    return ok, skipped


def key(event: dict) -> str:
    return event["key"].rsplit(":", 1)[1]


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (1, 2), (2, 2)])
def test_every_corrupt_sample_counted_and_none_lost(shard_dir: Path, world: int, workers: int) -> None:
    ok: list[dict] = []
    states = []
    for rank in range(world):
        source = batches(str(shard_dir), rank=rank, world=world, workers=workers)
        good, skipped = one_epoch(source)
        assert all(e["caption"] and e["image"].shape == (3, 16, 16) for e in good)
        ok += good
        states.append(source.state())
        assert source.epoch == 1 and source.n_seen == len(good) + len(skipped)
    assert sorted(key(e) for e in ok) == GOOD  # every usable sample exactly once, across ranks and workers
    summary = source.summary(states)
    assert {r: v["count"] for r, v in summary["by_reason"].items()} == EXPECTED
    assert summary["total"] == N - len(GOOD) and summary["seen"] == N  # every sample accounted for
    assert summary["by_reason"]["truncated_member"]["examples"][0].endswith("emoji-000003.tar:000000050")


def test_epochs_reshuffle_and_augmentation_follows_the_key_not_the_reader(shard_dir: Path) -> None:
    single = batches(str(shard_dir), fn=image_fn(augment=True))
    first, _ = one_epoch(single)
    second, _ = one_epoch(single)
    assert sorted(map(key, second)) == GOOD and list(map(key, second)) != list(map(key, first))
    ranked = {}
    for rank in range(2):
        ranked.update(
            {
                key(e): e["image"]
                for e in one_epoch(
                    batches(str(shard_dir), fn=image_fn(augment=True), rank=rank, world=2, workers=2)
                )[0]
            }
        )
    for e in first:  # epoch 0's augmentation of a key does not depend on which reader decoded it
        assert torch.equal(ranked[key(e)], e["image"]), key(e)
    assert not torch.equal(first[0]["image"], next(e for e in second if key(e) == key(first[0]))["image"])


def test_fewer_shards_than_readers_is_a_clear_error(shard_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"8 shards for 2 ranks x 5 readers per rank \(data.workers=5\)"):
        batches(str(shard_dir), rank=0, world=2, workers=5)
    batches(str(shard_dir), rank=1, world=2, workers=4)  # 8 readers for 8 shards is fine


def test_resume_continues_with_the_same_keys(shard_dir: Path) -> None:
    kw = {"batch_size": 16, "workers": 2, "shuffle_buffer": 30}
    straight = batches(str(shard_dir), **kw)
    keys = [list(map(key, straight.next_samples())) for _ in range(12)]  # 192 samples: into epoch 1
    assert straight.epoch == 1
    first = batches(str(shard_dir), **kw)
    keys_a = [list(map(key, first.next_samples())) for _ in range(5)]
    state = json.loads(json.dumps(first.state()))  # through the checkpoint's JSON
    resumed = batches(str(shard_dir), **kw)
    resumed.load_state(state)
    keys_b = [list(map(key, resumed.next_samples())) for _ in range(7)]
    assert keys_a + keys_b == keys
    assert resumed.state() == straight.state()  # same position and skip counts
    with pytest.raises(ConfigError, match=r"same data\.workers"):
        batches(str(shard_dir), batch_size=16, workers=1).load_state(state)
    with pytest.raises(ConfigError, match="written by 1 ranks reading 8 shards, this run has 2 ranks"):
        batches(str(shard_dir), batch_size=16, workers=2, world=2).load_state(state)


def test_too_many_skips_is_a_data_error(shard_dir: Path) -> None:
    source = batches(str(shard_dir), max_skip_fraction=0.05)  # 15 of 120 skipped
    with pytest.raises(DataError, match="too many unusable streamed samples: 15 of 120"):
        one_epoch(source)


def test_damaged_shards_without_and_with_a_manifest(shard_dir: Path, tmp_path: Path) -> None:
    for name in ("emoji-000000.tar", "emoji-000003.tar", "emoji-000004.tar", "emoji-000005.tar"):
        shutil.copy(shard_dir / name, tmp_path / name)
    (tmp_path / "emoji-000004.tar").write_bytes(b"garbage, not a tar" * 50)  # unreadable
    with tarfile.open(shard_dir / "emoji-000005.tar") as tar:
        third = tar.getmember(f"{5 * SHARD + 2:09d}.json").offset  # the third sample's first header
    data = (shard_dir / "emoji-000005.tar").read_bytes()
    (tmp_path / "emoji-000005.tar").write_bytes(data[: third + 100])  # cut inside a header
    _, skipped = one_epoch(batches(str(tmp_path)))  # no shards.json: unknown losses count once
    counts = Counter(e["reason"] for e in skipped)
    assert counts == {
        "image_truncated": 1,
        "image_unreadable": 1,
        "truncated_member": 1,
        "unreadable_shard": 1,
        "truncated_shard": 1,
    }
    manifest = json.loads((shard_dir / "shards.json").read_text())
    manifest["shards"] = [s for s in manifest["shards"] if (tmp_path / s["name"]).exists()]
    (tmp_path / "shards.json").write_text(json.dumps(manifest))
    assert len(resolve_shards(str(tmp_path)).counts) == 4
    ok, skipped = one_epoch(batches(str(tmp_path)))
    counts = Counter(e["reason"] for e in skipped)
    assert counts["unreadable_shard"] == SHARD and counts["truncated_member"] == 1
    assert counts["truncated_shard"] == 9 + (SHARD - 2)  # shard 3's tail, shard 5 after its 2 whole samples
    assert len(ok) + len(skipped) == 4 * SHARD


def test_hand_made_shard_missing_image_bad_caption_and_duplicate_member(
    tmp_path: Path, shard_dir: Path
) -> None:
    with tarfile.open(shard_dir / "emoji-000007.tar") as tar:
        png = tar.extractfile(f"{7 * SHARD:09d}.png").read()  # type: ignore[union-attr]
    members = [
        ("a.png", png), ("a.txt", b"a face"),
        ("b.txt", b"no image here"),
        ("c.png", png), ("c.txt", b"\xff\xfe not utf-8"),
        ("d.png", png), ("d.txt", b"one"), ("d.txt", b"two"),
        ("e.jpg", png), ("e.txt", b"a png named .jpg decodes all the same"),
    ]  # fmt: skip
    path = tmp_path / "hand.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ok, skipped = one_epoch(batches(str(tmp_path)))
    events = {key(e): e.get("reason", "ok") for e in ok + skipped}
    assert events == {"a": "ok", "b": "missing_image", "c": "bad_caption", "d": "duplicate_member", "e": "ok"}
