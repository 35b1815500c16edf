"""Tests for Winoground scoring and its reader (official JSONL + images layout, small fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal.cli import main
from xmodal.errors import DataError
from xmodal.eval.scorers import pointwise_scorer
from xmodal.eval.winoground import (
    format_winoground,
    read_winoground,
    winoground_metrics,
    winoground_scores,
)

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def two_colour_image(left: str, right: str) -> Image.Image:
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[:, :8] = COLOURS[left]
    arr[:, 8:] = COLOURS[right]
    return Image.fromarray(arr)


def write_winoground(root: Path, pairs: list[tuple[str, str]], tags: list[str]) -> Path:
    """A Winoground folder: two images with swapped colours and two captions of the same words each."""
    (root / "images").mkdir(parents=True)
    lines = []
    for i, ((a, b), tag) in enumerate(zip(pairs, tags, strict=True)):
        two_colour_image(a, b).save(root / "images" / f"ex_{i}_img_0.png")
        two_colour_image(b, a).save(root / "images" / f"ex_{i}_img_1.png")
        lines.append(
            {
                "id": i,
                "image_0": f"ex_{i}_img_0",
                "image_1": f"ex_{i}_img_1",
                "caption_0": f"{a} left of {b}",
                "caption_1": f"{b} left of {a}",
                "tag": tag,
                "secondary_tag": "Symbolic" if i == 0 else "",
                "num_main_preds": 1,
                "collapsed_tag": tag,
            }
        )
    (root / "examples.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def left_colour(image: Image.Image) -> str:
    pixel = np.asarray(image.convert("RGB"))[8, 2]
    return min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum())


def order_aware(image: Image.Image, text: str) -> float:
    """1 when the caption's first colour is the image's left colour: a perfect Winoground scorer here."""
    return float(text.split()[0] == left_colour(image))


def bag_of_words(image: Image.Image, text: str) -> float:
    """Counts caption colours present in the image: blind to word order, so every pair ties."""
    arr = np.asarray(image.convert("RGB"))
    present = {left_colour(Image.fromarray(arr)), left_colour(Image.fromarray(arr[:, ::-1].copy()))}
    return float(sum(w in present for w in text.split()))


@pytest.fixture
def wino_dir(tmp_path):
    return write_winoground(
        tmp_path / "wino",
        [("red", "blue"), ("green", "red"), ("blue", "green")],
        ["Object", "Relation", "Relation"],
    )


def test_metrics_follow_the_paper_definitions():
    # scores[n, j, k] = s(caption_j, image_k)
    only_image = [[0.9, 0.8], [0.1, 0.2]]  # text: .9>.1 but .2<.8 -> no; image: .9>.8 and .2>.1 -> yes
    only_text = [[0.9, 0.1], [0.8, 0.2]]  # text: .9>.8 and .2>.1 -> yes; image: .9>.1 but .2<.8 -> no
    both = [[1.0, 0.0], [0.0, 1.0]]
    out = winoground_metrics(torch.tensor([only_image, only_text, both]))
    assert out["correct"] == {
        "text": [False, True, True],
        "image": [True, False, True],
        "group": [False, False, True],
    }
    assert out["text_score"] == pytest.approx(2 / 3)
    assert out["image_score"] == pytest.approx(2 / 3)
    assert out["group_score"] == pytest.approx(1 / 3)


def test_perfect_reversed_and_constant_scorers(wino_dir):
    examples = read_winoground(wino_dir)
    perfect = winoground_scores(pointwise_scorer(order_aware), examples)
    assert (perfect["text_score"], perfect["image_score"], perfect["group_score"]) == (1.0, 1.0, 1.0)
    reversed_ = winoground_scores(pointwise_scorer(lambda im, t: -order_aware(im, t)), examples)
    assert (reversed_["text_score"], reversed_["image_score"], reversed_["group_score"]) == (0.0, 0.0, 0.0)
    constant = winoground_scores(pointwise_scorer(lambda im, t: 0.5), examples)
    assert constant["group_score"] == constant["text_score"] == constant["image_score"] == 0.0
    bow = winoground_scores(pointwise_scorer(bag_of_words), examples)
    assert bow["group_score"] == 0.0  # the same words in both captions: a bag of words always ties
    assert perfect["ids"] == [0, 1, 2]


def test_per_tag_breakdown(wino_dir):
    examples = read_winoground(wino_dir)

    def right_on_relations_only(im, t):  # blind on example 0, the only "red"-and-"blue" one
        return 0.0 if {"red", "blue"} <= set(t.split()) else order_aware(im, t)

    out = winoground_scores(pointwise_scorer(right_on_relations_only), examples, batch_examples=2)
    assert out["by_tag"]["tag"]["Object"] == {
        "n": 1,
        "text_score": 0.0,
        "image_score": 0.0,
        "group_score": 0.0,
    }
    assert out["by_tag"]["tag"]["Relation"]["group_score"] == 1.0
    assert out["by_tag"]["secondary_tag"] == {"Symbolic": out["by_tag"]["tag"]["Object"]}
    assert out["group_score"] == pytest.approx(2 / 3)
    table = format_winoground(out)
    assert "Relation" in table and "Symbolic" in table and "group" in table


def test_reader_reads_the_official_layout(wino_dir):
    examples = read_winoground(wino_dir / "examples.jsonl")
    assert len(examples) == 3
    ex = examples[1]
    assert ex.caption_0 == "green left of red" and ex.caption_1 == "red left of green"
    assert ex.image_0 == wino_dir / "images" / "ex_1_img_0.png"
    assert (ex.tag, ex.collapsed_tag, ex.num_main_preds, ex.secondary_tag) == ("Relation", "Relation", 1, "")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "examples.jsonl:2: not JSON"),
        ('{"id": 9, "image_0": "ex_0_img_0"}', "missing field(s) image_1, caption_0, caption_1"),
        (
            '{"id": 9, "image_0": "gone", "image_1": "ex_0_img_1", "caption_0": "a", "caption_1": "b"}',
            "image_0",
        ),
    ],
)
def test_reader_names_the_bad_line(wino_dir, line, message):
    f = wino_dir / "examples.jsonl"
    first = f.read_text().splitlines()[0]
    f.write_text(first + "\n" + line + "\n")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_winoground(wino_dir)


def test_cli_scores_a_registered_model(wino_dir, tmp_path, capsys):
    torch.manual_seed(0)
    out = tmp_path / "scores.json"
    code = main(
        [
            "eval",
            "winoground",
            "--model",
            "clip-vit-tiny",
            "--path",
            str(wino_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    res = json.loads(out.read_text())
    assert res["n"] == 3 and res["model"] == "clip-vit-tiny"
    assert 0.0 <= res["group_score"] <= min(res["text_score"], res["image_score"])
    assert "text" in capsys.readouterr().out
    assert main(["eval", "winoground", "--model", "clip-vit-tiny", "--path", str(tmp_path / "nowhere")]) == 2
    assert "examples.jsonl" in capsys.readouterr().err
