"""The one trainer: contrastive training of a dual encoder, with exact resume.

Every step is a pure function of (config, seed, step) plus the state in the last checkpoint, so
interrupting a run and resuming it gives bit-identical weights on the CPU (tested).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmodal.config import ExperimentConfig, to_dict
from xmodal.errors import ConfigError
from xmodal.losses.contrastive import clip_loss
from xmodal.metrics.retrieval import retrieval_metrics
from xmodal.models.clip import CLIP
from xmodal.models.factory import build_model, image_preprocess
from xmodal.registry import DATASETS
from xmodal.train import distributed
from xmodal.train.batches import BatchPlan
from xmodal.train.checkpoint import (
    read_state,
    restore_training_checkpoint,
    save_model_dir,
    save_training_checkpoint,
)
from xmodal.train.features import FeatureCache, weights_fingerprint
from xmodal.train.fsdp import full_training_states, restore_sharded, shard_clip, unsharded_copy
from xmodal.train.gradcache import gradcache_backward
from xmodal.train.logging import MetricsLogger, NullLogger, progress_bar
from xmodal.train.negatives import WithNegatives, contrastive_loss, hard_negatives
from xmodal.train.optim import build_optimizer, build_scheduler
from xmodal.train.pairs import PairData


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``<run>/summary.json``)."""

    run_dir: Path
    steps: int
    seconds: float
    best_step: int | None
    best_val: dict[str, Any] | None
    skipped: dict[str, Any] = field(default_factory=dict)
    truncated_captions: int = 0
    cache: dict[str, int] = field(default_factory=dict)


def load_pairs(cfg: ExperimentConfig, split: str, *, variants: bool) -> Any:
    """The registered dataset ``cfg.data.dataset`` for one split, with its skip limit."""
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(
            f"data.dataset: unknown dataset {cfg.data.dataset!r} (registered: {', '.join(DATASETS.names())})"
        )
    factory = DATASETS.get(cfg.data.dataset)
    return factory(split=split, variants=variants, max_skip_fraction=cfg.data.max_skip_fraction)


def val_score(metrics: dict[str, Any]) -> float:
    """Model-selection score: mean of R@1 and R@5 over both directions."""
    return sum(metrics[d][k] for d in ("image_to_text", "text_to_image") for k in ("R@1", "R@5")) / 4


def train_augment(cfg: ExperimentConfig, model: CLIP) -> Any:
    """The training augmentation for this config, or None when disabled."""
    from xmodal.data.transforms import TrainAugment

    a = cfg.data.augment
    if not a.enabled:
        return None
    enc = model.image_encoder
    return TrainAugment(
        size=cfg.model.image_size,
        mean=enc.image_mean,
        std=enc.image_std,
        scale=(a.scale_min, 1.0),
        grayscale_p=a.grayscale_p,
        brightness=a.jitter,
        contrast=a.jitter,
        saturation=a.jitter,
    )


def frozen(module: torch.nn.Module) -> bool:
    """True when no parameter of ``module`` is trainable."""
    return not any(p.requires_grad for p in module.parameters())


def image_tower_key(cfg: ExperimentConfig, model: CLIP) -> dict[str, Any]:
    """What a locked image tower's cached output depends on: encoder, args, weights hash, preprocessing."""
    m, enc = cfg.model, model.image_encoder
    return {
        "encoder": m.image_encoder.name,
        "args": m.image_encoder.args,
        "weights": weights_fingerprint(enc) if frozen(enc) else None,
        "size": m.image_size,
        "mean": list(enc.image_mean),
        "std": list(enc.image_std),
    }


def text_tower_key(cfg: ExperimentConfig, model: CLIP) -> dict[str, Any]:
    """What a locked text tower's cached output depends on: encoder, arguments, weights hash."""
    enc = model.text_encoder
    return {
        "encoder": cfg.model.text_encoder.name,
        "args": cfg.model.text_encoder.args,
        "weights": weights_fingerprint(enc) if frozen(enc) else None,
    }


