"""The "caption" recipe end to end through the CLI, shrunk: a few real emoji, a tiny decoder, 4 steps."""

from __future__ import annotations

import json

import pytest
from tests.rescoring import assert_rescored

from xmodal.cli import main
from xmodal.data.prepare import prepare

CONFIG = "configs/caption_emoji.yaml"
TINY = [
    "model.dim=32",
    "model.depth=1",
    "data.image_size=64",  # 2×2 = 4 image tokens
    "data.batch_size=8",
    "data.max_train_images=24",
    "data.max_eval_images=6",
    "train.steps=4",
    "train.eval_every=2",
    "train.ckpt_every=2",
    "train.log_every=1",
    "eval.beam_size=2",
    "eval.max_new_tokens=5",
]


@pytest.fixture(scope="module")
def real_emoji_root():
    """The real emoji data, prepared in $XMODAL_HOME (instant when `make data` ran)."""
    return prepare("emoji")


def run(*argv: str) -> int:
    sets = [x for s in TINY for x in ("--set", s)]
    return main([*argv, *sets, "--no-progress"])


@pytest.mark.parametrize("decoder", ["scratch", "whisper-tiny-random"])
def test_train_then_eval(tmp_path, decoder, real_emoji_root):
    out = tmp_path / "run"
    assert run("train", CONFIG, "--out", str(out), "--set", f"model.decoder={decoder}") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["decoder"] == decoder and metrics["test_images"] == 6
    for key in ("model", "model_greedy", "nearest_neighbour"):
        assert {"Bleu_4", "CIDEr", "ROUGE_L"} <= set(metrics[key])
    assert set(metrics["beats_nearest_neighbour"]) == {"Bleu_4", "CIDEr"}
    assert metrics["train"]["steps"] == 4 and metrics["train"]["best_step"] in (2, 4)
    assert len(metrics["examples"]) == 6
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4]

    assert run("eval", CONFIG, "--checkpoint", str(out / "model"), "--out", str(tmp_path / "ev")) == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["model"] == metrics["model"] and again["nearest_neighbour"] == metrics["nearest_neighbour"]
    nn_scores = metrics["nearest_neighbour"]
    assert_rescored(metrics["files"], {"model": metrics["model"], "nearest_neighbour": nn_scores})
    assert (tmp_path / "ev" / "predictions" / "captions_test_model.json").is_file()

    assert (
        run("train", CONFIG, "--out", str(out), "--set", f"model.decoder={decoder}") == 2
    )  # would overwrite


def test_decoding_chosen_on_validation_and_per_part_lr(tmp_path, real_emoji_root):
    out = tmp_path / "run"
    grid = ["eval.beam_sizes=[1,2]", "eval.alphas=[0.0,1.0]", "model.memory_depth=2"]
    grid += ["model.memory_lr_scale=3.0", "model.decoder_lr_scale=0.5"]
    assert run("train", CONFIG, "--out", str(out), *[x for s in grid for x in ("--set", s)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    d = metrics["decoding"]
    assert d["chosen_on"] == "val CIDEr-D"
    assert [(t["beam_size"], t["alpha"]) for t in d["tried"]] == [(1, 0.0), (2, 0.0), (2, 1.0)]
    best = max(t["val_CIDEr"] for t in d["tried"])
    first = next(t for t in d["tried"] if t["val_CIDEr"] == best)
    assert (d["beam_size"], d["alpha"]) == (first["beam_size"], first["alpha"])
    if d["beam_size"] == 1:
        assert metrics["model"] == metrics["model_greedy"]


def test_bad_decoder_and_bad_key_are_one_line_errors(tmp_path, capsys, real_emoji_root):
    assert run("train", CONFIG, "--out", str(tmp_path / "a"), "--set", "model.decoder=gpt9") == 2
    assert "unknown decoder 'gpt9'" in capsys.readouterr().err
    assert run("train", CONFIG, "--out", str(tmp_path / "b"), "--set", "model.width=3") == 2
    assert "unknown config key 'model.width'" in capsys.readouterr().err
    assert run("train", CONFIG, "--out", str(tmp_path / "c"), "--set", "data.references=short") == 2
    assert "data.references: expected one of all, first, got 'short'" in capsys.readouterr().err
