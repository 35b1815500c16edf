"""Image–caption retrieval recall@K at COCO 5k scale: xmodal's blockwise pass against CLIP_benchmark's.

On the same seeded features (``--images`` unit image features, ``--captions`` noisy captions each, D = 512,
float32) it measures the median wall and CPU time (``time.process_time``: both threads, whatever else
the shared machine runs) of ``--repeats`` interleaved runs of
  * xmodal: :func:`xmodal.metrics.retrieval_recall` (one blockwise pass, both directions, no top-K);
  * CLIP_benchmark 1.6.2: the tail of ``zeroshot_retrieval.evaluate`` call for call (``scores = texts @
    images.T``, the boolean ``positive_pairs``, ``batchify(recall_at_k, ...)`` with batch size 64 for each
    K and both directions, ``> 0`` and the mean);
  * matmul + top-K: ``texts @ images.T`` and ``topk(max K)`` along both axes, a floor for any method that
    forms the scores (it does not produce recall on its own);
checks that the recalls agree, measures each method's peak memory in a fresh subprocess (the rise of the
kernel's peak-RSS mark ``VmHWM`` over the RSS after the features exist), and writes
``benchmarks/results/retrieval.json`` and a table. 2 threads. Needs ``pip install --no-deps
clip-benchmark==1.6.2``.

    python benchmarks/bench_retrieval.py                        # 5,000 images x 25,000 captions
    python benchmarks/bench_retrieval.py --images 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xmodal.metrics import retrieval_recall

RESULTS = Path(__file__).parent / "results" / "retrieval.json"
KS = (1, 5, 10)
DIM = 512
THREADS = 2


def make_features(n_images: int, captions: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(N_i, D) unit images, (N_i · captions, D) unit captions = image + noise (shuffled), their index."""
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_images, DIM, generator=g), dim=-1)
    index = torch.arange(n_images).repeat_interleave(captions)
    index = index[torch.randperm(len(index), generator=g)]
    noise = torch.randn(len(index), DIM, generator=g) * (6.0 / DIM**0.5)  # R@1 well inside (0, 1)
    txt = F.normalize(img[index] + noise, dim=-1)
    return img, txt, index


