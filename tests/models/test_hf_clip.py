"""Hugging Face CLIP / SigLIP folders as xmodal dual encoders (xmodal.models.hf_clip): parity with
transformers' CLIPModel / SiglipModel on tiny random models saved to disk, preprocessing parity with the
PIL image processors, tokenizer parity, losses, loading paths and one-line errors for bad folders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xmodal
from xmodal.data.hf_preprocess import HFImagePreprocess, load_hf_preprocess
from xmodal.errors import XmodalError
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.siglip import SigLipLoss
from xmodal.models.hf_clip import HFDualEncoder
from xmodal.models.hf_tiny import save_tiny_hf_model
from xmodal.models.io import load_checkpoint

TEXTS = [
    "a photo of a cat",
    "The red car, near a HOUSE!",
    "x",
    "an apple and a banana on a table " * 6,  # longer than 77 CLIP tokens and 64 SigLIP tokens: truncated
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: save_tiny_hf_model(root / kind, kind, seed=3) for kind in ("clip", "siglip")}


def pil_images() -> list[Image.Image]:
    """Random images of different shapes and modes: landscape, portrait, RGBA, greyscale."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (41, 37, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((41, 37)) < 0.3, 0, 255)
    return [
        Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (90, 33, 3), dtype=np.uint8)),
        Image.fromarray(rgba, mode="RGBA"),
        Image.fromarray(rng.integers(0, 256, (32, 50), dtype=np.uint8), mode="L"),
    ]


def hf_reference(folder: Path, kind: str):  # -> (model, image processor, tokenizer) of transformers
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, SiglipModel

    cls = CLIPModel if kind == "clip" else SiglipModel
    model = cls.from_pretrained(str(folder), local_files_only=True).eval()
    return (
        model,
        AutoImageProcessor.from_pretrained(str(folder), backend="pil"),
        AutoTokenizer.from_pretrained(str(folder)),
    )


