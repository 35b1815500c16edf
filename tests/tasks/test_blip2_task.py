"""The "blip2" recipe end to end through the CLI, shrunk: a tiny random LM folder, a few real emoji."""

from __future__ import annotations

import json

from tests.rescoring import assert_rescored

from xmodal.cli import main
from xmodal.lm.tiny import save_tiny_lm


def shrink(lm: str) -> list[str]:
    sets = [
        f"model.lm={lm}",
        "model.qformer.num_queries=2",
        "model.qformer.dim=32",
        "model.qformer.depth=2",
        "model.qformer.num_heads=2",
        "model.qformer.embed_dim=16",
        "max_train_images=16",
        "stage1.batch_size=4",
        "stage1.train.steps=3",
        "stage1.train.log_every=1",
        "stage2.batch_size=4",
        "stage2.train.steps=3",
        "stage2.train.log_every=1",
        "stage1.train.threads=1",
        "stage2.train.threads=1",
        "eval.max_images=5",
        "eval.max_new_tokens=4",
        "eval.val_images=4",
        "stage2.train.eval_every=2",
        "model.train_lm=true",
        "model.lm_lr_scale=0.5",
        "model.label_smoothing=0.1",
        "model.lm_dropout=0.2",
        "references=first",
        "eval.beam_sizes=[1, 2]",
        "eval.alphas=[0.0, 1.0]",
    ]
    return [x for s in sets for x in ("--set", s)]


def test_train_then_eval_writes_caption_metrics_and_reproduces_them(tmp_path):
    lm = save_tiny_lm(tmp_path / "lm", "llama", layers=2)
    out = tmp_path / "run"
    assert (
        main(["train", "configs/blip2_emoji.yaml", "--out", str(out), "--no-progress", *shrink(str(lm))]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    b = metrics["blip2"]
    assert b["test_images"] == 5 and 0 <= b["model"]["Bleu_4"] <= 1
    assert set(b["beats_nearest_neighbour"]) == {"Bleu_4", "CIDEr"}
    d = b["decoding"]  # greedy and two beam settings tried on the val emoji; the best val CIDEr-D chosen
    assert [(t["beam_size"], t["alpha"]) for t in d["tried"]] == [(1, 0.0), (2, 0.0), (2, 1.0)]
    best = max(d["tried"], key=lambda t: t["val_CIDEr"])
    assert d["chosen_on"] == "val CIDEr-D" and best["val_CIDEr"] == max(t["val_CIDEr"] for t in d["tried"])
    assert (d["beam_size"], d["alpha"]) == (best["beam_size"], best["alpha"])
    assert (b["model"] == b["model_greedy"]) or d["beam_size"] > 1
    assert metrics["train"]["stage1"]["steps"] == 3 and metrics["train"]["stage2"]["steps"] == 3
    summary = json.loads((out / "stage2" / "summary.json").read_text())  # validated, best weights kept
    assert summary["best_step"] in (2, 3) and "CIDEr" in summary["best_val"]
    logged = [json.loads(line) for line in (out / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert any({"itc", "itm", "itg"} <= set(r) for r in logged)  # the three stage-1 losses are logged
    assert (
        main(["eval", "configs/blip2_emoji.yaml", "--checkpoint", str(out / "model"), *shrink(str(lm))]) == 0
    )
    again = json.loads((out / "model" / "eval.json").read_text())["blip2"]
    assert again["model"] == b["model"]
    assert_rescored(b["files"], {"blip2": b["model"], "nearest_neighbour": b["nearest_neighbour"]})
    assert again["files"]["blip2"] == str(out / "model" / "eval_predictions" / "captions_test_blip2.json")


def test_bad_references_value_is_a_one_line_error(tmp_path, capsys):
    argv = ["train", "configs/blip2_emoji.yaml", "--out", str(tmp_path / "r"), "--set", "references=short"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "references: expected one of all, first, got 'short'" in err and len(err.strip().splitlines()) == 1
