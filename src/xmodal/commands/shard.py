"""``xmodal data shard DATASET --out DIR --shard-size N``: write a dataset as WebDataset tar shards.

The shards (``DIR/{prefix}-000000.tar`` ...) follow img2dataset's layout (``key.png|jpg``, ``key.txt``,
``key.json``) and ``DIR/shards.json`` lists them with counts and sha256; train from them with
``--set data.shards=DIR`` (see :mod:`xmodal.data.shards` and :mod:`xmodal.train.stream`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xmodal.errors import XmodalError


def cmd_data_shard(args: argparse.Namespace) -> int:
    """Write the shards and the manifest; print one line per folder."""
    from xmodal.data.shards import dataset_records, write_shards
    from xmodal.registry import DATASETS

    if args.dataset not in DATASETS:
        raise XmodalError(f"unknown dataset {args.dataset!r} (registered: {', '.join(DATASETS.names())})")
    kwargs: dict[str, Any] = {"split": args.split}
    if args.no_variants:
        kwargs["variants"] = False
    try:
        dataset = DATASETS.get(args.dataset)(**kwargs)
    except TypeError as err:  # an option this dataset does not have
        raise XmodalError(f"dataset {args.dataset!r} does not take these options: {err}") from None
    prefix = args.prefix or args.dataset
    info = {"dataset": args.dataset, "split": args.split}
    skips = getattr(dataset, "skips", None)
    if skips is not None:
        info["skipped"] = skips.summary()  # left out by the dataset itself, never written
    manifest = write_shards(
        dataset_records(dataset), Path(args.out), prefix=prefix, shard_size=args.shard_size, info=info
    )
    print(
        f"{args.dataset}:{args.split}: {manifest['samples']} samples in {len(manifest['shards'])} shards "
        f"{Path(args.out) / manifest['pattern']} (manifest {Path(args.out) / 'shards.json'})"
    )
    return 0


def register(parsers: Any) -> None:
    """Add ``xmodal data shard``."""
    p = parsers.data.add_parser(
        "shard",
        help="write a dataset as WebDataset tar shards (img2dataset layout)",
        description="Write a prepared dataset split as WebDataset tar shards DIR/PREFIX-000000.tar ... "
        "(key.png|jpg, key.txt caption, key.json metadata, as img2dataset writes them) and "
        "DIR/shards.json (samples and sha256 per shard). Train from them with --set data.shards=DIR.",
        epilog="example: xmodal data shard emoji --split train --out shards/emoji --shard-size 500",
    )
    p.add_argument("dataset", metavar="DATASET", help="a registered dataset (see `xmodal list datasets`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--split", default="train", help="dataset split (default: train)")
    p.add_argument("--shard-size", type=int, default=1000, metavar="N", help="samples per shard (1000)")
    p.add_argument("--prefix", default=None, help="shard file prefix (default: the dataset name)")
    p.add_argument("--no-variants", action="store_true", help="leave out variant images (emoji skin tones)")
    p.set_defaults(func=cmd_data_shard)