def pair_data(cfg: ExperimentConfig, model: CLIP, dataset: Any, *, train: bool, progress: bool) -> PairData:
    """Wrap ``dataset`` for ``model``: cached locked towers when ``train.cache_features``."""
    cache = FeatureCache() if cfg.train.cache_features else None
    augment = train_augment(cfg, model) if train else None
    key_parts: dict[str, dict[str, Any]] = {"image": {}, "text": {}}
    if cache is not None:
        key_parts = {
            "image": {
                **image_tower_key(cfg, model),
                "augment": to_dict(cfg.data.augment) if augment is not None else None,
            },
            "text": text_tower_key(cfg, model),
        }
    preprocess = image_preprocess(model, cfg.model.image_size)
    return PairData(
        dataset,
        model,
        preprocess=preprocess,
        augment=augment,
        cache=cache,
        cache_image=frozen(model.image_encoder),
        cache_text=frozen(model.text_encoder),
        views=cfg.data.augment.views,
        key_parts=key_parts,
        progress=(lambda n, desc: progress_bar(n, desc)) if progress else None,
    )


def evaluate_pairs(model: CLIP, data: PairData) -> dict[str, Any]:
    """Retrieval metrics of ``model`` on prepared pairs (images vs. their group's caption)."""
    was = model.training
    model.eval()
    img = data.image_embeddings()
    txt = data.text_embeddings()
    model.train(was)
    image_ids = torch.tensor(data.item_group)
    text_ids = torch.arange(len(data.captions))
    out: dict[str, Any] = dict(retrieval_metrics(img, txt, image_ids, text_ids, ks=(1, 5, 10)))
    out["n"] = len(data.item_group)
    return out


def mutable_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """Copies of the tensors training can change: trainable parameters and their modules' buffers."""
    keys = {n for n, p in model.named_parameters() if p.requires_grad}
    for mname, mod in model.named_modules():
        if any(p.requires_grad for p in mod.parameters(recurse=False)):
            keys |= {f"{mname}.{b}" if mname else b for b, _ in mod.named_buffers(recurse=False)}
    sd = model.state_dict()
    return {k: sd[k].detach().clone() for k in sorted(keys) if k in sd}