def hf_text_inputs(tok, kind: str) -> dict[str, torch.Tensor]:
    """Text inputs as transformers' docs prescribe: CLIP padded to the longest, SigLIP to 64, no mask."""
    if kind == "clip":
        return dict(tok(TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt"))
    ids = tok(TEXTS, padding="max_length", truncation=True, max_length=64, return_tensors="pt")["input_ids"]
    return {"input_ids": ids}


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_embeddings_equal_transformers(folders, kind):
    model, preprocess = xmodal.create_model(f"hf:{folders[kind]}")
    ref, processor, tok = hf_reference(folders[kind], kind)
    assert isinstance(model, HFDualEncoder) and not model.training
    images = pil_images()
    pixels = torch.stack([preprocess(im) for im in images])
    ref_pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels, ref_pixels, rtol=0, atol=1e-6)

    inputs = hf_text_inputs(tok, kind)
    ours = model.tokenize(TEXTS)
    assert torch.equal(ours["input_ids"], inputs["input_ids"])
    assert model.text_encoder.tokenizer.num_truncated == 1

    with torch.no_grad():
        img = model.encode_image(pixels)
        txt = model.encode_text(TEXTS)
        ref_img = torch.nn.functional.normalize(
            ref.get_image_features(pixel_values=ref_pixels).pooler_output, dim=-1
        )
        ref_txt = torch.nn.functional.normalize(ref.get_text_features(**inputs).pooler_output, dim=-1)
        out = model(image=pixels, text=TEXTS)
    assert img.shape == ref_img.shape and txt.shape == ref_txt.shape
    torch.testing.assert_close(img, ref_img, rtol=0, atol=1e-5)
    torch.testing.assert_close(txt, ref_txt, rtol=0, atol=1e-5)
    assert float(out["logit_scale"]) == pytest.approx(math.exp(float(ref.logit_scale.detach())), rel=1e-6)
    if kind == "siglip":
        assert (
            float(out["logit_bias"].detach())
            == pytest.approx(float(ref.logit_bias.detach()), abs=1e-6)
            == -10.0
        )
    else:
        assert "logit_bias" not in out


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_losses_equal_transformers(folders, kind):
    """xmodal's CLIP / SigLIP losses on the model's outputs equal transformers' return_loss=True."""
    model, preprocess = xmodal.create_model(f"hf:{folders[kind]}")
    ref, _, tok = hf_reference(folders[kind], kind)
    images = pil_images()
    pixels = torch.stack([preprocess(im) for im in images])
    with torch.no_grad():
        out = model(image=pixels, text=TEXTS)
        loss = clip_loss(**out) if kind == "clip" else SigLipLoss()(**out)
        expected = ref(pixel_values=pixels, return_loss=True, **hf_text_inputs(tok, kind)).loss
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_zero_shot_logits_equal_transformers(folders):
    """xmodal's zero-shot classifier (one template) gives transformers' logits_per_image."""
    from xmodal.eval.embed import embed_images
    from xmodal.eval.zero_shot import zero_shot_classifier

    model, preprocess = xmodal.create_model(f"hf-clip:{folders['clip']}")
    ref, processor, tok = hf_reference(folders["clip"], "clip")
    images, names = pil_images(), ["cat", "dog", "car"]
    img = embed_images(model, images, preprocess, progress=False)
    with torch.no_grad():
        classifier = zero_shot_classifier(model, names, ["a photo of a {}."])
        logits = model.logit_scale * img @ classifier.t()
        inputs = tok([f"a photo of a {n}." for n in names], padding=True, return_tensors="pt")
        expected = ref(pixel_values=processor(images=images, return_tensors="pt")["pixel_values"], **inputs)
    torch.testing.assert_close(logits, expected.logits_per_image, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("size", "crop"),
    [
        ({"shortest_edge": 24}, {"height": 32, "width": 32}),
        ({"shortest_edge": 40}, {"height": 32, "width": 20}),
    ],
)
def test_preprocess_matches_pil_processor_with_padding_and_odd_crops(tmp_path, size, crop):
    from transformers import CLIPImageProcessorPil

    ref = CLIPImageProcessorPil(
        size=size, crop_size=crop, image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.6, 0.7]
    )
    ref.save_pretrained(str(tmp_path))
    ours = load_hf_preprocess(tmp_path)
    assert isinstance(ours, HFImagePreprocess)
    images = pil_images()
    expected = ref(images=images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(torch.stack([ours(im) for im in images]), expected, rtol=0, atol=1e-6)


OPENAI_STYLE = {  # the layout of openai/clip-vit-base-patch32's file: bare ints, feature_extractor_type
    "crop_size": 32,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 32,
}


@pytest.mark.parametrize(
    "config",
    [
        OPENAI_STYLE,
        {"image_processor_type": "CLIPImageProcessor"},
        {"image_processor_type": "SiglipImageProcessor"},
    ],
    ids=["openai-style", "clip-defaults", "siglip-defaults"],
)
def test_preprocess_reads_older_and_minimal_files_as_transformers(tmp_path, config):
    from transformers import AutoImageProcessor

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    ref = AutoImageProcessor.from_pretrained(str(tmp_path), backend="pil")
    images = [im.resize((im.width * 4, im.height * 4)) for im in pil_images()]  # larger than 224 px
    expected = ref(images=images, return_tensors="pt")["pixel_values"]
    ours = load_hf_preprocess(tmp_path)
    torch.testing.assert_close(torch.stack([ours(im) for im in images]), expected, rtol=0, atol=1e-6)


def test_names_configs_and_checkpoint_paths(folders, tmp_path):
    clip, siglip = folders["clip"], folders["siglip"]
    model, _ = xmodal.create_model(f"hf-siglip:{siglip}")
    assert model.config.name == f"hf-siglip:{siglip}" and model.config.embed_dim == 32
    assert model.config.image_size == 32
    # a plain folder through load_checkpoint (what `xmodal eval CONFIG --checkpoint FOLDER` calls)
    by_folder, pre = load_checkpoint(clip)
    assert isinstance(by_folder, HFDualEncoder) and by_folder.config.name == f"hf:{clip}"
    # a recipe naming the folder: locking applies (image tower frozen, last text block trainable)
    recipe = tmp_path / "hf.yaml"
    recipe.write_text(
        f"model:\n  name: hf:{clip}\n  image_encoder: {{name: hf, unlocked_blocks: 0}}\n"
        "  text_encoder: {name: hf, unlocked_blocks: 1}\n"
    )
    from_recipe, _ = xmodal.create_model(recipe)
    assert not any(p.requires_grad for p in from_recipe.image_encoder.parameters())
    text_layers = from_recipe.text_encoder.model.encoder.layers
    assert all(p.requires_grad for p in text_layers[-1].parameters())
    assert not any(p.requires_grad for p in text_layers[0].parameters())
    assert all(p.requires_grad for p in from_recipe.image_head.parameters())
    # an xmodal checkpoint of a (fine-tuned) HF model: state.json records hf:PATH, the weights load strictly
    from xmodal.config import ExperimentConfig, to_dict
    from xmodal.train.checkpoint import save_model_dir

    with torch.no_grad():
        from_recipe.image_head.proj.weight.mul_(2.0)
    cfg = ExperimentConfig(model=from_recipe.config)
    save_model_dir(tmp_path / "ckpt", from_recipe, {"config": to_dict(cfg)})
    reloaded, _ = load_checkpoint(tmp_path / "ckpt")
    torch.testing.assert_close(reloaded.image_head.proj.weight, from_recipe.image_head.proj.weight)
    x = torch.stack([pre(im) for im in pil_images()])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_image(x), from_recipe.encode_image(x))


