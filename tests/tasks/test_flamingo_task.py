"""The "flamingo" recipe end to end through the CLI, shrunk: a tiny random LM folder, a few real emoji."""

from __future__ import annotations

import json

from tests.rescoring import assert_rescored

from xmodal.cli import main
from xmodal.lm.tiny import save_tiny_lm


def shrink(lm: str, *, similar: bool = True) -> list[str]:
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
        *(["data.similar_share=0.5", "data.similar_pool=3"] if similar else []),
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


def vqa_shrink(lm: str) -> list[str]:
    """The shrunk recipe with few-shot VQA on: 4 Fashion-MNIST images per split and the emoji questions,
    40 training and 12 test questions (sequences of related emoji cannot combine with questions)."""
    sets = [
        "vqa.enabled=true",
        "vqa.fmnist_images=4",
        "vqa.max_train_questions=40",
        "vqa.max_test_questions=12",
        "vqa.max_new_tokens=3",
        "data.caption_repeats=2",
        "data.images_per_sequence=2",  # the tiny LM's 400-token BPE makes long question chunks
        'data.caption_prefix="Output:"',  # captions and answers told apart (open_flamingo's prompt)
    ]
    return [*shrink(lm, similar=False), *(x for s in sets for x in ("--set", s))]


def test_few_shot_vqa_beside_the_question_only_baseline(tmp_path):
    """With vqa.enabled the training sequences mix caption and question chunks, the test questions are
    answered after k demonstrations from the training questions, and the VQAv2 files rescore exactly."""
    from xmodal.data.vl import build_vqa
    from xmodal.eval.vqa import evaluate_vqa_files
    from xmodal.tasks.vqa import prior_answers
    from xmodal.train.llava import _spread

    lm = save_tiny_lm(tmp_path / "lm", "gpt2", layers=2)
    out = tmp_path / "run"
    assert (
        main(
            ["train", "configs/flamingo_emoji.yaml", "--out", str(out), "--no-progress", *vqa_shrink(str(lm))]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    v = metrics["flamingo"]["vqa"]
    assert set(v["few_shot"]) == {"k=0", "k=2/random", "k=2/rices", "k=4/random", "k=4/rices"}
    assert v["test_questions"] == 12 and v["train_questions"] == 40
    train = _spread(build_vqa("train", fmnist_images=4).items, 40)
    test = _spread(build_vqa("test", fmnist_images=4).items, 12)
    anns = [q.annotation() for q in test]
    from xmodal.metrics import vqa_accuracy

    assert v["question_only"] == vqa_accuracy(anns, prior_answers(train, test))
    for name, r in v["few_shot"].items():
        assert v["beats_question_only"][name] == (r["overall"] > v["question_only"]["overall"])
    # every demonstration in the example prompt is a training question with its answer
    ex = v["examples"]["k=4/rices"]
    shots = ex["prompt"].count("<|endofchunk|>")
    assert ex["prompt"].count("<image>") == shots + 1 and 0 < shots <= 4
    # prompts beyond the tiny LM's context lost demonstrations, and the report counts them
    k4 = v["few_shot"]["k=4/rices"]
    assert k4["demonstrations_dropped"] >= 4 - shots and k4["prompts_shortened"] >= (shots < 4)
    assert v["few_shot"]["k=0"]["demonstrations_dropped"] == 0
    train_chunks = {f"Question: {q.question} Short answer: {q.answer}" for q in train}
    shown = [c.split("<image>")[-1] for c in ex["prompt"].split("<|endofchunk|>")[:-1]]
    assert all(c in train_chunks for c in shown)
    assert ex["prompt"].endswith(f"<image>Question: {test[0].question} Short answer:")
    files = v["files"]
    for name, r in v["few_shot"].items():
        got = evaluate_vqa_files(
            files["questions"], files["annotations"], files[name.replace("=", "").replace("/", "_")]
        )
        assert got == {key: r[key] for key in got}, name
    assert (
        evaluate_vqa_files(files["questions"], files["annotations"], files["question_only"])
        == v["question_only"]
    )
    # the captions are still evaluated, after "Output:" in the demonstrations and the query
    assert set(metrics["flamingo"]["few_shot"]) == set(v["few_shot"])
    cap = metrics["flamingo"]["examples"]["k=2/random"]["prompt"]
    assert cap.endswith("<image>Output:") and cap.count("<image>Output: ") == 2
    # and `xmodal eval` gives the same VQA numbers
    assert (
        main(
            ["eval", "configs/flamingo_emoji.yaml", "--checkpoint", str(out / "model"), *vqa_shrink(str(lm))]
        )
        == 0
    )
    again = json.loads((out / "model" / "eval.json").read_text())["flamingo"]["vqa"]
    # evaluating with other caption prompts than the model was trained on is refused
    other = [*vqa_shrink(str(lm)), "--set", "data.caption_prefix=''"]
    assert main(["eval", "configs/flamingo_emoji.yaml", "--checkpoint", str(out / "model"), *other]) == 2
    assert again["few_shot"] == v["few_shot"] and again["question_only"] == v["question_only"]


def test_bad_method_is_a_clear_error(tmp_path, capsys):
    code = main(
        ["train", "configs/flamingo_emoji.yaml", "--out", str(tmp_path), "--set", "eval.methods=[knn]"]
    )
    assert code == 2
    assert "unknown demonstration method 'knn'" in capsys.readouterr().err
    bad = ["train", "configs/flamingo_emoji.yaml", "--out", str(tmp_path), "--set", "data.references=short"]
    assert main(bad) == 2
    assert "data.references: expected one of all, first, got 'short'" in capsys.readouterr().err
    for sets, msg in (
        (["vqa.enabled=true", "data.similar_share=0.5"], "cannot be combined with vqa.enabled"),
        (["vqa.enabled=true", "vqa.fmnist_images=0", "vqa.emoji=false"], "vqa.enabled needs questions"),
        (["vqa.max_test_questions=0"], "vqa.max_test_questions must be >= 1"),
        (["data.caption_repeats=0"], "data.caption_repeats must be >= 1, got 0"),
    ):
        args = ["train", "configs/flamingo_emoji.yaml", "--out", str(tmp_path)]
        assert main([*args, *(x for s in sets for x in ("--set", s))]) == 2
        assert msg in capsys.readouterr().err
