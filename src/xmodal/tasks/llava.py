"""The "llava" recipe: stage 0 (LM pretraining, cached) → stage 1 (projector on captions) → stage 2
(projector + LM on instructions) → captioning and VQA evaluation. See :mod:`xmodal.models.llava`.

* Stage 0: without ``model.lm`` (a local ``AutoModelForCausalLM`` folder), a small GPT-2 is pretrained on
  the training text (:mod:`xmodal.lm.pretrain`) and cached; it is reported as stage 0.
* Image tokens: the frozen pretrained EfficientNet-Lite0's 4×4 map at 128 px (T = 16, C = 1280), cached.
* Stage 1: only the projector trains, on emoji train captions ("<image>\\n{caption_prompt}" → name).
* Stage 2: projector + LM (or LoRA adapters + projector) on the templated train questions of
  :func:`xmodal.data.vl.build_vqa` plus the caption requests (repeated ``data.stage2_caption_repeats``
  times so that captioning is not drowned by the far more numerous short answers); answer tokens only.
* Evaluation: held-out emoji captions (BLEU-4, CIDEr-D via :func:`xmodal.metrics.caption_scores`; greedy
  or beam search, whichever scores best CIDEr-D on val emoji) and the test questions
  (:func:`xmodal.metrics.vqa_accuracy`, greedy), beside the nearest-neighbour-caption and question-only
  baselines of the caption and VQA tasks (and optionally the stage-1-only model).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xmodal.config import load_recipe, to_dict
from xmodal.errors import XmodalError
from xmodal.fusion.projector import ProjectorConfig, llava_1_5_projector
from xmodal.lm.pretrain import Stage0Config
from xmodal.models.llava_io import LlavaSpec, LoraSettings
from xmodal.train.recipe import StageSection


@dataclass
class LlavaModelSection:
    """The LM (a local folder, or the stage-0 LM), the image encoder, projector and LoRA."""

    lm: str | None = None  # a local AutoModelForCausalLM folder; None: pretrain (or reuse) the stage-0 LM
    stage0: Stage0Config = field(default_factory=Stage0Config)
    image_encoder: str = "efficientnet_lite0"
    image_size: int = 128  # 128 px → 4×4 = 16 image tokens; 224 px → 7×7 = 49
    image_stages: list[int] | None = None  # multi-scale tokens, e.g. [4, 5, 7]; None: the last map only
    projector: ProjectorConfig = field(default_factory=llava_1_5_projector)
    lora: LoraSettings = field(default_factory=LoraSettings)
    label_smoothing: float = 0.0  # of the training loss (answer tokens)
    lm_dropout: float | None = None  # the LM's dropout while training (None: as pretrained)


@dataclass
class LlavaDataSection:
    """Where the captions and instructions come from, and the bad-input limits."""

    fmnist_images: int = 500  # Fashion-MNIST images per VQA split (five questions each)
    emoji_vqa: bool = True
    seed: int = 0
    caption_prompt: str = "what emoji is this?"
    references: str = "all"  # caption targets: every reference, or "first" (the name only)
    # retrieval-augmented caption requests (SmallCap-style): the first references of this many most
    # similar training images lead the prompt ("similar: a; b. what emoji is this?"); training images
    # never retrieve themselves. 0: the plain prompt
    retrieved_captions: int = 0
    stage2_captions: bool = True  # mix the caption requests into stage 2
    stage2_caption_repeats: int = 1  # ... this many times each (their share of stage 2 grows)
    max_train_captions: int | None = None  # caps for smoke runs (None: every training item)
    max_train_questions: int | None = None
    max_masked_share: float = 0.01  # stop when more samples than this lose every answer token


@dataclass
class LlavaEvalSection:
    """Generation settings and optional caps on the number of test items (smoke runs)."""

    batch_size: int = 64
    max_new_tokens: int = 12
    # caption decoding: every (beams, length penalty) pair is scored on `val_captions` held-out val emoji
    # and the best CIDEr-D one captions the test emoji (VQA answers stay greedy)
    caption_beams: list[int] = field(default_factory=lambda: [1])
    length_penalties: list[float] = field(default_factory=lambda: [1.0])
    val_captions: int = 0  # 0: no search, the first pair is used
    max_captions: int | None = None
    max_questions: int | None = None
    stage1_baseline: bool = True  # also score the model after stage 1 only


@dataclass
class LlavaRecipe:
    """configs/llava_emoji.yaml."""

    task: str = "llava"
    model: LlavaModelSection = field(default_factory=LlavaModelSection)
    data: LlavaDataSection = field(default_factory=LlavaDataSection)
    stage1: StageSection = field(default_factory=StageSection)
    stage2: StageSection = field(default_factory=StageSection)
    eval: LlavaEvalSection = field(default_factory=LlavaEvalSection)


def _note(msg: str) -> None:
    print(f"xmodal: {msg}", file=sys.stderr, flush=True)


class Clock:
    """Wall and CPU seconds per phase (the machine may be shared: CPU time is the fairer figure)."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def lap(self, name: str, t: float, c: float) -> None:
        self.phases[name] = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c}

    def total(self) -> dict[str, Any]:
        return {
            **self.phases,
            "total": {
                "seconds": time.perf_counter() - self._t0,
                "cpu_seconds": time.process_time() - self._c0,
            },
        }