@torch.no_grad()
def load_mutable_state(model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Copy tensors from :func:`mutable_state` back into ``model`` (every key must exist)."""
    sd = model.state_dict()
    for k, v in state.items():
        sd[k].copy_(v)


class Trainer:
    """Trains ``cfg``'s model on ``cfg.data``; writes logs and checkpoints under ``run_dir``.

    Args:
        cfg: the experiment config.
        run_dir: output folder (``metrics.jsonl``, ``checkpoints/last``, ``model/``, ``summary.json``).
        progress: show tqdm bars (default: when stderr is a terminal).
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, progress: bool | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = sys.stderr.isatty() if progress is None else progress

    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train for ``train.steps`` steps (or until ``stop_after`` steps have run, to simulate a crash)."""
        cfg, t0 = self.cfg, time.perf_counter()
        ctx = distributed.setup()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
        model.train()
        if ctx.rank > 0:
            torch.manual_seed(cfg.train.seed + 7919 * ctx.rank)  # own dropout stream per rank
        streamed = cfg.data.shards is not None  # train from WebDataset shards (xmodal.train.stream)
        train_ds = None if streamed else load_pairs(cfg, cfg.data.train_split, variants=cfg.data.variants)
        val_ds = load_pairs(cfg, cfg.data.val_split, variants=False)
        show = self.progress and ctx.is_main
        train: Any = None
        negatives = None  # hard negatives (NegCLIP), when data.hard_negatives asks for them
        if streamed and (cfg.data.hard_negatives.generators or cfg.data.hard_negatives.file):
            raise ConfigError("data.hard_negatives needs a dataset's train split, not data.shards")
        for turn in (0, 1):  # rank 0 fills the feature cache first, the others then read it
            if (turn == 0) == ctx.is_main:
                if train_ds is not None:
                    train = pair_data(cfg, model, train_ds, train=True, progress=show)
                    negatives = hard_negatives(
                        cfg.data.hard_negatives,
                        model,
                        train,
                        seed=cfg.train.seed,
                        cache=FeatureCache() if cfg.train.cache_features else None,
                        text_key=text_tower_key(cfg, model),
                    )
                val = pair_data(cfg, model, val_ds, train=False, progress=show)
            distributed.barrier(ctx)
        plan = None
        if train is not None:
            plan = BatchPlan(
                train.groups, batch_size=cfg.data.batch_size, seed=cfg.train.seed, views=train.views
            )
        batch_size = plan.batch_size if plan is not None else cfg.data.batch_size
        if batch_size % ctx.world:
            raise ConfigError(f"data.batch_size={batch_size} is not divisible by the {ctx.world} ranks")
        local = batch_size // ctx.world
        micro = cfg.train.micro_batch_size
        gradcache = micro is not None and micro < local  # GradCache: exact full-batch gradients
        if streamed:
            from xmodal.train.stream import shard_batches

            preprocess = image_preprocess(model, cfg.model.image_size)
            augment = train_augment(cfg, model)
            train = shard_batches(cfg, model, ctx, local, augment=augment, preprocess=preprocess)
        fsdp = cfg.train.fsdp and ctx.world > 1  # FSDP2 instead of DDP (xmodal.train.fsdp)
        if fsdp:
            shard_clip(model)
        net: torch.nn.Module = model if negatives is None else WithNegatives(model)
        if ctx.world > 1 and not (fsdp or gradcache):  # FSDP2 averages in its reduce-scatters
            net = torch.nn.parallel.DistributedDataParallel(net)
        elif ctx.world > 1 and not fsdp:  # GradCache: backward passes outside DDP, averaged by hand
            distributed.broadcast_module(ctx, model)
        loss_fn = functools.partial(
            contrastive_loss, negative_weight=cfg.data.hard_negatives.weight, plain_loss=clip_loss
        )

        def inputs(entries: list[Any]) -> dict[str, Any]:
            extra = negatives.batch_inputs(entries) if negatives is not None else {}
            return {**train.batch_inputs(entries, train=True), **extra}

        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        ckpt = self.run_dir / "checkpoints" / "last"
        start, best_score, best_step, best_val = 0, float("-inf"), None, None
        best_state: dict[str, Tensor] | None = None
        if resume and ckpt.exists():
            restore = restore_sharded if fsdp else restore_training_checkpoint
            state, extra = restore(ckpt, model=model, optimizer=optimizer, scheduler=scheduler)
            start = int(state["step"])
            saved_best = state.get("best_score")  # None until the first validation
            best_score = float("-inf") if saved_best is None else float(saved_best)
            best_step, best_val = state.get("best_step"), state.get("best_val")
            best_state = {k[len("best.") :]: v for k, v in extra.items() if k.startswith("best.")} or None
            if f"rng.rank{ctx.rank}" in extra:
                torch.set_rng_state(extra[f"rng.rank{ctx.rank}"])
            if plan is None:  # streamed: where this rank's data-loader workers were
                train.load_state(state["data_position"]["ranks"][ctx.rank])
        logger: Any = (
            MetricsLogger(self.run_dir, append=resume and start > 0, resume_step=start)
            if ctx.is_main
            else NullLogger()
        )
        if start == 0:
            logger.write_config(to_dict(cfg))
        total = cfg.train.steps
        end = total if stop_after is None else min(total, start + stop_after)
        bar = progress_bar(total, "training", initial=start) if show else None
        tick = time.perf_counter()
        for step in range(start, end):
            if plan is None:  # streamed: this rank's own next samples
                batch = train.next_samples()
            else:
                batch = plan.batch(step)[ctx.rank * local : (ctx.rank + 1) * local]  # this rank's share
            optimizer.zero_grad(set_to_none=True)
            if gradcache:
                assert micro is not None
                parts = [inputs(batch[i : i + micro]) for i in range(0, len(batch), micro)]
                # the loss all-gathers the embeddings of every rank; local re-embeds then backward
                loss = gradcache_backward(model, parts, loss_fn, forward=net)
                if not fsdp:  # FSDP2's reduce-scatters already averaged each micro-batch's gradients
                    distributed.average_gradients(ctx, [p for p in model.parameters() if p.requires_grad])
            else:
                out = net(**inputs(batch))
                # all ranks' features (gradients flow back to their rank); DDP averages the gradients
                loss = loss_fn(**out)
                loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip
                )
            optimizer.step()
            scheduler.step()
            done = step + 1
            if done % cfg.train.log_every == 0 or done == total:
                now = time.perf_counter()
                rate = cfg.train.log_every * len(batch) * ctx.world / max(now - tick, 1e-9)
                tick = now
                logger.log(
                    {
                        "step": done,
                        "loss": loss.item(),
                        "lr": scheduler.get_last_lr()[0],
                        "logit_scale": model.logit_scale.item(),
                        "pairs_per_s": rate,
                    }
                )
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.3f}", pairs_s=f"{rate:.0f}")
            if cfg.train.eval_every > 0 and (done % cfg.train.eval_every == 0 or done == total):
                metrics = evaluate_pairs(model, val)
                score = val_score(metrics)
                logger.log(
                    {
                        "step": done,
                        "val/score": score,
                        **{
                            f"val/{d}/{k}": v
                            for d in ("image_to_text", "text_to_image")
                            for k, v in metrics[d].items()
                        },
                    }
                )
                if score > best_score:
                    best_score, best_step, best_val = score, done, metrics
                    best_state = mutable_state(model)
            if bar is not None:
                bar.update(1)
            if done % cfg.train.ckpt_every == 0 or done == end:
                # FSDP: the best weights stay as local shards (only --resume would need them saved)
                extra = {f"best.{k}": v for k, v in (best_state or {}).items()} if not fsdp else {}
                saved = full_training_states(model, optimizer) if fsdp else (model, optimizer)
                if ctx.world > 1:
                    rngs = distributed.gather_objects(ctx, torch.get_rng_state())
                    extra.update({f"rng.rank{r}": s for r, s in enumerate(rngs)})
                position = (
                    plan.position(done)
                    if plan is not None
                    else {"ranks": distributed.gather_objects(ctx, train.state())}
                )
            if ctx.is_main and (done % cfg.train.ckpt_every == 0 or done == end):
                save_training_checkpoint(
                    ckpt,
                    model=saved[0],
                    optimizer=saved[1],
                    scheduler=scheduler,
                    extra_tensors=extra,
                    state={
                        "step": done,
                        "config": to_dict(cfg),
                        "data_position": position,
                        "best_score": best_score if best_step else None,
                        "best_step": best_step,
                        "best_val": best_val,
                    },
                )
        if bar is not None:
            bar.close()
        logger.close()
        final_step = end
        if final_step < total:  # interrupted on purpose (tests): no final model
            return TrainResult(self.run_dir, final_step, time.perf_counter() - t0, best_step, best_val)
        if cfg.train.select_best and best_state is not None:
            load_mutable_state(model, best_state)
        model.eval()
        result = TrainResult(
            run_dir=self.run_dir,
            steps=total,
            seconds=time.perf_counter() - t0,
            best_step=best_step,
            best_val=best_val,
            skipped={
                "train": train_ds.skips.summary()
                if train_ds is not None
                else train.summary(distributed.gather_objects(ctx, train.state())),
                "val": val_ds.skips.summary(),
                **({"hard_negatives": negatives.set.summary()} if negatives is not None else {}),
            },
            truncated_captions=train.truncated + val.truncated,
        )
        if fsdp:  # every rank gathers the weights; rank 0 goes on with a plain, full model
            model = unsharded_copy(model, lambda: build_model(cfg.model).eval())
        self.model = model
        if not ctx.is_main:
            distributed.barrier(ctx)  # rank 0 is writing the model
            return result
        save_model_dir(
            self.run_dir / "model", model, {"config": to_dict(cfg), "step": total, "best_step": best_step}
        )
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
        summary["world_size"] = ctx.world
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        distributed.barrier(ctx)
        return result


def resume_available(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a training checkpoint to resume from."""
    try:
        read_state(Path(run_dir) / "checkpoints" / "last")
        return True
    except Exception:
        return False
