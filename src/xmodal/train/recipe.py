"""Helpers every ``xmodal.tasks`` recipe shares: typed recipe loading, the run folder, checkpoint folders.

A task defines its own config dataclass; :func:`load_recipe` reads the YAML into it with the same checks
and ``--set`` overrides as :func:`xmodal.config.load_config` (unknown keys and wrong types are one-line
:class:`~xmodal.errors.ConfigError`\\ s).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from xmodal.config import OptimConfig, TrainConfig, apply_override, from_dict
from xmodal.errors import ConfigError, XmodalError
from xmodal.train.checkpoint import MODEL_FILE, read_state
from xmodal.train.loop import resume_available

T = TypeVar("T")


@dataclass
class StageSection:
    """One training stage of a multi-stage recipe (LLaVA, BLIP-2): batch size, optimiser, loop
    (:class:`xmodal.train.generic.GenericTrainer`)."""

    batch_size: int = 32
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(eval_every=0, ckpt_every=100))
    # > 0: validate, select and keep an exponential moving average of the weights (xmodal.train.ema)
    ema_decay: float = 0.0


def load_recipe(cls: type[T], path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Read ``path`` (YAML), apply ``key.path=value`` overrides, validate into ``cls``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"{p}: invalid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    for o in overrides:
        apply_override(data, o)
    return from_dict(cls, data)


def train_out(args: argparse.Namespace) -> Path:
    """The run folder of ``xmodal train`` (``--out`` or ``runs/<config stem>``), checked against resuming."""
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    has = resume_available(out)
    if has and not args.resume and not args.overwrite:
        raise XmodalError(
            f"{out} already holds a training checkpoint; pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )
    return out


def checkpoint_folder(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """A saved model folder (``model.safetensors`` + ``state.json``) or its weights file → (folder, state)."""
    p = Path(path)
    folder = p.parent if p.suffix == ".safetensors" else p
    if not (folder / MODEL_FILE).is_file():
        raise XmodalError(f"{folder} holds no {MODEL_FILE}; pass the run's model/ folder to --checkpoint")
    return folder, read_state(folder)


def progress_wanted(args: argparse.Namespace) -> bool:
    """Progress bars: not with ``--no-progress``, else when stderr is a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()
