"""``xmodal eval vqa``: VQA accuracy of answers in the official VQAv2 file formats.

* questions (``v2_OpenEnded_mscoco_val2014_questions.json``): ``{"questions": [{"image_id", "question",
  "question_id"}, ...], ...}``;
* annotations (``v2_mscoco_val2014_annotations.json``): ``{"annotations": [{"question_id", "image_id",
  "question_type", "answer_type", "multiple_choice_answer", "answers": [{"answer", "answer_confidence",
  "answer_id"}, ...]}, ...], ...}``;
* results: ``[{"question_id": ..., "answer": "..."}, ...]``.

As in the official evaluation every annotated question is scored (in the annotation file's order), so the
results must answer each of them once and nothing else; the questions file must hold the same question
ids. Problems raise :class:`~xmodal.errors.DataError` with a one-line message naming the file.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from xmodal.errors import DataError
from xmodal.eval.captions import load_json
from xmodal.metrics.vqa import vqa_accuracy


def _ids(ids: Sequence[Hashable]) -> str:
    return ", ".join(repr(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "") + f" ({len(ids)} in all)"


def _list(path: Path, data: Any, key: str | None, what: str) -> list[dict[str, Any]]:
    items = data.get(key) if key is not None and isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        shape = f"an object with a {key!r} list of objects" if key else "a list of objects"
        raise DataError(f"{path}: expected a VQA {what} file, {shape}")
    return items


def _require(path: Path, items: list[dict[str, Any]], fields: Sequence[str], what: str) -> None:
    for k, item in enumerate(items):
        missing = [f for f in fields if f not in item]
        if missing:
            raise DataError(f"{path}: {what} {k} has no {', '.join(repr(f) for f in missing)} field")


def read_vqa_files(
    questions: str | Path, annotations: str | Path, results: str | Path
) -> tuple[list[dict[str, Any]], dict[Hashable, str]]:
    """The annotations list and ``{question_id: answer}``, after checking the three files agree."""
    qpath, apath, rpath = Path(questions), Path(annotations), Path(results)
    qs = _list(qpath, load_json(qpath, "questions"), "questions", "questions")
    anns = _list(apath, load_json(apath, "annotations"), "annotations", "annotations")
    res = _list(rpath, load_json(rpath, "results"), None, "results")
    _require(qpath, qs, ("question_id",), "question")
    _require(apath, anns, ("question_id", "question_type", "answer_type", "answers"), "annotation")
    _require(rpath, res, ("question_id", "answer"), "result")
    for k, ann in enumerate(anns):
        humans = ann["answers"]
        if (
            not isinstance(humans, list)
            or not humans
            or not all(isinstance(a, dict) and "answer" in a for a in humans)
        ):
            raise DataError(
                f"{apath}: annotation {k} (question {ann['question_id']!r}) has no list of answers"
            )
    ann_ids = [a["question_id"] for a in anns]
    dup = [i for i, n in _counts(ann_ids).items() if n > 1]
    if dup:
        raise DataError(f"{apath}: question ids annotated more than once: {_ids(dup)}")
    known = set(ann_ids)
    q_ids = {q["question_id"] for q in qs}
    if q_ids != known:
        only_q, only_a = sorted(q_ids - known, key=str), sorted(known - q_ids, key=str)
        raise DataError(
            f"{qpath} and {apath} disagree: questions without annotations: {_ids(only_q)}; "
            f"annotations without questions: {_ids(only_a)}"
        )
    answers: dict[Hashable, str] = {}
    for k, r in enumerate(res):
        if not isinstance(r["answer"], str):
            raise DataError(
                f"{rpath}: result {k} (question {r['question_id']!r}) has an answer that is not a string"
            )
        if r["question_id"] in answers:
            raise DataError(f"{rpath}: question {r['question_id']!r} is answered more than once")
        answers[r["question_id"]] = r["answer"]
    extra = [i for i in answers if i not in known]
    missing = [i for i in ann_ids if i not in answers]
    if extra or missing:
        parts = ([f"answers to unknown questions: {_ids(extra)}"] if extra else []) + (
            [f"questions without an answer: {_ids(missing)}"] if missing else []
        )
        raise DataError(f"{rpath}: " + "; ".join(parts))
    return anns, answers


def _counts(items: Sequence[Hashable]) -> dict[Hashable, int]:
    out: dict[Hashable, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def evaluate_vqa_files(questions: str | Path, annotations: str | Path, results: str | Path) -> dict[str, Any]:
    """The official ``accuracy`` dictionary (``overall``, ``perQuestionType``, ``perAnswerType``)."""
    anns, answers = read_vqa_files(questions, annotations, results)
    return vqa_accuracy(anns, answers)


def format_vqa_accuracy(accuracy: dict[str, Any]) -> str:
    """Overall accuracy, then one row per answer type and per question type."""
    rows = [("overall", "", accuracy["overall"])]
    rows += [("answer type", k, v) for k, v in accuracy["perAnswerType"].items()]
    rows += [("question type", k, v) for k, v in accuracy["perQuestionType"].items()]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(str(r[1])) for r in rows)
    lines = [
        f"{'group'.ljust(w0)}  {'name'.ljust(w1)}  accuracy (%)",
        f"{'-' * w0}  {'-' * w1}  ------------",
    ]
    lines += [f"{a.ljust(w0)}  {str(b).ljust(w1)}  {c:.2f}" for a, b, c in rows]
    return "\n".join(lines)
