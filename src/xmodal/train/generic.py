"""A small generic trainer for models other than the CLIP dual encoder (captioners, VQA, LLaVA, ...).

The caller supplies the model, ``batch_fn(step) -> batch`` (a pure function of the step, so resuming
needs no data-loader state; :class:`EpochSampler` is one) and ``loss_fn(model, batch) -> loss`` (or
``(loss, {name: float})`` to log more). The loop adds what every recipe needs, reusing :mod:`xmodal.train`:
AdamW over the trainable parameters only (no decay on biases and norms) with the warm-up + cosine schedule
of :func:`xmodal.train.optim.warmup_cosine`, gradient clipping, a seeded RNG, ``metrics.jsonl``
(:class:`~xmodal.train.logging.MetricsLogger`), safetensors checkpoints with JSON state
(:mod:`xmodal.train.checkpoint`), optional validation with best-weights selection, and exact resume:
interrupting and resuming gives bit-identical weights on the CPU (tested).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.config import OptimConfig, TrainConfig
from xmodal.errors import CheckpointError, ConfigError
from xmodal.train.batches import _generator
from xmodal.train.checkpoint import (
    read_state,
    restore_training_checkpoint,
    save_model_dir,
    save_training_checkpoint,
)
from xmodal.train.ema import WeightAverage
from xmodal.train.logging import MetricsLogger, progress_bar
from xmodal.train.loop import load_mutable_state, mutable_state
from xmodal.train.optim import _no_decay, warmup_cosine

LossOutput = Tensor | tuple[Tensor, dict[str, float]]


class EpochSampler:
    """Batches of indices: each epoch a seeded permutation of ``range(n)``, cut into full batches.

    ``indices(step)`` depends only on (seed, step), which makes resuming exact without saved state.

    Args:
        n: dataset size.
        batch_size: indices per batch (capped at ``n``); an epoch's last partial batch is dropped.
        seed: the run's seed.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int) -> None:
        if n <= 0:
            raise ValueError("no training samples")
        self.n = n
        self.batch_size = min(batch_size, n)
        self.seed = seed
        self.steps_per_epoch = n // self.batch_size

    def indices(self, step: int) -> Tensor:
        """(batch_size,) int64 sample indices of the batch at ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = torch.randperm(self.n, generator=_generator(self.seed, 11, epoch))
        return perm[k * self.batch_size : (k + 1) * self.batch_size]


def build_adamw(
    model: nn.Module, optim: OptimConfig, lr_scale: Callable[[str], float] | None = None
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only: groups with and without weight decay, and with
    ``lr_scale(name)`` (default 1) times ``optim.lr`` per parameter (e.g. a new projection learning
    faster than a pretrained decoder)."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = 1.0 if lr_scale is None else float(lr_scale(name))
            groups.setdefault((scale, not _no_decay(name, p)), []).append(p)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    order = sorted(groups, key=lambda k: (k[0] != 1.0, k[0], not k[1]))  # scale 1, decay first: as before
    return torch.optim.AdamW(
        [
            {
                "params": groups[k],
                "lr": optim.lr * k[0],
                "weight_decay": optim.weight_decay if k[1] else 0.0,
            }
            for k in order
        ],
        lr=optim.lr,
        betas=optim.betas,
        eps=optim.eps,
        foreach=True,
    )


@dataclass
class FitResult:
    """What :meth:`GenericTrainer.fit` returns (also in ``<run>/summary.json`` when the run finished)."""

    steps: int
    seconds: float
    cpu_seconds: float
    best_step: int | None = None
    best_val: dict[str, Any] | None = None


class GenericTrainer:
    """Trains ``model`` for ``train.steps`` steps; writes ``metrics.jsonl``, checkpoints and ``model/``.

    Args:
        model: the module to train; its frozen parameters (``requires_grad=False``) are left alone.
        batch_fn: ``batch_fn(step)`` → the batch of that step (a pure function of the step).
        loss_fn: ``loss_fn(model, batch)`` → a scalar loss, or ``(loss, extra scalars to log)``.
        optim: AdamW and schedule settings (``lr``, ``weight_decay``, ``betas``, ``eps``,
            ``warmup_steps``, ``min_lr_ratio``, ``grad_clip``).
        train: ``steps``, ``seed``, ``log_every``, ``eval_every``, ``ckpt_every``, ``select_best``.
        run_dir: the run folder.
        config: the resolved recipe (plain data) recorded in ``metrics.jsonl`` and the checkpoints.
        evaluate: optional ``evaluate(model) -> {"score": float, ...}``, run every ``train.eval_every``
            steps and at the end (higher score is better); with ``train.select_best`` the best weights
            are the ones kept.
        progress: show a tqdm bar.
        lr_scale: optional ``lr_scale(parameter name)`` → multiplier of ``optim.lr`` (default 1).
        ema_decay: > 0: keep an exponential moving average of the trainable weights
            (:class:`xmodal.train.ema.WeightAverage`); it is what gets validated, selected and saved.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        batch_fn: Callable[[int], Any],
        loss_fn: Callable[[nn.Module, Any], LossOutput],
        optim: OptimConfig,
        train: TrainConfig,
        run_dir: Path,
        config: dict[str, Any] | None = None,
        evaluate: Callable[[nn.Module], dict[str, Any]] | None = None,
        progress: bool = False,
        lr_scale: Callable[[str], float] | None = None,
        ema_decay: float = 0.0,
    ) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.model = model
        self.batch_fn = batch_fn
        self.loss_fn = loss_fn
        self.optim_cfg = optim
        self.train_cfg = train
        self.run_dir = Path(run_dir)
        self.config = config or {}
        self.evaluate = evaluate
        self.progress = progress
        self.lr_scale = lr_scale
        self.ema_decay = ema_decay

    @property
    def checkpoint_dir(self) -> Path:
        """``<run>/checkpoints/last``."""
        return self.run_dir / "checkpoints" / "last"

    def _validate(self, model: nn.Module) -> dict[str, Any]:
        assert self.evaluate is not None
        was = model.training
        model.eval()
        with torch.no_grad():
            metrics = self.evaluate(model)
        model.train(was)
        if "score" not in metrics:
            raise ValueError("evaluate() must return a dict with a 'score'")
        return metrics

    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> FitResult:
        """Train (continuing from the last checkpoint with ``resume``); ``stop_after`` simulates a crash."""
        t, o, model = self.train_cfg, self.optim_cfg, self.model
        t0, c0 = time.perf_counter(), time.process_time()
        if t.threads:
            torch.set_num_threads(t.threads)
        torch.manual_seed(t.seed)
        model.train()
        optimizer = build_adamw(model, o, self.lr_scale)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: warmup_cosine(
                s, warmup_steps=o.warmup_steps, total_steps=t.steps, min_ratio=o.min_lr_ratio
            ),
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
        ema = WeightAverage(model, self.ema_decay) if self.ema_decay > 0 else None
        start, best_score, best_step, best_val = 0, float("-inf"), None, None
        best_state: dict[str, Tensor] | None = None
        if resume and self.checkpoint_dir.exists():
            if (read_state(self.checkpoint_dir).get("ema_updates") is None) != (ema is None):
                raise CheckpointError(
                    f"{self.checkpoint_dir}: the checkpoint was written "
                    f"{'without' if ema is not None else 'with'} a weight average (ema_decay); "
                    "resume with the run's own setting"
                )
            state, extra = restore_training_checkpoint(
                self.checkpoint_dir, model=model, optimizer=optimizer, scheduler=scheduler
            )
            start = int(state["step"])
            if state.get("best_score") is not None:
                best_score = float(state["best_score"])
            best_step, best_val = state.get("best_step"), state.get("best_val")
            best_state = {k[5:]: v for k, v in extra.items() if k.startswith("best.")} or None
            if ema is not None:
                try:
                    ema.load(extra, state["ema_updates"])
                except KeyError as e:
                    raise CheckpointError(f"{self.checkpoint_dir}: {e.args[0]}") from None
        logger = MetricsLogger(self.run_dir, append=resume and start > 0, resume_step=start)
        if start == 0:
            logger.write_config(self.config)
        end = t.steps if stop_after is None else min(t.steps, start + stop_after)
        bar = progress_bar(t.steps, "training", initial=start) if self.progress else None
        for step in range(start, end):
            batch = self.batch_fn(step)
            optimizer.zero_grad(set_to_none=True)
            out = self.loss_fn(model, batch)
            loss, logged = out if isinstance(out, tuple) else (out, {})
            loss.backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, o.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update()
            done = step + 1
            if done % t.log_every == 0 or done == t.steps:
                logger.log({"step": done, "loss": loss.item(), "lr": scheduler.get_last_lr()[0], **logged})
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            if (
                self.evaluate is not None
                and t.eval_every > 0
                and (done % t.eval_every == 0 or done == t.steps)
            ):
                with ema.averaged() if ema is not None else nullcontext():
                    metrics = self._validate(model)
                    logger.log({"step": done, **{f"val/{k}": v for k, v in metrics.items()}})
                    if metrics["score"] > best_score:
                        best_score, best_step, best_val = float(metrics["score"]), done, metrics
                        best_state = mutable_state(model)
            if bar is not None:
                bar.update(1)
            if done % t.ckpt_every == 0 or done == end:
                save_training_checkpoint(
                    self.checkpoint_dir,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    extra_tensors={
                        **{f"best.{k}": v for k, v in (best_state or {}).items()},
                        **(ema.tensors() if ema is not None else {}),
                    },
                    state={
                        "ema_updates": ema.updates if ema is not None else None,
                        "step": done,
                        "config": self.config,
                        "best_score": best_score if best_step is not None else None,
                        "best_step": best_step,
                        "best_val": best_val,
                    },
                )
        if bar is not None:
            bar.close()
        logger.close()
        result = FitResult(end, time.perf_counter() - t0, time.process_time() - c0, best_step, best_val)
        if end < t.steps:  # interrupted on purpose (tests): no final model
            return result
        if t.select_best and best_state is not None:
            load_mutable_state(model, best_state)
        elif ema is not None:
            ema.copy_to_model()
        model.eval()
        save_model_dir(
            self.run_dir / "model", model, {"config": self.config, "step": t.steps, "best_step": best_step}
        )
        (self.run_dir / "summary.json").write_text(json.dumps(result.__dict__, indent=2))
        return result
