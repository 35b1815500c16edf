"""Fixtures for the data tests: a small fake emoji package in the npm layout, and the real prepared data."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from xmodal.data.prepare import prepare

# Three emoji in the emoji.json format; SANTA has two skin-tone variants.
FAKE_ENTRIES = [
    {
        "name": "GRINNING FACE",
        "unified": "1F600",
        "image": "1f600.png",
        "short_names": ["grinning"],
        "category": "Smileys & Emotion",
        "subcategory": "face-smiling",
        "has_img_google": True,
    },
    {
        "name": "FATHER CHRISTMAS",
        "unified": "1F385",
        "image": "1f385.png",
        "short_names": ["santa"],
        "category": "People & Body",
        "subcategory": "person-fantasy",
        "has_img_google": True,
        "skin_variations": {
            "1F3FB": {"unified": "1F385-1F3FB", "image": "1f385-1f3fb.png", "has_img_google": True},
            "1F3FF": {"unified": "1F385-1F3FF", "image": "1f385-1f3ff.png", "has_img_google": True},
        },
    },
    {
        "name": "LEFTWARDS BLACK ARROW",
        "unified": "2B05-FE0F",
        "image": "2b05-fe0f.png",
        "short_names": ["arrow_left", "leftwards_black_arrow"],
        "category": "Symbols",
        "subcategory": "arrow",
        "has_img_google": True,
    },
]


def write_png(path: Path, color: tuple[int, int, int, int], size: int = 64) -> Path:
    """A size×size RGBA PNG: transparent background with an opaque-ish square of ``color`` inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (size // 2, size // 2), color), (size // 4, size // 4))
    img.save(path)
    return path


@dataclass
class FakePackage:
    """An unpacked npm package folder (``package/``), its .tgz, and the files prepare must keep."""

    folder: Path
    tgz: Path
    kept: list[str]


def build_fake_package(base: Path, entries: list[dict] | None = None) -> FakePackage:
    """Write ``base/package/`` in the emoji-datasource layout (with files prepare must drop) and a .tgz."""
    entries = FAKE_ENTRIES if entries is None else entries
    folder = base / "package"
    images = folder / "img" / "google" / "64"
    kept = ["emoji.json", "LICENSE", "README.md"]
    for i, entry in enumerate(entries):
        names = [entry["image"]] + [v["image"] for v in (entry.get("skin_variations") or {}).values()]
        for j, name in enumerate(names):
            write_png(images / name, (40 * i, 60 * j, 200, 255))
            kept.append(f"img/google/64/{name}")
    (folder / "emoji.json").write_text(json.dumps(entries), encoding="utf-8")
    (folder / "LICENSE").write_text("The MIT License (MIT)\n", encoding="utf-8")
    (folder / "README.md").write_text("# emoji-data (fake)\n", encoding="utf-8")
    # files that are in the real package but that xmodal does not keep
    (folder / "emoji_pretty.json").write_text("[]", encoding="utf-8")
    (folder / "package.json").write_text("{}", encoding="utf-8")
    write_png(folder / "img" / "google" / "sheets" / "64.png", (1, 2, 3, 255))
    tgz = base / "emoji-datasource-google-16.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(folder, arcname="package")
    return FakePackage(folder=folder, tgz=tgz, kept=sorted(kept))


@pytest.fixture
def fake_package(tmp_path: Path) -> FakePackage:
    """The fake emoji package, built in ``tmp_path/npm``."""
    return build_fake_package(tmp_path / "npm")


@pytest.fixture(scope="session")
def real_emoji_root() -> Path:
    """The real emoji dataset, prepared in ``$XMODAL_HOME`` (instant when ``make data`` ran)."""
    return prepare("emoji")


@pytest.fixture(scope="session")
def real_fashion_mnist_root() -> Path:
    """The real Fashion-MNIST files, prepared in ``$XMODAL_HOME`` (instant when ``make data`` ran)."""
    return prepare("fashion-mnist")


@pytest.fixture
def make_png():
    """``make_png(path, color, size=64)``: write a test PNG (fixture form of ``write_png``)."""
    return write_png


@pytest.fixture
def make_package():
    """``make_package(base, entries=None)``: build a fake emoji package (fixture form)."""
    return build_fake_package


@pytest.fixture
def fake_entries() -> list[dict]:
    """A fresh deep copy of the three fake emoji.json entries."""
    return json.loads(json.dumps(FAKE_ENTRIES))
