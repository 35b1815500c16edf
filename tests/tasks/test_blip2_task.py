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


def test_generative_vqa_beside_the_question_only_baseline(tmp_path):
    """vqa.enabled: the training questions join stage 2, the test questions are answered after the visual
    prefix, scored beside the question-only baseline; the VQAv2 files rescore exactly, eval reproduces."""
    from xmodal.data.vl import build_vqa
    from xmodal.eval.vqa import evaluate_vqa_files
    from xmodal.metrics import vqa_accuracy
    from xmodal.tasks.vqa import prior_answers
    from xmodal.train.llava import _spread

    lm = save_tiny_lm(tmp_path / "lm", "llama", layers=2)
    sets = [
        "vqa.enabled=true",
        "vqa.fmnist_images=4",
        "vqa.max_train_questions=30",
        "vqa.max_test_questions=10",
    ]
    sets += ["vqa.max_new_tokens=3", "stage2_caption_repeats=2"]
    argv = [*shrink(str(lm)), *(x for s in sets for x in ("--set", s))]
    out = tmp_path / "run"
    assert main(["train", "configs/blip2_emoji.yaml", "--out", str(out), "--no-progress", *argv]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    v = metrics["blip2"]["vqa"]
    assert metrics["train"]["questions"]["seen"] == 30 and metrics["train"]["questions"]["unlabelled"] == 0
    assert v["test_questions"] == 10 and v["train_questions"] == 30
    train = _spread(build_vqa("train", fmnist_images=4).items, 30)
    test = _spread(build_vqa("test", fmnist_images=4).items, 10)
    assert v["question_only"] == vqa_accuracy([q.annotation() for q in test], prior_answers(train, test))
    assert v["beats_question_only"] == (v["model"]["overall"] > v["question_only"]["overall"])
    assert [e["question"] for e in v["examples"]] == [q.question for q in test]
    f = v["files"]
    assert evaluate_vqa_files(f["questions"], f["annotations"], f["blip2"]) == v["model"]
    assert evaluate_vqa_files(f["questions"], f["annotations"], f["question_only"]) == v["question_only"]
    assert main(["eval", "configs/blip2_emoji.yaml", "--checkpoint", str(out / "model"), *argv]) == 0
    again = json.loads((out / "model" / "eval.json").read_text())["blip2"]["vqa"]
    assert again["model"] == v["model"]


def test_question_samples_label_only_the_answer_and_cut_counted(tmp_path):
    from xmodal.lm import load_causal_lm
    from xmodal.train.blip2_vqa import QuestionPrompts
    from xmodal.train.questions import question_text

    _, tok = load_causal_lm(save_tiny_lm(tmp_path / "lm", "gpt2", layers=1))
    p = QuestionPrompts(tok, start=tok.eos_token_id, eos=tok.eos_token_id, max_len=200)
    ids, labels = p.training("is this a bag?", "yes")
    prompt = p.prompt("is this a bag?")
    assert ids[: len(prompt)] == prompt and prompt[1:] == tok(question_text("is this a bag?"))["input_ids"]
    answer = [*tok(" yes", add_special_tokens=False)["input_ids"], tok.eos_token_id]
    assert labels == [-100] * len(prompt) + answer and ids[len(prompt) :] == answer
    short = QuestionPrompts(tok, start=tok.eos_token_id, eos=tok.eos_token_id, max_len=len(prompt) + 1)
    cut_ids, cut_labels = short.training("is this a bag?", "yes")
    assert len(cut_ids) == len(cut_labels) == len(prompt) + 1
    assert short.truncation.as_dict()["truncated"] == 1 and short.unlabelled == 0
    short.max_len = len(prompt)  # the answer cut away entirely: counted
    short.training("is this a bag?", "yes")
    assert short.unlabelled == 1


def test_bad_vqa_settings_are_one_line_errors(tmp_path, capsys):
    for sets, msg in (
        (["vqa.max_train_questions=0"], "vqa.max_train_questions must be >= 1"),
        (["stage2_caption_repeats=0"], "stage2_caption_repeats must be >= 1, got 0"),
        (["vqa.enabled=true", "vqa.fmnist_images=0", "vqa.emoji=false"], "vqa.enabled needs questions"),
    ):
        argv = ["train", "configs/blip2_emoji.yaml", "--out", str(tmp_path / "r")]
        assert main([*argv, *(x for s in sets for x in ("--set", s))]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1
