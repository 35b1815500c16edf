"""The "blip2" recipe: Q-Former stage 1 (ITC + ITM + ITG) then stage 2 into an LM; emoji captions.

Li et al. 2023 (https://arxiv.org/abs/2301.12597); see :mod:`xmodal.models.blip2`.

* LM: a local ``AutoModelForCausalLM`` folder (``model.lm``), or the stage-0 GPT-2 of
  :mod:`xmodal.lm.pretrain` (cached, shared with the LLaVA and Flamingo recipes). The Q-Former's text side
  uses the same BPE tokenizer plus two tokens of its own, ``[CLS]`` and ``[DEC]``.
* Image features: the frozen pretrained EfficientNet-Lite0's 4×4 map at 128 px (T = 16, C = 1280), cached.
* Stage 1: the Q-Former on emoji training captions (every reference, or the names only with
  ``references: first``, is a pair) with ITC + ITM (hard negatives) + ITG. Stage 2: the Q-Former + a
  linear projection into the LM's input embeddings (the LM frozen as in BLIP-2, or trained with
  ``model.train_lm``, as the shipped recipe does), captions as targets, the weights with the best val
  CIDEr-D kept. Evaluation: captions of the held-out emoji (greedy, or the beam search chosen on val),
  BLEU-4 / CIDEr-D via :func:`xmodal.metrics.caption_scores`, beside the nearest-neighbour baseline.
* Generative VQA (``vqa.enabled``, :mod:`xmodal.train.blip2_vqa`): the training questions join stage 2
  (``Question: .. Short answer:`` after the visual prefix, the loss on the answer), and the test questions
  are answered greedily, beside the question-only baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal.config import to_dict
from xmodal.lm.pretrain import Stage0Config
from xmodal.train.questions import QuestionsSection
from xmodal.train.recipe import StageSection


@dataclass
class QFormerSection:
    """Q-Former sizes (BLIP-2: 32 queries, BERT-base, cross-attention every 2nd layer)."""

    num_queries: int = 8
    dim: int = 256
    depth: int = 4
    num_heads: int = 4
    cross_attention_every: int = 2
    dropout: float = 0.1
    embed_dim: int = 128
    feature_dropout: float = 0.0  # on the normalised frozen image features, while training


@dataclass
class Blip2ModelSection:
    """The LM (a folder, or the stage-0 LM), the image encoder and the Q-Former."""

    lm: str | None = None
    stage0: Stage0Config = field(default_factory=Stage0Config)
    image_encoder: str = "efficientnet_lite0"
    image_size: int = 128
    image_stages: list[int] | None = None  # multi-scale tokens, e.g. [4, 5, 7]; None: the last map only
    qformer: QFormerSection = field(default_factory=QFormerSection)
    # stage 2 also trains the LM (BLIP-2 keeps its LLM frozen; see Blip2LM); lm_lr_scale × stage2 lr
    train_lm: bool = False
    lm_lr_scale: float = 1.0
    label_smoothing: float = 0.0  # of the stage-2 caption loss
    lm_dropout: float | None = None  # the LM's dropout while training (None: as pretrained)


@dataclass
class Blip2EvalSection:
    """Captioning of the held-out emoji: greedy, or the beam search chosen on val."""

    batch_size: int = 64
    max_new_tokens: int = 12
    max_images: int | None = None
    # held-out val emoji captioned (greedy) every stage2.train.eval_every steps: the best CIDEr-D weights
    # are kept (stage2.train.select_best); 0: no validation, the last weights. The same val emoji choose the
    # test decoding among beam_sizes x alphas (GNMT length penalty; beam 1 = greedy) after training.
    val_images: int = 150
    beam_sizes: list[int] = field(default_factory=lambda: [1])
    alphas: list[float] = field(default_factory=lambda: [0.0])


@dataclass
class Blip2Recipe:
    """configs/blip2_emoji.yaml."""

    task: str = "blip2"
    model: Blip2ModelSection = field(default_factory=Blip2ModelSection)
    max_len: int = 24  # caption tokens (Q-Former side: [CLS]/[DEC] included)
    references: str = "all"  # training targets: every reference, or "first" (the name only)
    max_train_images: int | None = None
    stage1: StageSection = field(default_factory=StageSection)
    stage2: StageSection = field(default_factory=StageSection)
    eval: Blip2EvalSection = field(default_factory=Blip2EvalSection)
    # generative VQA ("Question: .. Short answer:" after the visual prefix): enabled, the training
    # questions join the stage-2 captions (loss on the answers) and the test questions are answered
    vqa: QuestionsSection = field(default_factory=QuestionsSection)
    stage2_caption_repeats: int = 1  # every stage-2 caption this many times (its share beside questions)


def _note(msg: str) -> None:
    print(f"xmodal: {msg}", file=sys.stderr, flush=True)


def build(cfg: Blip2Recipe, lm_dir: Path, vision_dim: int) -> tuple[Any, Any, dict[str, int]]:
    """(Blip2LM with its stage-1 part, tokenizer, {"cls", "dec"} Q-Former ids), seeded."""
    from xmodal.fusion.qformer import QFormer
    from xmodal.lm import load_causal_lm
    from xmodal.lm.loading import set_training_regularisation
    from xmodal.models.blip2 import Blip2LM, Blip2Stage1

    lm, tok = load_causal_lm(lm_dir)
    ids = {"cls": len(tok), "dec": len(tok) + 1}  # two Q-Former-only tokens after the LM's vocabulary
    q = cfg.model.qformer
    torch.manual_seed(cfg.stage1.train.seed)
    qformer = QFormer(
        num_queries=q.num_queries,
        dim=q.dim,
        depth=q.depth,
        num_heads=q.num_heads,
        encoder_dim=vision_dim,
        vocab_size=len(tok) + 2,
        max_text_len=cfg.max_len,
        cross_attention_every=q.cross_attention_every,
        dropout=q.dropout,
    )
    stage1 = Blip2Stage1(
        qformer=qformer,
        embed_dim=q.embed_dim,
        dec_token_id=ids["dec"],
        pad_token_id=tok.pad_token_id,
        feature_dropout=q.feature_dropout,
    )
    model = Blip2LM(stage1=stage1, lm=lm, train_lm=cfg.model.train_lm)
    set_training_regularisation(model, cfg.model.label_smoothing, cfg.model.lm_dropout)
    return model, tok, ids


def caption_ids(tok: Any, captions: list[str], max_len: int) -> list[list[int]]:
    """Caption token ids (no specials), cut to ``max_len - 1`` (room for [CLS]/[DEC] or eos)."""
    return [tok(c, add_special_tokens=False)["input_ids"][: max_len - 1] for c in captions]


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    from xmodal.train.flamingo import pad

    return pad(seqs, pad_id, left=False)


def _split(
    split: str, cfg: Blip2Recipe, limit: int | None, *, stages: bool = True
) -> tuple[list[Any], Tensor]:
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


@torch.no_grad()
def captions(
    model: Any, tok: Any, table: Tensor, cfg: Blip2Recipe, *, beam_size: int = 1, alpha: float = 0.0
) -> list[str]:
    """Captions of the images whose features are ``table`` (N, T, C): greedy, or beam search."""
    model.eval()
    preds: list[str] = []
    start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    for i in range(0, len(table), cfg.eval.batch_size):
        feats = table[i : i + cfg.eval.batch_size]
        prompt = torch.full((len(feats), 1), start_id, dtype=torch.long)
        gen = model.generate(
            prompt,
            features=feats,
            max_new_tokens=cfg.eval.max_new_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            beam_size=beam_size,
            alpha=alpha,
        )
        preds += [
            tok.decode([t for t in row if t != tok.pad_token_id], skip_special_tokens=True).strip()
            for row in gen.tolist()
        ]
    return preds


def validator(tok: Any, cfg: Blip2Recipe) -> Any:
    """The stage-2 trainer's ``evaluate``: greedy captions of ``eval.val_images`` val emoji → CIDEr-D."""
    from xmodal.tasks.caption import score, val_record

    if cfg.eval.val_images <= 0:
        return None
    val_items, val_table = _split("val", cfg, cfg.eval.val_images)

    def evaluate(model: Any) -> dict[str, Any]:
        return val_record(score(val_items, captions(model, tok, val_table, cfg)))

    return evaluate


