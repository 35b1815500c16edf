"""Recipe task "caption": emoji captioning with a from-scratch or the pretrained Whisper tiny.en decoder.

``xmodal train configs/caption_emoji.yaml`` trains a :class:`~xmodal.models.captioner.Captioner` on frozen,
cached EfficientNet-Lite0 tokens of the emoji train split (every reference caption is a training pair),
keeps the weights with the best validation CIDEr-D (greedy decoding), and writes ``OUT/metrics.json``:
BLEU-1..4, ROUGE-L and CIDEr-D (:func:`xmodal.metrics.caption_scores`) of beam-search captions on the 395
held-out test emoji, beside the nearest-neighbour baseline (the caption of the most similar training
image by cosine similarity of the mean frozen image token). ``xmodal eval CONFIG --checkpoint OUT/model``
repeats the evaluation from a saved model.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmodal.config import OptimConfig, TrainConfig, to_dict
from xmodal.data.caption_tokens import BPETokenizer, teacher_forcing
from xmodal.data.vl import CaptionItem, check_references, emoji_caption_items, training_references
from xmodal.errors import ConfigError
from xmodal.metrics import caption_scores
from xmodal.models.captioner import (
    Captioner,
    ScratchDecoder,
    pretrained_whisper_decoder,
    tiny_whisper_decoder,
)
from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, write_json_atomic
from xmodal.train.generic import EpochSampler, GenericTrainer
from xmodal.train.image_tokens import image_token_table
from xmodal.train.recipe import checkpoint_folder, load_recipe, progress_wanted, train_out

DECODERS = ("scratch", "whisper", "whisper-tiny-random")


@dataclass
class CaptionModelConfig:
    """The captioner: ``decoder`` "scratch" (the sizes below) or "whisper" (pretrained tiny.en)."""

    decoder: str = "scratch"
    dim: int = 256
    depth: int = 3
    num_heads: int = 4
    dropout: float = 0.1
    freeze_embeddings: bool = True  # Whisper: keep the 51,864 × 384 (tied) token embedding frozen
    label_smoothing: float = 0.1
    memory_depth: int = 1  # image projection: 1 linear, 2 LLaVA-1.5's Linear-GELU-Linear
    memory_lr_scale: float = 1.0  # the image projection's lr = optim.lr × this
    decoder_lr_scale: float = 1.0  # the decoder's lr = optim.lr × this


@dataclass
class CaptionDataConfig:
    """Images, batches and sequence lengths."""

    image_size: int = 128
    batch_size: int = 64
    max_len: int = 24  # tokens per caption sequence, bos and eos included
    max_train_images: int | None = None  # None: all 1,333 (smaller for smoke tests)
    max_eval_images: int | None = None  # None: all val (183) / test (395) emoji
    references: str = "all"  # training targets: every reference, or "first" (the name only)


@dataclass
class CaptionEvalConfig:
    """Decoding of the reported captions (validation during training uses greedy decoding).

    With ``beam_sizes`` set, the beam size and GNMT length-penalty ``alpha`` (from ``alphas``; beam 1 is
    greedy) are chosen by CIDEr-D on the validation split, never on test; else ``beam_size``/``alpha``.
    """

    beam_size: int = 3
    alpha: float = 0.6
    max_new_tokens: int = 20
    beam_sizes: list[int] = field(default_factory=list)
    alphas: list[float] = field(default_factory=list)


@dataclass
class CaptionRecipe:
    """A "caption" recipe (configs/caption_emoji*.yaml)."""

    task: str = "caption"
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: CaptionEvalConfig = field(default_factory=CaptionEvalConfig)


def build_tokenizer(cfg: CaptionModelConfig, texts: list[str]) -> BPETokenizer:
    """Whisper's full BPE for the Whisper decoder, a compact one over ``texts`` for the scratch decoder."""
    return BPETokenizer() if cfg.decoder.startswith("whisper") else BPETokenizer.compact(texts)


