"""One training step with a global batch of 32,768 image–caption pairs on this CPU machine.

From-scratch tiny towers (ViT on 28×28 images, byte-level text Transformer), real emoji images
downscaled to Fashion-MNIST size with their captions (each emoji repeated under different random
augmentations to fill the batch), GradCache micro-batches of 1,024 and the exact chunked InfoNCE, so
neither the activations of 32,768 samples nor the 32,768² logits are ever held at once.

    python benchmarks/gradcache_32k.py [--batch 32768] [--micro 1024] [--chunk 4096]

Prints and writes ``benchmarks/results/gradcache_32k.json``: peak RSS (resource.getrusage, this
fresh process), the step's wall time, the loss, and a check that the parameters moved.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import time
from pathlib import Path

import torch

from xmodal.config import load_config
from xmodal.data.emoji import EmojiDataset
from xmodal.data.transforms import TrainAugment
from xmodal.losses import clip_loss
from xmodal.models.factory import build_model
from xmodal.train.gradcache import gradcache_backward

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "clip_vit_tiny.yaml"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32768)
    ap.add_argument("--micro", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=4096)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(
        RECIPE,
        [
            "model.image_size=28",
            "model.image_encoder.args.image_size=28",
            "model.image_encoder.args.patch_size=7",
        ],
    )
    model = build_model(cfg.model).train()
    ds = EmojiDataset(split="train", variants=False)
    aug = TrainAugment(size=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    base = [ds.load(i) for i in range(len(ds.items))]
    t0 = time.perf_counter()
    micro_batches = []
    for start in range(0, args.batch, args.micro):
        idx = [i % len(base) for i in range(start, min(args.batch, start + args.micro))]
        images = torch.stack(
            [aug(base[i][0], torch.Generator().manual_seed(start + k)) for k, i in enumerate(idx)]
        )
        micro_batches.append({"image": images, "text": [base[i][1] for i in idx]})
    prep_s = time.perf_counter() - t0
    rss_before = peak_rss_gib()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    t1 = time.perf_counter()
    loss = gradcache_backward(model, micro_batches, functools.partial(clip_loss, chunk_size=args.chunk))
    opt.step()
    step_s = time.perf_counter() - t1
    moved = sum(int(not torch.equal(before[n], p.detach())) for n, p in model.named_parameters())
    out = {
        "global_batch": args.batch,
        "micro_batch": args.micro,
        "loss_chunk": args.chunk,
        "loss": round(loss.item(), 4),
        "log_batch": round(float(torch.log(torch.tensor(float(args.batch)))), 4),
        "step_seconds": round(step_s, 1),
        "data_seconds": round(prep_s, 1),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "rss_before_step_gib": round(rss_before, 2),
        "parameters_updated": f"{moved}/{len(before)}",
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out, indent=2))
    path = Path(__file__).parent / "results" / "gradcache_32k.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
