"""Tests for robustness evaluation: a perfect colour model with known answers, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xmodal.cli import main
from xmodal.data.transforms import to_tensor
from xmodal.eval.robustness import (
    RetrievalData,
    ZeroShotData,
    drop_rows,
    evaluate_robustness,
    retrieval_chance,
    robustness_retrieval,
    robustness_zero_shot,
)
from xmodal.eval.robustness_report import robustness_markdown, write_robustness_report

COLOURS = {
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "yellow": (1, 1, 0),
    "cyan": (0, 1, 1),
    "magenta": (1, 0, 1),
}


def colour_vector(rgb) -> torch.Tensor:
    return F.normalize(torch.tensor(rgb, dtype=torch.float32) - 0.5, dim=-1)


class ColourModel(nn.Module):
    """A perfect dual encoder for solid colours: the image's mean colour, the caption's colour word."""

    def __init__(self, null_image: str | None = None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        if null_image is not None:
            self.null_image_embedding = colour_vector(COLOURS[null_image])

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.mean(dim=(2, 3)) - 0.5, dim=-1)  # (B, 3)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            words = [w for w in t.split() if w in COLOURS]
            rows.append(colour_vector(COLOURS[words[0]]) if words else torch.zeros(3))
        return torch.stack(rows)


def solid(name: str) -> Image.Image:
    return Image.new("RGB", (16, 16), tuple(255 * c for c in COLOURS[name]))


@pytest.fixture
def retrieval_data() -> RetrievalData:
    names = list(COLOURS) * 2  # two images per colour, one caption each
    return RetrievalData(
        images=[solid(n) for n in names],
        image_ids=names,
        texts=[f"a {n} square" for n in COLOURS],
        text_ids=list(COLOURS),
    )


def test_drop_rows_is_nested_and_exact():
    emb = torch.ones(10, 3)
    masks = [(drop_rows(emb, f, torch.zeros(3), seed=1) == 0).all(1) for f in (0.2, 0.6, 1.0)]
    assert [int(m.sum()) for m in masks] == [2, 6, 10]
    assert (masks[1] | ~masks[0]).all()
    assert torch.equal(drop_rows(emb, 0.0, torch.zeros(3), seed=1), emb)


def test_chance_is_the_expected_random_r1(retrieval_data):
    assert retrieval_chance(retrieval_data) == pytest.approx(1 / 6)  # i2t 1/6, t2i 2/12
    two = RetrievalData(
        images=[solid("red")] * 2, image_ids=["a", "b"], texts=["x", "y", "z"], text_ids=["a", "a", "b"]
    )
    assert retrieval_chance(two) == pytest.approx(((2 / 3 + 1 / 3) / 2 + 1 / 2) / 2)


def test_perfect_model_known_curves(retrieval_data):
    model = ColourModel(null_image="red")
    out = robustness_retrieval(
        model,
        to_tensor,
        retrieval_data,
        image_corruptions=["gaussian_noise"],
        text_corruptions=["token_dropout"],
        severities=[1, 3, 5],
    )
    assert out["severities"] == [0, 1, 3, 5]
    assert out["clean"] == {"R@1": 1.0, "image_to_text": 1.0, "text_to_image": 1.0}
    for name, curve in out["curves"].items():
        if name != "missing text (null)":
            assert curve is not None and curve["R@1"][0] == 1.0  # severity 0 is clean
    zeros = out["curves"]["missing image (zeros)"]["image_to_text"]
    assert zeros == pytest.approx([1.0, 1 - 2 / 12, 1 - 7 / 12, 0.0])  # round(s/5 · 12) images lost
    assert out["curves"]["missing text (zeros)"]["R@1"][-1] == 0.0  # ties count against the query
    # the learned null embedding is "red": with every image replaced, only red images find their caption
    assert out["curves"]["missing image (null)"]["image_to_text"][-1] == pytest.approx(2 / 12)
    assert out["curves"]["missing text (null)"] is None  # the model has no text null embedding: n/a
    assert out["curves"]["image gaussian_noise"]["R@1"] == [1.0] * 4  # solid colours survive noise
    assert out["baselines"]["chance"] == pytest.approx(1 / 6)
    assert out["baselines"]["image-only"] is None


def test_zero_shot_curves_and_image_only_baseline():
    names = list(COLOURS) * 3
    data = ZeroShotData(
        images=[solid(n) for n in names],
        labels=torch.tensor([list(COLOURS).index(n) for n in names]),
        classnames=list(COLOURS),
        templates=["a {} thing", "{}"],
        support_images=[solid(n) for n in COLOURS],
        support_labels=torch.arange(6),
    )
    out = robustness_zero_shot(
        ColourModel(),
        to_tensor,
        data,
        image_corruptions=["occlusion"],
        text_corruptions=["typos"],
        missing=["zeros", "null"],
    )
    assert out["clean"] == {"top1": 1.0}
    assert out["baselines"] == {
        "chance": pytest.approx(1 / 6),
        "text-only prior": pytest.approx(1 / 6),
        "image-only": 1.0,
    }
    typo = out["curves"]["text typos"]["top1"]
    assert typo[0] == 1.0 and typo[-1] < 1.0  # misspelt class names stop matching
    missing = out["curves"]["missing image (zeros)"]["top1"]
    assert missing[0] == 1.0 and missing[-1] == pytest.approx(1 / 6)  # all-zero logits pick class 0
    assert out["curves"]["missing image (null)"] is None


def test_report_files(tmp_path, retrieval_data):
    res = evaluate_robustness(
        ColourModel(),
        to_tensor,
        retrieval=retrieval_data,
        image_corruptions=["jpeg"],
        text_corruptions=[],
        severities=[2, 4],
    )
    assert res["settings"] == {"seed": 0, "severities": [0, 2, 4], "missing_fraction": [0.0, 0.4, 0.8]}
    paths = write_robustness_report(res, tmp_path / "rob")
    assert json.loads(paths["json"].read_text())["retrieval"]["clean"]["R@1"] == 1.0
    md = paths["markdown"].read_text()
    assert "| missing image (null) | n/a | n/a | n/a |" in md and "| image jpeg | 1.000 |" in md
    assert md == robustness_markdown(res)
    with Image.open(paths["plot"]) as im:
        assert im.size[0] > 400
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_robustness(ColourModel(), to_tensor)


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_cli_on_real_data(tmp_path, capsys, restore_threads):
    torch.manual_seed(0)
    out = tmp_path / "rob"
    args = ["eval", "robustness", "--model", "clip-vit-tiny", "--out", str(out), "--max-images", "12"]
    opts = [
        "--shots",
        "1",
        "--severities",
        "1,5",
        "--image-corruption",
        "gaussian_blur",
        "--text-corruption",
        "typos",
    ]
    assert main([*args, *opts, "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    res = json.loads((out / "robustness.json").read_text())
    assert res["retrieval"]["n_images"] == 12 and res["zero_shot"]["n_images"] == 12
    assert res["zero_shot"]["n_support"] == 10
    assert set(res["retrieval"]["curves"]) == {
        "image gaussian_blur",
        "text typos",
        *(f"missing {m} ({f})" for m in ("image", "text") for f in ("zeros", "mean", "null")),
    }
    assert res["zero_shot"]["curves"]["text typos"]["top1"][0] == res["zero_shot"]["clean"]["top1"]
    assert (out / "robustness.png").stat().st_size > 0
    assert "zero-shot top-1" in capsys.readouterr().out
    assert main([*args, "--severities", "0,9"]) == 2
    assert main([*args, "--retrieval", "none", "--zero-shot", "none"]) == 2
    assert main([*args, "--missing", "noise"]) == 2
    assert "unknown missing-modality fill 'noise'" in capsys.readouterr().err
