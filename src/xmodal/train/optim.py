"""AdamW with per-tower learning rates and a warm-up + cosine schedule.

Weight decay skips biases, norm parameters and the temperature, as in CLIP/open_clip.
Decoupled weight decay: Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101; cosine schedule:
Loshchilov & Hutter 2017, https://arxiv.org/abs/1608.03983.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xmodal.config import ExperimentConfig
from xmodal.errors import ConfigError


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """Biases, norm gains/shifts (1-d), embeddings of scalars and the temperature take no decay."""
    return p.ndim < 2 or name.endswith(".bias") or "logit_scale" in name or "norm" in name.lower()


def param_groups(model: nn.Module, cfg: ExperimentConfig) -> list[dict[str, object]]:
    """Group trainable parameters by (learning rate, decay or not).

    Learning rates: ``model.image_encoder.lr`` for the image tower, ``model.text_encoder.lr`` for the
    text tower, ``model.image_head.lr``/``model.text_head.lr`` for the heads, ``optim.lr`` otherwise.
    """
    m = cfg.model
    base = cfg.optim.lr
    prefix_lr = {
        "image_encoder.": m.image_encoder.lr,
        "text_encoder.": m.text_encoder.lr,
        "image_head.": m.image_head.lr,
        "text_head.": m.text_head.lr,
    }
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    names: dict[tuple[float, bool], list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = base
        for prefix, plr in prefix_lr.items():
            if name.startswith(prefix) and plr is not None:
                lr = plr
        key = (lr, not _no_decay(name, p))
        groups.setdefault(key, []).append(p)
        names.setdefault(key, []).append(name)
    return [
        {
            "params": params,
            "lr": lr,
            "weight_decay": cfg.optim.weight_decay if decay else 0.0,
            "names": names[(lr, decay)],
        }
        for (lr, decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def build_optimizer(model: nn.Module, cfg: ExperimentConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    if not groups:
        raise ConfigError(
            "the model has no trainable parameters (both towers locked with identity heads and "
            "model.learn_temperature=false): unlock a tower or use linear/mlp heads"
        )
    o = cfg.optim
    # foreach: one kernel per group instead of one per tensor (identical maths, ~3x faster steps)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, foreach=True)  # type: ignore[arg-type]


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up from 1/warmup to 1, then cosine down to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ExperimentConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine over ``train.steps``."""
    o, t = cfg.optim, cfg.train
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: warmup_cosine(
            s, warmup_steps=o.warmup_steps, total_steps=t.steps, min_ratio=o.min_lr_ratio
        ),
    )
