"""``xmodal eval clipscore``: CLIP-S and RefCLIP-S of COCO-format captions, beside BLEU and CIDEr.

Hessel et al. 2021, https://arxiv.org/abs/2104.08718. Candidates (COCO results file) and references
(COCO captions file, whose ``"images"`` list gives each image's ``file_name`` under an images folder)
are embedded with any xmodal dual encoder — a trained checkpoint or a Hugging Face CLIP/SigLIP folder —
and scored with :mod:`xmodal.metrics.clipscore`. As in the paper, every caption is prefixed with
"A photo depicts" before embedding (``prefix=""`` turns that off, as torchmetrics does).

CLIPScore is never reported alone: the same call computes the evaluation suite's reference-based
caption metrics (:func:`xmodal.metrics.caption_scores`: BLEU-1..4, ROUGE-L, CIDEr-D) on the same files.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from xmodal.errors import DataError
from xmodal.eval.captions import load_json, read_coco_predictions, read_coco_references
from xmodal.eval.embed import DualEncoder, Preprocess, embed_images, embed_texts
from xmodal.metrics.captions import METRICS, caption_scores
from xmodal.metrics.clipscore import W_CLIPSCORE, clip_score, ref_clip_score

PREFIX = "A photo depicts "
"""Hessel et al.'s prompt before every caption (candidates and references)."""


def read_image_files(references: str | Path) -> dict[Hashable, str]:
    """``{image_id: file_name}`` from the ``"images"`` list of a COCO captions file."""
    path = Path(references)
    data = load_json(path, "references")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise DataError(f"{path}: CLIPScore needs an 'images' list with each image's file_name")
    out: dict[Hashable, str] = {}
    for k, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise DataError(f"{path}: image {k} needs an 'id' and a 'file_name'")
        out[img["id"]] = img["file_name"]
    return out


def _open_image(folder: Path, name: str) -> Image.Image:
    path = folder / name
    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def score_captions(
    model: DualEncoder,
    preprocess: Preprocess,
    images: Iterable[Image.Image],
    references: list[list[str]],
    candidates: list[str],
    *,
    w: float = W_CLIPSCORE,
    prefix: str = PREFIX,
    batch_size: int = 64,
) -> dict[str, Any]:
    """CLIP-S and RefCLIP-S of N captioned images.

    Args:
        model: a dual encoder (``encode_image`` / ``encode_text``).
        preprocess: PIL image → (3, H, W).
        images: N PIL images (any iterable: they are read one batch at a time).
        references: N lists of reference captions (at least one each).
        candidates: N candidate captions.
        w: CLIP-S's weight (2.5).
        prefix: prepended to every caption before embedding.
        batch_size: images per forward pass.

    Returns:
        ``{"CLIP-S": mean, "RefCLIP-S": mean, "per_image": {"CLIP-S": [N], "RefCLIP-S": [N]}}``.
    """
    if len(references) != len(candidates):
        raise ValueError("references and candidates must have the same length")
    img = embed_images(model, images, preprocess, batch_size=batch_size, progress=False)  # (N, E)
    if img.shape[0] != len(candidates):
        raise ValueError(f"{img.shape[0]} images for {len(candidates)} candidates")
    cand = embed_texts(model, [prefix + c for c in candidates], progress=False)  # (N, E)
    flat = [prefix + r for refs in references for r in refs]
    owner = torch.tensor([i for i, refs in enumerate(references) for _ in refs], dtype=torch.long)
    refs = embed_texts(model, flat, progress=False)  # (R, E)
    per_clip, mean_clip = clip_score(img, cand, w=w)
    per_ref, mean_ref = ref_clip_score(img, cand, refs, owner, w=w)
    return {
        "CLIP-S": mean_clip,
        "RefCLIP-S": mean_ref,
        "per_image": {"CLIP-S": per_clip.tolist(), "RefCLIP-S": per_ref.tolist()},
    }


def evaluate_clipscore_files(
    model: DualEncoder,
    preprocess: Preprocess,
    *,
    images_dir: str | Path,
    references: str | Path,
    predictions: str | Path,
    w: float = W_CLIPSCORE,
    prefix: str = PREFIX,
    batch_size: int = 64,
    per_image: bool = False,
    meteor: bool | None = False,
) -> dict[str, Any]:
    """CLIP-S and RefCLIP-S of a COCO results file, with the caption metrics of the same files.

    Returns:
        ``{"CLIP-S", "RefCLIP-S", "Bleu_1".."Bleu_4", "ROUGE_L", "CIDEr", ("METEOR"), "num_images", "w",
        "prefix", "notes"}`` and, with ``per_image``, ``"per_image": {image_id: {metric: value}}``.

    Raises:
        DataError: files that do not match (ids, missing image files, malformed JSON), one line each.
    """
    refs = read_coco_references(references)
    preds = read_coco_predictions(predictions)
    try:
        scores = caption_scores(refs, preds, per_image=per_image, meteor=meteor, spice=False)
    except DataError as e:
        raise DataError(f"{references} vs {predictions}: {e}") from None
    files = read_image_files(references)
    ids = list(refs)
    folder = Path(images_dir)
    if not folder.is_dir():
        raise DataError(f"images folder {folder} does not exist")
    missing = [files[i] for i in ids if not (folder / files[i]).is_file()]
    if missing:
        shown = ", ".join(missing[:5])
        raise DataError(f"images missing from {folder}: {shown} ({len(missing)} in all)")
    images = (_open_image(folder, files[i]) for i in ids)  # opened one batch at a time
    clip = score_captions(
        model,
        preprocess,
        images,
        [refs[i] for i in ids],
        [preds[i] for i in ids],
        w=w,
        prefix=prefix,
        batch_size=batch_size,
    )
    result: dict[str, Any] = {"CLIP-S": clip["CLIP-S"], "RefCLIP-S": clip["RefCLIP-S"]}
    result.update({k: v for k, v in scores.items() if k != "per_image"})
    result.update(num_images=len(ids), w=w, prefix=prefix)
    result["notes"] = [
        "CLIP-S = w·max(cos, 0), RefCLIP-S = H-mean(CLIP-S, max(max_r cos(c, r), 0)) (Hessel et al. "
        "2021); they depend on the embedding model, so read them beside BLEU/CIDEr",
        "SPICE not computed: not run with CLIPScore (use `xmodal eval captions`)",
    ]
    if per_image:
        rows = scores["per_image"]
        for k, i in enumerate(ids):
            rows[i]["CLIP-S"] = clip["per_image"]["CLIP-S"][k]
            rows[i]["RefCLIP-S"] = clip["per_image"]["RefCLIP-S"][k]
        result["per_image"] = rows
    return result


def format_clipscore(scores: dict[str, Any]) -> str:
    """A two-column table: CLIP-S and RefCLIP-S, then the caption metrics; then the notes."""
    names = [m for m in ("CLIP-S", "RefCLIP-S", *METRICS, "METEOR") if m in scores]
    width = max(len(m) for m in names)
    lines = [f"{'metric'.ljust(width)}  score", f"{'-' * width}  ------"]
    lines += [f"{m.ljust(width)}  {scores[m]:.4f}" for m in names]
    lines.append(f"({scores.get('num_images', '?')} images; w = {scores.get('w', W_CLIPSCORE):g})")
    lines += [f"note: {n}" for n in scores.get("notes", [])]
    return "\n".join(lines)
