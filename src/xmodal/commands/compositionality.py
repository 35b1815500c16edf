"""``xmodal eval winoground`` and ``xmodal eval aro``: compositionality of a dual encoder.

::

    xmodal eval winoground --model runs/demo/model --path ~/data/winoground
    xmodal eval aro --model runs/demo/model --dataset emoji:test
    xmodal eval aro --model clip-effnet-minilm --jsonl my_captions.jsonl --perturbation swap_relation
"""

from __future__ import annotations

import argparse
from typing import Any

from xmodal.commands._model_args import add_model_args, model_and_preprocess, write_results
from xmodal.errors import DataError, XmodalError


def cmd_winoground(args: argparse.Namespace) -> int:
    """Score a model on Winoground files (text, image and group scores, per tag)."""
    from xmodal.eval.scorers import dual_encoder_scorer
    from xmodal.eval.winoground import format_winoground, read_winoground, winoground_scores

    examples = read_winoground(args.path)
    model, preprocess = model_and_preprocess(args)
    results = winoground_scores(dual_encoder_scorer(model, preprocess, batch_size=args.batch_size), examples)
    results["model"] = str(args.model)
    print(format_winoground(results))
    print(f"scores: {write_results(results, args.out)}")
    return 0


def captioned_items(args: argparse.Namespace) -> Any:
    """The captioned images of ``--jsonl`` or ``--dataset NAME:SPLIT`` (an image–caption dataset)."""
    from xmodal.eval.aro import read_captioned_jsonl

    if args.jsonl:
        return read_captioned_jsonl(args.jsonl)
    from xmodal.eval.runner import parse_target
    from xmodal.registry import DATASETS

    name, split = parse_target(args.dataset)
    factory = DATASETS.get(name)
    try:
        ds = factory(split=split, variants=False)
    except TypeError:
        ds = factory(split=split)
    if not (hasattr(ds, "items") and ds.items and hasattr(ds.items[0], "caption")):
        raise DataError(f"dataset {args.dataset!r} has no captions; ARO probes need an image–caption dataset")
    return ds


def cmd_aro(args: argparse.Namespace) -> int:
    """ARO-style order and binding probes on captioned images."""
    from xmodal.eval.aro import PERTURBATIONS, aro_probe, format_aro
    from xmodal.eval.scorers import dual_encoder_scorer

    unknown = [p for p in args.perturbation if p not in PERTURBATIONS]
    if unknown:
        raise XmodalError(f"unknown perturbation {unknown[0]!r}; known: {', '.join(PERTURBATIONS)}")
    items = captioned_items(args)
    model, preprocess = model_and_preprocess(args)
    results = aro_probe(
        dual_encoder_scorer(model, preprocess, batch_size=args.batch_size),
        items,
        perturbations=args.perturbation or tuple(PERTURBATIONS),
        seed=args.seed,
        max_items=args.max_items,
    )
    results["model"] = str(args.model)
    results["data"] = args.jsonl or args.dataset
    print(format_aro(results))
    print(f"results: {write_results(results, args.out)}")
    return 0


def build_winoground_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval winoground``."""
    p = argparse.ArgumentParser(
        prog="xmodal eval winoground",
        description="Winoground (Thrush et al. 2022): text, image and group scores of a model's "
        "image–caption cosine similarity, overall and per tag. Reads the official layout: "
        "DIR/examples.jsonl and DIR/images/{image_0}.png. Strict comparisons: ties count as wrong.",
        epilog="example: xmodal eval winoground --model runs/demo/model --path ~/data/winoground",
    )
    add_model_args(p)
    p.add_argument("--path", required=True, metavar="DIR", help="folder with examples.jsonl and images/")
    p.add_argument(
        "--out", default="winoground.json", metavar="FILE", help="JSON scores (default: %(default)s)"
    )
    p.set_defaults(func=cmd_winoground)
    return p


def build_aro_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval aro``."""
    from xmodal.eval.aro import PERTURBATIONS

    p = argparse.ArgumentParser(
        prog="xmodal eval aro",
        description="ARO-style probes (Yuksekgonul et al. 2023): how often a model scores each image's "
        "true caption above the caption with its words shuffled, attributes swapped or relation arguments "
        "exchanged (seeded). Captions a perturbation cannot change are skipped and counted.",
        epilog="example: xmodal eval aro --model runs/demo/model --dataset emoji:test; a JSONL of "
        '{"image": FILE, "caption": TEXT} lines works with --jsonl',
    )
    add_model_args(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", default="emoji:test", metavar="NAME:SPLIT", help="(default: %(default)s)"
    )
    source.add_argument("--jsonl", metavar="FILE", help='your captioned images: {"image", "caption"} lines')
    p.add_argument(
        "--perturbation",
        action="append",
        default=[],
        metavar="NAME",
        help=f"probe to run (repeatable; default all): {', '.join(PERTURBATIONS)}",
    )
    p.add_argument("--seed", type=int, default=0, help="perturbation seed (default: 0)")
    p.add_argument("--max-items", type=int, default=None, metavar="N", help="probe the first N images only")
    p.add_argument("--out", default="aro.json", metavar="FILE", help="JSON results (default: %(default)s)")
    p.set_defaults(func=cmd_aro)
    return p


EVAL_MODES = {"winoground": build_winoground_parser, "aro": build_aro_parser}
