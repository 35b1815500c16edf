"""The exact-resume test: 8 steps straight == 4 steps, a crash, then a new Trainer resuming to 8.

Everything random is covered: dropout in a head (global torch RNG, saved in the checkpoint), online
augmentation (per-sample generators from the batch plan), the batch plan itself (a function of seed and
step), AdamW moments and the warm-up + cosine schedule. Weights and optimizer state must be bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xmodal.config import ExperimentConfig, load_config
from xmodal.data.prepare import prepare
from xmodal.train.checkpoint import MODEL_FILE, OPTIM_FILE, read_safetensors
from xmodal.train.loop import Trainer, resume_available

TINY = """
model:
  image_encoder: {name: vit, args: {image_size: 32, patch_size: 8, dim: 64, depth: 2, num_heads: 4},
                  unlocked_blocks: -1}
  text_encoder: {name: text_transformer, args: {dim: 64, depth: 2, num_heads: 4, max_length: 48},
                 unlocked_blocks: -1}
  image_head: {kind: mlp, hidden_dim: 96, dropout: 0.2}
  text_head: {kind: linear, dropout: 0.1}
  embed_dim: 64
  image_size: 32
data: {batch_size: 24, augment: {enabled: true, views: 2}}
optim: {warmup_steps: 3, lr: 3e-3}
train: {steps: 8, ckpt_every: 4, eval_every: 4, log_every: 1, threads: 1, seed: 5}
eval: {retrieval: [], zero_shot: []}
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def tiny_config(tmp_path: Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return load_config(path, overrides or [])


def losses(run: Path) -> dict[int, float]:
    """Training loss per step from a run's metrics.jsonl (later lines win)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def assert_same_run(a: Path, b: Path) -> None:
    for rel in (f"model/{MODEL_FILE}", f"checkpoints/last/{MODEL_FILE}", f"checkpoints/last/{OPTIM_FILE}"):
        ta, tb = read_safetensors(a / rel), read_safetensors(b / rel)
        assert ta.keys() == tb.keys(), rel
        different = [k for k in ta if not torch.equal(ta[k], tb[k])]
        assert not different, f"{rel}: {different[:5]}"
    sa = json.loads((a / "checkpoints/last/state.json").read_text())
    sb = json.loads((b / "checkpoints/last/state.json").read_text())
    assert sa == sb  # step, data position, scheduler, optimizer param groups, best-so-far
    assert losses(a) == losses(b)


def run_straight_and_resumed(cfg: ExperimentConfig, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "A", tmp_path / "B"
    result = Trainer(cfg, a, progress=False).fit()
    assert result.steps == 8
    partial = Trainer(cfg, b, progress=False).fit(stop_after=4)
    assert partial.steps == 4 and resume_available(b) and not (b / "model").exists()
    resumed = Trainer(cfg, b, progress=False).fit(resume=True)  # a new Trainer: a new process
    assert resumed.steps == 8
    return a, b


def test_resume_is_bit_exact_from_scratch_towers(tmp_path):
    prepare("emoji")
    cfg = tiny_config(tmp_path)
    a, b = run_straight_and_resumed(cfg, tmp_path)
    assert_same_run(a, b)
    losses_a = losses(a)
    assert sorted(losses_a) == list(range(1, 9))
    # the towers trained (nothing was cached) and the head dropout was active
    sa = read_safetensors(a / "checkpoints/last" / OPTIM_FILE)
    assert any(k.startswith("state.") for k in sa)
    state = json.loads((a / "checkpoints/last/state.json").read_text())
    names = [n for g in state["optimizer_param_groups"] for n in g["names"]]
    assert any(n.startswith("image_encoder.") for n in names)
    assert any(n.startswith("text_encoder.") for n in names)
    assert state["best_step"] in (4, 8) and state["data_position"] == {"epoch": 0, "batch": 8}


def test_resume_is_bit_exact_with_cached_locked_towers(tmp_path, monkeypatch):
    real_data = prepare("emoji").parent
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(real_data)  # real data, private feature cache
    monkeypatch.setenv("XMODAL_HOME", str(home))
    cfg = tiny_config(
        tmp_path,
        [
            "model.image_encoder.unlocked_blocks=0",
            "model.text_encoder.unlocked_blocks=0",
            "data.variants=false",
            "train.eval_every=0",  # no validation before the crash: best-so-far is still empty
        ],
    )
    a, b = run_straight_and_resumed(cfg, tmp_path)
    assert_same_run(a, b)
    cached = sorted((home / "cache" / "features").glob("*.safetensors"))
    assert len(cached) == 4  # train images (2 views) + train captions, val images + val captions
    state = json.loads((a / "checkpoints/last/state.json").read_text())
    names = [n for g in state["optimizer_param_groups"] for n in g["names"]]
    assert not any(n.startswith(("image_encoder.", "text_encoder.")) for n in names)
    assert state["best_step"] is None


def test_resume_after_ctrl_c_between_checkpoints(tmp_path, monkeypatch):
    """A real interruption at step 7 loses steps 5–6; resuming from the step-4 checkpoint redoes them."""
    prepare("emoji")
    cfg = tiny_config(tmp_path)
    a, c = tmp_path / "A", tmp_path / "C"
    Trainer(cfg, a, progress=False).fit()

    from xmodal.train import loop

    calls = {"n": 0}

    def interrupt_at_step_7(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return loop_loss(*args, **kwargs)

    loop_loss = loop.clip_loss
    monkeypatch.setattr(loop, "clip_loss", interrupt_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, c, progress=False).fit()
    monkeypatch.undo()
    assert json.loads((c / "checkpoints/last/state.json").read_text())["step"] == 4
    assert sorted(losses(c)) == [1, 2, 3, 4, 5, 6]

    Trainer(cfg, c, progress=False).fit(resume=True)
    assert_same_run(a, c)
    records = [json.loads(line) for line in (c / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "loss" in r]
    assert train_steps == list(range(1, 9))  # the log holds each step once, as an uninterrupted run's
