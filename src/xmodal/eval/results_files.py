"""Write a recipe's test predictions in the official file formats, so that anyone can rescore them.

* Captions: the references as a COCO captions annotation file and each model's (or baseline's) captions
  as a COCO results file; ``xmodal eval captions --references R --predictions P`` reads them
  (:mod:`xmodal.eval.captions`).
* VQA: VQAv2 question and annotation files and each model's answers as a VQAv2 results file;
  ``xmodal eval vqa`` reads them (:mod:`xmodal.eval.vqa`).

Image and question ids are written as they are (strings such as ``"emoji/1F600"`` are fine: the readers
and the metrics take any hashable JSON value).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xmodal.train.checkpoint import write_json_atomic


def write_caption_files(
    folder: Path,
    split: str,
    references: Mapping[Hashable, Sequence[str]],
    predictions: Mapping[str, Mapping[Hashable, str]],
) -> dict[str, str]:
    """``captions_<split>_references.json`` and one ``captions_<split>_<name>.json`` per entry of
    ``predictions`` (``{name: {image_id: caption}}``, each covering exactly the references' images).

    Returns:
        ``{"references": path, name: path, ...}`` (strings, for a metrics JSON).
    """
    ids = list(references)
    for name, preds in predictions.items():
        if set(preds) != set(ids):
            raise ValueError(f"the {name} predictions do not cover exactly the {len(ids)} reference images")
    folder.mkdir(parents=True, exist_ok=True)
    ref_path = folder / f"captions_{split}_references.json"
    annotations = [
        {"image_id": i, "caption": c, "id": n}
        for n, (i, c) in enumerate(((i, c) for i in ids for c in references[i]), start=1)
    ]
    write_json_atomic(ref_path, {"images": [{"id": i} for i in ids], "annotations": annotations})
    out = {"references": str(ref_path)}
    for name, preds in predictions.items():
        path = folder / f"captions_{split}_{name}.json"
        write_json_atomic(path, [{"image_id": i, "caption": preds[i]} for i in ids])
        out[name] = str(path)
    return out


def write_vqa_files(
    folder: Path,
    split: str,
    annotations: Sequence[dict[str, Any]],
    questions: Mapping[Hashable, str],
    answers: Mapping[str, Mapping[Hashable, str]],
) -> dict[str, str]:
    """``vqa_<split>_questions.json``, ``vqa_<split>_annotations.json`` (VQAv2 formats) and one
    ``vqa_<split>_<name>_results.json`` per entry of ``answers`` (``{name: {question_id: answer}}``).

    Args:
        annotations: VQAv2 annotation dictionaries (``question_id``, ``image_id``, ``answers``, ...).
        questions: ``{question_id: question text}`` of the same questions.

    Returns:
        ``{"questions": path, "annotations": path, name: path, ...}``.
    """
    qids = [a["question_id"] for a in annotations]
    if set(questions) != set(qids):
        raise ValueError("the questions and the annotations are not the same question ids")
    for name, got in answers.items():
        if set(got) != set(qids):
            raise ValueError(f"the {name} answers do not cover exactly the {len(qids)} questions")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "questions": folder / f"vqa_{split}_questions.json",
        "annotations": folder / f"vqa_{split}_annotations.json",
    }
    write_json_atomic(
        paths["questions"],
        {
            "questions": [
                {"question_id": a["question_id"], "image_id": a.get("image_id"), "question": questions[q]}
                for a, q in zip(annotations, qids, strict=True)
            ]
        },
    )
    write_json_atomic(paths["annotations"], {"annotations": list(annotations)})
    for name, got in answers.items():
        paths[name] = folder / f"vqa_{split}_{name}_results.json"
        write_json_atomic(paths[name], [{"question_id": q, "answer": got[q]} for q in qids])
    return {k: str(v) for k, v in paths.items()}
