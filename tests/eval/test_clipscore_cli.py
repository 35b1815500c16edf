"""``xmodal eval clipscore`` (xmodal.eval.clipscore, xmodal.commands.clipscore): COCO files and an images
folder in; CLIP-S and RefCLIP-S beside BLEU/CIDEr out, for a Hugging Face folder and an xmodal checkpoint;
one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xmodal
from xmodal.cli import main
from xmodal.config import ExperimentConfig, to_dict
from xmodal.eval.clipscore import PREFIX
from xmodal.eval.embed import embed_images, embed_texts
from xmodal.metrics import caption_scores
from xmodal.metrics.clipscore import ref_clip_score, scores_reference
from xmodal.models.hf_tiny import save_tiny_hf_model
from xmodal.models.io import load_checkpoint
from xmodal.train.checkpoint import save_model_dir

REFS = {
    "images": [
        {"id": 7, "file_name": "a.png"},
        {"id": 2, "file_name": "sub/b.png"},
        {"id": 5, "file_name": "c.png"},
    ],
    "annotations": [
        {"image_id": 2, "id": 1, "caption": "A dog runs on the grass."},
        {"image_id": 7, "id": 2, "caption": "Two cats sleep on a red sofa."},
        {"image_id": 2, "id": 3, "caption": "A brown dog is running outside."},
        {"image_id": 5, "id": 4, "caption": "A red car near a house."},
        {"image_id": 7, "id": 5, "caption": "Cats napping on a couch!"},
    ],
}
PREDS = [
    {"image_id": 2, "caption": "a dog running on grass"},
    {"image_id": 7, "caption": "two cats on a sofa"},
    {"image_id": 5, "caption": "a car"},
]


@pytest.fixture
def coco(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for k, img in enumerate(REFS["images"]):
        Image.fromarray(rng.integers(0, 256, (30 + 10 * k, 44, 3), dtype=np.uint8)).save(
            images / img["file_name"]
        )
    refs, preds = tmp_path / "refs.json", tmp_path / "preds.json"
    refs.write_text(json.dumps(REFS))
    preds.write_text(json.dumps(PREDS))
    return {"images": images, "refs": refs, "preds": preds}


def expected_scores(model, preprocess, images: Path) -> tuple[list[float], list[float]]:
    """Per-image CLIP-S and RefCLIP-S in the order of REFS["images"], straight from the definitions."""
    pil = [Image.open(images / img["file_name"]) for img in REFS["images"]]
    ids = [img["id"] for img in REFS["images"]]
    pred = {p["image_id"]: p["caption"] for p in PREDS}
    img = embed_images(model, pil, preprocess, progress=False)
    cand = embed_texts(model, [PREFIX + pred[i] for i in ids], progress=False)
    refs = [
        embed_texts(
            model, [PREFIX + a["caption"] for a in REFS["annotations"] if a["image_id"] == i], progress=False
        )
        for i in ids
    ]
    return scores_reference(img, cand, refs)


def run(coco: dict[str, Path], model: str, out: Path, *extra: str) -> int:
    argv = ["eval", "clipscore", "--model", model, "--images", str(coco["images"])]
    argv += ["--references", str(coco["refs"]), "--predictions", str(coco["preds"]), "--out", str(out)]
    return main([*argv, "--no-meteor", *extra])


def test_clipscore_of_a_hf_folder_beside_caption_metrics(coco, tmp_path, capsys):
    folder = save_tiny_hf_model(tmp_path / "clip", "clip", seed=0)
    out = tmp_path / "scores.json"
    assert run(coco, f"hf-clip:{folder}", out, "--per-image") == 0
    printed = capsys.readouterr().out
    for name in ("CLIP-S", "RefCLIP-S", "Bleu_4", "CIDEr", "(3 images; w = 2.5)"):
        assert name in printed
    written = json.loads(out.read_text())
    model, preprocess = xmodal.create_model(f"hf-clip:{folder}")
    clip_s, ref_s = expected_scores(model, preprocess, coco["images"])
    assert written["CLIP-S"] == pytest.approx(float(np.mean(clip_s)), abs=1e-5)
    assert written["RefCLIP-S"] == pytest.approx(float(np.mean(ref_s)), abs=1e-5)
    assert [written["per_image"][str(i["id"])]["CLIP-S"] for i in REFS["images"]] == pytest.approx(
        clip_s, abs=1e-5
    )
    refs = {
        i["id"]: [a["caption"] for a in REFS["annotations"] if a["image_id"] == i["id"]]
        for i in REFS["images"]
    }
    captions = caption_scores(refs, {p["image_id"]: p["caption"] for p in PREDS}, meteor=False)
    for name in ("Bleu_4", "CIDEr", "ROUGE_L"):
        assert written[name] == pytest.approx(captions[name], abs=1e-12)


def test_clipscore_of_an_xmodal_checkpoint(coco, tmp_path):
    torch.manual_seed(0)
    model, _ = xmodal.create_model("clip-vit-tiny")
    ckpt = tmp_path / "ckpt"
    save_model_dir(ckpt, model, {"config": to_dict(ExperimentConfig(model=model.config))})
    out = tmp_path / "scores.json"
    assert run(coco, str(ckpt), out, "--prefix", "") == 0
    written = json.loads(out.read_text())
    loaded, preprocess = load_checkpoint(ckpt)
    pil = [Image.open(coco["images"] / img["file_name"]) for img in REFS["images"]]
    pred = {p["image_id"]: p["caption"] for p in PREDS}
    img = embed_images(loaded, pil, preprocess, progress=False)
    cand = embed_texts(loaded, [pred[i["id"]] for i in REFS["images"]], progress=False)
    ann = [a for i in REFS["images"] for a in REFS["annotations"] if a["image_id"] == i["id"]]
    owner = torch.tensor([[i["id"] for i in REFS["images"]].index(a["image_id"]) for a in ann])
    _, mean = ref_clip_score(
        img, cand, embed_texts(loaded, [a["caption"] for a in ann], progress=False), owner
    )
    assert written["RefCLIP-S"] == pytest.approx(mean, abs=1e-5)
    assert written["prefix"] == "" and "Bleu_4" in written


def test_bad_input_is_one_line_exit_2(coco, tmp_path, capsys):
    folder = save_tiny_hf_model(tmp_path / "clip", "clip", seed=0)
    (coco["images"] / "c.png").unlink()
    capsys.readouterr()
    assert run(coco, f"hf:{folder}", tmp_path / "x.json") == 2
    err = capsys.readouterr().err
    assert err.startswith("xmodal: error:") and "c.png" in err and len(err.strip().splitlines()) == 1
    assert run(coco, str(tmp_path / "missing-model"), tmp_path / "x.json") == 2
    assert "nothing exists at that path" in capsys.readouterr().err
    no_images = dict(REFS)
    del no_images["images"]
    coco["refs"].write_text(json.dumps(no_images))
    assert run(coco, f"hf:{folder}", tmp_path / "x.json") == 2
    assert "'images' list" in capsys.readouterr().err
