"""The "flamingo" recipe: a Perceiver resampler + gated cross-attention into a frozen LM, few-shot captions.

Alayrac et al. 2022 (https://arxiv.org/abs/2204.14198); see :mod:`xmodal.models.flamingo`.

* Stage 0: without ``model.lm`` (a local ``AutoModelForCausalLM`` folder) the small GPT-2 of
  :mod:`xmodal.lm.pretrain` is pretrained on the training text (cached; the LLaVA recipe shares it). No
  pretrained decoder-only LM can be had here, so this is stated as stage 0 in the metrics.
* Image tokens: the frozen pretrained EfficientNet-Lite0's 4×4 map at 128 px (T = 16, C = 1280; or
  multi-scale, ``model.image_stages``), cached.
* Training: the resampler and the gated blocks (and the LM too with ``model.xattn.train_lm``, which the
  shipped recipe sets: its small stage-0 LM frozen stays far below the baseline), on interleaved
  train-split sequences ``(<image> caption <|endofchunk|>) × m`` of every reference caption (optionally of
  RICES-neighbour images, ``data.similar_share``); the weights with the best val CIDEr-D are kept.
* Evaluation: held-out emoji captions after k = 0, 2, 4 in-context examples (random and RICES), BLEU-4 /
  CIDEr-D via :func:`xmodal.metrics.caption_scores`, beside the nearest-neighbour-caption baseline.
* Few-shot VQA (``vqa.enabled``, :mod:`xmodal.train.flamingo_vqa`): the training questions'
  ``Question: .. Short answer: ..`` chunks join the training sequences, and the test questions are answered
  after k demonstrations from the training questions, beside the question-only baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xmodal.config import OptimConfig, TrainConfig, to_dict
from xmodal.errors import ConfigError
from xmodal.lm.pretrain import Stage0Config
from xmodal.train.questions import QuestionsSection


@dataclass
class ResamplerSection:
    """Perceiver resampler sizes (``max_num_media`` None: position-free, any number of shots)."""

    dim: int = 256
    depth: int = 2
    n_latents: int = 8
    heads: int = 4
    dim_head: int = 32
    ff_mult: int = 2
    max_num_media: int | None = None


@dataclass
class XattnSection:
    """Gated cross-attention blocks: before every ``every``-th LM layer."""

    every: int = 1
    heads: int = 4
    dim_head: int = 32
    ff_mult: int = 2
    only_attend_immediate_media: bool = True
    gate_scale: float = 1.0  # tanh(gate_scale * alpha): a gate-only learning-rate multiplier under Adam
    train_new_tokens: bool = True  # <image> / <|endofchunk|> embedding rows train (open_flamingo)
    train_lm: bool = False  # also train the LM (not Flamingo: its LM is frozen)


@dataclass
class FlamingoModelSection:
    """The LM (a local folder, or the stage-0 LM), the image encoder and the fusion modules."""

    lm: str | None = None
    stage0: Stage0Config = field(default_factory=Stage0Config)
    image_encoder: str = "efficientnet_lite0"
    image_size: int = 128
    image_stages: list[int] | None = None  # multi-scale tokens, e.g. [4, 5, 7]; None: the last map only
    resampler: ResamplerSection = field(default_factory=ResamplerSection)
    xattn: XattnSection = field(default_factory=XattnSection)
    label_smoothing: float = 0.0  # of the caption loss
    lm_dropout: float | None = None  # the LM's dropout while training (None: as pretrained)


@dataclass
class FlamingoDataSection:
    """Training sequences: ``images_per_sequence`` random train emoji each; batches of sequences."""

    images_per_sequence: int = 3
    batch_size: int = 16
    max_len: int = 128
    # share of sequences made of an anchor image and its nearest training images (RICES neighbours,
    # among `similar_pool`), the rest random: related images reward using in-context captions (it did not
    # help the emoji recipe: see the README)
    similar_share: float = 0.0
    similar_pool: int = 8
    references: str = "all"  # training captions: every reference, or "first" (the name only)
    caption_repeats: int = 1  # every training caption this many times among the chunks (its share grows)
    # text before every caption, in training and in the prompts (open_flamingo's "Output:"): beside
    # question chunks (vqa.enabled) it tells the model which of the two to produce
    caption_prefix: str = ""
    max_train_images: int | None = None  # caps for smoke runs


@dataclass
class FlamingoEvalSection:
    """Few-shot captioning of the held-out emoji."""

    shots: list[int] = field(default_factory=lambda: [0, 2, 4])
    methods: list[str] = field(default_factory=lambda: ["random", "rices"])
    batch_size: int = 64
    max_new_tokens: int = 12
    max_images: int | None = None
    seed: int = 0
    # held-out val emoji captioned (greedy, after val_shots demonstrations) every train.eval_every steps:
    # the best CIDEr-D weights are kept (train.select_best); 0: no validation, the last weights
    val_images: int = 150
    val_shots: int = 0  # the validation prompt: this many demonstrations ...
    val_method: str = "rices"  # ... chosen this way (from the training split)
    # the test decoding (every k) chosen on the same val emoji and prompt after training, among
    # beam_sizes x alphas (GNMT length penalty; beam 1 = greedy)
    beam_sizes: list[int] = field(default_factory=lambda: [1])
    alphas: list[float] = field(default_factory=lambda: [0.0])


@dataclass
class FlamingoRecipe:
    """configs/flamingo_emoji.yaml."""

    task: str = "flamingo"
    model: FlamingoModelSection = field(default_factory=FlamingoModelSection)
    data: FlamingoDataSection = field(default_factory=FlamingoDataSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(eval_every=0, ckpt_every=200))
    eval: FlamingoEvalSection = field(default_factory=FlamingoEvalSection)
    # few-shot VQA (open_flamingo's "Question: .. Short answer: .." chunks): enabled, the training questions'
    # chunks join the caption chunks the sequences are drawn from (one model captions and answers), and the
    # test questions are answered after k = eval.shots demonstrations (eval.methods) from the training ones
    vqa: QuestionsSection = field(default_factory=QuestionsSection)


def _note(msg: str) -> None:
    print(f"xmodal: {msg}", file=sys.stderr, flush=True)


def load_flamingo_recipe(args: argparse.Namespace) -> FlamingoRecipe:
    """The recipe of ``args.config`` with ``args.set`` overrides, checked."""
    from xmodal.train.recipe import load_recipe

    cfg = load_recipe(FlamingoRecipe, args.config, getattr(args, "set", None) or [])
    for m in [*cfg.eval.methods, cfg.eval.val_method]:
        if m not in ("random", "rices"):
            raise ConfigError(f"eval.methods: unknown demonstration method {m!r} (random or rices)")
    if any(k < 0 for k in [*cfg.eval.shots, cfg.eval.val_shots]):
        raise ConfigError("eval.shots must be >= 0")
    from xmodal.data.vl import check_references

    check_references(cfg.data.references, "data.references")
    if cfg.data.images_per_sequence < 1:
        raise ConfigError("data.images_per_sequence must be >= 1")
    if cfg.data.caption_repeats < 1:
        raise ConfigError(f"data.caption_repeats must be >= 1, got {cfg.data.caption_repeats}")
    if cfg.vqa.enabled and cfg.data.similar_share > 0:
        raise ConfigError(
            "data.similar_share > 0 (sequences of related emoji) cannot be combined with vqa.enabled"
        )
    cfg.vqa.check()
    return cfg


def vqa_splits(cfg: FlamingoRecipe) -> Any:
    """The recipe's training and test questions with their images' tokens (cached, like the captions')."""
    m = cfg.model
    return cfg.vqa.splits(encoder_name=m.image_encoder, image_size=m.image_size, stages=m.image_stages)


def build(cfg: FlamingoRecipe, lm_dir: Path, vision_dim: int) -> tuple[Any, Any, Any]:
    """(Flamingo model, tokenizer, special ids) on the LM in ``lm_dir``, seeded."""
    from xmodal.fusion.resampler import PerceiverResampler
    from xmodal.lm import add_multimodal_tokens, load_causal_lm
    from xmodal.lm.loading import set_training_regularisation
    from xmodal.models.flamingo import Flamingo
    from xmodal.train.flamingo import FlamingoTokens

    lm, tok = load_causal_lm(lm_dir)
    ids = add_multimodal_tokens(tok, lm)
    torch.manual_seed(cfg.train.seed)
    r, x = cfg.model.resampler, cfg.model.xattn
    resampler = PerceiverResampler(
        dim=r.dim,
        depth=r.depth,
        n_latents=r.n_latents,
        dim_head=r.dim_head,
        heads=r.heads,
        ff_mult=r.ff_mult,
        in_dim=vision_dim,
        max_num_media=r.max_num_media,
    )
    tokens = FlamingoTokens.of(tok, ids)
    model = Flamingo(
        lm=lm,
        resampler=resampler,
        media_token_id=tokens.image,
        cross_attn_every=x.every,
        xattn_heads=x.heads,
        xattn_dim_head=x.dim_head,
        ff_mult=x.ff_mult,
        only_attend_immediate_media=x.only_attend_immediate_media,
        gate_scale=x.gate_scale,
        train_token_ids=(tokens.image, tokens.chunk) if x.train_new_tokens else (),
        train_lm=x.train_lm,
    )
    set_training_regularisation(model, cfg.model.label_smoothing, cfg.model.lm_dropout)
    return model, tok, tokens


def evaluate(
    model: Any,
    tok: Any,
    tokens: Any,
    cfg: FlamingoRecipe,
    max_len: int,
    files: Path | None = None,
    vqa: Any = None,
) -> dict[str, Any]:
    """Few-shot captioning scores for every (k, method), the nearest-neighbour baseline, examples; with
    ``files``, the test captions of every setting (``k0``, ``k2_random``, ...) as COCO files there. With
    ``vqa.enabled``, also few-shot VQA (``"vqa"``; on ``vqa``'s questions when given, else built)."""
    from xmodal.tasks.caption import decoding_record, nearest_neighbour_captions, score, write_test_captions
    from xmodal.train.flamingo import example_prompt, few_shot_captions

    train_items, train_table = _split("train", cfg, cfg.data.max_train_images)
    test_items, test_table = _split("test", cfg, cfg.eval.max_images)
    seqs = demo_captions(tok, tokens, cfg, train_items, max_len)
    e = cfg.eval
    beam_size, alpha, tried = choose_decoding(model, tok, tokens, cfg, train_items, train_table, max_len)
    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    written: dict[str, list[str]] = {}
    for k in e.shots:
        for method in e.methods if k > 0 else e.methods[:1]:
            name = f"k={k}" if k == 0 else f"k={k}/{method}"
            t0 = time.perf_counter()
            preds, demos, fit = few_shot_captions(
                model,
                tok,
                seqs,
                train_items=train_items,
                train_table=train_table,
                test_items=test_items,
                test_table=test_table,
                k=k,
                method=method,  # type: ignore[arg-type]
                seed=e.seed,
                batch_size=e.batch_size,
                max_new_tokens=e.max_new_tokens,
                beam_size=beam_size,
                alpha=alpha,
                prefix_ids=prefix_ids(tok, cfg),
            )
            results[name] = {**score(test_items, preds), **fit, "seconds": time.perf_counter() - t0}
            written[name.replace("=", "").replace("/", "_")] = preds
            examples[name] = {
                "image_id": test_items[0].image_id,
                "prompt": example_prompt(train_items, demos[0], cfg.data.caption_prefix.strip()),
                "prediction": preds[0],
                "references": list(test_items[0].captions),
            }
            _note(f"{name}: BLEU-4 {results[name]['Bleu_4']:.4f} CIDEr-D {results[name]['CIDEr']:.4f}")
    nn_preds = nearest_neighbour_captions(*_baseline_tables(cfg, train_items, test_items))
    baseline = score(test_items, nn_preds)
    vqa_results: dict[str, Any] = {}
    if cfg.vqa.enabled:
        from xmodal.train.flamingo_vqa import evaluate_vqa

        vqa_results["vqa"] = evaluate_vqa(
            model,
            tok,
            tokens,
            vqa if vqa is not None else vqa_splits(cfg),
            shots=e.shots,
            methods=e.methods,
            max_len=max_len,
            seed=e.seed,
            batch_size=e.batch_size,
            max_new_tokens=cfg.vqa.max_new_tokens,
            files=files,
        )
        for name, r in vqa_results["vqa"]["few_shot"].items():
            _note(f"VQA {name}: {r['overall']:.2f}")
    return {
        **vqa_results,
        **write_test_captions(files, test_items, {**written, "nearest_neighbour": nn_preds}),
        "test_images": len(test_items),
        "decoding": decoding_record(
            beam_size, alpha, tried, f"val CIDEr-D at k={e.val_shots} ({e.val_method})"
        ),
        "few_shot": results,
        "nearest_neighbour": baseline,
        "beats_nearest_neighbour": {
            name: {m: r[m] > baseline[m] for m in ("Bleu_4", "CIDEr")} for name, r in results.items()
        },
        "examples": examples,
        "truncation": seqs.truncation.as_dict(),
    }


def demo_captions(tok: Any, tokens: Any, cfg: FlamingoRecipe, items: list[Any], max_len: int) -> Any:
    """The demonstrations: each item's first reference (after ``data.caption_prefix``), tokenised."""
    from xmodal.train.flamingo import CaptionSequences, caption_chunk

    p = cfg.data.caption_prefix.strip()
    ids = [tok(caption_chunk(p, it.captions[0]), add_special_tokens=False)["input_ids"] for it in items]
    return CaptionSequences(ids, tokens, max_len)


def prefix_ids(tok: Any, cfg: FlamingoRecipe) -> list[int]:
    """The ids of ``data.caption_prefix`` (none without one), after each caption query's ``<image>``."""
    p = cfg.data.caption_prefix.strip()
    return tok(p, add_special_tokens=False)["input_ids"] if p else []


def val_captioner(
    cfg: FlamingoRecipe,
    tok: Any,
    tokens: Any,
    train_items: list[Any],
    train_table: torch.Tensor,
    max_len: int,
) -> tuple[list[Any], Callable[[Any, int, float], list[str]]]:
    """The ``eval.val_images`` val emoji and ``decode(model, beam_size, alpha)`` → their captions after
    ``eval.val_shots`` demonstrations (``eval.val_method``) from the training split."""
    from xmodal.train.flamingo import few_shot_captions

    val_items, val_table = _split("val", cfg, cfg.eval.val_images)
    seqs = demo_captions(tok, tokens, cfg, train_items, max_len)

    def decode(model: Any, beam_size: int, alpha: float) -> list[str]:
        preds, _, _ = few_shot_captions(
            model,
            tok,
            seqs,
            train_items=train_items,
            train_table=train_table,
            test_items=val_items,
            test_table=val_table,
            k=cfg.eval.val_shots,
            method=cfg.eval.val_method,  # type: ignore[arg-type]
            seed=cfg.eval.seed,
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.eval.max_new_tokens,
            beam_size=beam_size,
            alpha=alpha,
            prefix_ids=prefix_ids(tok, cfg),
        )
        return preds

    return val_items, decode


def choose_decoding(
    model: Any,
    tok: Any,
    tokens: Any,
    cfg: FlamingoRecipe,
    train_items: list[Any],
    train_table: torch.Tensor,
    max_len: int,
) -> tuple[int, float, list[dict[str, Any]]]:
    """(beam size, alpha) with the best val CIDEr-D (never test), and the search; with a single setting
    to try (or no val emoji), that one without a search."""
    from xmodal.tasks.caption import decoding_grid, pick_decoding

    e = cfg.eval
    grid = decoding_grid(e.beam_sizes, e.alphas)
    if len(grid) == 1 or e.val_images <= 0:
        return grid[0][0], grid[0][1], []
    val_items, decode = val_captioner(cfg, tok, tokens, train_items, train_table, max_len)
    return pick_decoding(lambda b, a: decode(model, b, a), val_items, e.beam_sizes, e.alphas)


def validator(
    cfg: FlamingoRecipe,
    tok: Any,
    tokens: Any,
    train_items: list[Any],
    train_table: torch.Tensor,
    max_len: int,
) -> Callable[[Any], dict[str, Any]] | None:
    """The trainer's ``evaluate``: greedy captions of ``eval.val_images`` val emoji after ``eval.val_shots``
    demonstrations (``eval.val_method``) → CIDEr-D."""
    from xmodal.tasks.caption import score, val_record

    if cfg.eval.val_images <= 0:
        return None
    val_items, decode = val_captioner(cfg, tok, tokens, train_items, train_table, max_len)

    def evaluate(model: Any) -> dict[str, Any]:
        return val_record(score(val_items, decode(model, 1, 0.0)))

    return evaluate


def _split(
    split: str, cfg: FlamingoRecipe, limit: int | None, *, stages: bool = True
) -> tuple[list[Any], torch.Tensor]:
    """Caption items of an emoji split (first ``limit``) and their cached image tokens (N, T, C).

    ``stages`` False: the encoder's plain last-map tokens whatever ``model.image_stages`` says (the
    nearest-neighbour baseline's features, the same in every caption recipe).
    """
    from xmodal.data.vl import emoji_caption_items
    from xmodal.train.image_tokens import image_token_table

    items = emoji_caption_items(split)  # type: ignore[arg-type]
    items = items[:limit] if limit is not None else items
    table = image_token_table(
        lambda i: items[i].load(),
        len(items),
        encoder_name=cfg.model.image_encoder,
        image_size=cfg.model.image_size,
        stages=cfg.model.image_stages if stages else None,
    )
    return items, table


def _baseline_tables(cfg: Any, train_items: list[Any], test_items: list[Any]) -> tuple[Any, list[Any], Any]:
    """(train tokens, train items, test tokens) of the plain last-map features for the NN baseline."""
    from xmodal.train.image_tokens import image_token_table

    def table(items: list[Any]) -> torch.Tensor:
        return image_token_table(
            lambda i: items[i].load(),
            len(items),
            encoder_name=cfg.model.image_encoder,
            image_size=cfg.model.image_size,
        )

    return table(train_items), train_items, table(test_items)


def lm_folder(lm: str | None, stage0: Stage0Config) -> tuple[Path, dict[str, Any]]:
    """The LM folder: ``lm`` when given, else the (cached) stage-0 LM; with its stage-0 report."""
    from xmodal.lm.pretrain import stage0_lm

    if lm:
        return Path(lm), {"stage": 0, "skipped": f"given LM folder {lm}"}
    folder, report = stage0_lm(stage0, log=_note)
    _note(f"stage 0 LM: {folder} ({'cached' if report['cached'] else 'trained'})")
    return folder, report


def _context(cfg: FlamingoRecipe, model: Any) -> int:
    from xmodal.lm.loading import context_length

    return min(cfg.data.max_len, context_length(model.lm) or cfg.data.max_len)


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train configs/flamingo_emoji.yaml``: stage 0, training, few-shot eval, metrics.json."""
    from xmodal.data.vl import training_references
    from xmodal.eval.few_shot import select_demonstrations
    from xmodal.train.checkpoint import write_json_atomic
    from xmodal.train.flamingo import CaptionSequences, SequenceSampler, caption_chunk, flamingo_loss
    from xmodal.train.generic import GenericTrainer
    from xmodal.train.recipe import progress_wanted, train_out

    cfg = load_flamingo_recipe(args)
    out = train_out(args)
    t0, c0 = time.perf_counter(), time.process_time()
    lm_dir, stage0 = lm_folder(cfg.model.lm, cfg.model.stage0)
    train_items, table = _split("train", cfg, cfg.data.max_train_images)
    model, tok, tokens = build(cfg, lm_dir, table.shape[-1])
    pairs = [(i, c) for i, it in enumerate(train_items) for c in training_references(it, cfg.data.references)]
    pairs *= cfg.data.caption_repeats
    chunks = [
        tok(caption_chunk(cfg.data.caption_prefix.strip(), c), add_special_tokens=False)["input_ids"]
        for _, c in pairs
    ]
    image_of, media = [i for i, _ in pairs], table
    vqa = vqa_splits(cfg) if cfg.vqa.enabled else None
    if vqa is not None:  # the training questions' chunks join the captions'; their images follow in `media`
        from xmodal.train.flamingo_vqa import demonstrations

        demos = demonstrations(vqa, tok, tokens, _context(cfg, model))
        chunks += demos.captions
        image_of += [len(train_items) + r for r in vqa.train_rows]
        media = torch.cat([table, vqa.train_table])
    seqs = CaptionSequences(chunks, tokens, _context(cfg, model), image_of=image_of)
    m, d = cfg.data.images_per_sequence, cfg.data
    if len(pairs) < m:
        raise ConfigError(f"{len(train_items)} training images cannot fill one sequence of {m}")
    neighbours = None
    if d.similar_share > 0:
        ids = [it.image_id for it in train_items]
        feats = table.mean(dim=1)
        pool = min(d.similar_pool, len(train_items) - 1)
        near = select_demonstrations(
            ids, ids, pool, method="rices", query_features=feats, pool_features=feats
        )
        neighbours = torch.tensor(near, dtype=torch.long)
    sampler = SequenceSampler(
        seqs.image_of or [],
        neighbours,
        m=m,
        batch_size=d.batch_size,
        similar_share=d.similar_share,
        seed=cfg.train.seed,
    )

    def batch_fn(step: int) -> dict[str, torch.Tensor]:
        return seqs.training_batch(sampler.rows(step), media)

    config = {**to_dict(cfg), "lm_dir": str(lm_dir)}
    trainer = GenericTrainer(
        model,
        batch_fn=batch_fn,
        loss_fn=flamingo_loss,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        config=config,
        progress=progress_wanted(args),
        evaluate=validator(cfg, tok, tokens, train_items, table, _context(cfg, model)),
    )
    fit = trainer.fit(resume=bool(args.resume))
    t1, c1 = time.perf_counter(), time.process_time()
    metrics: dict[str, Any] = {"task": "flamingo", "stage0": stage0}
    metrics["flamingo"] = evaluate(
        model, tok, tokens, cfg, _context(cfg, model), files=out / "predictions", vqa=vqa
    )
    metrics["train"] = {
        "steps": fit.steps,
        "seconds": fit.seconds,
        "cpu_seconds": fit.cpu_seconds,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
        "truncation": seqs.truncation.as_dict(),
    }
    metrics["timing"] = {
        "eval_seconds": time.perf_counter() - t1,
        "eval_cpu_seconds": time.process_time() - c1,
        "total_seconds": time.perf_counter() - t0,
        "total_cpu_seconds": time.process_time() - c0,
    }
    write_json_atomic(out / "metrics.json", metrics)
    print(summary_table(metrics["flamingo"]))
    print(f"model: {out / 'model'}\nmetrics: {out / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval configs/flamingo_emoji.yaml --checkpoint DIR``: few-shot captions of a saved model."""
    from xmodal.tasks.caption import predictions_dir
    from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, write_json_atomic
    from xmodal.train.recipe import checkpoint_folder

    cfg = load_flamingo_recipe(args)
    folder, state = checkpoint_folder(args.checkpoint)
    saved = state.get("config", {})
    trained_prefix = saved.get("data", {}).get("caption_prefix", "")
    if trained_prefix != cfg.data.caption_prefix:  # the prompts must be the ones the model was trained on
        raise ConfigError(
            f"{folder} was trained with data.caption_prefix={trained_prefix!r}, not "
            f"{cfg.data.caption_prefix!r}: evaluate with --set 'data.caption_prefix=\"{trained_prefix}\"'"
        )
    lm_dir = Path(saved["lm_dir"]) if "lm_dir" in saved else lm_folder(cfg.model.lm, cfg.model.stage0)[0]
    _, table = _split("test", cfg, 1)
    model, tok, tokens = build(cfg, lm_dir, table.shape[-1])
    load_model_weights(model, folder / MODEL_FILE)
    out = Path(args.out) if args.out else folder / "eval.json"
    metrics: dict[str, Any] = {
        "task": "flamingo",
        "flamingo": evaluate(model, tok, tokens, cfg, _context(cfg, model), files=predictions_dir(out)),
    }
    write_json_atomic(out, metrics)
    print(summary_table(metrics["flamingo"]))
    print(f"metrics: {out}")
    return 0


def summary_table(results: dict[str, Any]) -> str:
    """BLEU-4 and CIDEr-D per few-shot setting and for the nearest-neighbour baseline."""
    from xmodal.cli import format_table

    rows = [[name, r["Bleu_4"], r["CIDEr"]] for name, r in results["few_shot"].items()]
    nn_ = results["nearest_neighbour"]
    rows.append(["nearest-neighbour caption", nn_["Bleu_4"], nn_["CIDEr"]])
    table = format_table(["setting", "BLEU-4", "CIDEr-D"], rows)
    if "vqa" not in results:
        return table
    v = results["vqa"]
    vrows = [[name, r["overall"]] for name, r in v["few_shot"].items()]
    vrows.append(["question-only", v["question_only"]["overall"]])
    return f"{table}\n{format_table(['setting', 'VQA accuracy'], vrows)}"
