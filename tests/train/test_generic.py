"""Tests for xmodal.train.generic: exact resume, trainable-only AdamW, best-weights selection, sampler."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xmodal.config import OptimConfig, TrainConfig
from xmodal.errors import CheckpointError, ConfigError
from xmodal.train.checkpoint import MODEL_FILE, OPTIM_FILE, read_safetensors
from xmodal.train.ema import WeightAverage
from xmodal.train.generic import EpochSampler, GenericTrainer, build_adamw


class Tiny(nn.Module):
    """A frozen embedding, a trainable MLP with dropout: every source of randomness in one model."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.3), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.frozen(x))


X = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


def make_trainer(run, *, steps=12, evaluate=None, select_best=True, ema_decay=0.0):
    torch.manual_seed(1)
    model = Tiny()
    sampler = EpochSampler(len(X), batch_size=8, seed=2)

    def loss_fn(m, idx):
        loss = nn.functional.cross_entropy(m(X[idx]), Y[idx])
        return loss, {"n": float(len(idx))}

    trainer = GenericTrainer(
        model,
        batch_fn=sampler.indices,
        loss_fn=loss_fn,
        optim=OptimConfig(lr=1e-2, warmup_steps=3, weight_decay=0.1, grad_clip=0.5),
        train=TrainConfig(
            steps=steps, seed=3, log_every=1, ckpt_every=4, eval_every=4, select_best=select_best
        ),
        run_dir=run,
        config={"recipe": "tiny"},
        evaluate=evaluate,
        ema_decay=ema_decay,
    )
    return trainer, model


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    straight, m1 = make_trainer(tmp_path / "a")
    straight.fit()
    crashed, _ = make_trainer(tmp_path / "b")
    assert crashed.fit(stop_after=6).steps == 6  # checkpoint at 4 and at 6 (the crash point)
    assert not (tmp_path / "b" / "model").exists()
    resumed, m2 = make_trainer(tmp_path / "b")
    resumed.fit(resume=True)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    opt_a = read_safetensors(tmp_path / "a" / "checkpoints" / "last" / OPTIM_FILE)
    opt_b = read_safetensors(tmp_path / "b" / "checkpoints" / "last" / OPTIM_FILE)
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)
    final = read_safetensors(tmp_path / "b" / "model" / MODEL_FILE)
    assert torch.equal(final["net.0.weight"], m1.net[0].weight)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"config": {"recipe": "tiny"}}
    assert [r["step"] for r in lines[1:]] == list(range(1, 13))  # no step logged twice
    assert all(r["n"] == 8.0 for r in lines[1:])


def test_only_trainable_parameters_are_optimised_and_the_loss_falls(tmp_path):
    trainer, model = make_trainer(tmp_path, steps=60)
    frozen_before = model.frozen.weight.clone()
    opt = build_adamw(model, OptimConfig())
    assert sum(len(g["params"]) for g in opt.param_groups) == 4  # the MLP's two weights and two biases
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    trainer.fit()
    assert torch.equal(model.frozen.weight, frozen_before)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()[1:]]
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])


def test_best_weights_are_kept(tmp_path):
    scores = iter([0.5, 0.9, 0.1])  # evaluations at steps 4, 8, 12: the best is step 8
    snapshots = {}

    def evaluate(m):
        step = 4 * (len(snapshots) + 1)
        snapshots[step] = m.net[0].weight.detach().clone()
        return {"score": next(scores)}

    trainer, model = make_trainer(tmp_path, evaluate=evaluate)
    result = trainer.fit()
    assert result.best_step == 8 and result.best_val == {"score": 0.9}
    assert torch.equal(model.net[0].weight, snapshots[8])
    assert not model.training


def test_sampler_epochs_are_permutations():
    s = EpochSampler(10, batch_size=3, seed=0)
    assert s.steps_per_epoch == 3
    epoch = torch.cat([s.indices(i) for i in range(3)])
    assert len(set(epoch.tolist())) == 9
    assert torch.equal(s.indices(4), EpochSampler(10, batch_size=3, seed=0).indices(4))
    assert not torch.equal(torch.cat([s.indices(i) for i in range(3, 6)]), epoch)
    with pytest.raises(ValueError):
        EpochSampler(0, batch_size=1, seed=0)


def test_no_trainable_parameters_is_a_config_error():
    with pytest.raises(ConfigError, match="no trainable"):
        build_adamw(nn.Linear(2, 2).requires_grad_(False), OptimConfig())


