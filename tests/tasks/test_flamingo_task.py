"""The "flamingo" recipe end to end through the CLI, shrunk: a tiny random LM folder, a few real emoji."""

from __future__ import annotations

import json

from tests.rescoring import assert_rescored

from xmodal.cli import main
from xmodal.lm.tiny import save_tiny_lm


def shrink(lm: str) -> list[str]:
    sets = [
        f"model.lm={lm}",
        "model.resampler.dim=32",
        "model.resampler.depth=1",
        "model.resampler.n_latents=2",
        "model.resampler.heads=2",
        "model.resampler.dim_head=8",
        "model.xattn.heads=2",
        "model.xattn.dim_head=8",
        "data.max_train_images=24",
        "data.batch_size=4",
        "train.steps=4",
        "train.log_every=2",
        "train.ckpt_every=2",
        "train.threads=1",
        "eval.max_images=6",
        "eval.batch_size=4",
        "eval.max_new_tokens=4",
        "eval.val_images=4",
        "train.eval_every=2",
        "data.similar_share=0.5",
        "data.similar_pool=3",
        "model.label_smoothing=0.1",
        "model.lm_dropout=0.2",
        "data.references=first",
        "eval.beam_sizes=[1, 2]",
        "eval.alphas=[0.6]",
    ]
    return [x for s in sets for x in ("--set", s)]


def test_train_then_eval_writes_few_shot_metrics_and_reproduces_them(tmp_path):
    lm = save_tiny_lm(tmp_path / "lm", "gpt2", layers=2)
    out = tmp_path / "run"
    assert (
        main(["train", "configs/flamingo_emoji.yaml", "--out", str(out), "--no-progress", *shrink(str(lm))])
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    fs = metrics["flamingo"]["few_shot"]
    assert set(fs) == {"k=0", "k=2/random", "k=2/rices", "k=4/random", "k=4/rices"}
    for r in fs.values():
        assert 0 <= r["Bleu_4"] <= 1 and r["CIDEr"] >= 0
    assert metrics["flamingo"]["test_images"] == 6
    d = metrics["flamingo"]["decoding"]  # greedy and a beam tried on the val emoji, the better one used
    assert [(t["beam_size"], t["alpha"]) for t in d["tried"]] == [(1, 0.0), (2, 0.6)]
    best = max(d["tried"], key=lambda t: t["val_CIDEr"])
    assert (d["beam_size"], d["alpha"]) == (best["beam_size"], best["alpha"])
    assert metrics["train"]["steps"] == 4 and metrics["train"]["trainable_parameters"] > 0
    assert metrics["stage0"]["skipped"].startswith("given LM folder")
    summary = json.loads((out / "summary.json").read_text())  # validated on val emoji, best weights kept
    assert summary["best_step"] in (2, 4) and "CIDEr" in summary["best_val"]
    # the demonstrations shown in the example prompt are training captions, one per shot
    ex = metrics["flamingo"]["examples"]["k=4/rices"]
    assert ex["prompt"].count("<image>") == 5 and ex["prompt"].count("<|endofchunk|>") == 4

    code = main(["eval", "configs/flamingo_emoji.yaml", "--checkpoint", str(out / "model"), *shrink(str(lm))])
    assert code == 0
    again = json.loads((out / "model" / "eval.json").read_text())["flamingo"]["few_shot"]
    for name, r in fs.items():
        assert again[name]["CIDEr"] == r["CIDEr"] and again[name]["Bleu_4"] == r["Bleu_4"], name
    names = {"k0": "k=0", "k2_random": "k=2/random", "k2_rices": "k=2/rices", "k4_random": "k=4/random"}
    names["k4_rices"] = "k=4/rices"
    want = {f: fs[k] for f, k in names.items()}
    want["nearest_neighbour"] = metrics["flamingo"]["nearest_neighbour"]
    assert_rescored(metrics["flamingo"]["files"], want)


def test_bad_method_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["train", "configs/flamingo_emoji.yaml", "--out", str(tmp_path), "--set", "eval.methods=[knn]"]
    )
    assert code == 2
    assert "unknown demonstration method 'knn'" in capsys.readouterr().err
    bad = ["train", "configs/flamingo_emoji.yaml", "--out", str(tmp_path), "--set", "data.references=short"]
    assert main(bad) == 2
    assert "data.references: expected one of all, first, got 'short'" in capsys.readouterr().err
