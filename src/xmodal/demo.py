"""The end-to-end demo: prepare data, train the default recipe for three seeds, evaluate, ablate, report.

``xmodal demo`` (and ``make demo``) writes into ``runs/demo``:

- ``metrics.json``: seed 0's model on held-out emoji (retrieval) and Fashion-MNIST (zero-shot),
  its training time, every seed's figures with their mean/min, and the ablations;
- ``report.md`` with ``loss.png``, ``retrieval_grid.png`` (held-out text queries and their top-5
  emoji) and ``confusion.png`` (Fashion-MNIST);
- ``seed{0,1,2}/`` runs (metrics log, checkpoint, model) and ``ablations/``.

Locked towers are embedded once (feature cache), so each extra seed or ablation costs seconds.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.config import ExperimentConfig, load_config
from xmodal.data.prepare import prepare
from xmodal.eval.retrieval import RetrievalEmbeddings, text_to_image_examples
from xmodal.eval.runner import evaluate_model, parse_target
from xmodal.models.clip import CLIP
from xmodal.registry import DATASETS
from xmodal.report import write_report
from xmodal.train.loop import Trainer, pair_data

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "clip_emoji.yaml"


@dataclass(frozen=True)
class Ablation:
    """One change to the default recipe, and what it tests."""

    name: str
    overrides: tuple[str, ...]
    question: str


# Each ablation removes one ingredient of the default recipe (or is the reference baseline).
ABLATIONS = (
    Ablation(
        "baseline: head features, linear heads",
        (
            "model.image_encoder.args.pooled_stages=null",
            "model.image_head.kind=linear",
            "model.image_head.input_norm=false",
            "model.image_head.dropout=0.0",
            "model.text_head.kind=linear",
            "model.embed_dim=256",
        ),
        "the reference recipe of ASSETS.md: locked towers, pooled 1280-d features, two linear heads",
    ),
    Ablation(
        "- multi-scale features (head only)",
        ("model.image_encoder.args.pooled_stages=null",),
        "do mid-level CNN stages help on drawings?",
    ),
    Ablation(
        "- locked text space (MLP text head)",
        ("model.text_head.kind=mlp", "model.text_head.dropout=0.3", "model.embed_dim=256"),
        "does keeping MiniLM's sentence space generalise better to unseen captions?",
    ),
    Ablation(
        "- augmentation (clean views only)",
        ("data.augment.enabled=false",),
        "do cached augmented views reduce overfitting?",
    ),
    Ablation(
        "- skin-tone variants",
        ("data.variants=false",),
        "do the variant images of a training emoji help?",
    ),
)


@dataclass
class DemoOptions:
    """What the demo runs (tests shrink it)."""

    recipe: Path = DEFAULT_RECIPE
    seeds: tuple[int, ...] = (0, 1, 2)
    ablations: tuple[Ablation, ...] = ABLATIONS
    ablation_seeds: tuple[int, ...] = (0, 1, 2)
    overrides: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ("emoji", "fashion-mnist")
    extra: dict[str, Any] = field(default_factory=dict)


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The figures the floors are stated in: held-out R@1 both ways and zero-shot top-1."""
    out: dict[str, float] = {}
    for key, val in metrics.items():
        if "image_to_text" in val:
            out[f"{key}/i2t_R@1"] = val["image_to_text"]["R@1"]
            out[f"{key}/t2i_R@1"] = val["text_to_image"]["R@1"]
            out[f"{key}/i2t_R@5"] = val["image_to_text"]["R@5"]
        elif "top1" in val:
            out[f"{key}/top1"] = val["top1"]
    return out


def train_and_eval(cfg: ExperimentConfig, run_dir: Path, *, progress: bool) -> tuple[CLIP, dict[str, Any]]:
    """Train one config into ``run_dir`` and evaluate it; returns (model, metrics incl. ``train``)."""
    trainer = Trainer(cfg, run_dir, progress=progress)
    result = trainer.fit()
    metrics = evaluate_model(trainer.model, cfg, progress=progress)
    metrics["train"] = {
        "seconds": round(result.seconds, 2),
        "steps": result.steps,
        "best_step": result.best_step,
    }
    metrics["data"] = {"skipped": result.skipped, "truncated_captions": result.truncated_captions}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return trainer.model, metrics


