"""``xmodal audit contamination --train A --eval B --out DIR [--exclude CLEAN.jsonl]``.

A and B are ``NAME:SPLIT`` of a registered dataset, an image folder, or a JSONL list of ``{"image",
"caption"}`` rows (:mod:`xmodal.audit.sources`). Writes ``DIR/pairs.jsonl`` and ``DIR/summary.json`` and
prints a table; ``--exclude`` writes the training items that pair with no evaluation item.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError


def cmd_audit_contamination(args: argparse.Namespace) -> int:
    """Run :func:`xmodal.audit.audit` and write its files."""
    import torch

    from xmodal.audit import AuditSettings, audit, open_source, write_audit
    from xmodal.audit.contamination import summary_table

    if not 0 <= args.radius <= 64:
        raise XmodalError(f"--radius must be in 0..64, got {args.radius}")
    if not -1.0 <= args.cosine <= 1.0:
        raise XmodalError(f"--cosine must be in [-1, 1], got {args.cosine}")
    if args.ngram < 0:
        raise XmodalError(f"--ngram must be >= 0, got {args.ngram}")
    if args.embed:
        import xmodal  # noqa: F401
        from xmodal.registry import IMAGE_ENCODERS

        if args.embed not in IMAGE_ENCODERS:
            raise XmodalError(
                f"--embed: unknown image encoder {args.embed!r} "
                f"(registered: {', '.join(IMAGE_ENCODERS.names())})"
            )
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = AuditSettings(
        hash=args.hash,
        radius=args.radius,
        embed=args.embed,
        embed_size=args.embed_size,
        cosine=args.cosine,
        ngram=args.ngram,
    )
    result = audit(open_source(args.train), open_source(args.eval), settings)
    out = Path(args.out)
    summary = write_audit(result, out, Path(args.exclude) if args.exclude else None)
    print(summary_table(summary))
    print(f"pairs: {out / 'pairs.jsonl'}; summary: {out / 'summary.json'}")
    if args.exclude:
        ex = summary["excluded"]
        print(f"cleaned training list: {ex['path']} ({ex['kept']} kept, {ex['removed']} removed)")
    return 0


def register(parsers: Any) -> None:
    """Adds ``xmodal audit contamination``."""
    audit = parsers.root.add_parser(
        "audit", help="audit datasets (train/eval contamination)", description="Audit datasets."
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="AUDIT", required=True)
    p = sub.add_parser(
        "contamination",
        help="find training items that duplicate evaluation items",
        description="Pair every training item with the evaluation items it duplicates: equal decoded "
        "pixels (SHA-256), perceptual hash within a Hamming radius, image-embedding cosine at or above a "
        "threshold (with --embed), equal normalised captions, or a shared long word n-gram. A source is "
        "NAME:SPLIT of a registered dataset, an image folder, or a JSONL list of "
        '{"image": PATH, "caption": TEXT} rows.',
        epilog="example: xmodal audit contamination --train emoji:train --eval fashion-mnist:test "
        "--out runs/audit --exclude runs/audit/train_clean.jsonl",
    )
    p.add_argument("--train", required=True, metavar="SOURCE", help="training items")
    p.add_argument("--eval", required=True, metavar="SOURCE", help="evaluation items")
    p.add_argument("--out", default="runs/audit", metavar="DIR", help="output folder (default: runs/audit)")
    p.add_argument(
        "--exclude", metavar="FILE.jsonl", help="write the training items that pair with nothing here"
    )
    p.add_argument(
        "--hash", choices=("phash", "dhash", "none"), default="phash", help="perceptual hash (default phash)"
    )
    p.add_argument(
        "--radius", type=int, default=6, help="largest Hamming distance of a near duplicate (default 6 of 64)"
    )
    p.add_argument(
        "--embed", metavar="ENCODER", help="also compare image embeddings, e.g. efficientnet_lite0"
    )
    p.add_argument(
        "--embed-size", type=int, default=128, metavar="PX", help="encoder input side (default 128)"
    )
    p.add_argument(
        "--cosine",
        type=float,
        default=0.9,
        help="smallest embedding cosine of a near duplicate (default 0.9)",
    )
    p.add_argument(
        "--ngram",
        type=int,
        default=8,
        help="words in the shared-n-gram caption test; 0 disables it (default 8)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads for --embed (default: torch's)")
    p.set_defaults(func=cmd_audit_contamination)
