"""Tests for xmodal.eval.embed with a small deterministic dual encoder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xmodal.eval.embed import embed_images, embed_texts, evaluating


class FakeDualEncoder(nn.Module):
    """Images: mean RGB → linear; texts: letter counts → linear; both L2-normalised. Records its calls."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.image_proj = nn.Linear(3, dim)
        self.text_proj = nn.Linear(26, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls: list[tuple[str, int, bool, bool]] = []  # (tower, batch, training, grad enabled)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(("image", images.shape[0], self.training, torch.is_grad_enabled()))
        return F.normalize(self.image_proj(images.mean(dim=(2, 3))), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(("text", len(texts), self.training, torch.is_grad_enabled()))
        counts = torch.zeros(len(texts), 26)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    counts[i, ord(ch) - ord("a")] += 1
        return F.normalize(self.text_proj(counts), dim=-1)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL → (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def colour_images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]


def test_embed_images_batches_agree_and_match_direct_call():
    model, images = FakeDualEncoder(), colour_images(7)
    direct = model.encode_image(torch.stack([to_tensor(im) for im in images])).detach()
    small = embed_images(model, images, to_tensor, batch_size=3, progress=False)
    large = embed_images(model, iter(images), to_tensor, batch_size=100, progress=False)
    assert small.shape == (7, 4) and small.dtype == torch.float32
    torch.testing.assert_close(small, direct)
    torch.testing.assert_close(large, direct)
    assert [c[1] for c in model.calls if c[0] == "image"][1:] == [3, 3, 1, 7]
    # usable outside inference mode (an inference tensor would refuse in-place updates)
    assert not small.is_inference() and not small.requires_grad
    small.mul_(2.0)


def test_runs_in_eval_and_inference_mode_then_restores_flags():
    model = FakeDualEncoder()
    model.train()
    model.text_proj.eval()  # a frozen tower kept in eval mode must stay so
    embed_images(model, colour_images(2), to_tensor, progress=False)
    embed_texts(model, ["a cat", "a dog"], progress=False)
    assert all(not training and not grad for _, _, training, grad in model.calls)
    assert model.training and model.image_proj.training and not model.text_proj.training


def test_evaluating_restores_flags_after_an_error():
    model = FakeDualEncoder().train()
    with pytest.raises(RuntimeError), evaluating(model):
        assert not model.training
        raise RuntimeError("boom")
    assert model.training


def test_embed_texts_batches_and_order():
    model = FakeDualEncoder()
    texts = ["red circle", "blue square", "green", "cat face", "dog"]
    out = embed_texts(model, texts, batch_size=2, progress=False)
    torch.testing.assert_close(out, model.encode_text(texts).detach())
    assert [c[1] for c in model.calls if c[0] == "text"][:3] == [2, 2, 1]


@dataclass
class Item:
    image_path: str
    caption: str
    emoji_id: str


class CaptionData:
    """The image–caption dataset shape: items + load(i)."""

    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images
        self.items = [Item(f"{i}.png", f"caption {i}", f"id{i}") for i in range(len(images))]

    def load(self, i: int) -> tuple[Image.Image, str]:
        return self.images[i], self.items[i].caption


class LabelledData:
    """The Fashion-MNIST shape: to_pil(i) + labels."""

    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images
        self.labels = np.arange(len(images), dtype=np.int64)

    def to_pil(self, i: int) -> Image.Image:
        return self.images[i]


def test_datasets_are_accepted_as_image_sources():
    model, images = FakeDualEncoder(), colour_images(5)
    expected = embed_images(model, images, to_tensor, progress=False)
    torch.testing.assert_close(embed_images(model, CaptionData(images), to_tensor, batch_size=2), expected)
    torch.testing.assert_close(embed_images(model, LabelledData(images), to_tensor, batch_size=2), expected)


def test_progress_bar_flag(capsys):
    model = FakeDualEncoder()
    embed_texts(model, ["a", "b"], progress=True)
    assert "embedding texts" in capsys.readouterr().err
    embed_texts(model, ["a", "b"])  # None: hidden when stderr is not a terminal (pytest captures it)
    assert capsys.readouterr().err == ""


def test_errors():
    model = FakeDualEncoder()
    with pytest.raises(ValueError, match="no images"):
        embed_images(model, [], to_tensor)
    with pytest.raises(ValueError, match="no texts"):
        embed_texts(model, [])
    with pytest.raises(TypeError, match="not one string"):
        embed_texts(model, "a cat")
    with pytest.raises(ValueError, match="batch_size"):
        embed_texts(model, ["a"], batch_size=0)
