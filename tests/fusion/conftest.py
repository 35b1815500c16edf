"""Fixtures for the fusion tests: open_flamingo's reference modules, loaded as a file.

open_flamingo is a test-only dependency (``pip install --no-deps open-flamingo==2.0.1`` with ``einops`` and
``einops-exts``). Its package ``__init__`` imports open_clip and torchvision, so only
``open_flamingo/src/helpers.py`` (the resampler and gated cross-attention) is loaded, as a file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def open_flamingo_helpers() -> ModuleType:
    spec = importlib.util.find_spec("open_flamingo")  # finds the package without running its __init__
    assert spec is not None and spec.submodule_search_locations, (
        "open-flamingo is a test dependency (make setup: pip install --no-deps open-flamingo==2.0.1)"
    )
    path = Path(next(iter(spec.submodule_search_locations))) / "src" / "helpers.py"
    file_spec = importlib.util.spec_from_file_location("open_flamingo_helpers", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module