def choose_decoding(model: Any, tok: Any, cfg: Blip2Recipe) -> tuple[int, float, list[dict[str, Any]]]:
    """(beam size, alpha) with the best CIDEr-D on the ``eval.val_images`` val emoji (never test), and the
    search; with a single setting to try, that one without a search."""
    from xmodal.tasks.caption import decoding_grid, pick_decoding

    e = cfg.eval
    grid = decoding_grid(e.beam_sizes, e.alphas)
    if len(grid) == 1 or e.val_images <= 0:
        return grid[0][0], grid[0][1], []
    val_items, val_table = _split("val", cfg, e.val_images)
    return pick_decoding(
        lambda b, a: captions(model, tok, val_table, cfg, beam_size=b, alpha=a),
        val_items,
        e.beam_sizes,
        e.alphas,
    )


def evaluate(
    model: Any, tok: Any, cfg: Blip2Recipe, files: Path | None = None, vqa: Any = None
) -> dict[str, Any]:
    """Captions of the test emoji (the decoding chosen on val; greedy beside it) and the nearest-neighbour
    baseline; with ``files``, both as COCO files there. With ``vqa.enabled``, also the test questions'
    answers beside the question-only baseline (``"vqa"``; on ``vqa``'s questions when given)."""
    from xmodal.tasks.caption import decoding_record, nearest_neighbour_captions, score, write_test_captions
    from xmodal.tasks.flamingo import _baseline_tables

    train_items, _ = _split("train", cfg, cfg.max_train_images)
    test_items, test_table = _split("test", cfg, cfg.eval.max_images)
    beam_size, alpha, tried = choose_decoding(model, tok, cfg)
    preds = captions(model, tok, test_table, cfg, beam_size=beam_size, alpha=alpha)
    scores = score(test_items, preds)
    greedy = scores if beam_size == 1 else score(test_items, captions(model, tok, test_table, cfg))
    nn_preds = nearest_neighbour_captions(*_baseline_tables(cfg, train_items, test_items))
    baseline = score(test_items, nn_preds)
    answered: dict[str, Any] = {}
    if cfg.vqa.enabled:
        from xmodal.train.blip2_vqa import evaluate_vqa

        answered["vqa"] = evaluate_vqa(
            model,
            question_prompts(tok, model, cfg),
            vqa if vqa is not None else vqa_splits(cfg),
            batch_size=cfg.eval.batch_size,
            max_new_tokens=cfg.vqa.max_new_tokens,
            files=files,
        )
    return {
        **answered,
        **write_test_captions(files, test_items, {"blip2": preds, "nearest_neighbour": nn_preds}),
        "test_images": len(test_items),
        "decoding": decoding_record(beam_size, alpha, tried, "val CIDEr-D"),
        "model": scores,
        "model_greedy": greedy,
        "nearest_neighbour": baseline,
        "beats_nearest_neighbour": {m: scores[m] > baseline[m] for m in ("Bleu_4", "CIDEr")},
        "examples": [
            {"image_id": it.image_id, "prediction": p, "references": list(it.captions)}
            for it, p in list(zip(test_items, preds, strict=True))[:10]
        ],
    }


