"""Tests for xmodal.eval.zero_shot: prompt-ensemble averaging and the evaluation runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xmodal.eval.zero_shot import evaluate_zero_shot, fill_template, zero_shot_classifier


class LookupDualEncoder(nn.Module):
    """Texts: a fixed table of (not normalised) vectors; images: their mean RGB, L2-normalised."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        super().__init__()
        self.table = table
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a device and train/eval flags

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.table[t] for t in texts]) * self.scale

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.mean(dim=(2, 3)), dim=-1)  # (B, 3)


def to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


def test_classifier_normalises_each_prompt_before_averaging():
    model = LookupDualEncoder(
        {
            "a cat": [1.0, 0.0, 0.0],
            "the cat": [0.0, 2.0, 0.0],
            "a dog": [0.0, 0.0, 3.0],
            "the dog": [0.0, 0.0, 1.0],
        }
    )
    cls = zero_shot_classifier(model, ["cat", "dog"], ["a {}", "the {}"])
    # cat: mean of [1,0,0] and [0,1,0] (the second normalised from length 2) → [.5,.5,0] → re-normalised
    expected = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) / torch.tensor([[2**0.5], [1.0]])
    torch.testing.assert_close(cls, expected)
    assert torch.allclose(cls.norm(dim=-1), torch.ones(2))


def test_classifier_matches_manual_ensemble_on_random_table():
    g = torch.Generator().manual_seed(0)
    classes, templates = ["shirt", "bag", "boot"], ["a photo of a {}.", "a {} on white.", "{}"]
    table = {t.format(c): torch.randn(5, generator=g).tolist() for c in classes for t in templates}
    cls = zero_shot_classifier(LookupDualEncoder(table), classes, templates, batch_size=2)
    manual = []
    for c in classes:
        vecs = [F.normalize(torch.tensor(table[t.format(c)]), dim=0) for t in templates]
        mean = sum(vecs) / len(vecs)
        manual.append(mean / mean.norm())
    torch.testing.assert_close(cls, torch.stack(manual))


def test_templates_may_be_functions_and_need_a_placeholder():
    assert fill_template(lambda c: f"itap of a {c}.", "boot") == "itap of a boot."
    assert fill_template("a photo of a {}.", "boot") == "a photo of a boot."
    with pytest.raises(ValueError, match="has no"):
        fill_template("a photo", "boot")


def solid(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (4, 4), rgb)


def test_evaluate_zero_shot_hand_computed():
    table = {"red": [1.0, 0, 0], "green": [0, 1.0, 0], "blue": [0, 0, 1.0]}
    model = LookupDualEncoder(table)
    images = [solid((255, 0, 0)), solid((0, 255, 0)), solid((153, 0, 102)), solid((0, 0, 255))]
    labels = np.array([0, 1, 2, 2])  # the purple (0.6 red, 0.4 blue) image is "blue" but looks red
    out = evaluate_zero_shot(model, to_tensor, images, labels, ["red", "green", "blue"], ["{}"], batch_size=3)
    assert out["n"] == 4
    assert out["top1"] == pytest.approx(0.75)
    assert out["top5"] == 1.0  # K > C counts every sample
    assert out["per_class"] == pytest.approx({"red": 1.0, "green": 1.0, "blue": 0.5})
    assert out["confusion"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    classes = ["red", "green", "blue"]
    same = evaluate_zero_shot(
        model, to_tensor, iter(images), labels.tolist(), classes, ["{}"], logit_scale=1.0
    )
    assert same == out  # the logit scale does not change accuracy


def test_label_count_must_match():
    model = LookupDualEncoder({"red": [1.0, 0, 0], "blue": [0, 0, 1.0]})
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        evaluate_zero_shot(model, to_tensor, [solid((1, 2, 3))] * 2, [0, 1, 1], ["red", "blue"], ["{}"])


class PrototypeModel(nn.Module):
    """Nearest class mean as a dual encoder: an image is its centred 14×14 grey pixels; a prompt is the mean
    image embedding of the class it was written for."""

    def __init__(self, prompt_to_class: dict[str, int], prototypes: torch.Tensor) -> None:
        super().__init__()
        self.prompt_to_class = prompt_to_class
        self.register_buffer("prototypes", prototypes)  # (C, 196)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images.mean(dim=1, keepdim=True), 2).flatten(1)  # (B, 196)
        return F.normalize(x - x.mean(dim=1, keepdim=True), dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.prototypes[[self.prompt_to_class[t] for t in texts]]


@pytest.mark.slow
def test_real_fashion_mnist_with_a_prototype_model():
    from xmodal.data.fashion_mnist import CLASSNAMES, PROMPT_TEMPLATES, FashionMNIST
    from xmodal.data.prepare import prepare

    prepare("fashion-mnist")  # real data; fast when already prepared (make test prepares it)
    train, test = FashionMNIST(split="train"), FashionMNIST(split="test")
    prompts = {fill_template(t, c): i for i, c in enumerate(CLASSNAMES) for t in PROMPT_TEMPLATES}
    model = PrototypeModel(prompts, torch.zeros(10, 196))
    pixels = torch.from_numpy(255 - train.images[:6000]).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    emb = model.encode_image(pixels)  # (6000, 196), same preprocessing as to_pil(invert=True) → to_tensor
    labels = torch.from_numpy(train.labels[:6000])
    model.prototypes = F.normalize(torch.stack([emb[labels == c].mean(0) for c in range(10)]), dim=-1)

    n = 2000
    out = evaluate_zero_shot(
        model, to_tensor, (test.to_pil(i) for i in range(n)), test.labels[:n], CLASSNAMES, PROMPT_TEMPLATES
    )
    assert out["n"] == n
    assert out["top1"] > 0.5 and out["top5"] > 0.9  # chance is 0.1 and 0.5
    assert out["top1"] == pytest.approx(0.6575, abs=1e-4)  # seeded by the fixed data: 1315 of 2000
    confusion = torch.tensor(out["confusion"])
    assert confusion.sum() == n
    assert confusion.sum(dim=1).tolist() == np.bincount(test.labels[:n], minlength=10).tolist()
    assert list(out["per_class"]) == list(CLASSNAMES)
    assert out["per_class"]["pair of trousers"] > 0.8  # the easiest class for pixels