def load_llava_recipe(args: argparse.Namespace) -> LlavaRecipe:
    """The recipe of ``args.config`` with ``args.set`` overrides applied."""
    cfg = load_recipe(LlavaRecipe, args.config, getattr(args, "set", None) or [])
    if cfg.model.lora.enabled and cfg.model.lora.rank < 1:
        raise XmodalError(f"model.lora.rank must be >= 1, got {cfg.model.lora.rank}")
    from xmodal.data.vl import check_references

    check_references(cfg.data.references, "data.references")
    for key in ("max_train_captions", "max_train_questions"):
        cap = getattr(cfg.data, key)
        if cap is not None and cap < 1:  # captions train stage 1; questions, the question-only baseline
            raise XmodalError(f"data.{key} must be >= 1 or null, got {cap}")
    return cfg


def spec_of(cfg: LlavaRecipe, vision_dim: int) -> LlavaSpec:
    """The LlavaSpec (what rebuilds the model) of a recipe."""
    return LlavaSpec(vision_dim=vision_dim, projector=cfg.model.projector, lora=cfg.model.lora)


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train configs/llava_emoji.yaml``: stages 0-2, evaluation, ``OUT/metrics.json``."""
    from xmodal.lm.loading import load_causal_lm, set_training_regularisation
    from xmodal.lm.pretrain import stage0_lm
    from xmodal.models.llava_io import build_llava, save_llava
    from xmodal.train.checkpoint import write_json_atomic
    from xmodal.train.llava import LlavaData, evaluate, train_stage, val_caption_scorer

    cfg = load_llava_recipe(args)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    started = any((out / s / "checkpoints" / "last").exists() for s in ("stage1", "stage2"))
    if started and not args.resume and not args.overwrite:
        raise XmodalError(
            f"{out} already holds a training checkpoint; pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )
    resume = bool(args.resume)
    clock = Clock()
    t, c = time.perf_counter(), time.process_time()
    if cfg.model.lm:
        lm_dir, stage0 = Path(cfg.model.lm), {"stage": 0, "skipped": f"given LM folder {cfg.model.lm}"}
    else:
        s0 = dataclasses.replace(cfg.model.stage0, fmnist_images=max(cfg.model.stage0.fmnist_images, 0))
        lm_dir, stage0 = stage0_lm(s0, log=_note)
        _note(f"stage 0 LM: {lm_dir} ({'cached' if stage0['cached'] else 'trained'})")
    clock.lap("stage0", t, c)
    torch.manual_seed(cfg.stage1.train.seed)
    lm, tok = load_causal_lm(lm_dir)
    t, c = time.perf_counter(), time.process_time()
    data = LlavaData.build(cfg, tok, log=_note)
    clock.lap("image_tokens_and_text", t, c)
    model = build_llava(lm, tok, spec_of(cfg, data.table.shape[-1]))
    set_training_regularisation(model, cfg.model.label_smoothing, cfg.model.lm_dropout)
    data.encode(tok, model.image_token_id, model.max_length or 10**9)

    progress = not args.no_progress and sys.stderr.isatty()
    t, c = time.perf_counter(), time.process_time()
    model.set_stage(1)
    r1 = train_stage(
        model, data, data.stage1, cfg.stage1, tok.pad_token_id, out / "stage1", to_dict(cfg), resume, progress
    )
    clock.lap("stage1", t, c)
    metrics: dict[str, Any] = {"stage0": stage0}
    if cfg.eval.stage1_baseline:
        t, c = time.perf_counter(), time.process_time()
        metrics["stage1_only"] = evaluate(model, tok, data, cfg.eval)
        clock.lap("eval_stage1", t, c)
    t, c = time.perf_counter(), time.process_time()
    model.set_stage(2)
    r2 = train_stage(
        model,
        data,
        data.stage2,
        cfg.stage2,
        tok.pad_token_id,
        out / "stage2",
        to_dict(cfg),
        resume,
        progress,
        evaluate=val_caption_scorer(tok, data, cfg.eval),  # used when stage2.train.eval_every > 0
    )
    clock.lap("stage2", t, c)
    save_llava(out / "model", model, tok, spec_of(cfg, data.table.shape[-1]), {"config": to_dict(cfg)})
    t, c = time.perf_counter(), time.process_time()
    metrics["llava"] = evaluate(model, tok, data, cfg.eval, files=out / "predictions")
    clock.lap("eval", t, c)
    metrics["train"] = {
        "stage1": {"steps": r1.steps, "seconds": r1.seconds, "cpu_seconds": r1.cpu_seconds},
        "stage2": {"steps": r2.steps, "seconds": r2.seconds, "cpu_seconds": r2.cpu_seconds},
        "truncation": data.truncation.as_dict(),
        "all_masked": data.masked.as_dict(),
        "samples": {"stage1": len(data.stage1), "stage2": len(data.stage2)},
    }
    metrics["baselines"] = data.baselines()
    metrics["timing"] = clock.total()
    write_json_atomic(out / "metrics.json", metrics)
    print(summary_table(metrics))
    print(f"model: {out / 'model'}\nmetrics: {out / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval configs/llava_emoji.yaml --checkpoint DIR``: captions + VQA of a saved LLaVA model."""
    from xmodal.models.llava_io import load_llava
    from xmodal.tasks.caption import predictions_dir
    from xmodal.train.checkpoint import write_json_atomic
    from xmodal.train.llava import LlavaData, evaluate

    cfg = load_llava_recipe(args)
    model, tok, _ = load_llava(args.checkpoint)
    clock = Clock()
    t, c = time.perf_counter(), time.process_time()
    data = LlavaData.build(cfg, tok, log=_note)
    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt / "eval.json"
    files = predictions_dir(out)
    metrics: dict[str, Any] = {
        "llava": evaluate(model, tok, data, cfg.eval, files=files),
        "baselines": data.baselines(),
    }
    clock.lap("eval", t, c)
    metrics["timing"] = clock.total()
    write_json_atomic(out, metrics)
    print(summary_table(metrics))
    print(f"metrics: {out}")
    return 0


def summary_table(metrics: dict[str, Any]) -> str:
    """Captioning and VQA rows for every evaluated model and baseline."""
    from xmodal.cli import format_table

    rows = []
    for name in ("llava", "stage1_only"):
        if name in metrics:
            m = metrics[name]
            rows.append([name, m["captions"]["Bleu_4"], m["captions"]["CIDEr"], m["vqa"]["overall"]])
    for name, m in metrics.get("baselines", {}).items():
        cap, vqa = m.get("captions", {}), m.get("vqa", {})
        rows.append([name, cap.get("Bleu_4", "-"), cap.get("CIDEr", "-"), vqa.get("overall", "-")])
    return format_table(["model", "BLEU-4", "CIDEr-D", "VQA acc (%)"], rows)
