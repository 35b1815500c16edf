"""Stage 0: pretrain a small GPT-2-shaped causal LM on the training text, cached by its config.

No pretrained decoder-only LM can be had here (see the README), so the LLaVA, Flamingo and BLIP-2 recipes
first train one: a GPT-2 (Radford et al. 2019) built by ``transformers.GPT2LMHeadModel`` from a config
(default 4 layers, width 256, 4 heads, context 128) and a byte-level BPE trained on the same text. The text
is the *training* split only: every reference caption of the emoji train split and every templated
train question with its answer (:mod:`xmodal.data.vl`); never val or test text. Validation perplexity is
measured on the val split's text.

The result is a plain ``save_pretrained`` folder (safetensors + tokenizer) under
``$XMODAL_HOME/cache/lm/stage0-<key>``, the key hashing the config and the text, so every recipe with
the same stage-0 config reuses it; :func:`xmodal.lm.load_causal_lm` loads it like any other LM.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xmodal.lm.loading import _quiet_transformers, check_lm_folder
from xmodal.lm.tokenizer import train_bpe_tokenizer
from xmodal.paths import cache_dir
from xmodal.train.features import FeatureCache, texts_fingerprint
from xmodal.train.optim import warmup_cosine

STAGE0_REPORT = "stage0.json"


@dataclass
class Stage0Config:
    """The stage-0 LM and how it is trained (every field is part of the cache key).

    The defaults are the shared preset (:data:`STAGE0_PRESETS` ``"small"``): recipes that leave
    ``model.stage0`` unset (LLaVA, Flamingo, BLIP-2) train it once and then share one cached LM. The text
    is short (captions of 2-6 words, templated questions): a 2-layer, 128-wide GPT-2, 1,200 steps of
    16 × 128 tokens on one thread, each training caption 8 times (215 CPU-s; val loss 0.50 nats/token,
    train captions 0.55, unseen val captions 6.7). The first preset (150 steps, captions once) had seen
    so few captions (train captions 5.4 nats/token) that a frozen-LM Flamingo trained on it stalled at a
    loss of 4.7 and CIDEr-D 0.13; on this one it reaches 1.0 and 0.39 (k = 0, README).
    """

    layers: int = 2
    dim: int = 128
    heads: int = 4
    context: int = 128
    vocab_size: int = 2000
    steps: int = 1200
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 40
    weight_decay: float = 0.1
    dropout: float = 0.1
    seed: int = 0
    fmnist_images: int = 1500  # Fashion-MNIST images whose train questions join the text (as data.vl)
    # each train caption appears this many times in the text: captions are ~5 % of the tokens otherwise,
    # and a stage-0 LM that has barely seen a caption is a poor frozen decoder for Flamingo / BLIP-2
    caption_repeats: int = 8
    threads: int | None = 1  # tiny matrices: one thread is 4x faster per step than two here


#: Named stage-0 configs. "small" (the defaults) is what the shipped recipes share; "base" is the larger
#: LM of the first LLaVA recipe (4 × 256, context 96, 300 steps of 16, captions once).
STAGE0_PRESETS: dict[str, Stage0Config] = {
    "small": Stage0Config(),
    "base": Stage0Config(layers=4, dim=256, context=96, steps=300, caption_repeats=1),
}


def stage0_texts(
    split: str = "train", *, fmnist_images: int = 1500, seed: int = 0, caption_repeats: int = 1
) -> list[str]:
    """The documents of one split: every reference caption (``caption_repeats`` times), and "question
    answer" per visual question.

    Uses :func:`xmodal.data.vl.emoji_caption_items` and :func:`xmodal.data.vl.build_vqa` (same seed and
    Fashion-MNIST count as the recipes, so train text never contains a val/test image's question).
    """
    from xmodal.data.vl import build_vqa, emoji_caption_items

    if caption_repeats < 1:
        raise ValueError(f"caption_repeats must be >= 1, got {caption_repeats}")
    captions = [c for item in emoji_caption_items(split) for c in item.captions]  # type: ignore[arg-type]
    docs = captions * caption_repeats
    vqa = build_vqa(split, fmnist_images=fmnist_images, seed=seed)  # type: ignore[arg-type]
    docs += [f"{q.question} {q.answer}" for q in vqa.items]
    return docs


def pack(docs: Sequence[str], tokenizer: Any) -> torch.Tensor:
    """One long (N,) int64 stream: every document's tokens followed by eos (GPT-2's packing)."""
    eos = int(tokenizer.eos_token_id)
    ids: list[int] = []
    for d in docs:
        ids += tokenizer(d, add_special_tokens=False)["input_ids"] + [eos]
    return torch.tensor(ids, dtype=torch.long)


def _windows(stream: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) slices of ``stream`` beginning at ``starts``."""
    return torch.stack([stream[s : s + length] for s in starts.tolist()])


