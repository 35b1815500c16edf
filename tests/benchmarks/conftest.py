"""Tiny benchmark files in official formats: Karpathy split JSON, VQAv2 questions/annotations, MMBench TSV.

The writers reach tests through the ``bench_files`` fixture."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def shape_image(colour: str, kind: str = "circle", size: int = 48) -> Image.Image:
    """A coloured shape on white."""
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    box = (8, 8, size - 8, size - 8)
    (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=colour)
    return im


def write_karpathy(root: Path, dataset: str = "coco") -> Path:
    """``root/dataset_<dataset>.json`` + images: 4 test images (5, 5, 3, 1 captions), 1 val, 1 restval."""
    entries = []
    splits = ["test", "test", "val", "test", "restval", "test"]
    n_caps = [5, 5, 2, 3, 2, 1]
    for i, (colour, split, n) in enumerate(zip(COLOURS, splits, n_caps, strict=True)):
        folder = "val2014" if dataset == "coco" else ""
        name = f"COCO_val2014_{i:012d}.jpg" if dataset == "coco" else f"{1000 + i}.jpg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        shape_image(colour, "circle" if i % 2 else "square").save(root / folder / name, quality=95)
        sentences = [
            {
                "raw": f"A {colour} {'circle' if i % 2 else 'square'} number {k}.",
                "tokens": [],
                "imgid": i,
                "sentid": 10 * i + k,
            }
            for k in range(n)
        ]
        entry = {
            "filename": name,
            "split": split,
            "imgid": i,
            "sentids": [s["sentid"] for s in sentences],
            "sentences": sentences,
        }
        if dataset == "coco":
            entry.update(filepath=folder, cocoid=500 + i)
        entries.append(entry)
    path = root / f"dataset_{dataset}.json"
    path.write_text(json.dumps({"images": entries, "dataset": dataset}))
    return path


def write_vqav2(root: Path) -> tuple[Path, Path]:
    """VQAv2 val2014 questions + annotations: 3 questions on 2 images."""
    questions = {
        "info": {},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "license": {},
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 42, "question": "What color is the circle?", "question_id": 420},
            {"image_id": 42, "question": "Is it round?", "question_id": 421},
            {"image_id": 7, "question": "How many squares?", "question_id": 70},
        ],
    }

    def ann(qid: int, image: int, answers: list[str], qtype: str, atype: str) -> dict:
        return {
            "question_id": qid,
            "image_id": image,
            "question_type": qtype,
            "answer_type": atype,
            "multiple_choice_answer": answers[0],
            "answers": [
                {"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)
            ],
        }

    annotations = {
        "info": {},
        "license": {},
        "data_subtype": "val2014",
        "annotations": [
            ann(70, 7, ["1"] * 8 + ["one", "2"], "how many", "number"),
            ann(420, 42, ["red"] * 10, "what color is the", "other"),
            ann(421, 42, ["yes"] * 9 + ["no"], "is it", "yes/no"),
        ],
    }
    q, a = root / "v2_OpenEnded_mscoco_val2014_questions.json", root / "v2_mscoco_val2014_annotations.json"
    q.write_text(json.dumps(questions))
    a.write_text(json.dumps(annotations))
    return q, a


def b64_png(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


MMBENCH_COLUMNS = [
    "index",
    "question",
    "hint",
    "A",
    "B",
    "C",
    "D",
    "answer",
    "category",
    "image",
    "source",
    "l2-category",
    "split",
]


def write_mmbench(path: Path) -> Path:
    """An MMBench DEV-style TSV: 4 questions (one with 3 options, one hint 'nan', one image by reference)."""
    rows = [
        [
            "0",
            "What colour is the shape?",
            "nan",
            "red",
            "green",
            "blue",
            "yellow",
            "A",
            "attribute_recognition",
            b64_png(shape_image("red")),
            "synthetic",
            "finegrained perception (instance-level)",
            "dev",
        ],
        [
            "1",
            "What colour is the shape?",
            "Look closely.",
            "green",
            "blue",
            "purple",
            "",
            "C",
            "attribute_recognition",
            b64_png(shape_image("purple", "circle")),
            "synthetic",
            "finegrained perception (instance-level)",
            "dev",
        ],
        [
            "2",
            "Which shape is shown?",
            "",
            "a square",
            "a circle",
            "a star",
            "a line",
            "B",
            "shape",
            "1",
            "synthetic",
            "coarse perception",
            "dev",
        ],  # same image as row 1 (a purple circle)
        [
            "3",
            "What colour is the shape?",
            "",
            "orange",
            "green",
            "red",
            "blue",
            "D",
            "attribute_recognition",
            b64_png(shape_image("blue")),
            "synthetic",
            "finegrained perception (instance-level)",
            "dev",
        ],
    ]
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(MMBENCH_COLUMNS)
        w.writerows(rows)
    return path


@pytest.fixture
def bench_files() -> SimpleNamespace:
    """The writers above: ``bench_files.write_karpathy(root)`` and so on."""
    return SimpleNamespace(
        shape_image=shape_image,
        write_karpathy=write_karpathy,
        write_vqav2=write_vqav2,
        write_mmbench=write_mmbench,
    )
