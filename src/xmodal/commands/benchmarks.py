"""``xmodal eval retrieval-benchmark`` and ``xmodal eval mmbench``: a model on official benchmark files.

::

    xmodal eval retrieval-benchmark --model runs/demo/model --karpathy dataset_coco.json \
        --images ~/data/coco --split test
    xmodal eval mmbench --model clip-effnet-minilm --tsv MMBench_DEV_EN.tsv
    xmodal eval vqav2 --model runs/demo/model --questions Q.json --annotations A.json --images ~/coco/val2014
"""

from __future__ import annotations

import argparse

from xmodal.commands._model_args import add_model_args, model_and_preprocess, write_results
from xmodal.errors import XmodalError


def cmd_retrieval_benchmark(args: argparse.Namespace) -> int:
    """Recall@K on a Karpathy split, both directions."""
    from xmodal.benchmarks.karpathy import read_karpathy
    from xmodal.cli import format_table
    from xmodal.eval.benchmarks import evaluate_karpathy_retrieval

    if not args.ks or min(args.ks) < 1:
        raise XmodalError(f"--ks must be positive integers, got {args.ks}")
    images = read_karpathy(args.karpathy, args.images, args.split)
    model, preprocess = model_and_preprocess(args)
    results = evaluate_karpathy_retrieval(
        model,
        preprocess,
        images,
        ks=tuple(args.ks),
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    results.update(model=str(args.model), karpathy=str(args.karpathy), split=args.split)
    header = ["direction", *(f"R@{k}" for k in args.ks), "median rank"]
    rows = [
        [label, *(results[d][f"R@{k}"] for k in args.ks), f"{results[d]['median_rank']:g}"]
        for d, label in (("image_to_text", "image→text"), ("text_to_image", "text→image"))
    ]
    print(f"{results['n_images']} images, {results['n_captions']} captions ({args.split})")
    print(format_table(header, rows))
    print(f"results: {write_results(results, args.out)}")
    return 0


def cmd_mmbench(args: argparse.Namespace) -> int:
    """Vanilla and CircularEval accuracy on an MMBench TSV file."""
    from xmodal.benchmarks.mmbench import read_mmbench
    from xmodal.cli import format_table
    from xmodal.eval.benchmarks import evaluate_mmbench

    items = read_mmbench(args.tsv)
    model, preprocess = model_and_preprocess(args)
    results = evaluate_mmbench(model, preprocess, items)
    results.update(model=str(args.model), tsv=str(args.tsv))
    rows = [["overall", results["n"], results["vanilla"], results["circular"]]]
    rows += [[c, r["n"], r["vanilla"], r["circular"]] for c, r in results["per_category"].items()]
    print(format_table(["category", "n", "vanilla", "circular"], rows))
    print(f"results: {write_results(results, args.out)}")
    return 0


def cmd_vqav2(args: argparse.Namespace) -> int:
    """Zero-shot VQA accuracy of a dual encoder on VQAv2 files."""
    from xmodal.benchmarks.vqav2 import read_vqav2
    from xmodal.eval.benchmarks import evaluate_vqav2_zero_shot
    from xmodal.eval.vqa import format_vqa_accuracy

    if args.candidates < 1:
        raise XmodalError(f"--candidates must be >= 1, got {args.candidates}")
    questions = read_vqav2(args.questions, args.annotations, args.images)
    if args.max_questions:
        questions = questions[: args.max_questions]
    model, preprocess = model_and_preprocess(args)
    results = evaluate_vqav2_zero_shot(model, preprocess, questions, num_candidates=args.candidates)
    results.update(model=str(args.model), questions=str(args.questions), n=len(questions))
    print(format_vqa_accuracy(results["accuracy"]))
    print(f"results: {write_results(results, args.out)}")
    return 0


def build_retrieval_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval retrieval-benchmark``."""
    p = argparse.ArgumentParser(
        prog="xmodal eval retrieval-benchmark",
        description="Image–text retrieval recall@K of a model on COCO or Flickr30K in Karpathy's split "
        "file (dataset_coco.json / dataset_flickr30k.json): every image of the split against all its "
        "captions, several correct captions per image, as CLIP_benchmark computes it.",
        epilog="example: xmodal eval retrieval-benchmark --model runs/demo/model --karpathy "
        "dataset_coco.json --images ~/data/coco --split test",
    )
    add_model_args(p)
    p.add_argument("--karpathy", required=True, metavar="JSON", help="Karpathy split file")
    p.add_argument(
        "--images", required=True, metavar="ROOT", help="folder the file's filepath/filename are in"
    )
    p.add_argument(
        "--split", default="test", help="split: train, restval, val or test; join with + (default test)"
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], metavar="K", help="recall cut-offs")
    p.add_argument(
        "--out",
        default="retrieval_benchmark.json",
        metavar="FILE",
        help="JSON results (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_retrieval_benchmark)
    return p


def build_mmbench_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval mmbench``."""
    p = argparse.ArgumentParser(
        prog="xmodal eval mmbench",
        description="MMBench-style multiple choice (TSV with base64 images) with CircularEval: each "
        "question is asked once per rotation of its options and counts only if every answer is right. "
        "A dual encoder picks the option whose text '<question> <option>' is closest to the image.",
        epilog="example: xmodal eval mmbench --model runs/demo/model --tsv MMBench_DEV_EN.tsv",
    )
    add_model_args(p)
    p.add_argument("--tsv", required=True, metavar="TSV", help="MMBench TSV file")
    p.add_argument(
        "--out", default="mmbench.json", metavar="FILE", help="JSON results (default: %(default)s)"
    )
    p.set_defaults(func=cmd_mmbench)
    return p


def build_vqav2_parser() -> argparse.ArgumentParser:
    """The parser of ``xmodal eval vqav2``."""
    p = argparse.ArgumentParser(
        prog="xmodal eval vqav2",
        description="Zero-shot VQAv2 with a dual encoder: each question's answer is the candidate (the most "
        "frequent annotated answers) whose text '<question> <answer>' is closest to the image; scored with "
        "the official VQA accuracy. Images: DIR/COCO_<data_subtype>_<image id>.jpg. To score a generative "
        "model's answers instead, use `xmodal eval vqa --predictions`.",
        epilog="example: xmodal eval vqav2 --model runs/demo/model --questions "
        "v2_OpenEnded_mscoco_val2014_questions.json --annotations v2_mscoco_val2014_annotations.json "
        "--images ~/data/coco/val2014 --max-questions 1000",
    )
    add_model_args(p)
    p.add_argument("--questions", required=True, metavar="Q.json", help="VQAv2 questions file")
    p.add_argument("--annotations", required=True, metavar="A.json", help="VQAv2 annotations file")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of the COCO images")
    p.add_argument(
        "--candidates", type=int, default=100, metavar="N", help="answers to choose from (default 100)"
    )
    p.add_argument("--max-questions", type=int, default=0, metavar="N", help="the first N questions (0: all)")
    p.add_argument("--out", default="vqav2.json", metavar="FILE", help="JSON results (default: %(default)s)")
    p.set_defaults(func=cmd_vqav2)
    return p


EVAL_MODES = {
    "retrieval-benchmark": build_retrieval_parser,
    "mmbench": build_mmbench_parser,
    "vqav2": build_vqav2_parser,
}
