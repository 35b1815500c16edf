"""Contrastive losses at scale: xmodal's exact chunked losses against open_clip's, forward + backward.

For each batch size N (D = 512, float32, 2 threads) it measures
  * time: the median of ``--repeats`` interleaved forward + backward runs of each loss;
  * memory: in a fresh subprocess per loss, the peak RSS (``ru_maxrss``) of one forward + backward
    minus the RSS after the inputs are allocated;
  * agreement: loss (relative) and gradient (max absolute) differences between the two.
and writes ``benchmarks/results/losses.json`` and a table. Needs ``open_clip_torch`` installed
(``pip install --no-deps open_clip_torch``); only its ``loss.py`` is loaded, so no torchvision.

    python benchmarks/bench_losses.py                      # N ∈ {4096, 16384}
    python benchmarks/bench_losses.py --sizes 2048 --repeats 3 --chunk-size 1024
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F

from xmodal.losses.contrastive import clip_loss
from xmodal.losses.siglip import siglip_loss

D = 512
CLIP_SCALE = 1 / 0.07  # CLIP's initial temperature
SIGLIP_SCALE, SIGLIP_BIAS = 10.0, -10.0  # SigLIP's initialisation
RESULTS = Path(__file__).parent / "results" / "losses.json"
METHODS = ("xmodal_clip", "open_clip_clip", "xmodal_siglip", "open_clip_siglip")

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def open_clip_losses() -> ModuleType:
    """open_clip's ``loss.py`` loaded as a file: the package's ``__init__`` would import torchvision."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("open_clip_torch is not installed: pip install --no-deps open_clip_torch")
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    file_spec = importlib.util.spec_from_file_location("open_clip_loss", path)
    assert file_spec is not None and file_spec.loader is not None
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def make_inputs(n: int, seed: int = 0) -> Inputs:
    """(N, D) unit image and text features that share some signal, plus scale and bias leaves."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, D, generator=g)
    txt = F.normalize(img + torch.randn(n, D, generator=g), dim=-1)
    img = F.normalize(img, dim=-1)
    return (
        img.requires_grad_(True),
        txt.requires_grad_(True),
        torch.tensor(1.0, requires_grad=True),  # multiplied by the method's own scale below
        torch.tensor(0.0, requires_grad=True),
    )


def losses(chunk: int) -> dict[str, Loss]:
    """The four losses on the same leaves; each multiplies the unit scale leaf by its own scale."""
    oc = open_clip_losses()
    oc_clip, oc_siglip = oc.ClipLoss(), oc.SigLipLoss()
    return {
        "xmodal_clip": lambda i, t, s, b: clip_loss(i, t, s * CLIP_SCALE, chunk_size=chunk),
        "open_clip_clip": lambda i, t, s, b: oc_clip(i, t, s * CLIP_SCALE),
        "xmodal_siglip": lambda i, t, s, b: siglip_loss(
            i, t, s * SIGLIP_SCALE, b + SIGLIP_BIAS, chunk_size=chunk
        ),
        "open_clip_siglip": lambda i, t, s, b: oc_siglip(i, t, s * SIGLIP_SCALE, b + SIGLIP_BIAS),
    }


def forward_backward(loss_fn: Loss, inputs: Inputs) -> tuple[float, list[torch.Tensor]]:
    """One forward + backward; the loss and the four gradients (image, text, scale, bias)."""
    for x in inputs:
        x.grad = None
    loss = loss_fn(*inputs)
    loss.backward()
    grads = [x.grad if x.grad is not None else torch.zeros_like(x) for x in inputs]
    return loss.item(), grads


def rss_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_child(method: str, n: int, chunk: int) -> None:
    """Run in a fresh process: print the RSS rise (MiB) of one forward + backward over the inputs.

    The peak is the kernel's high-water mark of this process's memory, the number ``ru_maxrss``
    reports, read as ``VmHWM``: after a fork + exec ``ru_maxrss`` also remembers the parent's peak
    and cannot be reset, while ``VmHWM`` is reset to the current RSS by ``/proc/self/clear_refs``
    (Linux ≥ 4.0), which drops the import-time peak of torch and xmodal.
    """
    torch.set_num_threads(2)
    fn = losses(chunk)[method]
    inputs = make_inputs(n)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    base = rss_kib("VmRSS")
    if rss_kib("VmHWM") > base + 1024:
        raise RuntimeError("could not reset the peak RSS; the measurement would hide small peaks")
    forward_backward(fn, inputs)
    print(json.dumps({"peak_mib": (rss_kib("VmHWM") - base) / 1024}))


def peak_memory(method: str, n: int, chunk: int) -> float:
    """Peak RSS rise (MiB) of ``method`` measured in a fresh subprocess."""
    cmd = [sys.executable, __file__, "--child", method, "--sizes", str(n), "--chunk-size", str(chunk)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory run of {method} at N={n} failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def compare(ours: tuple[float, list[torch.Tensor]], theirs: tuple[float, list[torch.Tensor]]) -> dict:
    """Loss relative difference and max absolute gradient difference (image, text, scale, bias)."""
    (loss_a, grads_a), (loss_b, grads_b) = ours, theirs
    names = ("image", "text", "scale", "bias")
    return {
        "loss_ours": loss_a,
        "loss_open_clip": loss_b,
        "loss_rel_diff": abs(loss_a - loss_b) / abs(loss_b),
        "grad_max_abs_diff": {
            k: (a - b).abs().max().item() for k, a, b in zip(names, grads_a, grads_b, strict=True)
        },
    }


def matmul_pass_seconds(inputs: Inputs, chunk: int) -> float:
    """Time of one pass of (chunk, chunk) logit blocks, matmuls only: the unit of the lower bound.

    An exact loss whose memory stays O(N·chunk) needs at least 4 such passes for CLIP (the logits
    twice, then the two gradient products) and 3 for SigLIP; open_clip's autograd does 6 and 4.
    """
    img, txt = inputs[0].detach(), inputs[1].detach()
    out = img.new_empty(chunk, chunk)
    t0 = time.perf_counter()
    for r0 in range(0, img.shape[0], chunk):
        for c0 in range(0, img.shape[0], chunk):
            a, b = img[r0 : r0 + chunk], txt[c0 : c0 + chunk]
            torch.mm(a, b.T, out=out[: a.shape[0], : b.shape[0]])
    return time.perf_counter() - t0


def bench_size(n: int, chunk: int, repeats: int) -> dict:
    """Interleaved timings, per-process peak memory and agreement at batch size ``n``."""
    fns = losses(chunk)
    inputs = make_inputs(n)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    last: dict[str, tuple[float, list[torch.Tensor]]] = {}
    for rep in range(repeats):
        for method in METHODS:
            t0 = time.perf_counter()
            loss, grads = forward_backward(fns[method], inputs)
            times[method].append(time.perf_counter() - t0)
            if rep == repeats - 1:
                last[method] = (loss, [g.clone() for g in grads])
            print(f"  N={n} {method:17s} run {rep + 1}: {times[method][-1]:7.2f} s", flush=True)
    matmul = min(matmul_pass_seconds(inputs, chunk) for _ in range(repeats))  # the uncontended cost
    memory = {m: peak_memory(m, n, chunk) for m in METHODS}
    result: dict = {"N": n, "D": D, "chunk_size": chunk, "repeats": repeats, "matmul_pass_s": matmul}
    result["gflops_per_s"] = 2 * n * n * D / matmul / 1e9
    result["methods"] = {}
    for m in METHODS:
        result["methods"][m] = {
            "median_s": statistics.median(times[m]),
            "times_s": times[m],
            "peak_mib": memory[m],
        }
    for loss in ("clip", "siglip"):
        ours, theirs = result["methods"][f"xmodal_{loss}"], result["methods"][f"open_clip_{loss}"]
        passes = 4 if loss == "clip" else 3
        result[loss] = {
            "speedup": theirs["median_s"] / ours["median_s"],
            "speedup_ceiling": theirs["median_s"] / (passes * matmul),
            "matmul_passes": passes,
            "memory_ratio": ours["peak_mib"] / theirs["peak_mib"],
            **compare(last[f"xmodal_{loss}"], last[f"open_clip_{loss}"]),
        }
    return result


def table(results: list[dict]) -> str:
    """A plain-text summary: one line per (N, loss)."""
    lines = [
        f"{'N':>6} {'loss':7} {'ours s':>8} {'open_clip s':>11} {'speedup':>8} {'ours MiB':>9} "
        f"{'open_clip MiB':>13} {'mem ratio':>9} {'loss rel':>9} {'grad abs':>9} {'ceiling':>8}"
    ]
    for r in results:
        for loss in ("clip", "siglip"):
            ours, theirs, c = r["methods"][f"xmodal_{loss}"], r["methods"][f"open_clip_{loss}"], r[loss]
            grad = max(c["grad_max_abs_diff"].values())
            lines.append(
                f"{r['N']:>6} {loss:7} {ours['median_s']:8.2f} {theirs['median_s']:11.2f} "
                f"{c['speedup']:7.2f}x "
                f"{ours['peak_mib']:9.0f} {theirs['peak_mib']:13.0f} {c['memory_ratio']:9.3f} "
                f"{c['loss_rel_diff']:9.1e} {grad:9.1e} {c['speedup_ceiling']:7.2f}x"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.child:
        peak_memory_child(args.child, args.sizes[0], args.chunk_size)
        return
    # sizes that run in about a second get three times the runs: their medians are noisier
    results = [bench_size(n, args.chunk_size, args.repeats * (3 if n <= 4096 else 1)) for n in args.sizes]
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "open_clip_torch": importlib.metadata.version("open_clip_torch"),
        "cpus": os.cpu_count(),
        "peak_memory": "VmHWM - VmRSS after the inputs, one forward + backward, fresh process each",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}")
    if not all(math.isfinite(r[k]["loss_rel_diff"]) for r in results for k in ("clip", "siglip")):
        sys.exit("non-finite loss difference")


if __name__ == "__main__":
    main()
