"""Where xmodal keeps prepared data and caches: ``$XMODAL_HOME`` (default ``~/.cache/xmodal``)."""

from __future__ import annotations

import os
from pathlib import Path


def xmodal_home() -> Path:
    """The root folder for datasets (``data/``) and feature caches (``cache/``)."""
    return Path(os.environ.get("XMODAL_HOME", Path.home() / ".cache" / "xmodal")).expanduser()


def data_dir(name: str) -> Path:
    """The folder a prepared dataset lives in: ``$XMODAL_HOME/data/<name>``."""
    return xmodal_home() / "data" / name


def cache_dir() -> Path:
    """The folder for feature caches: ``$XMODAL_HOME/cache``."""
    return xmodal_home() / "cache"
