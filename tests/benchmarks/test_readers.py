"""Tests for xmodal.benchmarks: Karpathy JSON, VQAv2 and MMBench readers on tiny official-format files,
and CircularEval."""

from __future__ import annotations

import json

import pytest

from xmodal.benchmarks import caption_index, circular_eval, read_karpathy, read_mmbench, read_vqav2, rotate
from xmodal.errors import DataError


def test_read_karpathy_coco(bench_files, tmp_path):
    path = bench_files.write_karpathy(tmp_path, "coco")
    test = read_karpathy(path, tmp_path, "test")
    assert [im.image_id for im in test] == [500, 501, 503, 505]  # cocoid
    assert test[0].path == tmp_path / "val2014" / "COCO_val2014_000000000000.jpg" and test[0].path.is_file()
    assert test[1].captions[2] == "A green circle number 2." and len(test[1].captions) == 5
    texts, index = caption_index(test)
    assert len(texts) == 14 and index == [0] * 5 + [1] * 5 + [2] * 3 + [3]
    assert [im.split for im in read_karpathy(path, tmp_path, "val+restval")] == ["val", "restval"]


def test_read_karpathy_flickr(bench_files, tmp_path):
    path = bench_files.write_karpathy(tmp_path, "flickr30k")
    test = read_karpathy(path, tmp_path, "test")
    assert test[0].path == tmp_path / "1000.jpg" and test[0].image_id == 0  # imgid, no filepath


def test_read_karpathy_errors(bench_files, tmp_path):
    path = bench_files.write_karpathy(tmp_path)
    with pytest.raises(DataError, match="unknown Karpathy split"):
        read_karpathy(path, tmp_path, "dev")
    doc = json.loads(path.read_text())
    doc["images"][0]["sentences"] = []
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="has no sentences"):
        read_karpathy(path, tmp_path, "test")
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match='"images" list'):
        read_karpathy(path, tmp_path)


def test_read_vqav2(bench_files, tmp_path):
    q, a = bench_files.write_vqav2(tmp_path)
    items = read_vqav2(q, a, image_root=tmp_path / "val2014")
    assert [it.question_id for it in items] == [420, 421, 70]  # questions-file order
    assert items[0].image_path == tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    assert items[2].answers == ("1",) * 8 + ("one", "2") and items[2].answer_type == "number"
    assert items[1].annotation is not None and items[1].annotation["question_type"] == "is it"
    bare = read_vqav2(q)
    assert bare[0].answers == () and bare[0].image_path is None


def test_read_vqav2_mismatch(bench_files, tmp_path):
    q, a = bench_files.write_vqav2(tmp_path)
    doc = json.loads(a.read_text())
    doc["annotations"] = doc["annotations"][:2]
    a.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="1 questions without annotation"):
        read_vqav2(q, a)


def test_read_mmbench(bench_files, tmp_path):
    items = read_mmbench(bench_files.write_mmbench(tmp_path / "mmb.tsv"))
    assert [it.index for it in items] == ["0", "1", "2", "3"]
    assert items[0].hint == "" and items[1].hint == "Look closely."
    assert items[1].options == {"A": "green", "B": "blue", "C": "purple"}  # D empty: 3 options
    assert items[0].answer == "A" and items[3].category == "attribute_recognition"
    assert items[2].l2_category == "coarse perception"
    assert items[2].image_b64 == items[1].image_b64  # image given by reference to row 1
    im = items[0].image()
    assert im.mode == "RGB" and im.getpixel((24, 24)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.__setitem__(7, "E"), "answer 'E' is not one of the options"),
        (lambda r: r.__setitem__(9, "99"), "neither base64 data nor the index"),
        (lambda r: r.__setitem__(4, ""), "fewer than two options"),
    ],
)
def test_read_mmbench_errors(bench_files, tmp_path, edit, match):
    path = bench_files.write_mmbench(tmp_path / "mmb.tsv")
    lines = path.read_text().splitlines()
    row = lines[2].split("\t")
    edit(row)
    lines[2] = "\t".join(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        read_mmbench(path)


def test_rotate(bench_files, tmp_path):
    item = read_mmbench(bench_files.write_mmbench(tmp_path / "m.tsv"))[
        0
    ]  # red, green, blue, yellow; answer A
    r1 = rotate(item, 1)
    assert r1.options == {"A": "green", "B": "blue", "C": "yellow", "D": "red"} and r1.answer == "D"
    r3 = rotate(item, 3)
    assert r3.options == {"A": "yellow", "B": "red", "C": "green", "D": "blue"} and r3.answer == "B"


def test_circular_eval(bench_files, tmp_path):
    items = read_mmbench(bench_files.write_mmbench(tmp_path / "mmb.tsv"))
    oracle = circular_eval(lambda it: it.answer, items)
    assert oracle["vanilla"] == 1.0 and oracle["circular"] == 1.0 and oracle["n"] == 4
    always_a = circular_eval(lambda it: "A", items)
    assert always_a["vanilla"] == 0.25  # only item 0's answer is A
    assert always_a["circular"] == 0.0  # after a rotation A holds another option
    assert always_a["predictions"][0]["picked"] == ["A", "B", "C", "D"]  # the original letters it chose
    # right on the first pass only: vanilla 1, circular 0
    calls: dict[str, int] = {}

    def first_only(it):
        calls[it.index] = calls.get(it.index, 0) + 1
        return it.answer if calls[it.index] == 1 else next(k for k in it.options if k != it.answer)

    once = circular_eval(first_only, items)
    assert once["vanilla"] == 1.0 and once["circular"] == 0.0

    # a choice by content (the longest option text, ties to the first letter) follows the rotations, except
    # through ties: item 1 ("purple") is right every time; item 2's tie ("a square"/"a circle") is not
    def longest(it):
        return max(it.options, key=lambda k: (len(it.options[k]), -list(it.options).index(k)))

    by_content = circular_eval(longest, items)
    assert by_content["vanilla"] == by_content["circular"] == 0.25
    assert [r["circular"] for r in by_content["predictions"]] == [False, True, False, False]
    assert by_content["per_category"]["shape"] == {"n": 1, "vanilla": 0.0, "circular": 0.0}


def test_circular_eval_needs_answers(bench_files, tmp_path):
    import dataclasses

    items = read_mmbench(bench_files.write_mmbench(tmp_path / "mmb.tsv"))

    with pytest.raises(DataError, match="has no answer"):
        circular_eval(lambda it: "A", [dataclasses.replace(items[0], answer=None)])
    with pytest.raises(ValueError, match="returned 'Z'"):
        circular_eval(lambda it: "Z", items)
