"""``xmodal eval robustness``: a model under corrupted and missing modalities, beside unimodal baselines.

::

    xmodal eval robustness --model runs/demo/model --out runs/demo/robustness
    xmodal eval robustness --model clip-vit-tiny --out /tmp/rob --max-images 100 --zero-shot none
"""

from __future__ import annotations

import argparse
from typing import Any

from xmodal.commands._model_args import add_model_args, model_and_preprocess
from xmodal.errors import XmodalError


def _names(values: list[str], known: tuple[str, ...], what: str) -> list[str]:
    """Comma-separated or repeated names, checked against ``known``; none given → all; "none" → none."""
    names = [v for value in values for v in value.split(",") if v]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in known]
    if unknown:
        raise XmodalError(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    return names or list(known)


def _severities(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise XmodalError(f"--severities must be integers like 1,3,5, got {text!r}") from None
    if not values or any(not 1 <= v <= 5 for v in values):
        raise XmodalError(f"--severities must be in 1..5, got {text!r}")
    return sorted(set(values))


def _dataset(target: str, **kwargs: Any) -> Any:
    from xmodal.eval.runner import parse_target
    from xmodal.registry import DATASETS

    name, split = parse_target(target)
    return DATASETS.get(name)(split=split, **kwargs)


def cmd_robustness(args: argparse.Namespace) -> int:
    """Evaluate, then write robustness.json, robustness.md and robustness.png into ``--out``."""
    from xmodal.eval.corruptions import IMAGE_CORRUPTIONS, TEXT_CORRUPTIONS
    from xmodal.eval.robustness import MISSING_FILLS, RetrievalData, evaluate_robustness, load_zero_shot_data
    from xmodal.eval.robustness_report import robustness_markdown, write_robustness_report

    options = {
        "image_corruptions": _names(args.image_corruption, IMAGE_CORRUPTIONS, "image corruption"),
        "text_corruptions": _names(args.text_corruption, TEXT_CORRUPTIONS, "text corruption"),
        "missing": _names(args.missing, MISSING_FILLS, "missing-modality fill"),
        "severities": _severities(args.severities),
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    if args.max_images is not None and args.max_images < 1:
        raise XmodalError(f"--max-images must be >= 1, got {args.max_images}")
    retrieval = zero_shot = None
    if args.retrieval != "none":
        ds = _dataset(args.retrieval, variants=False)
        retrieval = RetrievalData.from_dataset(ds, args.max_images)
    if args.zero_shot != "none":
        test = _dataset(args.zero_shot)
        support = _dataset(args.zero_shot.split(":")[0] + ":train") if args.shots > 0 else None
        zero_shot = load_zero_shot_data(test, max_images=args.max_images, support=support, shots=args.shots)
    if retrieval is None and zero_shot is None:
        raise XmodalError("nothing to evaluate: --retrieval and --zero-shot are both 'none'")
    model, preprocess = model_and_preprocess(args)
    results = evaluate_robustness(model, preprocess, retrieval=retrieval, zero_shot=zero_shot, **options)
    results["model"] = str(args.model)
    paths = write_robustness_report(results, args.out)
    print(robustness_markdown(results))
    print(f"results: {paths['json']}, table: {paths['markdown']}, plot: {paths['plot']}")
    return 0


def build_robustness_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval robustness``."""
    p = argparse.ArgumentParser(
        prog="xmodal eval robustness",
        description="Retrieval R@1 and zero-shot top-1 of a model with images corrupted (Gaussian noise, "
        "blur, JPEG, occlusion), texts corrupted (word dropout, typos, shuffles) at severities 1-5, and "
        "with a share of one modality missing (filled with zeros, the mean embedding, or the model's "
        "learned null embedding: n/a if it has none), beside chance, a text-only prior and an image-only "
        "nearest-neighbour baseline. Writes OUT/robustness.json, robustness.md and robustness.png.",
        epilog="example: xmodal eval robustness --model runs/demo/model --out runs/demo/robustness",
    )
    add_model_args(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--retrieval",
        default="emoji:test",
        metavar="NAME:SPLIT",
        help="'none' to skip (default: %(default)s)",
    )
    p.add_argument(
        "--zero-shot",
        default="fashion-mnist:test",
        metavar="NAME:SPLIT",
        help="'none' to skip (default: %(default)s)",
    )
    p.add_argument(
        "--max-images", type=int, default=500, metavar="N", help="images per task (default: %(default)s)"
    )
    p.add_argument(
        "--shots",
        type=int,
        default=10,
        metavar="K",
        help="support images per class for the image-only baseline",
    )
    p.add_argument(
        "--image-corruption",
        action="append",
        default=[],
        metavar="NAME",
        help="repeatable; default: all; 'none' for none",
    )
    p.add_argument(
        "--text-corruption",
        action="append",
        default=[],
        metavar="NAME",
        help="repeatable; default: all; 'none' for none",
    )
    p.add_argument(
        "--missing",
        action="append",
        default=[],
        metavar="FILL",
        help="zeros, mean, null (default: all; 'none' for none)",
    )
    p.add_argument("--severities", default="1,2,3,4,5", metavar="LIST", help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="corruption seed (default: 0)")
    p.set_defaults(func=cmd_robustness)
    return p


EVAL_MODES = {"robustness": build_robustness_parser}
