"""Tests for xmodal.registry: registration, lookup errors and the populated registries."""

from __future__ import annotations

import pytest

import xmodal  # noqa: F401  (registers models, encoders, datasets and losses)
from xmodal.registry import DATASETS, IMAGE_ENCODERS, LOSSES, MODELS, TEXT_ENCODERS, Registry


def test_register_get_names_and_container_protocol():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def make_b() -> str:
        return "b"

    @reg.register("a")
    class A:
        pass

    assert reg.get("b") is make_b and reg.get("b")() == "b"
    assert reg.get("a") is A  # the decorator returns the class unchanged
    assert reg.names() == ["a", "b"]
    assert list(reg) == ["a", "b"]
    assert len(reg) == 2
    assert "a" in reg and "c" not in reg


def test_duplicate_name_is_an_error():
    reg: Registry = Registry("widget")
    reg.register("x")(lambda: 1)
    with pytest.raises(ValueError, match="widget 'x' is already registered"):
        reg.register("x")(lambda: 2)
    assert reg.get("x")() == 1  # the first registration stays


def test_unknown_name_lists_registered_ones():
    reg: Registry = Registry("widget")
    with pytest.raises(KeyError, match="unknown widget 'x'; registered: none"):
        reg.get("x")
    reg.register("b")(int)
    reg.register("a")(str)
    with pytest.raises(KeyError, match="registered: a, b"):
        reg.get("c")


def test_package_import_populates_registries():
    assert {"clip-effnet-minilm", "clip-vit-tiny"} <= set(MODELS.names())
    assert {"efficientnet_lite0", "vit"} <= set(IMAGE_ENCODERS.names())
    assert {"minilm", "text_transformer"} <= set(TEXT_ENCODERS.names())
    assert {"emoji", "fashion-mnist"} <= set(DATASETS.names())
    assert "clip" in LOSSES