@torch.no_grad()
def stream_loss(model: torch.nn.Module, stream: torch.Tensor, context: int, batch: int = 32) -> float:
    """Mean next-token cross-entropy over ``stream`` in non-overlapping windows of ``context``."""
    n = (len(stream) - 1) // context
    if n == 0:
        return float("nan")
    starts = torch.arange(n) * context
    total, count = 0.0, 0
    model.eval()
    for i in range(0, n, batch):
        x = _windows(stream, starts[i : i + batch], context)
        out = model(input_ids=x, labels=x)
        total += float(out.loss) * x.numel()
        count += x.numel()
    return total / count


def train_stage0(
    cfg: Stage0Config,
    folder: Path,
    *,
    train_docs: Sequence[str],
    val_docs: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the stage-0 LM on ``train_docs`` and ``save_pretrained`` it (+ ``stage0.json``) into ``folder``.

    Returns:
        the report: steps, seconds, CPU seconds, tokens, final train loss, val loss and perplexity.
    """
    _quiet_transformers()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train_stage0(cfg, folder, train_docs=train_docs, val_docs=val_docs, log=log)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, whatever stage 0 used


def _train_stage0(
    cfg: Stage0Config,
    folder: Path,
    *,
    train_docs: Sequence[str],
    val_docs: Sequence[str],
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    tok = train_bpe_tokenizer(train_docs, vocab_size=cfg.vocab_size)
    train_stream, val_stream = pack(train_docs, tok), pack(val_docs, tok)
    if len(train_stream) <= cfg.context:
        raise ValueError(f"stage-0 text has {len(train_stream)} tokens, fewer than the context {cfg.context}")
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=cfg.context,
            n_embd=cfg.dim,
            n_layer=cfg.layers,
            n_head=cfg.heads,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, min_ratio=0.1)
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses: list[float] = []
    for step in range(cfg.steps):
        starts = torch.randint(0, len(train_stream) - cfg.context, (cfg.batch_size,), generator=gen)
        x = _windows(train_stream, starts, cfg.context)  # (B, context)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log is not None and ((step + 1) % 50 == 0 or step + 1 == cfg.steps):
            log(f"stage 0: step {step + 1}/{cfg.steps} loss {sum(losses[-50:]) / len(losses[-50:]):.3f}")
    val = stream_loss(model, val_stream, cfg.context) if len(val_stream) > cfg.context else float("nan")
    report = {
        "stage": 0,
        "config": dataclasses.asdict(cfg),
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tok),
        "train_tokens": len(train_stream),
        "train_docs": len(train_docs),
        "train_loss_last50": sum(losses[-50:]) / len(losses[-50:]),
        "val_loss": val,
        "val_perplexity": math.exp(val) if math.isfinite(val) else None,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / STAGE0_REPORT).write_text(json.dumps(report, indent=2))
    return report


def stage0_key(cfg: Stage0Config, train_docs: Sequence[str], val_docs: Sequence[str]) -> str:
    """The cache key: every config field but ``threads``, and hashes of the train and val text."""
    parts = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "threads"}
    texts = {"train": texts_fingerprint(list(train_docs)), "val": texts_fingerprint(list(val_docs))}
    return FeatureCache.key({"stage0": parts, **texts})


def stage0_lm(
    cfg: Stage0Config | None = None,
    *,
    root: Path | None = None,
    train_docs: Sequence[str] | None = None,
    val_docs: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The stage-0 LM folder for ``cfg``: trained once, then reused from the cache.

    Args:
        cfg: the stage-0 config (default :class:`Stage0Config`).
        root: cache folder (default ``$XMODAL_HOME/cache/lm``).
        train_docs / val_docs: the text (default :func:`stage0_texts` of "train" / "val").

    Returns:
        (folder for :func:`xmodal.lm.load_causal_lm`, its stage-0 report with ``"cached"`` set).
    """
    cfg = cfg or Stage0Config()
    if train_docs is None:
        train_docs = stage0_texts(
            "train", fmnist_images=cfg.fmnist_images, seed=cfg.seed, caption_repeats=cfg.caption_repeats
        )
    if val_docs is None:
        val_docs = stage0_texts("val", fmnist_images=cfg.fmnist_images, seed=cfg.seed)
    key = stage0_key(cfg, train_docs, val_docs)
    base = Path(root) if root is not None else cache_dir() / "lm"
    folder = base / f"stage0-{key}"
    if (folder / STAGE0_REPORT).is_file():
        check_lm_folder(folder)
        report = json.loads((folder / STAGE0_REPORT).read_text())
        return folder, {**report, "cached": True, "folder": str(folder)}
    tmp = base / f".stage0-{key}.tmp{uuid.uuid4().hex[:8]}"
    try:
        report = train_stage0(cfg, tmp, train_docs=train_docs, val_docs=val_docs, log=log)
        if folder.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp)
        else:
            tmp.replace(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder, {**report, "cached": False, "folder": str(folder)}
