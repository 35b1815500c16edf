"""Safe checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a folder::

    model.safetensors      the model's state_dict (every tensor, frozen towers included)
    optimizer.safetensors  AdamW moments and the torch RNG state (training checkpoints only)
    state.json             config, step, scheduler, data position, metrics, optimizer param groups

Nothing here unpickles: a ``torch.save``/pickle file is refused with a clear error, and a state dict
whose keys or shapes differ from the model's is an error listing the differences (never a silent
``strict=False``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from xmodal.errors import CheckpointError

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: u64 little-endian header length N ≤ size - 8, then a JSON header ``{...``."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= size - 8


def _refuse_pickle(path: Path) -> None:
    """Raise CheckpointError if ``path`` looks like a pickle or a torch.save zip archive.

    The first byte alone does not decide: a safetensors header length can end in 0x80 (the pickle
    protocol opcode), so a file that has the safetensors layout is never called a pickle.
    """
    with open(path, "rb") as f:
        head = f.read(9)
    if _looks_like_safetensors(head, path.stat().st_size):
        return
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04":
        raise CheckpointError(
            f"{path} is a pickle/torch.save file; xmodal loads only safetensors checkpoints "
            "(unpickling can run arbitrary code)"
        )


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file, refusing pickles and reporting corrupt files in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    _refuse_pickle(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({str(e).splitlines()[0]})") from None


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f" … (+{len(items) - 5})" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` (safetensors) into ``model`` strictly, after checking keys and shapes."""
    state = read_safetensors(path)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; a tensor sharing storage with an earlier one (tied weights, e.g. GPT-2's
    ``lm_head.weight`` and ``wte.weight``) is copied, since safetensors refuses shared memory."""
    out, seen = {}, set()
    for k, v in state.items():
        t = v.detach().contiguous().cpu()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(ptr)
        out[k] = t
    return out


def optimizer_to_flat(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimizer state_dict into tensors (``state.{param}.{key}``) and JSON param groups."""
    sd = optimizer.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"state.{idx}.{key}"] = t
    return tensors, sd["param_groups"]


def optimizer_from_flat(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_to_flat`: an optimizer state_dict."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if not name.startswith("state."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    return {"state": state, "param_groups": groups}


def atomic_dir(final: Path) -> Path:
    """A fresh temp folder next to ``final`` to write into before :func:`commit_dir`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` with ``tmp`` (a reader sees the old or the new folder, never half of one)."""
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Write into a temp folder that replaces ``final`` on success and is removed on any failure."""
    tmp = atomic_dir(final)
    try:
        yield tmp
        commit_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful commit


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left when writing failed


def save_model_dir(folder: Path, model: nn.Module, state: dict[str, Any]) -> None:
    """Write ``model.safetensors`` + ``state.json`` atomically into ``folder``."""
    with staged_dir(folder) as tmp:
        save_file(_contiguous(model.state_dict()), str(tmp / MODEL_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))


def save_training_checkpoint(
    folder: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything needed to resume exactly: weights, optimizer moments, scheduler, RNG, ``state``."""
    with staged_dir(folder) as tmp:
        save_file(_contiguous(model.state_dict()), str(tmp / MODEL_FILE))
        opt_tensors, groups = optimizer_to_flat(optimizer)
        opt_tensors["rng.torch"] = torch.get_rng_state()
        for k, v in (extra_tensors or {}).items():
            opt_tensors[f"extra.{k}"] = v
        save_file(_contiguous(opt_tensors), str(tmp / OPTIM_FILE))
        full = dict(state, optimizer_param_groups=groups, scheduler=scheduler.state_dict())
        (tmp / STATE_FILE).write_text(json.dumps(full, indent=2))


def read_state(folder: Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint folder."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not an xmodal checkpoint (no {STATE_FILE})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON (line {e.lineno})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def restore_training_checkpoint(
    folder: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load a training checkpoint into model/optimizer/scheduler and the torch RNG.

    Everything is read and checked before anything is loaded, so a bad checkpoint changes nothing.
    Returns ``(state, extra_tensors)``.
    """
    state = read_state(folder)
    weights = read_safetensors(folder / MODEL_FILE)
    check_state_dict(model, weights, str(folder / MODEL_FILE))
    opt = read_safetensors(folder / OPTIM_FILE)
    if "rng.torch" not in opt or "optimizer_param_groups" not in state or "scheduler" not in state:
        raise CheckpointError(f"{folder} is not a training checkpoint (no optimizer/RNG/scheduler state)")
    groups = state["optimizer_param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
        len(g["params"]) != len(o["params"]) for g, o in zip(groups, optimizer.param_groups, strict=True)
    ):
        raise CheckpointError(
            f"{folder}: optimizer parameter groups differ from this run's (was the config changed?)"
        )
    model.load_state_dict(weights, strict=True)
    optimizer.load_state_dict(optimizer_from_flat(opt, groups))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(opt["rng.torch"])
    extra = {k[len("extra.") :]: v for k, v in opt.items() if k.startswith("extra.")}
    return state, extra