def build_captioner(
    cfg: CaptionModelConfig, tok: BPETokenizer, *, num_image_tokens: int, max_len: int, image_dim: int = 1280
) -> Captioner:
    """The captioner of ``cfg`` for ``tok``'s vocabulary."""
    decoder: Any
    if cfg.decoder == "scratch":
        decoder = ScratchDecoder(
            vocab_size=tok.vocab_size,
            dim=cfg.dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            dropout=cfg.dropout,
            max_len=max_len + 8,
        )
    elif cfg.decoder == "whisper":
        decoder = pretrained_whisper_decoder()
    elif cfg.decoder == "whisper-tiny-random":  # Whisper-shaped, random: smoke tests only
        decoder = tiny_whisper_decoder()
    else:
        raise ConfigError(f"model.decoder: unknown decoder {cfg.decoder!r} (known: {', '.join(DECODERS)})")
    if cfg.decoder.startswith("whisper") and cfg.freeze_embeddings:
        decoder.decoder.embed_tokens.weight.requires_grad_(False)
    return Captioner(
        decoder=decoder,
        image_dim=image_dim,
        num_image_tokens=num_image_tokens,
        bos=tok.bos,
        eos=tok.eos,
        memory_depth=cfg.memory_depth,
    )


def lr_scale(cfg: CaptionModelConfig) -> Any:
    """The per-parameter learning-rate multiplier: image projection vs decoder."""
    return lambda name: cfg.memory_lr_scale if name.startswith("memory.") else cfg.decoder_lr_scale


def choose_decoding(
    model: Captioner, tok: BPETokenizer, cfg: CaptionRecipe, *, progress: bool
) -> tuple[int, float, list[dict[str, Any]]]:
    """(beam size, alpha) with the best validation CIDEr-D over ``eval.beam_sizes`` × ``eval.alphas``
    (ties: the first), and every tried setting's validation scores."""
    e = cfg.eval
    if not e.beam_sizes:
        return e.beam_size, e.alpha, []
    val_items, val_tokens = split_tokens("val", cfg, limit=cfg.data.max_eval_images, progress=progress)
    return pick_decoding(
        lambda b, a: predict(model, tok, val_tokens, beam_size=b, alpha=a, max_new_tokens=e.max_new_tokens),
        val_items,
        e.beam_sizes,
        e.alphas or [e.alpha],
    )


def pick_decoding(
    decode: Callable[[int, float], list[str]],
    val_items: list[CaptionItem],
    beam_sizes: list[int],
    alphas: list[float],
) -> tuple[int, float, list[dict[str, Any]]]:
    """The (beam size, GNMT alpha) whose ``decode(beam, alpha)`` captions of ``val_items`` score the best
    CIDEr-D (ties: the first tried; beam 1 is greedy and tried with alpha 0 only), and every tried setting's
    val BLEU-4 / CIDEr-D. Only validation images take part, never test."""
    grid = decoding_grid(beam_sizes, alphas)
    if not grid:
        raise ValueError("no beam size to try")
    tried: list[dict[str, Any]] = []
    for b, a in grid:
        s = score(val_items, decode(b, a))
        tried.append({"beam_size": b, "alpha": a, "val_CIDEr": s["CIDEr"], "val_Bleu_4": s["Bleu_4"]})
    best = max(range(len(tried)), key=lambda i: (tried[i]["val_CIDEr"], -i))
    return int(tried[best]["beam_size"]), float(tried[best]["alpha"]), tried


def decoding_grid(beam_sizes: list[int], alphas: list[float]) -> list[tuple[int, float]]:
    """Every (beam size, alpha) to try: beam 1 (greedy) with alpha 0 only, wider beams with each alpha."""
    return [(b, a) for b in beam_sizes for a in ((0.0,) if b == 1 else alphas)]


def decoding_record(
    beam_size: int, alpha: float, tried: list[dict[str, Any]], chosen_on: str
) -> dict[str, Any]:
    """The metrics JSON's account of the test decoding: the setting, the penalty and how it was chosen."""
    return {
        "beam_size": beam_size,
        "alpha": alpha,
        "length_penalty": "gnmt ((5+len)/6)^alpha",
        "chosen_on": chosen_on if tried else "config",
        "tried": tried,
    }


