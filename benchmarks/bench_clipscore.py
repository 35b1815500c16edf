"""CLIPScore with a Hugging Face CLIP folder: xmodal against torchmetrics' ``CLIPScore``, side by side.

A randomly initialised CLIP (``--size tiny``: hidden 32, 2 layers, 32 px; ``small``: hidden 256, 4 layers,
64 px in 16-px patches) is saved to a temporary folder in transformers' format; both libraries load it from
there. For N (image, caption) pairs (random images of mixed sizes, seeded captions) it measures

  * agreement: per pair, torchmetrics' module (reset before each pair, so its clamp applies per pair)
    against xmodal's ``clip_score(..., w=2.5) / 2.5 · 100``: the largest absolute difference (0..100 scale);
    and xmodal's embeddings against ``CLIPModel.get_image_features`` / ``get_text_features``;
  * time: the process CPU time (on a shared machine wall time mostly measures the neighbours; threads'
    CPU times add up), median of ``--repeats`` interleaved runs scoring all N pairs in one call each:
    xmodal (PIL → its preprocessing → batched ``encode_image`` / ``encode_text`` → ``clip_score``) and
    torchmetrics (``CLIPScore.update`` on the list of uint8 tensors and captions, then ``compute``).

transformers 5 returns model outputs from ``get_*_features`` while torchmetrics 1.9 expects tensors, so
torchmetrics gets the model through its documented callable form with a thin adapter (``pooler_output``).
Writes ``benchmarks/results/clipscore.json`` and prints a table.

    python benchmarks/bench_clipscore.py                         # small model, 128 pairs, 5 repeats
    python benchmarks/bench_clipscore.py --size tiny --pairs 64 --repeats 3
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

import numpy as np
import torch
from PIL import Image
from torch import nn

import xmodal
from xmodal.eval.embed import embed_images, embed_texts
from xmodal.metrics.clipscore import W_CLIPSCORE, clip_score
from xmodal.models.hf_tiny import CAPTIONS, save_tiny_hf_model

RESULTS = Path(__file__).parent / "results" / "clipscore.json"


class TensorFeatures(nn.Module):
    """Adapter: transformers 5's ``get_*_features`` outputs → the tensors torchmetrics 1.9 expects."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.get_image_features(*args, **kwargs).pooler_output  # type: ignore[operator]

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.get_text_features(*args, **kwargs).pooler_output  # type: ignore[operator]


def save_small_clip(folder: Path, seed: int) -> Path:
    """A random CLIP with hidden 256, 4 layers, 64-px images in 16-px patches (and the tiny tokenizer)."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    save_tiny_hf_model(folder, "clip", seed=seed)  # tokenizer + layout
    cfg = json.loads((folder / "config.json").read_text())
    layers = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}
    from transformers import CLIPConfig

    text = {**cfg["text_config"], **layers}
    vision = {**cfg["vision_config"], **layers, "image_size": 64, "patch_size": 16}
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=128)).save_pretrained(
        str(folder)
    )
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(
        str(folder)
    )
    return folder


def make_pairs(n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    rng = np.random.default_rng(seed)
    arrays = [
        rng.integers(0, 256, (int(rng.integers(48, 160)), int(rng.integers(48, 160)), 3), dtype=np.uint8)
        for _ in range(n)
    ]
    words = " ".join(CAPTIONS).split()
    captions = [" ".join(rng.choice(words, size=int(rng.integers(3, 10)))) for _ in range(n)]
    return arrays, captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--parity-pairs", type=int, default=32, help="pairs scored one by one for agreement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clip"
        if args.size == "tiny":
            save_tiny_hf_model(folder, "clip", seed=args.seed)
        else:
            save_small_clip(folder, args.seed)
        hf = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(str(folder), local_files_only=True)
        metric = CLIPScore(model_name_or_path=lambda: (TensorFeatures(hf), processor))  # type: ignore[arg-type, return-value]
        model, preprocess = xmodal.create_model(f"hf-clip:{folder}")
        arrays, captions = make_pairs(args.pairs, args.seed)
        pil = [Image.fromarray(a) for a in arrays]
        tensors = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]

        def ours() -> torch.Tensor:
            img = embed_images(model, pil, preprocess, batch_size=64, progress=False)
            return clip_score(img, embed_texts(model, captions, progress=False))[0]

        def theirs() -> float:
            metric.reset()
            with torch.no_grad():
                metric.update(tensors, captions)
                return float(metric.compute())

        # agreement
        per = ours()
        k = min(args.parity_pairs, args.pairs)
        tm = []
        for t, c in zip(tensors[:k], captions[:k], strict=True):
            metric.reset()
            with torch.no_grad():
                tm.append(float(metric(t, c)))
        diff = float(np.max(np.abs(per[:k].numpy() / W_CLIPSCORE * 100 - np.asarray(tm))))
        with torch.no_grad():
            px = processor(images=pil[:k], return_tensors="pt")["pixel_values"]
            ref_img = nn.functional.normalize(hf.get_image_features(pixel_values=px).pooler_output, dim=-1)
            tok = processor.tokenizer(captions[:k], padding=True, return_tensors="pt")
            ref_txt = nn.functional.normalize(hf.get_text_features(**tok).pooler_output, dim=-1)
            img_diff = float(
                (model.encode_image(torch.stack([preprocess(p) for p in pil[:k]])) - ref_img).abs().max()
            )
            txt_diff = float((model.encode_text(captions[:k]) - ref_txt).abs().max())
        # time, interleaved
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):
            t0 = time.process_time()
            ours()
            t_ours.append(time.process_time() - t0)
            t0 = time.process_time()
            theirs()
            t_theirs.append(time.process_time() - t0)
    result = {
        "size": args.size,
        "pairs": args.pairs,
        "parity_pairs": k,
        "clamped_pairs": int(sum(x == 0 for x in tm)),
        "max_abs_diff_vs_torchmetrics_0_100": diff,
        "max_abs_diff_image_embedding": img_diff,
        "max_abs_diff_text_embedding": txt_diff,
        "xmodal_cpu_s": statistics.median(t_ours),
        "torchmetrics_cpu_s": statistics.median(t_theirs),
        "torchmetrics_over_xmodal": statistics.median(t_theirs) / statistics.median(t_ours),
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": {p: importlib.metadata.version(p) for p in ("torch", "transformers", "torchmetrics")},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    old[args.size] = result
    RESULTS.write_text(json.dumps(old, indent=2) + "\n")
    print(
        f"{'size':<6} {'pairs':>5} {'xmodal CPU s':>12} {'torchmetrics CPU s':>18} {'ratio':>6} "
        f"{'max |d| 0..100':>15}"
    )
    print(
        f"{args.size:<6} {args.pairs:>5} {result['xmodal_cpu_s']:>12.3f} "
        f"{result['torchmetrics_cpu_s']:>18.3f} "
        f"{result['torchmetrics_over_xmodal']:>6.2f} {diff:>15.2e}"
    )
    print(
        f"embeddings vs transformers: image {img_diff:.2e}, text {txt_diff:.2e}; {k} parity pairs, "
        f"{result['clamped_pairs']} clamped at 0"
    )


if __name__ == "__main__":
    main()