def test_bad_folders_fail_in_one_line(folders, tmp_path):
    with pytest.raises(XmodalError, match="does not exist"):
        xmodal.create_model(f"hf:{tmp_path / 'nope'}")
    with pytest.raises(XmodalError, match=r"no config\.json"):
        xmodal.create_model(f"hf:{tmp_path}")
    with pytest.raises(XmodalError, match=r"model_type is 'siglip', not 'clip'"):
        xmodal.create_model(f"hf-clip:{folders['siglip']}")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(XmodalError, match=r"bert.*model_type 'bert' is not a CLIP or SigLIP"):
        xmodal.create_model(f"hf:{bert}")
    pickled = tmp_path / "pickled"
    shutil.copytree(folders["clip"], pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(XmodalError, match=r"pytorch_model\.bin, a pickle"):
        xmodal.create_model(f"hf-clip:{pickled}")
    no_pre = tmp_path / "no_pre"
    shutil.copytree(folders["clip"], no_pre)
    (no_pre / "preprocessor_config.json").unlink()
    with pytest.raises(XmodalError, match=r"preprocessor_config\.json"):
        xmodal.create_model(f"hf:{no_pre}")
    with pytest.raises(XmodalError, match="needs a folder"):
        xmodal.create_model("hf-clip:")


def test_xmodal_eval_zero_shot_of_a_hf_folder_matches_transformers(folders, tmp_path):
    """`xmodal eval CONFIG --checkpoint HF_FOLDER` on real Fashion-MNIST images: top-1 as transformers'
    CLIPModel computes it (prompt-ensembled class embeddings, argmax of the cosine)."""
    from xmodal.cli import main
    from xmodal.data.fashion_mnist import FashionMNIST

    recipe = Path(__file__).resolve().parents[2] / "configs" / "clip_vit_tiny.yaml"
    out = tmp_path / "eval.json"
    argv = ["eval", str(recipe), "--checkpoint", str(folders["clip"]), "--zero-shot", "fashion-mnist:test"]
    argv += ["--set", "eval.max_images=40", "--set", "train.cache_features=false", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    result = json.loads(out.read_text())["fashion_mnist_zero_shot"]

    ref, processor, tok = hf_reference(folders["clip"], "clip")
    ds = FashionMNIST(split="test")
    images = [ds.load(i)[0] for i in range(40)]
    labels = torch.tensor([ds.load(i)[1] for i in range(40)])
    with torch.no_grad():
        img = ref.get_image_features(
            pixel_values=processor(images=images, return_tensors="pt")["pixel_values"]
        )
        img = torch.nn.functional.normalize(img.pooler_output, dim=-1)
        classes = []
        for name in ds.classnames:
            prompts = [t.format(name) if isinstance(t, str) else t(name) for t in ds.templates]
            z = ref.get_text_features(**tok(prompts, padding=True, return_tensors="pt")).pooler_output
            classes.append(
                torch.nn.functional.normalize(torch.nn.functional.normalize(z, dim=-1).mean(0), dim=0)
            )
        top1 = float(((img @ torch.stack(classes).t()).argmax(1) == labels).float().mean())
    assert result["n"] == 40
    assert result["top1"] == pytest.approx(top1, abs=1e-6)  # 40 images: steps of 0.025