def test_lr_scale_splits_groups_and_scales_their_lr(tmp_path):
    _, model = make_trainer(tmp_path, steps=1)
    opt = build_adamw(model, OptimConfig(lr=1e-3), lambda name: 10.0 if name.startswith("net.0.") else 1.0)
    got = sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups)
    assert got == [(1e-3, 0.0, 1), (1e-3, 0.1, 1), (1e-2, 0.0, 1), (1e-2, 0.1, 1)]
    plain = build_adamw(model, OptimConfig(lr=1e-3), lambda name: 1.0)
    assert [(g["lr"], g["weight_decay"]) for g in plain.param_groups] == [(1e-3, 0.1), (1e-3, 0.0)]


def _raw_weights_per_step(tmp_path, steps):
    """The trainable weights after each step of a run without averaging (same seeds, same batches)."""
    trainer, model = make_trainer(tmp_path / "raw", steps=steps)
    seen = []
    loss_fn = trainer.loss_fn

    def recording(m, batch):  # called before step k's update: holds the weights after step k - 1
        seen.append({n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad})
        return loss_fn(m, batch)

    trainer.loss_fn = recording
    trainer.fit()
    seen.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    return seen  # seen[k]: the weights after k steps


def test_weight_average_is_the_ema_of_the_raw_weights(tmp_path):
    seen = _raw_weights_per_step(tmp_path, 12)
    expected = dict(seen[0])
    for k in range(12):
        d = min(0.9, (1 + k) / (10 + k))
        expected = {n: d * expected[n] + (1 - d) * seen[k + 1][n] for n in expected}
    trainer, model = make_trainer(tmp_path / "ema", steps=12, ema_decay=0.9)
    trainer.fit()  # no validation: the final model is the average
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, expected[n], rtol=1e-5, atol=1e-6)
            assert not torch.allclose(p, seen[12][n])  # not the raw weights
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert (
        set(WeightAverage(model, 0.9).shadow)
        == trainable
        == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}
    )


def test_fused_update_equals_the_reference():
    torch.manual_seed(0)
    a, b = Tiny(), Tiny()
    b.load_state_dict(a.state_dict())
    ea, eb = WeightAverage(a, 0.99), WeightAverage(b, 0.99)
    for _ in range(5):
        with torch.no_grad():
            for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
                noise = torch.randn_like(pa)
                pa.add_(noise)
                pb.add_(noise)
        ea.update()
        eb.update_reference()
    assert ea.updates == eb.updates == 5
    for n in ea.shadow:
        torch.testing.assert_close(ea.shadow[n], eb.shadow[n], rtol=1e-6, atol=1e-7)


def test_validation_sees_the_average_and_training_continues_on_the_raw_weights(tmp_path):
    seen = _raw_weights_per_step(tmp_path, 12)
    validated = []

    def evaluate(m):
        validated.append(m.net[0].weight.detach().clone())
        return {"score": float(len(validated) == 2)}  # the best: step 8

    trainer, model = make_trainer(tmp_path / "ema", ema_decay=0.9, evaluate=evaluate)
    result = trainer.fit()
    assert result.best_step == 8
    assert not torch.allclose(validated[0], seen[4]["net.0.weight"])  # the average, not the raw weights
    assert torch.equal(model.net[0].weight, validated[1])  # the kept weights: the average at step 8
    # the raw trajectory is unchanged by averaging: checkpointed raw weights equal the plain run's
    raw = read_safetensors(tmp_path / "ema" / "checkpoints" / "last" / MODEL_FILE)
    torch.testing.assert_close(raw["net.0.weight"], seen[12]["net.0.weight"], rtol=0, atol=0)


def test_resume_with_averaging_is_exact(tmp_path):
    straight, m1 = make_trainer(tmp_path / "a", ema_decay=0.8)
    straight.fit()
    crashed, _ = make_trainer(tmp_path / "b", ema_decay=0.8)
    crashed.fit(stop_after=6)
    resumed, m2 = make_trainer(tmp_path / "b", ema_decay=0.8)
    resumed.fit(resume=True)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    state = json.loads((tmp_path / "b" / "checkpoints" / "last" / "state.json").read_text())
    assert state["ema_updates"] == 12


def test_resume_with_another_averaging_setting_is_refused_before_loading(tmp_path):
    crashed, _ = make_trainer(tmp_path / "b")
    crashed.fit(stop_after=4)
    resumed, model = make_trainer(tmp_path / "b", ema_decay=0.8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="without a weight average"):
        resumed.fit(resume=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="ema_decay"):
        make_trainer(tmp_path / "c", ema_decay=1.0)
