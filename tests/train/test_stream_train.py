"""Training from WebDataset shards: skip counts in summary.json, exact resume, ranks, start-up errors."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tests.ranks import as_rank, free_port

from xmodal.config import ExperimentConfig, load_config
from xmodal.data.emoji import EmojiDataset
from xmodal.data.prepare import prepare
from xmodal.data.shards import dataset_records, write_shards
from xmodal.errors import ConfigError
from xmodal.train import distributed
from xmodal.train.checkpoint import MODEL_FILE, OPTIM_FILE, read_safetensors
from xmodal.train.loop import Trainer
from xmodal.train.stream import ImageFn, ShardBatches

TINY = """
model:
  image_encoder: {name: vit, args: {image_size: 32, patch_size: 8, dim: 64, depth: 2, num_heads: 4},
                  unlocked_blocks: -1}
  text_encoder: {name: text_transformer, args: {dim: 64, depth: 2, num_heads: 4, max_length: 48},
                 unlocked_blocks: -1}
  image_head: {kind: mlp, hidden_dim: 96, dropout: 0.2}
  embed_dim: 64
  image_size: 32
data: {batch_size: 24, augment: {enabled: true, views: 1}, workers: 2, shuffle_buffer: 40,
       max_skip_fraction: 0.05}
optim: {warmup_steps: 3, lr: 3e-3}
train: {steps: 8, ckpt_every: 4, eval_every: 0, log_every: 1, threads: 1, seed: 5}
eval: {retrieval: [], zero_shot: []}
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 training emoji in 3 shards; 000000007.png is not an image, 000000061 has no caption."""
    out = tmp_path_factory.mktemp("emoji-shards")
    records = list(dataset_records(EmojiDataset(prepare("emoji"), split="train")))[:150]
    write_shards(iter(records), out, prefix="emoji", shard_size=50)
    for shard, change in (("emoji-000000.tar", {"000000007.png": b"no image"}), ("emoji-000001.tar", {})):
        path = out / shard
        with tarfile.open(path) as tar:
            files = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
        if shard == "emoji-000001.tar":
            files = [(n, d) for n, d in files if n != "000000061.txt"]
        with tarfile.open(path, "w") as tar:
            for name, data in files:
                data = change.get(name, data)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def tiny_config(tmp_path: Path, shards: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return load_config(path, [f"data.shards={shards}", *(overrides or [])])


def counts(skipped: dict) -> dict[str, int]:
    return {r: v["count"] for r, v in skipped["by_reason"].items()}


def simulated(cfg: ExperimentConfig, steps: int, world: int) -> dict:
    """The skip section that ``world`` ranks reading ``steps`` batches of the stream would report."""
    states = []
    for rank in range(world):
        src = ShardBatches(
            str(cfg.data.shards),
            ImageFn(lambda img: torch.zeros(3, 4, 4), None),
            lambda texts: texts,
            batch_size=cfg.data.batch_size // world,
            seed=cfg.train.seed,
            rank=rank,
            world=world,
            workers=cfg.data.workers,
            shuffle_buffer=cfg.data.shuffle_buffer,
            max_skip_fraction=1.0,
        )
        for _ in range(steps):
            src.next_samples()
        states.append(src.state())
    return src.summary(states)


def test_training_from_shards_counts_skips_in_the_summary(tmp_path: Path, shards: Path) -> None:
    cfg = tiny_config(tmp_path, shards)
    result = Trainer(cfg, tmp_path / "run", progress=False).fit()
    assert result.steps == 8
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    train = summary["skipped"]["train"]
    # 8 × 24 = 192 samples > the 148 usable ones: the first epoch was read whole, both skips counted
    assert set(counts(train)) == {"image_unreadable", "missing_caption"}
    assert train == simulated(cfg, 8, 1)
    assert summary["skipped"]["val"]["total"] == 0 and (tmp_path / "run" / "model" / MODEL_FILE).is_file()


def test_resume_from_shards_sees_the_same_samples(
    tmp_path: Path, shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    original = ShardBatches.next_samples

    def recording(self: ShardBatches) -> list[dict]:
        batch = original(self)
        seen.append([s["key"] for s in batch])
        return batch

    monkeypatch.setattr(ShardBatches, "next_samples", recording)
    cfg = tiny_config(tmp_path, shards)
    Trainer(cfg, tmp_path / "A", progress=False).fit()
    straight, seen[:] = list(seen), []
    Trainer(cfg, tmp_path / "B", progress=False).fit(stop_after=4)
    Trainer(cfg, tmp_path / "B", progress=False).fit(resume=True)  # a new Trainer: a new process
    assert seen == straight and len(straight) == 8
    for rel in (f"model/{MODEL_FILE}", f"checkpoints/last/{OPTIM_FILE}"):
        ta, tb = read_safetensors(tmp_path / "A" / rel), read_safetensors(tmp_path / "B" / rel)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), rel
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("A", "B"))
    assert sa["skipped"] == sb["skipped"]
    position = json.loads((tmp_path / "B" / "checkpoints/last/state.json").read_text())["data_position"]
    assert position["ranks"][0]["epoch"] == 1 and len(position["ranks"][0]["consumed"]) == 2


def test_fewer_shards_than_readers_fails_at_start_up(tmp_path: Path, shards: Path) -> None:
    cfg = tiny_config(tmp_path, shards, ["data.workers=4"])
    with pytest.raises(ConfigError, match="3 shards for 1 ranks x 4 readers"):
        Trainer(cfg, tmp_path / "run", progress=False).fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def _worker(rank: int, world: int, port: int, cfg: ExperimentConfig, run_dir: str) -> None:
    as_rank(rank, world, port)
    try:
        Trainer(cfg, Path(run_dir), progress=False).fit()
    finally:
        distributed.teardown()


def test_two_gloo_ranks_add_up_their_skip_counts(tmp_path: Path, shards: Path) -> None:
    overrides = ["data.workers=0", "data.batch_size=48", "train.steps=5"]
    cfg = tiny_config(tmp_path, shards, overrides)
    mp.spawn(_worker, args=(2, free_port(), cfg, str(tmp_path / "ddp")), nprocs=2, join=True)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    # 5 steps × 24 per rank: each rank read its first epoch whole (rank 0: 2 shards, rank 1: 1 shard)
    assert summary["skipped"]["train"] == simulated(cfg, 5, 2)
    assert set(counts(summary["skipped"]["train"])) == {"image_unreadable", "missing_caption"}
    state = json.loads((tmp_path / "ddp" / "checkpoints/last/state.json").read_text())
    assert [r["epoch"] for r in state["data_position"]["ranks"]] != [0, 0]
