"""Tests for xmodal.eval.results_files: predictions written in the COCO / VQAv2 formats read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmodal.cli import main
from xmodal.eval.captions import read_coco_predictions, read_coco_references
from xmodal.eval.results_files import write_caption_files, write_vqa_files
from xmodal.eval.vqa import read_vqa_files
from xmodal.metrics import caption_scores, vqa_accuracy

REFS = {"emoji/1F600": ["grinning face", "grinning"], "emoji/1F436": ["dog face", "dog"], 7: ["seven"]}
PREDS = {"emoji/1F600": "grinning face", "emoji/1F436": "cat face", 7: "seven"}


def test_caption_files_round_trip_and_rescore(tmp_path, capsys):
    paths = write_caption_files(tmp_path, "test", REFS, {"model": PREDS})
    assert set(paths) == {"references", "model"}
    assert read_coco_references(paths["references"]) == REFS  # same ids, same order, same captions
    assert read_coco_predictions(paths["model"]) == PREDS
    want = caption_scores(REFS, PREDS, meteor=False)
    out = tmp_path / "scores.json"
    argv = ["eval", "captions", "--references", paths["references"], "--predictions", paths["model"]]
    assert main([*argv, "--out", str(out), "--no-meteor", "--no-spice"]) == 0
    got = json.loads(out.read_text())
    assert got["CIDEr"] == pytest.approx(want["CIDEr"], abs=1e-12) and got["Bleu_4"] == want["Bleu_4"]


def test_vqa_files_round_trip_and_rescore(tmp_path):
    anns = [
        {
            "question_id": q,
            "image_id": f"img{q}",
            "question_type": "what is",
            "answer_type": "other",
            "multiple_choice_answer": a,
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)],
        }
        for q, a in ((1, "dog"), (2, "yes"))
    ]
    questions = {1: "what is this?", 2: "is this a dog?"}
    paths = write_vqa_files(tmp_path, "test", anns, questions, {"model": {1: "dog", 2: "no"}})
    read_anns, answers = read_vqa_files(paths["questions"], paths["annotations"], paths["model"])
    assert read_anns == anns and answers == {1: "dog", 2: "no"}
    assert vqa_accuracy(read_anns, answers)["overall"] == 50.0
    qs = json.loads(Path(paths["questions"]).read_text())["questions"]
    assert qs == [
        {"question_id": 1, "image_id": "img1", "question": "what is this?"},
        {"question_id": 2, "image_id": "img2", "question": "is this a dog?"},
    ]


def test_predictions_that_miss_or_add_an_item_are_refused(tmp_path):
    with pytest.raises(ValueError, match="the model predictions do not cover exactly the 3 reference"):
        write_caption_files(tmp_path, "test", REFS, {"model": {"emoji/1F600": "x"}})
    anns = [{"question_id": 1, "answers": [{"answer": "a"}]}]
    with pytest.raises(ValueError, match="the model answers do not cover exactly the 1 questions"):
        write_vqa_files(tmp_path, "test", anns, {1: "q"}, {"model": {1: "a", 2: "b"}})
    with pytest.raises(ValueError, match="not the same question ids"):
        write_vqa_files(tmp_path, "test", anns, {2: "q"}, {})
    assert not list(tmp_path.iterdir())  # nothing half-written
