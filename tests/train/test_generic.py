"""Tests for xmodal.train.generic: exact resume, trainable-only AdamW, best-weights selection, sampler."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xmodal.config import OptimConfig, TrainConfig
from xmodal.errors import ConfigError
from xmodal.train.checkpoint import MODEL_FILE, OPTIM_FILE, read_safetensors
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


def make_trainer(run, *, steps=12, evaluate=None, select_best=True):
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
