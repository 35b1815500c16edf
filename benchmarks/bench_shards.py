"""Reading tar shards: xmodal's counted stream against webdataset's own pipeline, side by side.

Writes the emoji train split (2,563 images) as shards with ``xmodal data shard``'s writer, then times
one pass over them (CPU time of the process — on a shared machine wall time mostly measures the
neighbours — median of ``--repeats`` interleaved runs, one process, one thread) of
  * xmodal: :class:`xmodal.data.stream.ShardStream` — member reading with truncation checks, webdataset's
    ``group_by_keys`` and shuffle buffer, caption/JSON checks, image decoding with
    :func:`xmodal.data.images.decode_image` (bomb guard, RGB over white), preprocessing, skip counting;
  * webdataset: ``webdataset.WebDataset(shards).shuffle(N).decode("pil").to_tuple("png", "txt")`` with
    the same preprocessing (no caption/JSON checks, corrupt samples raise instead of being counted);
checks that both yield the same set of keys, and writes ``benchmarks/results/shards.json``.

    python benchmarks/bench_shards.py                     # 5 repeats, 64 px, buffer 1000
    python benchmarks/bench_shards.py --repeats 3 --size 32
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import webdataset

from xmodal.data.emoji import EmojiDataset
from xmodal.data.images import to_rgb
from xmodal.data.shards import dataset_records, resolve_shards, write_shards
from xmodal.data.stream import ShardStream
from xmodal.data.transforms import ImagePreprocess
from xmodal.train.stream import ImageFn

RESULTS = Path(__file__).parent / "results" / "shards.json"


def run_xmodal(paths: list[str], counts: dict[str, int], fn: ImageFn, buffer: int) -> tuple[float, set[str]]:
    t0 = time.process_time()
    stream = ShardStream(
        paths, counts, fn, seed=0, epoch=0, rank=0, world=1, workers=0, shuffle_buffer=buffer
    )
    keys = {e["key"].rsplit(":", 1)[1] for e in stream if e["kind"] == "ok"}
    return time.process_time() - t0, keys


def run_webdataset(paths: list[str], pre: ImagePreprocess, buffer: int) -> tuple[float, set[str]]:
    t0 = time.process_time()
    ds = (
        webdataset.WebDataset(paths, shardshuffle=False, empty_check=False)
        .shuffle(buffer)
        .decode("pil")
        .to_tuple("__key__", "png", "txt")
        .map(lambda s: (s[0], pre(to_rgb(s[1])), s[2]))
    )
    keys = {k for k, _, _ in ds}
    return time.process_time() - t0, keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=64, help="preprocessed image side")
    ap.add_argument("--buffer", type=int, default=1000, help="shuffle buffer")
    ap.add_argument("--shard-size", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pre = ImagePreprocess(size=args.size, mean=(0.5,) * 3, std=(0.5,) * 3)
    fn = ImageFn(pre, None)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_shards(
            dataset_records(EmojiDataset(split="train")),
            Path(tmp),
            prefix="emoji",
            shard_size=args.shard_size,
        )
        shards = resolve_shards(tmp)
        times: dict[str, list[float]] = {"xmodal": [], "webdataset": []}
        for _ in range(args.repeats):  # interleaved
            t, keys_x = run_xmodal(shards.paths, shards.counts, fn, args.buffer)
            times["xmodal"].append(t)
            t, keys_w = run_webdataset(shards.paths, pre, args.buffer)
            times["webdataset"].append(t)
            assert keys_x == keys_w and len(keys_x) == manifest["samples"], "the readers disagree"
    n = manifest["samples"]
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {
        "samples": n,
        "shards": len(manifest["shards"]),
        "image_size": args.size,
        "shuffle_buffer": args.buffer,
        "repeats": args.repeats,
        "webdataset_version": importlib.metadata.version("webdataset"),
        "median_cpu_seconds": med,
        "samples_per_s": {k: n / v for k, v in med.items()},
        "time_ratio_xmodal_over_webdataset": med["xmodal"] / med["webdataset"],
        "all_cpu_seconds": times,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} samples in {result['shards']} shards, {args.size} px, buffer {args.buffer}, one thread")
    for k in ("xmodal", "webdataset"):
        print(f"  {k:<11} {med[k]:.2f} CPU s  {n / med[k]:.0f} samples per CPU second")
    print(f"  ratio xmodal / webdataset: {result['time_ratio_xmodal_over_webdataset']:.2f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
