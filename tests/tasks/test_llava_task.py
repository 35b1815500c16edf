"""The "llava" recipe end to end through the CLI, shrunk: a tiny random LM folder, a few real images."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from xmodal.cli import main
from xmodal.lm.tiny import save_tiny_lm

CONFIG = "configs/llava_emoji.yaml"


def shrink(lm: str, *extra: str) -> list[str]:
    sets = [
        f"model.lm={lm}",
        "model.image_size=64",  # 2×2 = 4 image tokens
        "data.fmnist_images=6",
        "data.max_train_captions=24",
        "data.max_train_questions=24",
        "data.stage2_caption_repeats=4",
        "stage1.batch_size=4",
        "stage1.train.steps=3",
        "stage1.train.log_every=1",
        "stage2.batch_size=4",
        "stage2.train.steps=3",
        "stage2.train.log_every=1",
        "stage2.train.eval_every=2",
        "model.label_smoothing=0.1",
        "model.lm_dropout=0.2",
        "model.image_stages=[4,5,7]",  # multi-scale tokens; the baseline keeps the last map
        "eval.max_captions=6",
        "eval.max_questions=8",
        "eval.max_new_tokens=4",
        "eval.val_captions=4",
        "eval.stage1_baseline=true",
        *extra,
    ]
    return [x for s in sets for x in ("--set", s)]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("lm"), "gpt2", context=256)


def test_train_then_eval_writes_metrics(tiny_lm, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        CONFIG,
        "--out",
        str(out),
        "--no-progress",
        *shrink(str(tiny_lm), "model.lora.enabled=true"),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("llava", "stage1_only"):
        assert metrics[name]["n_captions"] == 6 and metrics[name]["n_questions"] == 8
        assert 0 <= metrics[name]["captions"]["Bleu_4"] <= 1 and "CIDEr" in metrics[name]["captions"]
        assert 0 <= metrics[name]["vqa"]["overall"] <= 100
    # caption decoding chosen on 4 val emoji among greedy and 3 beams × 2 length penalties
    decoding = metrics["llava"]["caption_decoding"]
    assert decoding["val_images"] == 4 and len(decoding["val_search"]) == 3
    best = max(decoding["val_search"], key=lambda r: (r["val_CIDEr"], r["val_Bleu_4"]))
    assert decoding["chosen"] == {k: v for k, v in best.items() if not k.startswith("val_")}
    assert set(metrics["baselines"]) == {"nearest_neighbour_caption", "question_only"}
    # the model saw multi-scale tokens, the nearest-neighbour baseline the plain last map as everywhere
    from xmodal.data.vl import emoji_caption_items
    from xmodal.tasks.caption import nearest_neighbour_captions, score
    from xmodal.train.image_tokens import image_token_table
    from xmodal.train.llava import _spread

    def plain(items):
        return image_token_table(
            lambda i: items[i].load(), len(items), encoder_name="efficientnet_lite0", image_size=64
        )

    train, test = _spread(emoji_caption_items("train"), 24), _spread(emoji_caption_items("test"), 6)
    want = score(test, nearest_neighbour_captions(plain(train), train, plain(test)))
    assert metrics["baselines"]["nearest_neighbour_caption"]["captions"] == want
    assert metrics["stage0"]["skipped"].startswith("given LM folder")
    # stage 1: the 24 emoji's 34 reference captions; stage 2: the 24 questions and the caption requests,
    # repeated data.stage2_caption_repeats = 4 times
    assert metrics["train"]["samples"] == {"stage1": 34, "stage2": 24 + 4 * 34}
    assert metrics["train"]["truncation"]["seen"] == 58 and metrics["train"]["all_masked"]["all_masked"] == 0
    assert metrics["timing"]["total"]["cpu_seconds"] > 0
    summary = json.loads((out / "stage2" / "summary.json").read_text())  # val captions chose the weights
    assert summary["best_step"] in (2, 3) and "CIDEr" in summary["best_val"]
    # LoRA stage 2: the base LM weights are the ones stage 1 ended with; adapters and projector moved
    s1, s2 = (
        load_file(str(out / "stage1/model/model.safetensors")),
        load_file(str(out / "model/model.safetensors")),
    )
    assert s1.keys() == s2.keys()
    for k in s1:
        moved = not torch.equal(s1[k], s2[k])
        assert moved == (k.startswith("projector.") or "lora_B" in k or "lora_A" in k), k

    assert main(["train", CONFIG, "--out", str(out), *shrink(str(tiny_lm))]) == 2  # no silent overwrite
    ev = tmp_path / "eval.json"
    assert (
        main(["eval", CONFIG, "--checkpoint", str(out / "model"), "--out", str(ev), *shrink(str(tiny_lm))])
        == 0
    )
    again = json.loads(ev.read_text())
    assert again["llava"]["captions"] == metrics["llava"]["captions"]  # same weights, same greedy output
    assert again["llava"]["vqa"] == metrics["llava"]["vqa"]


def test_too_many_all_masked_samples_stop_the_run(tmp_path, capsys):
    lm = save_tiny_lm(tmp_path / "short", "gpt2", context=20)  # answers fall off the end of the context
    argv = ["train", CONFIG, "--out", str(tmp_path / "run"), "--no-progress", *shrink(str(lm))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "have no answer token left" in err and "the limit is 1.0%" in err
