"""Tests for xmodal.eval.retrieval on a small image–caption split written to disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xmodal.eval.retrieval import evaluate_retrieval, text_to_image_examples, unique_captions
from xmodal.metrics.retrieval import retrieval_metrics


@dataclass(frozen=True)
class Item:
    image_path: Path
    caption: str
    emoji_id: str


class CaptionSplit:
    """The image–caption dataset shape: ``items`` and ``load(i) -> (PIL image, caption)``."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def load(self, i: int) -> tuple[Image.Image, str]:
        with Image.open(self.items[i].image_path) as im:
            return im.convert("RGB"), self.items[i].caption


class ColourModel(nn.Module):
    """Images: normalised mean RGB; texts: a table of colour directions."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        super().__init__()
        self.table = table
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.mean(dim=(2, 3)), dim=-1)  # (B, 3)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(torch.tensor([self.table[t] for t in texts]), dim=-1)


def to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


TABLE = {
    "red circle": [1.0, 0.0, 0.0],
    "green circle": [0.0, 1.0, 0.0],
    "blue circle": [0.0, 0.0, 1.0],
    "large blue circle": [0.0, 0.8, 0.6],  # leans green: its images rank second
}


@pytest.fixture
def split(tmp_path: Path) -> CaptionSplit:
    rows = [  # two red images share an id and a caption; the two blue images share an id, not a caption
        ((255, 0, 0), "red circle", "1f534"),
        ((128, 0, 0), "red circle", "1f534"),
        ((0, 255, 0), "green circle", "1f7e2"),
        ((0, 0, 255), "blue circle", "1f535"),
        ((0, 40, 255), "large blue circle", "1f535"),
    ]
    items = []
    for i, (rgb, caption, eid) in enumerate(rows):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (6, 6), rgb).save(path)
        items.append(Item(path, caption, eid))
    return CaptionSplit(items)


def test_unique_captions_per_id(split):
    texts, ids = unique_captions(split)
    assert texts == ["red circle", "green circle", "blue circle", "large blue circle"]
    assert ids == ["1f534", "1f7e2", "1f535", "1f535"]


def test_evaluate_retrieval_hand_computed(split):
    metrics, emb = evaluate_retrieval(
        ColourModel(TABLE), to_tensor, split, batch_size=2, return_embeddings=True
    )
    assert metrics["n"] == 5 and metrics["n_texts"] == 4
    # every image finds a caption of its id first
    assert metrics["image_to_text"] == pytest.approx(
        {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0, "mean_rank": 1.0}
    )
    # "large blue circle" scores the green image (0.8) above both blue ones (0.72, 0.6) → rank 2
    assert metrics["text_to_image"] == pytest.approx(
        {"R@1": 0.75, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0, "mean_rank": 1.25}
    )
    assert emb.image_emb.shape == (5, 3) and emb.text_emb.shape == (4, 3)
    assert emb.image_ids == ["1f534", "1f534", "1f7e2", "1f535", "1f535"]
    assert emb.image_paths == [item.image_path for item in split.items]
    again = retrieval_metrics(emb.image_emb, emb.text_emb, emb.image_ids, emb.text_ids, (1, 5, 10))
    assert {k: v for k, v in metrics.items() if k not in ("n", "n_texts")} == again


def test_without_embeddings_returns_only_metrics(split):
    out = evaluate_retrieval(ColourModel(TABLE), to_tensor, split, ks=(1,))
    assert set(out) == {"n", "n_texts", "image_to_text", "text_to_image"}
    assert set(out["text_to_image"]) == {"R@1", "median_rank", "mean_rank"}


def test_text_to_image_examples(split):
    _, emb = evaluate_retrieval(ColourModel(TABLE), to_tensor, split, return_embeddings=True)
    [(query, paths, correct)] = text_to_image_examples(emb, queries=[3], k=5)
    assert query == "large blue circle"
    assert len(paths) == 5 and len(correct) == 5
    assert paths[:3] == [split.items[i].image_path for i in (2, 4, 3)]  # green 0.8, blue 0.72, blue 0.6
    assert correct[:3] == [False, True, True]
    assert sum(correct) == 2  # the red images are not
    picked = text_to_image_examples(emb, num_queries=3, k=2, seed=0)
    assert len(picked) == 3 and len({q for q, _, _ in picked}) == 3
    assert picked == text_to_image_examples(emb, num_queries=3, k=2, seed=0)


class PrototypeRetrievalModel(nn.Module):
    """Images: centred 16×16 colour thumbnails; a caption: the mean embedding of its emoji's images."""

    def __init__(self) -> None:
        super().__init__()
        self.table: dict[str, torch.Tensor] = {}

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images, 16).flatten(1)  # (B, 768)
        return F.normalize(x - x.mean(dim=1, keepdim=True), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([self.table[t] for t in texts])


@pytest.mark.slow
def test_real_emoji_test_split():
    from xmodal.data.emoji import EmojiDataset
    from xmodal.data.prepare import prepare
    from xmodal.eval.embed import embed_images

    prepare("emoji")  # real data; fast when already prepared (make test prepares it)
    split = EmojiDataset(split="test")
    model = PrototypeRetrievalModel()
    image_emb = embed_images(model, split, to_tensor)
    for caption in {item.caption for item in split.items}:
        rows = [i for i, item in enumerate(split.items) if item.caption == caption]
        model.table[caption] = F.normalize(image_emb[rows].mean(0), dim=0)

    metrics, emb = evaluate_retrieval(model, to_tensor, split, return_embeddings=True)
    assert metrics["n"] == len(split.items) > metrics["n_texts"]  # skin-tone variants share a caption
    assert metrics["n_texts"] == len(split.emoji_ids())  # one caption per emoji
    torch.testing.assert_close(emb.image_emb, image_emb)
    # each emoji's prototype is nearest to its own images far more often than chance (1 / n_texts)
    assert metrics["image_to_text"]["R@1"] > 0.9 and metrics["text_to_image"]["R@1"] > 0.9
    examples = text_to_image_examples(emb, num_queries=4)
    assert all(Path(p).is_file() for _, paths, _ in examples for p in paths)
