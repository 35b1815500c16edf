"""Tests for ``xmodal eval captions`` and ``xmodal eval vqa`` (xmodal.eval.captions, xmodal.eval.vqa, cli):
COCO and VQAv2 file formats in, a table and JSON out, one-line errors with exit code 2 for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xmodal.cli import main
from xmodal.eval.captions import evaluate_caption_files, read_coco_references
from xmodal.metrics import caption_scores, vqa_accuracy

REFS = {
    "images": [{"id": 3, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
    "annotations": [
        {"image_id": 1, "id": 10, "caption": "A dog runs on the grass."},
        {"image_id": 3, "id": 11, "caption": "Two cats sleep on a red sofa."},
        {"image_id": 1, "id": 12, "caption": "A brown dog is running outside."},
        {"image_id": 3, "id": 13, "caption": "Cats (two) napping on a couch!"},
    ],
}
PREDS = [
    {"image_id": 1, "caption": "a dog running on grass"},
    {"image_id": 3, "caption": "two cats on a sofa"},
]


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def caption_files(tmp_path):
    return write(tmp_path / "refs.json", REFS), write(tmp_path / "preds.json", PREDS)


def test_eval_captions_prints_and_writes(caption_files, tmp_path, capsys):
    refs, preds = caption_files
    out = tmp_path / "scores.json"
    argv = ["eval", "captions", "--references", str(refs), "--predictions", str(preds), "--no-meteor"]
    assert main([*argv, "--out", str(out), "--per-image"]) == 0
    printed = capsys.readouterr().out
    for name in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr", "(2 images)", "SPICE not computed", "--no-meteor"):
        assert name in printed
    written = json.loads(out.read_text())
    expected = caption_scores(
        {
            3: [c["caption"] for c in REFS["annotations"][1::2]],
            1: [c["caption"] for c in REFS["annotations"][::2]],
        },
        {p["image_id"]: p["caption"] for p in PREDS},
        per_image=True,
        meteor=False,
    )
    for name in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"):
        assert written[name] == pytest.approx(expected[name], abs=1e-12)
    assert list(written["per_image"]) == ["3", "1"]  # the order of "images"
    assert written["per_image"]["1"]["CIDEr"] == pytest.approx(expected["per_image"][1]["CIDEr"])
    # default output next to the predictions
    assert main(argv) == 0
    assert (tmp_path / "preds.caption_scores.json").is_file()


def test_reference_order_follows_images(caption_files):
    refs, _ = caption_files
    assert list(read_coco_references(refs)) == [3, 1]
    assert read_coco_references(refs)[1] == ["A dog runs on the grass.", "A brown dog is running outside."]


@pytest.mark.parametrize(
    ("refs", "preds", "message"),
    [
        (None, PREDS, "references file {refs} does not exist"),
        ("{not json", PREDS, "references file {refs} is not valid JSON"),
        ({"annotations": "x"}, PREDS, "expected a COCO captions file"),
        ({"annotations": [{"image_id": 1}]}, PREDS, "annotation 0 has no 'caption' field"),
        (
            {**REFS, "images": [*REFS["images"], {"id": 9}]},
            PREDS,
            "images without reference captions: 9 (1 in all)",
        ),
        (REFS, {"image_id": 1}, "expected a COCO results file"),
        (REFS, [*PREDS, PREDS[0]], "image 1 has more than one predicted caption"),
        (REFS, [*PREDS[:1], {"image_id": 8, "caption": "x"}], "predictions without references: 8 (1 in all)"),
        (REFS, PREDS[:1], "images without a prediction: 3 (1 in all)"),
    ],
)
def test_eval_captions_bad_files(tmp_path, capsys, refs, preds, message):
    refs_path, preds_path = tmp_path / "refs.json", tmp_path / "preds.json"
    if isinstance(refs, str):
        refs_path.write_text(refs)
    elif refs is not None:
        write(refs_path, refs)
    write(preds_path, preds)
    argv = [
        "eval",
        "captions",
        "--references",
        str(refs_path),
        "--predictions",
        str(preds_path),
        "--no-meteor",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xmodal: error: ") and "\n" not in err
    assert message.format(refs=refs_path) in err


def test_notes_say_why_meteor_did_not_run(caption_files, monkeypatch):
    import xmodal.metrics.meteor as meteor

    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    scores = evaluate_caption_files(*caption_files)
    assert "METEOR" not in scores
    assert scores["notes"][0].startswith("METEOR not computed: no java on PATH")


VQA_QUESTIONS = {
    "questions": [
        {"image_id": 7, "question": "How many dogs?", "question_id": 70},
        {"image_id": 7, "question": "Is it sunny?", "question_id": 71},
        {"image_id": 8, "question": "What color is the car?", "question_id": 80},
    ]
}


def vqa_annotation(qid, answers, qtype, atype):
    humans = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]
    return {"question_id": qid, "image_id": qid // 10, "question_type": qtype, "answer_type": atype,
            "multiple_choice_answer": answers[0], "answers": humans}  # fmt: skip


VQA_ANNOTATIONS = {
    "annotations": [
        vqa_annotation(70, ["2"] * 3 + ["3"] * 7, "how many", "number"),
        vqa_annotation(71, ["yes"] * 10, "is it", "yes/no"),
        vqa_annotation(80, ["red"] * 5 + ["dark red"] * 5, "what color is the", "other"),
    ]
}
VQA_RESULTS = [
    {"question_id": 70, "answer": "two"},
    {"question_id": 71, "answer": "Yes"},
    {"question_id": 80, "answer": "blue"},
]


def test_eval_vqa_prints_and_writes(tmp_path, capsys):
    files = [
        write(tmp_path / n, d)
        for n, d in (("q.json", VQA_QUESTIONS), ("a.json", VQA_ANNOTATIONS), ("r.json", VQA_RESULTS))
    ]
    out = tmp_path / "acc.json"
    argv = [
        "eval",
        "vqa",
        "--questions",
        str(files[0]),
        "--annotations",
        str(files[1]),
        "--predictions",
        str(files[2]),
    ]
    assert main([*argv, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == {
        "overall": round(100 * (0.9 + 1.0 + 0.0) / 3, 2),
        "perQuestionType": {"how many": 90.0, "is it": 100.0, "what color is the": 0.0},
        "perAnswerType": {"number": 90.0, "yes/no": 100.0, "other": 0.0},
    }
    assert written == vqa_accuracy(
        VQA_ANNOTATIONS["annotations"], {r["question_id"]: r["answer"] for r in VQA_RESULTS}
    )
    printed = capsys.readouterr().out
    assert "overall" in printed and "63.33" in printed and "yes/no" in printed
    assert main(argv) == 0 and (tmp_path / "r.vqa_accuracy.json").is_file()


@pytest.mark.parametrize(
    ("questions", "annotations", "results", "message"),
    [
        (VQA_QUESTIONS, VQA_ANNOTATIONS, VQA_RESULTS[:2], "questions without an answer: 80 (1 in all)"),
        (
            VQA_QUESTIONS,
            VQA_ANNOTATIONS,
            [*VQA_RESULTS, {"question_id": 5, "answer": "x"}],
            "answers to unknown questions: 5",
        ),
        (
            VQA_QUESTIONS,
            VQA_ANNOTATIONS,
            [*VQA_RESULTS, VQA_RESULTS[0]],
            "question 70 is answered more than once",
        ),
        (
            {"questions": VQA_QUESTIONS["questions"][:2]},
            VQA_ANNOTATIONS,
            VQA_RESULTS,
            "annotations without questions: 80",
        ),
        (
            VQA_QUESTIONS,
            {"annotations": [{"question_id": 70}]},
            VQA_RESULTS,
            "annotation 0 has no 'question_type'",
        ),
        (VQA_QUESTIONS, VQA_ANNOTATIONS, {"question_id": 70}, "expected a VQA results file"),
        (
            VQA_QUESTIONS,
            VQA_ANNOTATIONS,
            [{"question_id": 70, "answer": 2}],
            "has an answer that is not a string",
        ),
    ],
)
def test_eval_vqa_bad_files(tmp_path, capsys, questions, annotations, results, message):
    files = [
        write(tmp_path / n, d)
        for n, d in (("q.json", questions), ("a.json", annotations), ("r.json", results))
    ]
    argv = [
        "eval",
        "vqa",
        "--questions",
        str(files[0]),
        "--annotations",
        str(files[1]),
        "--predictions",
        str(files[2]),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xmodal: error: ") and "\n" not in err and message in err


def test_help_and_usage(capsys):
    assert main(["eval", "captions", "--help"]) == 0
    assert "--references" in capsys.readouterr().out
    assert main(["eval", "vqa", "--help"]) == 0
    assert "--annotations" in capsys.readouterr().out
    assert main(["eval", "--help"]) == 0
    assert "xmodal eval captions" in capsys.readouterr().out
    assert main(["eval", "captions", "--references", "x.json"]) == 2  # --predictions is required
    assert main(["eval", "x.yaml"]) == 2  # the checkpoint mode still needs --checkpoint
