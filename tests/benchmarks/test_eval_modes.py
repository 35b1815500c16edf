"""``xmodal eval retrieval-benchmark`` and ``xmodal eval mmbench`` on tiny official-format files, checked
against the same numbers computed by hand from the model's embeddings."""

from __future__ import annotations

import json

import torch

from xmodal.benchmarks import caption_index, read_karpathy, read_mmbench
from xmodal.cli import main
from xmodal.data.images import load_image
from xmodal.eval.benchmarks import option_text
from xmodal.metrics.caption_retrieval import caption_retrieval_ranks_reference
from xmodal.models.io import load_model


def test_retrieval_benchmark_cli(bench_files, tmp_path, capsys):
    path = bench_files.write_karpathy(tmp_path / "coco", "coco")
    out = tmp_path / "r.json"
    args = [
        "eval",
        "retrieval-benchmark",
        "--model",
        "clip-vit-tiny",
        "--karpathy",
        str(path),
        "--images",
        str(tmp_path / "coco"),
        "--split",
        "test",
        "--ks",
        "1",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 images, 14 captions (test)" in printed and "image→text" in printed
    got = json.loads(out.read_text())
    assert got["n_images"] == 4 and got["n_captions"] == 14 and got["split"] == "test"
    # by hand: the same preset (seed 0), plain full-matrix ranks
    model, preprocess = load_model("clip-vit-tiny")
    images = read_karpathy(path, tmp_path / "coco", "test")
    texts, index = caption_index(images)
    with torch.inference_mode():
        img = model.encode_image(torch.stack([preprocess(load_image(im.path)) for im in images]))
        txt = model.encode_text(texts)
    i2t, t2i = caption_retrieval_ranks_reference(img, txt, index)
    for direction, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in (1, 2):
            assert got[direction][f"R@{k}"] == (ranks <= k).double().mean().item()


def test_retrieval_benchmark_missing_image(bench_files, tmp_path, capsys):
    path = bench_files.write_karpathy(tmp_path, "flickr30k")
    (tmp_path / "1003.jpg").unlink()
    args = [
        "eval",
        "retrieval-benchmark",
        "--model",
        "clip-vit-tiny",
        "--karpathy",
        str(path),
        "--images",
        str(tmp_path),
        "--out",
        str(tmp_path / "r.json"),
        "--no-progress",
    ]
    assert main(args) == 2
    assert "missing image" in capsys.readouterr().err


def test_mmbench_cli(bench_files, tmp_path, capsys):
    tsv = bench_files.write_mmbench(tmp_path / "mmb.tsv")
    out = tmp_path / "m.json"
    assert main(["eval", "mmbench", "--model", "clip-vit-tiny", "--tsv", str(tsv), "--out", str(out)]) == 0
    assert "attribute_recognition" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert got["n"] == 4 and set(got["per_category"]) == {"attribute_recognition", "shape"}
    # by hand: each item's most similar option text, unrotated
    model, preprocess = load_model("clip-vit-tiny")
    picks = []
    with torch.inference_mode():
        for item in read_mmbench(tsv):
            image = model.encode_image(preprocess(item.image())[None])[0]
            scores = model.encode_text([option_text(item, k) for k in item.options]) @ image
            picks.append(list(item.options)[int(scores.argmax())])
    assert [p["picked"][0] for p in got["predictions"]] == picks
    # a dual encoder's choice follows the option through every rotation
    assert all(len(set(p["picked"])) == 1 for p in got["predictions"])
    assert got["circular"] == got["vanilla"]


def test_mmbench_cli_bad_file(tmp_path, capsys):
    assert main(["eval", "mmbench", "--model", "clip-vit-tiny", "--tsv", str(tmp_path / "none.tsv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_vqav2_zero_shot_cli(bench_files, tmp_path, capsys):
    from xmodal.benchmarks import read_vqav2
    from xmodal.eval.vqa import evaluate_vqa_files

    q, a = bench_files.write_vqav2(tmp_path)
    (tmp_path / "val2014").mkdir()
    bench_files.shape_image("red", "circle").save(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg")
    bench_files.shape_image("blue", "square").save(tmp_path / "val2014" / "COCO_val2014_000000000007.jpg")
    out = tmp_path / "v.json"
    args = ["eval", "vqav2", "--model", "clip-vit-tiny", "--questions", str(q), "--annotations", str(a),
            "--images", str(tmp_path / "val2014"), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "overall" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert got["n"] == 3 and got["candidates"] == ["red", "yes", "1"]  # each once: in question order
    # the answers are the official results format; the official scoring of that file agrees
    (tmp_path / "results.json").write_text(json.dumps(got["results"]))
    assert evaluate_vqa_files(q, a, tmp_path / "results.json") == got["accuracy"]
    # by hand: the candidate closest to the image for the first question
    model, preprocess = load_model("clip-vit-tiny")
    first = read_vqav2(q, a, tmp_path / "val2014")[0]
    with torch.inference_mode():
        image = model.encode_image(preprocess(load_image(first.image_path))[None])[0]
        scores = model.encode_text([f"{first.question} {c}" for c in got["candidates"]]) @ image
    assert got["results"][0] == {"question_id": 420, "answer": got["candidates"][int(scores.argmax())]}


def test_vqav2_cli_missing_images(bench_files, tmp_path, capsys):
    q, a = bench_files.write_vqav2(tmp_path)
    args = ["eval", "vqav2", "--model", "clip-vit-tiny", "--questions", str(q), "--annotations", str(a),
            "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "v.json")]  # fmt: skip
    assert main(args) == 2
    assert "missing image" in capsys.readouterr().err