def load_blip2_recipe(args: argparse.Namespace) -> Blip2Recipe:
    """The recipe of ``args.config`` with ``args.set`` overrides, checked."""
    from xmodal.data.vl import check_references
    from xmodal.errors import ConfigError
    from xmodal.train.recipe import load_recipe

    cfg = load_recipe(Blip2Recipe, args.config, getattr(args, "set", None) or [])
    check_references(cfg.references, "references")
    if cfg.stage2_caption_repeats < 1:
        raise ConfigError(f"stage2_caption_repeats must be >= 1, got {cfg.stage2_caption_repeats}")
    cfg.vqa.check()
    return cfg


def vqa_splits(cfg: Blip2Recipe) -> Any:
    """The recipe's training and test questions with their images' tokens (cached, like the captions')."""
    m = cfg.model
    return cfg.vqa.splits(encoder_name=m.image_encoder, image_size=m.image_size, stages=m.image_stages)


def question_prompts(tok: Any, model: Any, cfg: Blip2Recipe) -> Any:
    """Question prompts and answers for this LM: the text after the visual prefix fits its context."""
    from xmodal.lm.loading import context_length
    from xmodal.train.blip2_vqa import QuestionPrompts

    room = (context_length(model.lm) or 10**9) - cfg.model.qformer.num_queries - cfg.vqa.max_new_tokens
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return QuestionPrompts(tok, start, tok.eos_token_id, max(room, 1))


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train configs/blip2_emoji.yaml``: stage 1, stage 2, evaluation → ``OUT/metrics.json``."""
    from xmodal.data.vl import training_references
    from xmodal.tasks.flamingo import lm_folder
    from xmodal.train.checkpoint import write_json_atomic
    from xmodal.train.generic import EpochSampler, GenericTrainer
    from xmodal.train.recipe import progress_wanted, train_out

    cfg = load_blip2_recipe(args)
    out = train_out(args)
    t0, c0 = time.perf_counter(), time.process_time()
    lm_dir, stage0 = lm_folder(cfg.model.lm, cfg.model.stage0)
    items, table = _split("train", cfg, cfg.max_train_images)
    model, tok, ids = build(cfg, lm_dir, table.shape[-1])
    pairs = [(i, c) for i, it in enumerate(items) for c in training_references(it, cfg.references)]
    caps = caption_ids(tok, [c for _, c in pairs], cfg.max_len)
    rows = torch.tensor([i for i, _ in pairs])
    eos = tok.eos_token_id
    start = tok.bos_token_id if tok.bos_token_id is not None else eos
    # stage 2: every caption (x stage2_caption_repeats), then the training questions (answers labelled)
    seq2: list[tuple[list[int], list[int]]] = []
    for j in range(len(pairs)):
        ids2 = [start, *caps[j], eos]
        seq2.append((ids2, [-100, *ids2[1:]]))
    seq2 *= cfg.stage2_caption_repeats
    rows2, media2 = rows.repeat(cfg.stage2_caption_repeats), table
    vqa = vqa_splits(cfg) if cfg.vqa.enabled else None
    prompts = question_prompts(tok, model, cfg)
    if vqa is not None:
        seq2 += [prompts.training(q.question, q.answer) for q in vqa.train]
        rows2 = torch.cat([rows2, len(table) + torch.tensor(vqa.train_rows, dtype=torch.long)])
        media2 = torch.cat([table, vqa.train_table])

    def stage1_batch(sampler: EpochSampler) -> Any:
        def fn(step: int) -> dict[str, Any]:
            idx = sampler.indices(step)
            text, mask = _pad([[ids["cls"], *caps[int(j)]] for j in idx], tok.pad_token_id)
            return {
                "text_ids": text,
                "text_mask": mask,
                "features": table[rows[idx]],
                "seed": step,
                "image_ids": rows[idx],  # an image's other captions are positives, never ITM negatives
            }

        return fn

    def stage2_batch(sampler: EpochSampler) -> Any:
        def fn(step: int) -> dict[str, Tensor]:
            idx = sampler.indices(step)
            seq, mask = _pad([seq2[int(j)][0] for j in idx], tok.pad_token_id)
            labels, _ = _pad([seq2[int(j)][1] for j in idx], -100)
            return {
                "input_ids": seq,
                "attention_mask": mask,
                "labels": labels,
                "features": media2[rows2[idx]],
            }

        return fn

    def loss1(m: nn.Module, b: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        o = m(b["text_ids"], b["text_mask"], features=b["features"], seed=b["seed"], image_ids=b["image_ids"])
        return o.loss, {"itc": o.itc.item(), "itm": o.itm.item(), "itg": o.itg.item()}

    def loss2(m: nn.Module, b: dict[str, Any]) -> Tensor:
        return m(
            b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], features=b["features"]
        ).loss  # type: ignore[no-any-return]

    config = {**to_dict(cfg), "lm_dir": str(lm_dir)}
    results = {}
    for name, module, stage, batch_of, loss in (
        ("stage1", model.stage1, cfg.stage1, stage1_batch, loss1),
        ("stage2", model, cfg.stage2, stage2_batch, loss2),
    ):
        model.set_stage(int(name[-1]))
        n = len(pairs) if name == "stage1" else len(seq2)
        sampler = EpochSampler(n, batch_size=stage.batch_size, seed=stage.train.seed)
        trainer = GenericTrainer(
            module,
            batch_fn=batch_of(sampler),
            loss_fn=loss,
            optim=stage.optim,
            train=stage.train,
            run_dir=out / name,
            config=config,
            progress=progress_wanted(args),
            evaluate=validator(tok, cfg) if name == "stage2" else None,
            lr_scale=(lambda n: cfg.model.lm_lr_scale if n.startswith("lm.") else 1.0)
            if name == "stage2"
            else None,
            ema_decay=stage.ema_decay,
        )
        fit = trainer.fit(resume=bool(args.resume))
        results[name] = {"steps": fit.steps, "seconds": fit.seconds, "cpu_seconds": fit.cpu_seconds}
        _note(f"{name} done in {fit.seconds:.0f} s")
    from xmodal.train.checkpoint import save_model_dir

    save_model_dir(out / "model", model, {"config": config})
    t1 = time.perf_counter()
    metrics: dict[str, Any] = {
        "task": "blip2",
        "stage0": stage0,
        "blip2": evaluate(model, tok, cfg, files=out / "predictions", vqa=vqa),
        "train": results,
    }
    if vqa is not None:  # the training questions' sequences: cut to the LM's context, counted
        results["questions"] = {**prompts.truncation.as_dict(), "unlabelled": prompts.unlabelled}
    metrics["timing"] = {
        "eval_seconds": time.perf_counter() - t1,
        "total_seconds": time.perf_counter() - t0,
        "total_cpu_seconds": time.process_time() - c0,
    }
    write_json_atomic(out / "metrics.json", metrics)
    b = metrics["blip2"]
    _note(
        f"BLIP-2 BLEU-4 {b['model']['Bleu_4']:.4f} CIDEr-D {b['model']['CIDEr']:.4f}; "
        f"nearest neighbour {b['nearest_neighbour']['Bleu_4']:.4f} / {b['nearest_neighbour']['CIDEr']:.4f}"
    )
    if "vqa" in b:
        v = b["vqa"]
        _note(f"BLIP-2 VQA {v['model']['overall']:.2f}; question-only {v['question_only']['overall']:.2f}")
    print(f"model: {out / 'model'}\nmetrics: {out / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval configs/blip2_emoji.yaml --checkpoint DIR``: captions of a saved BLIP-2 model."""
    from xmodal.tasks.caption import predictions_dir
    from xmodal.tasks.flamingo import lm_folder
    from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, write_json_atomic
    from xmodal.train.recipe import checkpoint_folder

    cfg = load_blip2_recipe(args)
    folder, state = checkpoint_folder(args.checkpoint)
    saved = state.get("config", {})
    lm_dir = Path(saved["lm_dir"]) if "lm_dir" in saved else lm_folder(cfg.model.lm, cfg.model.stage0)[0]
    _, table = _split("test", cfg, 1)
    model, tok, _ = build(cfg, lm_dir, table.shape[-1])
    load_model_weights(model, folder / MODEL_FILE)
    out = Path(args.out) if args.out else folder / "eval.json"
    metrics = {"task": "blip2", "blip2": evaluate(model, tok, cfg, files=predictions_dir(out))}
    write_json_atomic(out, metrics)
    print(f"metrics: {out}")
    return 0