def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and minimum of each headline figure over seeds."""
    out = {}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        out[k] = {
            "mean": round(statistics.fmean(vals), 4),
            "std": round(statistics.pstdev(vals), 4),
            "min": round(min(vals), 4),
        }
    return out


def retrieval_examples(model: CLIP, cfg: ExperimentConfig, *, num_queries: int = 8) -> list[Any]:
    """Held-out text queries with their top-5 emoji, for the report's grid."""
    name, split = parse_target(cfg.eval.retrieval[0])
    ds = DATASETS.get(name)(split=split, variants=False)
    data = pair_data(cfg, model, ds, train=False, progress=False)
    model.eval()
    emb = RetrievalEmbeddings(
        image_emb=data.image_embeddings(),
        text_emb=data.text_embeddings(),
        image_ids=list(data.item_group),
        text_ids=list(range(len(data.captions))),
        texts=list(data.captions),
        image_paths=[Path(it.image_path) for it in ds.items],
    )
    return text_to_image_examples(emb, num_queries=num_queries, k=5, seed=0)


def run_demo(out_dir: Path, *, progress: bool = False, options: DemoOptions | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir``; returns the content of ``metrics.json``."""
    opts = options or DemoOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name in opts.datasets:
        prepare(name)
    seed_metrics, seed_heads = {}, []
    model0: CLIP | None = None
    for seed in opts.seeds:
        cfg = load_config(opts.recipe, [*opts.overrides, f"train.seed={seed}"])
        model, metrics = train_and_eval(cfg, out_dir / f"seed{seed}", progress=progress)
        seed_metrics[seed] = metrics
        seed_heads.append(headline(metrics))
        if model0 is None:
            model0, cfg0 = model, cfg
    assert model0 is not None
    ablations = []
    for ab in opts.ablations:
        runs = []
        for seed in opts.ablation_seeds:
            cfg = load_config(opts.recipe, [*opts.overrides, *ab.overrides, f"train.seed={seed}"])
            slug = "".join(c if c.isalnum() else "_" for c in ab.name).strip("_")
            _, metrics = train_and_eval(cfg, out_dir / "ablations" / f"{slug}_seed{seed}", progress=progress)
            runs.append(headline(metrics))
        ablations.append(
            {
                "name": ab.name,
                "question": ab.question,
                "overrides": list(ab.overrides),
                **{k: v["mean"] for k, v in summarise(runs).items()},
            }
        )
    first = seed_metrics[opts.seeds[0]]
    result: dict[str, Any] = {k: v for k, v in first.items() if k not in ("data",)}
    result["seeds"] = {str(s): headline(m) for s, m in seed_metrics.items()}
    result["seed_summary"] = summarise(seed_heads)
    default_row = {
        "name": "default recipe",
        "question": "",
        "overrides": [],
        **{k: v["mean"] for k, v in result["seed_summary"].items()},
    }
    result["ablations"] = [default_row, *ablations]
    result["data"] = first["data"]
    result["demo_seconds"] = round(time.perf_counter() - t0, 1)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    zs_key = next((k for k in first if k.endswith("zero_shot")), None)
    zs_ds = DATASETS.get(parse_target(cfg0.eval.zero_shot[0])[0])(split="test") if zs_key else None
    report = write_report(
        out_dir,
        {k: v for k, v in result.items() if k not in ("seeds", "ablations", "seed_summary")},
        loss_log=out_dir / f"seed{opts.seeds[0]}" / "metrics.jsonl",
        retrieval_examples=retrieval_examples(model0, cfg0),
        confusion=first[zs_key]["confusion"] if zs_key else None,
        classnames=list(zs_ds.classnames) if zs_ds is not None else None,
        ablations=[
            {k: v for k, v in a.items() if k not in ("overrides", "question")} for a in result["ablations"]
        ],
        title="xmodal demo: aligning emoji and their names",
    )
    with open(report, "a") as f:
        f.write(findings_markdown(result))
    return result


def findings_markdown(result: dict[str, Any]) -> str:
    """The report's closing section: seeds, and what each ablation changed against the default."""
    lines = ["", "## Seeds", "", "| figure | mean | std | min |", "|---|---|---|---|"]
    for k, v in result["seed_summary"].items():
        lines.append(f"| {k} | {v['mean']:.3f} | {v['std']:.3f} | {v['min']:.3f} |")
    rows = result["ablations"]
    if len(rows) > 1:
        base = rows[0]
        lines += [
            "",
            "## What made the difference",
            "",
            "Each ablation changes one thing in the default recipe (mean over its seeds); "
            "the change in each headline figure against the default:",
            "",
        ]
        keys = [k for k in base if "/" in k]
        lines.append("| ablation | question | " + " | ".join(f"Δ {k}" for k in keys) + " |")
        lines.append("|---|---|" + "---|" * len(keys))
        for r in rows[1:]:
            deltas = " | ".join(f"{r.get(k, float('nan')) - base[k]:+.3f}" for k in keys)
            lines.append(f"| {r['name']} | {r['question']} | {deltas} |")
    lines.append("")
    lines.append(f"Demo wall time: {result['demo_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
