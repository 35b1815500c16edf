"""Tests for the image–text scorers: dual-encoder cosine, matching heads, caption likelihood."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from xmodal.eval.scorers import (
    caption_likelihood_scorer,
    dual_encoder_scorer,
    itm_scorer,
    pointwise_scorer,
)
from xmodal.models.factory import create_model


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("clip-vit-tiny")


def test_dual_encoder_scorer_is_the_cosine_of_the_embeddings(tiny):
    model, preprocess = tiny
    a, b = Image.new("RGB", (32, 32), (200, 10, 10)), Image.new("RGB", (32, 32), (10, 10, 200))
    images, texts = [a, a, b, a], ["a red square", "a blue square", "a red square", "a red square"]
    scores = dual_encoder_scorer(model, preprocess, batch_size=1)(images, texts)
    with torch.no_grad():
        zi = model.encode_image(torch.stack([preprocess(im) for im in images]))
        zt = model.encode_text(texts)
    torch.testing.assert_close(scores, (zi * zt).sum(-1), atol=1e-5, rtol=1e-5)
    assert scores[0] == scores[3]  # a repeated pair scores the same (embedded once)
    assert dual_encoder_scorer(model, preprocess)([], []).numel() == 0
    with pytest.raises(ValueError, match="2 images but 1 texts"):
        dual_encoder_scorer(model, preprocess)([a, b], ["x"])


class FakeCaptioner:
    """log p(text | image): each word costs -1, the image's colour name costs -0.1 (deterministic)."""

    def __call__(self, images, texts):
        out = []
        for im, t in zip(images, texts, strict=True):
            colour = "red" if im.getpixel((0, 0))[0] > 128 else "blue"
            out.append(sum(-0.1 if w == colour else -1.0 for w in t.split()))
        return torch.tensor(out)


def test_caption_likelihood_scorer_sum_and_mean():
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    texts = ["red", "blue", "a red square"]
    total = caption_likelihood_scorer(FakeCaptioner())([red] * 3, texts)
    torch.testing.assert_close(total, torch.tensor([-0.1, -1.0, -2.1]))
    mean = caption_likelihood_scorer(FakeCaptioner(), reduction="mean")([red] * 3, texts)
    torch.testing.assert_close(mean, torch.tensor([-0.1, -1.0, -0.7]))
    chars = caption_likelihood_scorer(FakeCaptioner(), reduction="mean", count_tokens=len)([red], ["red"])
    torch.testing.assert_close(chars, torch.tensor([-0.1 / 3]))
    # the generative model prefers the matching caption: sum favours short captions, mean does not
    assert total[0] > total[1] and total[1] > total[2]
    assert mean[2] > mean[1]
    with pytest.raises(ValueError, match="reduction"):
        caption_likelihood_scorer(FakeCaptioner(), reduction="max")  # type: ignore[arg-type]


def test_itm_and_pointwise_scorers_check_their_output():
    im = Image.new("RGB", (4, 4))
    head = itm_scorer(lambda images, texts: torch.arange(len(texts), dtype=torch.float32))
    torch.testing.assert_close(head([im, im], ["a", "b"]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="returned 1 scores for 2"):
        itm_scorer(lambda images, texts: torch.zeros(1))([im, im], ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        itm_scorer(lambda images, texts: torch.tensor([float("nan")]))([im], ["a"])
    torch.testing.assert_close(
        pointwise_scorer(lambda i, t: len(t))([im, im], ["ab", "abc"]), torch.tensor([2.0, 3.0])
    )