def split_tokens(
    split: str, cfg: CaptionRecipe, *, limit: int | None, progress: bool
) -> tuple[list[CaptionItem], Tensor]:
    """The caption items of an emoji split (first ``limit``) and their cached image tokens (N, T, 1280)."""
    items = emoji_caption_items(split)  # type: ignore[arg-type]
    items = items[:limit] if limit is not None else items
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    tokens = image_token_table(lambda i: items[i].load(), len(items), image_size=cfg.data.image_size, log=log)
    return items, tokens


@torch.no_grad()
def predict(
    model: Captioner,
    tok: BPETokenizer,
    tokens: Tensor,
    *,
    beam_size: int,
    alpha: float,
    max_new_tokens: int,
    batch: int = 32,
) -> list[str]:
    """Captions of image tokens (N, T, C), decoded in batches."""
    model.eval()
    out: list[str] = []
    for i in range(0, len(tokens), batch):
        gen = model.generate(
            tokens[i : i + batch], max_new_tokens=max_new_tokens, beam_size=beam_size, alpha=alpha
        )
        out.extend(tok.decode(ids) for ids in gen.tokens)
    return out


def nearest_neighbour_captions(
    train_tokens: Tensor, train_items: list[CaptionItem], tokens: Tensor
) -> list[str]:
    """The baseline: each image gets the first reference of the training image with the most similar
    mean frozen token (cosine)."""
    return [caps[0] for caps in neighbour_captions(train_tokens, train_items, tokens, k=1)]


def neighbour_captions(
    train_tokens: Tensor,
    train_items: list[CaptionItem],
    tokens: Tensor,
    *,
    k: int,
    image_ids: list[str] | None = None,
) -> list[list[str]]:
    """The first references of the ``k`` training images most similar to each query (cosine of mean
    frozen tokens, most similar first): the baseline's retrieval, for retrieval-augmented prompts
    (Ramos et al. 2023, "SmallCap", https://arxiv.org/abs/2209.15323).

    Args:
        train_tokens: (N_train, T, C); tokens: (N, T, C).
        image_ids: the queries' image ids; a training image with the same id is never its own neighbour
            (leave-one-out, for training prompts).
    """
    a = torch.nn.functional.normalize(tokens.mean(1), dim=-1)
    b = torch.nn.functional.normalize(train_tokens.mean(1), dim=-1)
    sim = a @ b.T  # (N, N_train)
    if image_ids is not None:
        row = {it.image_id: j for j, it in enumerate(train_items)}
        for i, iid in enumerate(image_ids):
            if iid in row:
                sim[i, row[iid]] = float("-inf")
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices
    return [[train_items[int(j)].captions[0] for j in r] for r in top]


def score(items: list[CaptionItem], predictions: list[str]) -> dict[str, float]:
    """caption_scores of predictions against each item's references (METEOR off: no Java needed)."""
    refs: dict[Hashable, list[str]] = {item.image_id: list(item.captions) for item in items}
    preds: dict[Hashable, str] = {item.image_id: p for item, p in zip(items, predictions, strict=True)}
    return {k: float(v) for k, v in caption_scores(refs, preds, meteor=False).items()}


def val_record(scores: dict[str, float]) -> dict[str, Any]:
    """The generic trainer's validation record of caption scores: CIDEr-D is the score to maximise."""
    return {"score": scores["CIDEr"], "CIDEr": scores["CIDEr"], "Bleu_4": scores["Bleu_4"]}


def predictions_dir(metrics_file: Path) -> Path:
    """Where a recipe writes the test predictions behind ``metrics_file``: ``RUN/metrics.json`` →
    ``RUN/predictions``, ``X/eval.json`` → ``X/eval_predictions``."""
    name = "predictions" if metrics_file.name == "metrics.json" else f"{metrics_file.stem}_predictions"
    return metrics_file.parent / name