def run_xmodal(img: torch.Tensor, txt: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
    r = retrieval_recall(img, txt, index, KS)
    out = {f"image_retrieval_recall@{k}": r["text_to_image"][f"R@{k}"] for k in KS}
    out.update({f"text_retrieval_recall@{k}": r["image_to_text"][f"R@{k}"] for k in KS})
    return out


def run_clip_benchmark(img: torch.Tensor, txt: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
    from clip_benchmark.metrics.zeroshot_retrieval import batchify, recall_at_k

    texts_image_index = index.tolist()
    batch_size, device = 64, "cpu"
    scores = txt @ img.t()
    positive_pairs = torch.zeros_like(scores, dtype=bool)
    positive_pairs[torch.arange(len(scores)), texts_image_index] = True
    metrics = {}
    for recall_k in KS:
        metrics[f"image_retrieval_recall@{recall_k}"] = (
            (batchify(recall_at_k, scores, positive_pairs, batch_size, device, k=recall_k) > 0)
            .float()
            .mean()
            .item()
        )
        metrics[f"text_retrieval_recall@{recall_k}"] = (
            (batchify(recall_at_k, scores.T, positive_pairs.T, batch_size, device, k=recall_k) > 0)
            .float()
            .mean()
            .item()
        )
    return metrics


def run_matmul_topk(img: torch.Tensor, txt: torch.Tensor, index: torch.Tensor) -> dict[str, float]:
    scores = txt @ img.T  # (N_t, N_i)
    scores.topk(max(KS), dim=1)
    scores.topk(max(KS), dim=0)
    return {}


METHODS: dict[str, Callable[..., dict[str, float]]] = {
    "xmodal": run_xmodal,
    "clip_benchmark": run_clip_benchmark,
    "matmul_topk": run_matmul_topk,
}


def rss_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(method: str, n_images: int, captions: int) -> None:
    """In a fresh process: print the peak RSS rise (MiB) of one run over already-made features.

    ``VmHWM`` is reset to the current RSS by ``/proc/self/clear_refs`` (``ru_maxrss`` cannot be reset and
    after fork + exec remembers the parent's peak).
    """
    torch.set_num_threads(THREADS)
    img, txt, index = make_features(n_images, captions)
    if method == "clip_benchmark":
        import clip_benchmark.metrics.zeroshot_retrieval  # noqa: F401  (imports are not the method's memory)
    Path("/proc/self/clear_refs").write_text("5")
    base = rss_kib("VmRSS")
    if rss_kib("VmHWM") > base + 1024:
        raise RuntimeError("could not reset the peak RSS")
    METHODS[method](img, txt, index)
    print(json.dumps({"peak_mib": (rss_kib("VmHWM") - base) / 1024}))


def peak_memory(method: str, n_images: int, captions: int) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--images",
        str(n_images),
        "--captions",
        str(captions),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {method} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def bench(n_images: int, captions: int, repeats: int) -> dict[str, Any]:
    img, txt, index = make_features(n_images, captions)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    cpu: dict[str, list[float]] = {name: [] for name in METHODS}
    results: dict[str, dict[str, float]] = {}
    for _ in range(repeats):  # interleaved, so that load from other processes hits every method
        for name, fn in METHODS.items():
            t0, c0 = time.perf_counter(), time.process_time()
            results[name] = fn(img, txt, index)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    ours, theirs = results["xmodal"], results["clip_benchmark"]
    diff = max(abs(ours[k] - theirs[k]) for k in theirs)
    median = {k: statistics.median(v) for k, v in times.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    memory = {name: peak_memory(name, n_images, captions) for name in METHODS}
    return {
        "images": n_images,
        "captions": n_images * captions,
        "dim": DIM,
        "dtype": "float32",
        "threads": THREADS,
        "seconds": {k: {"median": median[k], "runs": v} for k, v in times.items()},
        # CPU time of the process (both threads): what each method costs, whatever else runs on the machine
        "cpu_seconds": {k: {"median": median_cpu[k], "runs": v} for k, v in cpu.items()},
        "speedup_vs_clip_benchmark": median["clip_benchmark"] / median["xmodal"],
        "cpu_speedup_vs_clip_benchmark": median_cpu["clip_benchmark"] / median_cpu["xmodal"],
        "peak_memory_mib": memory,
        "recall": {"xmodal": ours, "clip_benchmark": theirs},
        # CLIP_benchmark means in float32, xmodal in float64: equal hits give the same value to ~1e-7
        "max_abs_diff": diff,
        "equal": diff <= 1e-6,
    }


def table(r: dict[str, Any]) -> str:
    head = f"{'method':<16} {'median s':>9} {'CPU s':>9} {'peak MiB':>9}"
    lines = [f"{r['images']} images x {r['captions']} captions, D={r['dim']}, {r['threads']} threads", head]
    lines.append("-" * len(head))
    for name in METHODS:
        wall, cpu = r["seconds"][name]["median"], r["cpu_seconds"][name]["median"]
        lines.append(f"{name:<16} {wall:>9.3f} {cpu:>9.3f} {r['peak_memory_mib'][name]:>9.1f}")
    lines.append(
        f"speed-up vs CLIP_benchmark: {r['speedup_vs_clip_benchmark']:.1f}x wall, "
        f"{r['cpu_speedup_vs_clip_benchmark']:.1f}x CPU time"
    )
    lines.append(f"recalls equal: {r['equal']} (max |diff| {r['max_abs_diff']:.1e})")
    rec = r["recall"]["xmodal"]
    lines.append(", ".join(f"{k} {v:.4f}" for k, v in rec.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--captions", type=int, default=5, help="captions per image")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, args.images, args.captions)
        return
    torch.set_num_threads(THREADS)
    try:
        version = importlib.metadata.version("clip-benchmark")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("clip-benchmark is not installed: pip install --no-deps clip-benchmark==1.6.2")
    result = bench(args.images, args.captions, args.repeats)
    report = {
        "benchmark": "image-caption retrieval recall@K (both directions)",
        "clip_benchmark": version,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "result": result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(result))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
