"""A short 2-rank training run (gloo, CPU): identical weights on both ranks, equal to 1 rank × 2B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tests.ranks import as_rank, free_port

from xmodal.config import load_config
from xmodal.errors import ConfigError
from xmodal.train import distributed

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"
# no dropout: 2 ranks draw masks for 2 halves, 1 rank for the whole (augmentation is per-sample seeded)
OVERRIDES = [
    "train.steps=4",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "data.batch_size=32",
    "eval.max_images=64",
]


def _worker(rank: int, world: int, port: int, run_dir: str, out: str) -> None:
    as_rank(rank, world, port)
    from xmodal.train.loop import Trainer

    try:
        trainer = Trainer(load_config(RECIPE, OVERRIDES), Path(run_dir), progress=False)
        result = trainer.fit()
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save({"state": state, "best_step": result.best_step}, f"{out}/rank{rank}.pt")
    finally:
        distributed.teardown()


def test_two_ranks_end_identical_and_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["best_step"] == r1["best_step"]
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k  # DDP keeps the ranks in lock-step
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()  # rank 0 wrote the model
    from xmodal.train.loop import Trainer

    single = Trainer(load_config(RECIPE, OVERRIDES), tmp_path / "single", progress=False)
    single.fit()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-4, atol=1e-5, msg=k)


def test_batch_not_divisible_by_ranks_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from xmodal.train import loop

    monkeypatch.setattr(loop.distributed, "setup", lambda: distributed.DistContext(rank=0, world=3))
    monkeypatch.setattr(loop.distributed, "barrier", lambda ctx: None)
    trainer = loop.Trainer(load_config(RECIPE, [*OVERRIDES, "data.batch_size=32"]), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="not divisible by the 3 ranks"):
        trainer.fit()


def test_torchrun_runs_the_cli_unchanged(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_port", str(free_port())]
    cmd = [*launcher, "-m", "xmodal", "train", str(RECIPE), "--set", "train.steps=4"]
    cmd += ["--set", "eval.max_images=64", "--out", str(out), "--no-progress"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4 and metrics["emoji_test"]["n"] >= 300
    assert proc.stdout.count("metrics:") == 1  # only rank 0 evaluates and reports