def write_test_captions(
    folder: Path | None, items: list[CaptionItem], predictions: dict[str, list[str]]
) -> dict[str, Any]:
    """``{"files": {...}}``: the test references and every ``{name: captions in items' order}`` as COCO
    files under ``folder`` (:func:`xmodal.eval.results_files.write_caption_files`); ``{}`` without one."""
    if folder is None:
        return {}
    from xmodal.eval.results_files import write_caption_files

    refs: dict[Hashable, list[str]] = {it.image_id: list(it.captions) for it in items}
    ids: list[Hashable] = [it.image_id for it in items]
    by_id: dict[str, Mapping[Hashable, str]] = {
        name: dict(zip(ids, preds, strict=True)) for name, preds in predictions.items()
    }
    return {"files": write_caption_files(folder, "test", refs, by_id)}


def evaluate(
    model: Captioner, tok: BPETokenizer, cfg: CaptionRecipe, *, progress: bool, files: Path | None = None
) -> dict[str, Any]:
    """Test-split scores of the model (beam search and greedy) beside the nearest-neighbour baseline;
    with ``files``, the test captions of both in the COCO formats there (:func:`write_test_captions`)."""
    t0, c0 = time.perf_counter(), time.process_time()
    train_items, train_tokens = split_tokens("train", cfg, limit=cfg.data.max_train_images, progress=progress)
    test_items, test_tokens = split_tokens("test", cfg, limit=cfg.data.max_eval_images, progress=progress)
    e = cfg.eval
    beam_size, alpha, tried = choose_decoding(model, tok, cfg, progress=progress)
    beam = predict(model, tok, test_tokens, beam_size=beam_size, alpha=alpha, max_new_tokens=e.max_new_tokens)
    greedy = (
        beam
        if beam_size == 1
        else predict(model, tok, test_tokens, beam_size=1, alpha=0.0, max_new_tokens=e.max_new_tokens)
    )
    nn_preds = nearest_neighbour_captions(train_tokens, train_items, test_tokens)
    scores = {"beam": score(test_items, beam), "greedy": score(test_items, greedy)}
    baseline = score(test_items, nn_preds)
    return {
        "task": "caption",
        "decoder": cfg.model.decoder,
        "test_images": len(test_items),
        "decoding": decoding_record(beam_size, alpha, tried, "val CIDEr-D"),
        "model": scores["beam"],
        "model_greedy": scores["greedy"],
        "nearest_neighbour": baseline,
        "beats_nearest_neighbour": {k: scores["beam"][k] > baseline[k] for k in ("Bleu_4", "CIDEr")},
        "examples": [
            {
                "image_id": it.image_id,
                "prediction": p,
                "nearest_neighbour": n,
                "references": list(it.captions),
            }
            for it, p, n in list(zip(test_items, beam, nn_preds, strict=True))[:10]
        ],
        **write_test_captions(files, test_items, {"model": beam, "nearest_neighbour": nn_preds}),
        "eval_seconds": time.perf_counter() - t0,
        "eval_cpu_seconds": time.process_time() - c0,
    }


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train configs/caption_emoji*.yaml``."""
    cfg = load_recipe(CaptionRecipe, args.config, args.set)
    check_references(cfg.data.references, "data.references")
    out = train_out(args)
    progress = progress_wanted(args)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    items, tokens = split_tokens("train", cfg, limit=cfg.data.max_train_images, progress=progress)
    val_items, val_tokens = split_tokens("val", cfg, limit=cfg.data.max_eval_images, progress=progress)
    tok = build_tokenizer(cfg.model, [c for it in items for c in it.captions])
    torch.manual_seed(cfg.train.seed)
    model = build_captioner(cfg.model, tok, num_image_tokens=tokens.shape[1], max_len=cfg.data.max_len)
    pairs = [
        (i, tok.encode(c)) for i, it in enumerate(items) for c in training_references(it, cfg.data.references)
    ]
    sampler = EpochSampler(len(pairs), batch_size=cfg.data.batch_size, seed=cfg.train.seed)
    truncated = [0]

    def batch_fn(step: int) -> tuple[Tensor, Tensor, Tensor]:
        chosen = [pairs[int(j)] for j in sampler.indices(step)]
        ids, labels, cut = teacher_forcing(
            [tok.bos] * len(chosen),
            [c for _, c in chosen],
            eos=tok.eos,
            pad=tok.pad,
            max_len=cfg.data.max_len,
        )
        truncated[0] += cut
        return tokens[[i for i, _ in chosen]], ids, labels

    def loss_fn(m: torch.nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        return m.loss(*batch, label_smoothing=cfg.model.label_smoothing)  # type: ignore[operator,no-any-return]

    def validate(m: torch.nn.Module) -> dict[str, Any]:
        preds = predict(m, tok, val_tokens, beam_size=1, alpha=0.0, max_new_tokens=cfg.eval.max_new_tokens)  # type: ignore[arg-type]
        return val_record(score(val_items, preds))

    trainer = GenericTrainer(
        model,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        config={"recipe": to_dict(cfg), "tokenizer": tok.state(), "num_image_tokens": int(tokens.shape[1])},
        evaluate=validate,
        progress=progress,
        lr_scale=lr_scale(cfg.model),
    )
    result = trainer.fit(resume=args.resume)
    metrics = evaluate(model, tok, cfg, progress=progress, files=predictions_dir(out / "metrics.json"))
    metrics["train"] = {
        "steps": result.steps,
        "seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "best_step": result.best_step,
        "best_val": result.best_val,
        "truncated_captions": truncated[0],
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    write_json_atomic(out / "metrics.json", metrics)
    print(summary_line(metrics))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def summary_line(metrics: dict[str, Any]) -> str:
    """One line: model vs nearest-neighbour BLEU-4 and CIDEr-D."""
    m, b = metrics["model"], metrics["nearest_neighbour"]
    return (
        f"{metrics['decoder']} captioner on {metrics['test_images']} test emoji: BLEU-4 {m['Bleu_4']:.3f} "
        f"CIDEr-D {m['CIDEr']:.3f} (nearest neighbour: BLEU-4 {b['Bleu_4']:.3f} CIDEr-D {b['CIDEr']:.3f})"
    )


def load_trained(folder: Path, state: dict[str, Any], cfg: CaptionRecipe) -> tuple[Captioner, BPETokenizer]:
    """The captioner saved in ``folder`` (its recorded recipe's model section and tokenizer)."""
    saved = state.get("config", {})
    recorded = load_recipe_dict(saved.get("recipe", {}))
    tok = BPETokenizer.from_state(saved.get("tokenizer", {}))
    model = build_captioner(
        recorded.model,
        tok,
        num_image_tokens=int(saved.get("num_image_tokens", 16)),
        max_len=recorded.data.max_len,
    )
    load_model_weights(model, folder / MODEL_FILE)
    cfg.model = recorded.model
    cfg.data.image_size = recorded.data.image_size
    return model.eval(), tok


def load_recipe_dict(data: dict[str, Any]) -> CaptionRecipe:
    """A recipe from its recorded plain-data form."""
    from xmodal.config import from_dict

    return from_dict(CaptionRecipe, data)


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval configs/caption_emoji*.yaml --checkpoint RUN/model``."""
    cfg = load_recipe(CaptionRecipe, args.config, args.set)
    folder, state = checkpoint_folder(args.checkpoint)
    model, tok = load_trained(folder, state, cfg)
    out = eval_output(args, folder)
    metrics = evaluate(model, tok, cfg, progress=progress_wanted(args), files=predictions_dir(out))
    write_json_atomic(out, metrics)
    print(summary_line(metrics))
    print(f"metrics: {out}")
    return 0


def eval_output(args: argparse.Namespace, folder: Path) -> Path:
    """``--out FILE.json``, ``--out DIR`` (→ DIR/metrics.json), or ``<checkpoint>/eval.json``."""
    if args.out:
        p = Path(args.out)
        return p if p.suffix == ".json" else p / "metrics.json"
    return folder / "eval.json"
