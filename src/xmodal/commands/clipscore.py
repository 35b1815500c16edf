"""``xmodal eval clipscore``: CLIP-S and RefCLIP-S (Hessel et al. 2021) beside BLEU and CIDEr.

::

    xmodal eval clipscore --model hf-clip:/models/clip-vit-base-patch32 --images val2014/ \\
        --references captions_val2014.json --predictions results.json --out clipscore.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError


def load_scoring_model(spec: str) -> tuple[Any, Any]:
    """(model, preprocess) from ``hf:``/``hf-clip:``/``hf-siglip:`` PATH, a Hugging Face folder, or an
    xmodal checkpoint folder / ``model.safetensors``."""
    from xmodal.models.hf_clip import is_hf_name
    from xmodal.models.io import load_checkpoint

    if not is_hf_name(spec) and not Path(spec).exists():
        raise XmodalError(
            f"--model {spec!r}: expected hf-clip:PATH, hf-siglip:PATH, hf:PATH, a Hugging Face model "
            "folder or an xmodal checkpoint folder, and nothing exists at that path"
        )
    return load_checkpoint(spec)


def cmd_eval_clipscore(args: argparse.Namespace) -> int:
    """Score the predictions, print the table, write the JSON; returns 0."""
    from xmodal.eval.clipscore import evaluate_clipscore_files, format_clipscore
    from xmodal.train.checkpoint import write_json_atomic

    if args.batch_size < 1:
        raise XmodalError(f"--batch-size must be at least 1, got {args.batch_size}")
    model, preprocess = load_scoring_model(args.model)
    scores = evaluate_clipscore_files(
        model,
        preprocess,
        images_dir=args.images,
        references=args.references,
        predictions=args.predictions,
        w=args.w,
        prefix=args.prefix,
        batch_size=args.batch_size,
        per_image=args.per_image,
        meteor=False if args.no_meteor else None,
    )
    out = Path(args.out) if args.out else Path(args.predictions).with_suffix(".clipscore.json")
    write_json_atomic(out, scores)
    print(format_clipscore(scores))
    print(f"scores: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval clipscore``."""
    from xmodal.eval.clipscore import PREFIX
    from xmodal.metrics.clipscore import W_CLIPSCORE

    p = argparse.ArgumentParser(
        prog="xmodal eval clipscore",
        description="CLIPScore (w·max(cos, 0), w = 2.5) and RefCLIPScore (harmonic mean with the best "
        "reference similarity) of predicted captions (Hessel et al. 2021), with any xmodal dual encoder or "
        "a local Hugging Face CLIP/SigLIP folder, reported beside BLEU-1..4, ROUGE-L and CIDEr-D of the same "
        "files. Prints a table and writes JSON.",
        epilog="example: xmodal eval clipscore --model hf-clip:clip-vit-base-patch32 --images val2014 "
        "--references captions_val2014.json --predictions results.json --out clipscore.json",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="hf-clip:PATH | hf-siglip:PATH | hf:PATH | a Hugging Face folder | an xmodal checkpoint",
    )
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the images' file_name")
    p.add_argument(
        "--references", required=True, metavar="REFS.json", help="COCO captions file with 'images'"
    )
    p.add_argument(
        "--predictions", required=True, metavar="PREDS.json", help='COCO results: [{"image_id", "caption"}]'
    )
    p.add_argument("--out", metavar="FILE", help="JSON scores (default: PREDS.clipscore.json)")
    p.add_argument("--w", type=float, default=W_CLIPSCORE, help=f"CLIP-S weight (default {W_CLIPSCORE})")
    p.add_argument(
        "--prefix",
        default=PREFIX,
        help=f"text put before every caption (default {PREFIX!r}, as the paper; '' for none)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--per-image", action="store_true", help="also write every image's scores")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (a Java program)")
    p.set_defaults(func=cmd_eval_clipscore)
    return p


EVAL_MODES: dict[str, Callable[[], argparse.ArgumentParser]] = {"clipscore": build_parser}
