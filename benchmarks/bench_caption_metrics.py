"""Caption metrics at COCO scale: xmodal's Java-free pipeline against pycocoevalcap's, side by side.

For each corpus (``--images`` images x 5 references + 1 prediction each, seeded) it measures the median of
``--repeats`` interleaved runs of
  * xmodal: :func:`xmodal.metrics.caption_scores` (PTB tokenisation in Python, BLEU-1..4, ROUGE-L, CIDEr-D),
    with its chunk cache emptied before every run;
  * pycocoevalcap: ``PTBTokenizer`` (java, stanford-corenlp-3.4.1.jar) on references and predictions,
    then ``Bleu(4)``, ``Rouge()``, ``Cider()``,
checks that the scores agree (corpus and per image), and writes ``benchmarks/results/caption_metrics.json``
and a table. Two corpora: ``coco-like`` (captions as COCO annotators write them: mostly plain words, some
commas, numbers, contractions, hyphens) and ``tricky`` (every caption has punctuation, quotes, parentheses,
numbers, non-ASCII letters or emoji). Needs java and ``pip install --no-deps pycocoevalcap``.

    python benchmarks/bench_caption_metrics.py                     # 5,000 images, both corpora
    python benchmarks/bench_caption_metrics.py --images 1000 --repeats 5 --corpus tricky
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from xmodal.metrics import caption_scores, ptb_tokenizer
from xmodal.metrics.captions import METRICS

RESULTS = Path(__file__).parent / "results" / "caption_metrics.json"

PEOPLE = ["man", "woman", "boy", "girl", "person", "child", "skier", "surfer", "chef", "player", "couple"]
ANIMALS = ["dog", "cat", "horse", "cow", "sheep", "bird", "elephant", "giraffe", "zebra", "bear"]
THINGS = ["bike", "surfboard", "pizza", "bench", "frisbee", "kite", "laptop", "umbrella", "train", "bus",
          "plate of food", "skateboard", "clock tower", "fire hydrant", "traffic light",
          "sandwich"]  # fmt: skip
PLACES = ["on a beach", "in a park", "on the street", "in a kitchen", "next to a building", "in the snow",
          "on a field", "at the airport", "by the water", "in a living room",
          "on a city sidewalk"]  # fmt: skip
VERBS = ["riding", "holding", "sitting on", "standing next to", "looking at", "eating", "carrying", "flying",
         "walking past", "playing with"]  # fmt: skip
ADJ = ["", "", "", "large ", "small ", "red ", "white ", "old ", "brown ", "black and white ", "wooden "]
NUMBERS = ["two", "three", "several", "a group of", "2", "3", "a couple of"]


def coco_like(rng: random.Random) -> str:
    """A caption the way COCO annotators write them."""
    subject = rng.choice(
        [
            f"a {rng.choice(ADJ)}{rng.choice(PEOPLE + ANIMALS)}",
            f"{rng.choice(NUMBERS)} {rng.choice(ANIMALS + PEOPLE)}s",
        ]
    )
    text = f"{subject} {rng.choice(VERBS)} a {rng.choice(ADJ)}{rng.choice(THINGS)} {rng.choice(PLACES)}"
    r = rng.random()
    if r < 0.08:
        text += f", while another {rng.choice(PEOPLE)} watches"
    elif r < 0.12:
        text = text.replace(" a ", " a well-kept ", 1)
    elif r < 0.15:
        text += f". it's a {rng.choice(['sunny', 'cloudy', 'busy'])} day"
    text = text[0].upper() + text[1:] if rng.random() < 0.8 else text
    return text + rng.choice([".", ".", ".", "", " ."])


TRICKY = [
    '"vintage"', "(of cake)", "3.5 inch", "1,000", "don't", "it's", "can't", "well-known", "t-shirt", "café",
    "über-cool", "naïve", "🍕", "👍🏽", "U.S.", "Mr. Smith's", "10:30 a.m.", "--", "...", "!", "?",
    "«quoted»", "5 7/8", "$20", "50%", "&amp;", "jalapeño", "'90s", "cannot", "gonna",
]  # fmt: skip


def tricky(rng: random.Random) -> str:
    """A caption with punctuation, quotes, numbers, non-ASCII letters or emoji in it."""
    words = coco_like(rng).rstrip(" .").split(" ")
    for _ in range(rng.randint(1, 3)):
        words.insert(rng.randint(0, len(words)), rng.choice(TRICKY))
    return " ".join(words) + rng.choice([".", "!", "", "?"])


def make_corpus(kind: str, n_images: int, seed: int = 0) -> tuple[dict[int, list[str]], dict[int, str]]:
    rng = random.Random(seed)
    make = coco_like if kind == "coco-like" else tricky
    refs = {i: [make(rng) for _ in range(5)] for i in range(n_images)}
    preds = {i: make(rng) for i in range(n_images)}
    return refs, preds


def run_xmodal(refs: dict, preds: dict) -> dict[str, Any]:
    for cache in (ptb_tokenizer._CHUNKS, ptb_tokenizer._AFTER_SPACE, ptb_tokenizer._AFTER_NEWLINE):
        cache.clear()  # time a cold cache, as a first evaluation would see it
    return caption_scores(refs, preds, per_image=True, meteor=False)


def run_pycocoevalcap(refs: dict, preds: dict) -> dict[str, Any]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in refs.items()})
    res = tokenizer.tokenize({i: [{"caption": preds[i]}] for i in refs})
    out: dict[str, Any] = {"per_image": {}}
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    cider, cider_per = Cider().compute_score(gts, res)
    per = {**{f"Bleu_{k + 1}": bleu_per[k] for k in range(4)}, "ROUGE_L": rouge_per, "CIDEr": cider_per}
    out.update({f"Bleu_{k + 1}": bleu[k] for k in range(4)}, ROUGE_L=float(rouge), CIDEr=float(cider))
    out["per_image"] = {i: {m: float(per[m][j]) for m in METRICS} for j, i in enumerate(refs)}
    return out


def bench(kind: str, n_images: int, repeats: int) -> dict[str, Any]:
    refs, preds = make_corpus(kind, n_images)
    times: dict[str, list[float]] = {"xmodal": [], "pycocoevalcap": []}
    results: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):  # interleaved, so that load from other processes hits both sides
        for name, fn in (("xmodal", run_xmodal), ("pycocoevalcap", run_pycocoevalcap)):
            t0 = time.perf_counter()
            results[name] = fn(refs, preds)
            times[name].append(time.perf_counter() - t0)
    ours, theirs = results["xmodal"], results["pycocoevalcap"]
    corpus_diff = {m: abs(ours[m] - theirs[m]) for m in METRICS}
    per_image_diff = {
        m: max(abs(ours["per_image"][i][m] - theirs["per_image"][i][m]) for i in refs) for m in METRICS
    }
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "corpus": kind,
        "images": n_images,
        "references_per_image": 5,
        "seconds": {k: {"median": median[k], "runs": v} for k, v in times.items()},
        "speedup": median["pycocoevalcap"] / median["xmodal"],
        "scores": {m: {"xmodal": ours[m], "pycocoevalcap": theirs[m]} for m in METRICS},
        "max_abs_diff": {"corpus": max(corpus_diff.values()), "per_image": max(per_image_diff.values())},
        "equal_to_1e-6": max(*corpus_diff.values(), *per_image_diff.values()) <= 1e-6,
    }


def java_version() -> str:
    out = subprocess.run(["java", "-version"], capture_output=True, text=True)
    return (out.stderr or out.stdout).splitlines()[0] if out.returncode == 0 else "unknown"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'corpus':<10} {'images':>6} {'xmodal s':>9} {'pycocoevalcap s':>16} {'speedup':>8} "
        f"{'max |diff|':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["seconds"]
        diff = max(r["max_abs_diff"].values())
        lines.append(
            f"{r['corpus']:<10} {r['images']:>6} {s['xmodal']['median']:>9.3f} "
            f"{s['pycocoevalcap']['median']:>16.3f} {r['speedup']:>7.1f}x {diff:>11.1e}"
        )
    lines.append("")
    for r in rows:
        scores = ", ".join(f"{m} {v['xmodal']:.4f}" for m, v in r["scores"].items())
        lines.append(f"{r['corpus']}: {scores}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5000, help="images (5 references + 1 prediction each)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs; the median is reported")
    parser.add_argument("--corpus", choices=("coco-like", "tricky", "both"), default="both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("java") is None:
        sys.exit("java is not on PATH: pycocoevalcap's tokenizer needs it")
    try:
        version = importlib.metadata.version("pycocoevalcap")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("pycocoevalcap is not installed: pip install --no-deps pycocoevalcap")
    kinds = ["coco-like", "tricky"] if args.corpus == "both" else [args.corpus]
    rows = [bench(kind, args.images, args.repeats) for kind in kinds]
    report = {
        "benchmark": "caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D, with PTB tokenisation)",
        "pycocoevalcap": version,
        "java": java_version(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
