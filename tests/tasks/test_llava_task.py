"""The "llava" recipe end to end through the CLI, shrunk: a tiny random LM folder, a few real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.rescoring import assert_rescored

from xmodal.cli import main
from xmodal.lm.tiny import save_tiny_lm
from xmodal.tasks.vqa import prior_answers

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
        *shrink(str(tiny_lm), "model.lora.enabled=true", "data.references=all", "model.projector.merge=2"),
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
    # every test prediction, the baselines' too, in the COCO / VQAv2 formats: rescored, the same numbers
    from xmodal.eval.vqa import evaluate_vqa_files

    files = metrics["llava"]["files"]
    assert "stage1_only" in metrics and "files" not in metrics["stage1_only"]
    nn_scores = metrics["baselines"]["nearest_neighbour_caption"]["captions"]
    assert_rescored(files["captions"], dict(llava=metrics["llava"]["captions"], nearest_neighbour=nn_scores))
    vqa = files["vqa"]
    for name, m in (("llava", metrics["llava"]), ("question_only", metrics["baselines"]["question_only"])):
        assert evaluate_vqa_files(vqa["questions"], vqa["annotations"], vqa[name]) == m["vqa"]
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
    # stage 1: the 24 emoji's 34 reference captions (data.references=all; the shipped recipe trains on
    # the names only, test_retrieval_augmented_caption_prompts); stage 2: the 24 questions and the
    # caption requests, repeated data.stage2_caption_repeats = 4 times
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
    rescored = json.loads((tmp_path / "eval_predictions" / "captions_test_llava.json").read_text())
    assert rescored == json.loads(Path(metrics["llava"]["files"]["captions"]["llava"]).read_text())


def test_too_many_all_masked_samples_stop_the_run(tmp_path, capsys):
    lm = save_tiny_lm(tmp_path / "short", "gpt2", context=20)  # answers fall off the end of the context
    argv = ["train", CONFIG, "--out", str(tmp_path / "run"), "--no-progress", *shrink(str(lm))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "have no answer token left" in err and "the limit is 1.0%" in err


def test_neighbour_captions_rank_by_similarity_and_never_retrieve_the_query_itself():
    from pathlib import Path

    from xmodal.data.vl import CaptionItem
    from xmodal.tasks.caption import nearest_neighbour_captions, neighbour_captions

    items = [CaptionItem(f"emoji/{i}", Path("x.png"), (f"name {i}", f"short {i}")) for i in range(4)]
    train = torch.eye(4)[:, None, :].repeat(1, 2, 1)  # (4, 2, 4): item i points along axis i
    query = torch.tensor([[[1.0, 0.5, 0.2, 0.0]], [[0.05, 0.1, 0.0, 1.0]]])  # (2, 1, 4)
    assert neighbour_captions(train, items, query, k=3) == [
        ["name 0", "name 1", "name 2"],
        ["name 3", "name 1", "name 0"],
    ]
    assert nearest_neighbour_captions(train, items, query) == ["name 0", "name 3"]
    # leave-one-out: a training image as the query skips itself, keeps the order of the others
    again = neighbour_captions(train, items, query, k=2, image_ids=["emoji/0", "emoji/9"])
    assert again == [["name 1", "name 2"], ["name 3", "name 1"]]


def test_retrieval_augmented_caption_prompts(tiny_lm):
    """data.retrieved_captions: each caption request leads with the first references of its most similar
    training emoji (never itself), the test ones retrieve the nearest-neighbour baseline's caption first."""
    from xmodal.lm import add_multimodal_tokens, load_causal_lm
    from xmodal.tasks.caption import nearest_neighbour_captions, neighbour_captions
    from xmodal.tasks.llava import LlavaRecipe
    from xmodal.train.llava import LlavaData
    from xmodal.train.recipe import load_recipe

    sets = [
        "data.retrieved_captions=2",
        "model.image_size=64",
        "data.fmnist_images=6",
        "data.references=first",
    ]
    sets += ["data.max_train_captions=24", "data.max_train_questions=24", "eval.max_captions=6"]
    sets += ["eval.max_questions=8", "eval.val_captions=4"]
    cfg = load_recipe(LlavaRecipe, CONFIG, sets)
    lm, tok = load_causal_lm(tiny_lm)
    data = LlavaData.build(cfg, tok)
    rows = torch.tensor
    train = data.table[rows([data.row[c.image_id] for c in data.caption_train])]
    for items in (data.caption_train, data.caption_val, data.caption_test):
        want = neighbour_captions(
            train, data.caption_train, data.table[rows([data.row[c.image_id] for c in items])], k=3
        )
        for c, caps in zip(items, want, strict=True):
            caps = [x for x in caps if x != c.captions[0] or items is not data.caption_train][:2]
            assert data.prompt_of(c.image_id) == f"similar: {'; '.join(caps)}. what emoji is this?"
    test = data.table[rows([data.row[c.image_id] for c in data.caption_test])]
    for c, nn_caption in zip(
        data.caption_test, nearest_neighbour_captions(train, data.caption_train, test), strict=True
    ):
        assert data.prompt_of(c.image_id).startswith(f"similar: {nn_caption}; ")
    ids = add_multimodal_tokens(tok, lm)
    data.encode(tok, ids["<image>"], 256)
    # data.references=first: one caption request per training emoji, its name (the first reference)
    assert len(data.stage1) == len(data.caption_train) == 24
    for sample, c in zip(data.stage1, data.caption_train, strict=True):
        text = tok.decode(sample.input_ids)
        assert "similar: " in text and c.captions[0] in text
        answer = [t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != -100]
        assert tok.decode(answer).strip().startswith(c.captions[0])


def test_spread_caps_evenly_and_zero_means_none():
    from xmodal.train.llava import _spread

    items = list(range(10))
    assert _spread(items, None) == items and _spread(items, 12) == items
    assert _spread(items, 5) == [0, 2, 4, 6, 8]
    assert _spread(items, 0) == []


def test_no_training_questions_or_captions_is_a_config_error(tmp_path, capsys):
    for key in ("max_train_questions", "max_train_captions"):
        argv = ["train", CONFIG, "--out", str(tmp_path / key), "--set", f"data.{key}=0"]
        assert main(argv) == 2
        assert f"data.{key} must be >= 1 or null, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs training questions"):
        prior_answers([], [])
