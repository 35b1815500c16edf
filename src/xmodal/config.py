"""Typed experiment configs: YAML → validated dataclasses, with ``--set a.b=c`` overrides.

Only builders read configs; the modules below them take plain keyword arguments. Every config
section is a small dataclass; :func:`from_dict` checks keys and types and fails with a one-line
:class:`~xmodal.errors.ConfigError` naming the key (``model.embed_dim: expected int, got 'big'``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from xmodal.errors import ConfigError

T = TypeVar("T")


@dataclass
class EncoderConfig:
    """A registered encoder and the keyword arguments of its factory."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    unlocked_blocks: int = 0  # LiT locking: 0 = frozen, N = last N blocks trainable, -1 = all trainable
    lr: float | None = None  # per-tower learning rate (None: optim.lr)


@dataclass
class HeadConfig:
    """Projection head from a tower's pooled features into the joint space."""

    kind: str = "linear"  # "linear" | "mlp" | "identity"
    hidden_dim: int = 1024
    dropout: float = 0.0
    input_norm: bool = False  # LayerNorm on the head's input
    lr: float | None = None


@dataclass
class ModelConfig:
    """A CLIP-style dual encoder (see :mod:`xmodal.models.clip`)."""

    name: str = "clip"
    image_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="efficientnet_lite0"))
    text_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="minilm"))
    image_head: HeadConfig = field(default_factory=HeadConfig)
    text_head: HeadConfig = field(default_factory=HeadConfig)
    embed_dim: int = 256
    image_size: int = 128
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    learn_temperature: bool = True


@dataclass
class AugmentConfig:
    """Training-time image augmentation (see :class:`xmodal.data.transforms.TrainAugment`)."""

    enabled: bool = True
    scale_min: float = 0.7
    grayscale_p: float = 0.2
    jitter: float = 0.2
    views: int = 8  # augmented views cached per image when the image tower is frozen


@dataclass
class HardNegativesConfig:
    """Extra negative captions per image (NegCLIP; see :mod:`xmodal.data.negatives`).

    On when ``generators`` or ``file`` is set. The negatives join the image→text softmax only.
    """

    generators: list[str] = field(default_factory=list)  # e.g. [swap_attributes, shuffle_words]
    per_image: int = 1  # K: negatives per caption (fewer when none can be made; padding is masked)
    file: str | None = None  # JSON {caption or sample key: [negative captions]}, used before the generators
    weight: float = 1.0  # each negative's weight in the image→text denominator (1: NegCLIP, 0: plain CLIP)


@dataclass
class DataConfig:
    """Which dataset trains the model and how samples are drawn."""

    dataset: str = "emoji"
    train_split: str = "train"
    val_split: str = "val"
    variants: bool = True
    batch_size: int = 256
    max_skip_fraction: float = 0.01
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    hard_negatives: HardNegativesConfig = field(default_factory=HardNegativesConfig)
    # train from WebDataset shards instead of the dataset's train split (xmodal.train.stream):
    shards: str | None = None  # a folder (shards.json or *.tar) or "DIR/emoji-{000000..000007}.tar"
    shuffle_buffer: int = 1000  # samples per reader's shuffle buffer
    workers: int = 2  # data-loader workers per rank (0: decode in the training process)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (Loshchilov & Hutter 2019)."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    """The loop: length, seed, logging, evaluation and checkpoint cadence."""

    steps: int = 500
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    ckpt_every: int = 100
    cache_features: bool = True
    micro_batch_size: int | None = None  # GradCache micro-batches (None: the whole batch at once)
    fsdp: bool = False  # shard towers' blocks and the model over the ranks (FSDP2) instead of DDP
    select_best: bool = True  # keep the weights with the best validation score
    threads: int | None = None


@dataclass
class EvalConfig:
    """What ``xmodal eval`` and the end of training measure."""

    retrieval: list[str] = field(default_factory=lambda: ["emoji:test"])
    zero_shot: list[str] = field(default_factory=lambda: ["fashion-mnist:test"])
    batch_size: int = 64  # images per forward pass (larger batches are slower on 2 CPU cores)
    max_images: int | None = None


@dataclass
class ExperimentConfig:
    """The whole recipe: one YAML file in ``configs/``."""

    task: str = "clip"  # other tasks have their own schema and trainer (see xmodal.tasks)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted as floats)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        item_tps = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(item_tps):
            raise ConfigError(f"{where}: expected {len(item_tps)} values, got {value!r}")
        return tuple(
            _coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_tps, strict=True))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got str {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected bool, got {type(value).__name__} {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got bool {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _fill_defaults(f: dataclasses.Field[Any], tp: Any, value: Any) -> Any:
    """Complete a partial mapping for a nested section from the field's default instance.

    ``model: {image_encoder: {unlocked_blocks: 2}}`` keeps the default encoder's ``name`` instead of
    failing because ``EncoderConfig.name`` has no class-level default.
    """
    if not (dataclasses.is_dataclass(tp) and isinstance(value, dict)):
        return value
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    elif dataclasses.is_dataclass(f.default):
        default = f.default
    else:
        return value
    return {**{k: v for k, v in to_dict(default).items() if k not in value}, **value}


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    names = set(fields)
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r} (known here: {', '.join(sorted(names))})")
    kwargs = {
        k: _coerce(_fill_defaults(fields[k], hints[k], v), hints[k], f"{where}.{k}" if where else k)
        for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The plain-data form of a config (for JSON/YAML), tuples as lists."""
    out = dataclasses.asdict(cfg)

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [fix(x) for x in v]
        return v

    return fix(out)  # type: ignore[no-any-return]


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (``1e-3``, ``[1,2]``)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key segment")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {p!r} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(
            f"override {override!r}: value is not valid YAML ({e.__class__.__name__})"
        ) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Read a YAML recipe (or the defaults when ``path`` is None), apply overrides, validate."""
    return load_recipe(ExperimentConfig, path, overrides)


def load_recipe(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Like :func:`load_config` for any recipe dataclass ``cls`` (the other tasks' own schemas)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{p}: invalid YAML{at}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        data = loaded or {}
    for o in overrides:
        apply_override(data, o)
    return from_dict(cls, data)


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a plain dict (e.g. from a checkpoint's ``state.json``) into an ExperimentConfig."""
    return from_dict(ExperimentConfig, data)
