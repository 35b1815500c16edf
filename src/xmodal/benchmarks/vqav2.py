"""VQAv2 questions (and annotations) in the official file layout, joined per question.

VQAv2: Goyal et al., 2017, https://arxiv.org/abs/1612.00837. The files (``v2_OpenEnded_mscoco_val2014_
questions.json``, ``v2_mscoco_val2014_annotations.json``) and their checks are those of
:mod:`xmodal.eval.vqa`, which scores a results file; this reader adds the image file of each question:
``image_root / COCO_<data_subtype>_<image_id, 12 digits>.jpg`` as the COCO 2014 images are named, where
``data_subtype`` ("val2014", "test2015" ...) comes from the questions file. Test splits have no
annotations: pass ``annotations=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.errors import DataError
from xmodal.eval.captions import load_json
from xmodal.eval.vqa import _list, _require


@dataclass(frozen=True)
class VQAQuestion:
    """One question, with its annotation when there is one.

    Attributes:
        question_id, image_id, question: from the questions file.
        image_path: the COCO image file (None without ``image_root``).
        answers: the ten human answers (empty without annotations).
        multiple_choice_answer, question_type, answer_type: from the annotation ("" without).
        annotation: the annotation object itself, as :func:`xmodal.metrics.vqa_accuracy` takes it.
    """

    question_id: int
    image_id: int
    question: str
    image_path: Path | None
    answers: tuple[str, ...] = ()
    multiple_choice_answer: str = ""
    question_type: str = ""
    answer_type: str = ""
    annotation: dict[str, Any] | None = None


def coco_image_name(data_subtype: str, image_id: int) -> str:
    """``COCO_val2014_000000391895.jpg`` for ("val2014", 391895)."""
    return f"COCO_{data_subtype}_{int(image_id):012d}.jpg"


def read_vqav2(
    questions: str | Path, annotations: str | Path | None = None, image_root: str | Path | None = None
) -> list[VQAQuestion]:
    """Questions in file order, joined with their annotations and image files.

    Args:
        questions: the questions file (``{"questions": [...], "data_subtype": "val2014", ...}``).
        annotations: the annotations file, or None (test splits).
        image_root: the folder of the COCO images (``val2014/``), or None.

    Raises:
        DataError: unreadable files, missing fields, or question ids that the two files do not share.
    """
    qpath = Path(questions)
    qdoc = load_json(qpath, "questions")
    qs = _list(qpath, qdoc, "questions", "questions")
    _require(qpath, qs, ("question_id", "image_id", "question"), "question")
    subtype = str(qdoc.get("data_subtype", "")) if isinstance(qdoc, dict) else ""
    if image_root is not None and not subtype:
        raise DataError(f'{qpath}: no "data_subtype" to name the image files by')
    anns: dict[Any, dict[str, Any]] = {}
    if annotations is not None:
        apath = Path(annotations)
        items = _list(apath, load_json(apath, "annotations"), "annotations", "annotations")
        _require(apath, items, ("question_id", "answers"), "annotation")
        anns = {a["question_id"]: a for a in items}
        if len(anns) != len(items):
            raise DataError(f"{apath}: a question id is annotated more than once")
        missing = [q["question_id"] for q in qs if q["question_id"] not in anns]
        extra = set(anns) - {q["question_id"] for q in qs}
        if missing or extra:
            raise DataError(
                f"{qpath} and {apath} disagree: {len(missing)} questions without annotation, "
                f"{len(extra)} annotations without question"
            )
    out = []
    for q in qs:
        ann = anns.get(q["question_id"])
        answers = tuple(str(a.get("answer", "")) for a in ann["answers"]) if ann else ()
        out.append(
            VQAQuestion(
                question_id=q["question_id"],
                image_id=q["image_id"],
                question=str(q["question"]),
                image_path=Path(image_root) / coco_image_name(subtype, q["image_id"]) if image_root else None,
                answers=answers,
                multiple_choice_answer=str(ann.get("multiple_choice_answer", "")) if ann else "",
                question_type=str(ann.get("question_type", "")) if ann else "",
                answer_type=str(ann.get("answer_type", "")) if ann else "",
                annotation=ann,
            )
        )
    return out
