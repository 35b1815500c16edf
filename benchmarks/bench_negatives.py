"""NegCLIP loss at scale: xmodal's exact chunked version against NegCLIP's own formulation.

The peer is the computation in NegCLIP's training code (Yuksekgonul et al. 2023): the B captions and
M hard negatives concatenated as text rows, ``logits_per_image = s · I [T; N]ᵀ`` (B, B + M),
``logits_per_text = logits_per_image.T[:B]``, two ``F.cross_entropy`` calls, autograd backward. For
each B (M = K·B negatives, D = 512, float32, 2 threads) it measures

  * time: the median of ``--repeats`` interleaved forward + backward runs of each;
  * memory: in a fresh subprocess per method, the peak RSS rise (``VmHWM`` after ``clear_refs``) of
    one forward + backward over already allocated inputs;
  * agreement: loss relative difference and max absolute gradient difference;

and writes ``benchmarks/results/negatives.json``.

    python benchmarks/bench_negatives.py                        # B ∈ {2048, 8192}, K = 1
    python benchmarks/bench_negatives.py --sizes 1024 --repeats 2 --per-image 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from xmodal.losses.negatives import clip_loss_with_negatives

D = 512
SCALE = 1 / 0.07
RESULTS = Path(__file__).parent / "results" / "negatives.json"
METHODS = ("xmodal_chunked", "negclip_concat")

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_inputs(b: int, k: int, seed: int = 0) -> Inputs:
    """Unit image, caption and negative features (negatives close to their caption) and a scale leaf."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(b, D, generator=g)
    txt = F.normalize(img + torch.randn(b, D, generator=g), dim=-1)
    neg = F.normalize(txt.repeat(k, 1) + 0.5 * torch.randn(b * k, D, generator=g), dim=-1)
    img = F.normalize(img, dim=-1)
    return tuple(x.requires_grad_(True) for x in (img, txt, neg, torch.tensor(SCALE)))  # type: ignore[return-value]


def negclip_concat(img: torch.Tensor, txt: torch.Tensor, neg: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """NegCLIP's formulation, as in its training loop."""
    logits_per_image = s * img @ torch.cat([txt, neg]).t()
    logits_per_text = logits_per_image.t()[: img.shape[0]]
    labels = torch.arange(img.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def methods(chunk: int) -> dict[str, Callable[..., torch.Tensor]]:
    return {
        "xmodal_chunked": lambda i, t, n, s: clip_loss_with_negatives(i, t, n, s, chunk_size=chunk),
        "negclip_concat": negclip_concat,
    }


def forward_backward(fn: Callable[..., torch.Tensor], inputs: Inputs) -> tuple[float, list[torch.Tensor]]:
    for x in inputs:
        x.grad = None
    loss = fn(*inputs)
    loss.backward()
    return loss.item(), [x.grad if x.grad is not None else torch.zeros_like(x) for x in inputs]


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(method: str, b: int, k: int, chunk: int) -> None:
    """In a fresh process: print the peak RSS rise (MiB) of one forward + backward."""
    torch.set_num_threads(2)
    fn = methods(chunk)[method]
    inputs = make_inputs(b, k)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    base = rss_kib("VmRSS")
    forward_backward(fn, inputs)
    print(json.dumps({"peak_mib": (rss_kib("VmHWM") - base) / 1024}))


def peak_memory(method: str, b: int, k: int, chunk: int) -> float:
    cmd = [sys.executable, __file__, "--child", method, "--sizes", str(b)]
    cmd += ["--per-image", str(k), "--chunk-size", str(chunk)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {method} at B={b} failed: {done.stderr.strip()[-300:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def bench_size(b: int, k: int, chunk: int, repeats: int) -> dict:
    fns = methods(chunk)
    inputs = make_inputs(b, k)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    last = {}
    for _ in range(repeats):
        for m in METHODS:
            t0 = time.perf_counter()
            last[m] = forward_backward(fns[m], inputs)
            times[m].append(time.perf_counter() - t0)
            print(f"  B={b} {m:15s} {times[m][-1]:7.2f} s", flush=True)
    (loss_a, grads_a), (loss_b, grads_b) = last["xmodal_chunked"], last["negclip_concat"]
    out: dict = {"B": b, "M": b * k, "D": D, "chunk_size": chunk, "repeats": repeats, "methods": {}}
    for m in METHODS:
        out["methods"][m] = {"median_s": statistics.median(times[m]), "times_s": times[m]}
        out["methods"][m]["peak_mib"] = peak_memory(m, b, k, chunk)
    ours, peer = out["methods"]["xmodal_chunked"], out["methods"]["negclip_concat"]
    out["speedup"] = peer["median_s"] / ours["median_s"]
    out["memory_ratio"] = ours["peak_mib"] / peer["peak_mib"]
    out["loss_rel_diff"] = abs(loss_a - loss_b) / abs(loss_b)
    names = ("image", "text", "negatives", "scale")
    out["grad_max_abs_diff"] = {
        n: (a - c).abs().max().item() for n, a, c in zip(names, grads_a, grads_b, strict=True)
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    p.add_argument("--per-image", type=int, default=1)
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", choices=METHODS)
    args = p.parse_args()
    if args.child:
        peak_memory_child(args.child, args.sizes[0], args.per_image, args.chunk_size)
        return
    torch.set_num_threads(2)
    results = [bench_size(b, args.per_image, args.chunk_size, args.repeats) for b in args.sizes]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"torch": torch.__version__, "results": results}, indent=2))
    print(
        f"{'B':>6} {'M':>6} {'ours s':>8} {'NegCLIP s':>9} {'speedup':>7} {'ours MiB':>9} {'NegCLIP MiB':>11}"
    )
    for r in results:
        o, n = r["methods"]["xmodal_chunked"], r["methods"]["negclip_concat"]
        print(
            f"{r['B']:>6} {r['M']:>6} {o['median_s']:>8.2f} {n['median_s']:>9.2f} {r['speedup']:>7.2f} "
            f"{o['peak_mib']:>9.0f} {n['peak_mib']:>11.0f}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
