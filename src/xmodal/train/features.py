"""Cached outputs of frozen towers.

A locked tower (LiT) gives the same output for the same input every epoch, so xmodal embeds each
input once and reuses it. The cache is keyed by everything the output depends on: the encoder's
name and arguments, a hash of its weights, the preprocessing (size, mean, std, augmentation and view
seeds) and a hash of the data, so a change to any of them computes afresh.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from xmodal.paths import cache_dir


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's state_dict (names, shapes, dtypes and bytes), 16 hex digits."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def files_fingerprint(paths: list[Path]) -> str:
    """SHA-256 over the names and contents of files (the data a cache was computed from)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def texts_fingerprint(texts: list[str]) -> str:
    """SHA-256 over a list of strings."""
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


class FeatureCache:
    """Tensors on disk under ``$XMODAL_HOME/cache/features``, one safetensors file per key.

    Args:
        root: the cache folder (default: :func:`xmodal.paths.cache_dir` / "features").
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """A stable key from a JSON-able description of what the tensor depends on."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def get_or_compute(self, parts: dict[str, Any], compute: Callable[[], Tensor]) -> Tensor:
        """The cached tensor for ``parts``, or ``compute()`` stored under it."""
        key = self.key(parts)
        path = self.root / f"{key}.safetensors"
        if path.is_file():
            try:
                out = load_file(str(path))["features"]
                self.hits += 1
                return out
            except Exception:  # a corrupt cache file is recomputed, not trusted
                path.unlink(missing_ok=True)
        self.misses += 1
        out = compute().detach().contiguous().cpu()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{uuid.uuid4().hex}")  # not torch RNG: keeps training reproducible
        save_file({"features": out}, str(tmp))
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(parts, indent=1, sort_keys=True, default=str))
        return out
