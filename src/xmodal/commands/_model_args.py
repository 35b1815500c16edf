"""What the model-evaluating ``xmodal eval`` modes share: ``--model``/``--batch-size``/``--threads`` and
writing their JSON (not a plug-in itself: it defines neither ``register`` nor ``EVAL_MODES``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError

MODEL_HELP = (
    "a checkpoint folder or .safetensors file, a Hugging Face folder as hf:PATH, a model preset "
    "(`xmodal list models`) or a YAML recipe"
)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--batch-size`` and ``--threads``."""
    p.add_argument("--model", required=True, metavar="M", help=MODEL_HELP)
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass")
    p.add_argument(
        "--threads", type=int, default=0, metavar="N", help="torch CPU threads (0: torch's default)"
    )


def model_and_preprocess(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model of ``--model`` in eval mode and its preprocessing; applies ``--threads``.

    Through :func:`xmodal.models.io.load_model`: a preset's fresh heads come from seed 0, so evaluating a
    preset repeats exactly.
    """
    import torch

    from xmodal.models.io import load_model

    if args.batch_size < 1:
        raise XmodalError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_model(args.model)


def write_results(results: dict[str, Any], out: str) -> Path:
    """Write ``results`` as JSON to ``out`` atomically; returns the path."""
    from xmodal.train.checkpoint import write_json_atomic

    path = Path(out)
    write_json_atomic(path, results)
    return path
