"""Fixtures for the model tests: a few real emoji image–caption pairs."""

from __future__ import annotations

import pytest
from PIL import Image

from xmodal.data.emoji import EmojiDataset
from xmodal.data.prepare import prepare


@pytest.fixture(scope="session")
def emoji_pairs() -> tuple[list[Image.Image], list[str]]:
    """Four real emoji from the test split (distinct captions): RGB 64×64 images and their captions."""
    ds = EmojiDataset(prepare("emoji"), split="test", variants=False)
    picks = [0, 7, 19, 42]
    loaded = [ds.load(i) for i in picks]
    return [im for im, _ in loaded], [cap for _, cap in loaded]
