"""Recipe task "vqa": templated visual questions, answered by classification and by generation.

``xmodal train configs/vqa.yaml`` builds the questions of :func:`xmodal.data.vl.build_vqa` (Fashion-MNIST and
emoji, split by image), caches frozen EfficientNet-Lite0 tokens, and trains three models, each with
:class:`~xmodal.train.generic.GenericTrainer` in its own folder under OUT:

* ``classifier/``: :class:`~xmodal.models.vqa.VQAClassifier` over the training answer vocabulary (soft
  targets, BCE);
* ``generative/``: the captioner's scratch decoder conditioned on the image (cross-attention) and the
  question (a prompt ``bos question sep``), trained on the answer tokens only, decoded greedily;
* ``question_only/``: the classifier without the image (the language-prior baseline), next to the
  simpler prior "most common training answer for this question text".

All are scored on the same test questions by :func:`xmodal.metrics.vqa_accuracy`; ``OUT/metrics.json``
holds the results and whether each model beats both question-only baselines.
``xmodal eval configs/vqa.yaml --checkpoint OUT`` re-scores the saved models.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from xmodal.config import OptimConfig, TrainConfig, from_dict, to_dict
from xmodal.data.caption_tokens import BPETokenizer, teacher_forcing
from xmodal.data.vl import AnswerVocab, VQAItem, VQASet, build_vqa
from xmodal.errors import XmodalError
from xmodal.metrics import vqa_accuracy
from xmodal.models.captioner import Captioner, ScratchDecoder
from xmodal.models.vqa import VQAClassifier
from xmodal.train.checkpoint import MODEL_FILE, load_model_weights, read_state, write_json_atomic
from xmodal.train.generic import EpochSampler, GenericTrainer
from xmodal.train.image_tokens import image_token_table
from xmodal.train.recipe import load_recipe, progress_wanted, train_out

MODELS = ("classifier", "generative", "question_only")


@dataclass
class VQADataConfig:
    """Which questions, how images are encoded, batch and length limits."""

    fmnist_train_images: int = 1000
    fmnist_val_images: int = 200
    fmnist_test_images: int = 500
    emoji: bool = True
    seed: int = 0
    image_size: int = 128
    batch_size: int = 128
    max_question_len: int = 40
    max_answer_len: int = 8
    max_val_questions: int | None = 1000  # validation subset (model selection)
    max_test_questions: int | None = None


@dataclass
class FusionConfig:
    """Transformer sizes (classifier: the fusion encoder; generative: the decoder)."""

    dim: int = 256
    depth: int = 2
    num_heads: int = 4
    dropout: float = 0.1


@dataclass
class VQARecipe:
    """A "vqa" recipe (configs/vqa.yaml)."""

    task: str = "vqa"
    data: VQADataConfig = field(default_factory=VQADataConfig)
    classifier: FusionConfig = field(default_factory=FusionConfig)
    generative: FusionConfig = field(default_factory=lambda: FusionConfig(depth=3))
    label_smoothing: float = 0.1  # generative answers
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class SplitData:
    """Questions of a split with their image tokens (one row per question)."""

    vqa: VQASet
    items: list[VQAItem]
    image_rows: Tensor  # (N,) index into tokens
    tokens: Tensor  # (I, T, C)

    def images(self, idx: Tensor) -> Tensor:
        """Image tokens (B, T, C) of questions ``idx``."""
        return self.tokens[self.image_rows[idx]]


def _loader(vqa: VQASet, ids: list[str]) -> Callable[[int], Image.Image]:
    return lambda k: vqa.load_image(ids[k])


def load_split(split: str, cfg: VQARecipe, *, progress: bool) -> SplitData:
    """A split's questions and cached frozen image tokens (Fashion-MNIST and emoji cached separately)."""
    d = cfg.data
    n = {"train": d.fmnist_train_images, "val": d.fmnist_val_images, "test": d.fmnist_test_images}[split]
    vqa = build_vqa(split, fmnist_images=n, emoji=d.emoji, seed=d.seed)  # type: ignore[arg-type]
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    tables = []
    for prefix in ("fashion-mnist/", "emoji/"):
        ids = [i for i in vqa.image_ids if i.startswith(prefix)]
        if ids:
            tables.append(image_token_table(_loader(vqa, ids), len(ids), image_size=d.image_size, log=log))
    tokens = torch.cat(tables)
    row = {image_id: r for r, image_id in enumerate(vqa.image_ids)}  # build_vqa lists Fashion-MNIST first
    limit = d.max_val_questions if split == "val" else d.max_test_questions if split == "test" else None
    items = vqa.items
    if limit is not None and len(items) > limit:  # an even spread over sources and templates
        items = [items[round(k * len(items) / limit)] for k in range(limit)]
    return SplitData(vqa, items, torch.tensor([row[i.image_id] for i in items]), tokens)


def question_batch(tok: BPETokenizer, questions: list[str], max_len: int) -> tuple[Tensor, Tensor]:
    """Right-padded question ids (B, L) and their mask (B, L)."""
    enc = [tok.encode(q)[:max_len] for q in questions]
    L = max(len(e) for e in enc)
    ids = torch.full((len(enc), L), tok.pad, dtype=torch.long)
    mask = torch.zeros(len(enc), L, dtype=torch.bool)
    for r, e in enumerate(enc):
        ids[r, : len(e)] = torch.tensor(e)
        mask[r, : len(e)] = True
    return ids, mask


def build_classifier(
    cfg: VQARecipe, tok: BPETokenizer, n_answers: int, tokens: Tensor, *, use_image: bool
) -> VQAClassifier:
    """The classifier (or question-only classifier) of ``cfg``."""
    c = cfg.classifier
    return VQAClassifier(
        vocab_size=tok.vocab_size,
        num_answers=n_answers,
        image_dim=int(tokens.shape[2]),
        num_image_tokens=int(tokens.shape[1]),
        dim=c.dim,
        depth=c.depth,
        num_heads=c.num_heads,
        dropout=c.dropout,
        max_question_len=cfg.data.max_question_len,
        use_image=use_image,
    )


def build_generative(cfg: VQARecipe, tok: BPETokenizer, tokens: Tensor) -> Captioner:
    """The generative answerer: the captioner's scratch decoder with a question prompt."""
    g = cfg.generative
    length = 1 + cfg.data.max_question_len + 1 + cfg.data.max_answer_len + 1
    decoder = ScratchDecoder(
        vocab_size=tok.vocab_size,
        dim=g.dim,
        depth=g.depth,
        num_heads=g.num_heads,
        dropout=g.dropout,
        max_len=length,
    )
    return Captioner(
        decoder=decoder,
        image_dim=int(tokens.shape[2]),
        num_image_tokens=int(tokens.shape[1]),
        bos=tok.bos,
        eos=tok.eos,
    )


@torch.no_grad()
def classify(
    model: VQAClassifier, tok: BPETokenizer, vocab: AnswerVocab, data: SplitData, max_len: int
) -> dict[Hashable, str]:
    """``{question_id: answer}`` by the classifier's top answer."""
    model.eval()
    out: dict[Hashable, str] = {}
    for s in range(0, len(data.items), 256):
        chunk = data.items[s : s + 256]
        ids, mask = question_batch(tok, [i.question for i in chunk], max_len)
        images = data.images(torch.arange(s, s + len(chunk))) if model.use_image else None
        best = model(ids, mask, images).logits.argmax(-1)
        out.update({i.question_id: vocab.answers[int(b)] for i, b in zip(chunk, best, strict=True)})
    return out


def prompt_of(tok: BPETokenizer, question: str, max_len: int) -> list[int]:
    """``bos question sep``: the generative model's prompt."""
    return [*tok.bos, *tok.encode(question)[:max_len], tok.sep]


@torch.no_grad()
def generate_answers(
    model: Captioner, tok: BPETokenizer, data: SplitData, cfg: VQARecipe
) -> dict[Hashable, str]:
    """``{question_id: answer}`` by greedy decoding, prompts of equal length batched together."""
    model.eval()
    groups: dict[int, list[int]] = {}
    prompts = [prompt_of(tok, i.question, cfg.data.max_question_len) for i in data.items]
    for k, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(k)
    out: dict[Hashable, str] = {}
    for members in groups.values():
        for s in range(0, len(members), 256):
            idx = torch.tensor(members[s : s + 256])
            gen = model.generate(
                data.images(idx),
                torch.tensor([prompts[int(k)] for k in idx]),
                max_new_tokens=cfg.data.max_answer_len + 1,
            )
            out.update(
                {data.items[int(k)].question_id: tok.decode(t) for k, t in zip(idx, gen.tokens, strict=True)}
            )
    return out


def prior_answers(train: list[VQAItem], items: list[VQAItem]) -> dict[Hashable, str]:
    """Question-only prior: the most common training answer for the same question text, else for the
    same question type, else overall."""
    if not train:
        raise ValueError("the question-only baseline needs training questions (none given)")
    by_question: dict[str, Counter[str]] = {}
    by_type: dict[str, Counter[str]] = {}
    for i in train:
        by_question.setdefault(i.question, Counter())[i.answer] += 1
        by_type.setdefault(i.question_type, Counter())[i.answer] += 1
    overall = Counter(i.answer for i in train)
    out: dict[Hashable, str] = {}
    for i in items:
        counts = by_question.get(i.question) or by_type.get(i.question_type) or overall
        out[i.question_id] = min(counts, key=lambda a: (-counts[a], a))
    return out


def score(data: SplitData, predictions: dict[Hashable, str]) -> dict[str, Any]:
    """VQA accuracy (official rules) of predictions on ``data``'s questions."""
    return vqa_accuracy([i.annotation() for i in data.items], predictions)


def _trainer(
    model: torch.nn.Module,
    cfg: VQARecipe,
    out: Path,
    config: dict[str, Any],
    batch_fn: Any,
    loss_fn: Any,
    validate: Any,
    progress: bool,
) -> GenericTrainer:
    return GenericTrainer(
        model,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        optim=cfg.optim,
        train=cfg.train,
        run_dir=out,
        config=config,
        evaluate=validate,
        progress=progress,
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``xmodal train configs/vqa.yaml``: the three models, then ``OUT/metrics.json``."""
    cfg = load_recipe(VQARecipe, args.config, args.set)
    out = train_out(args)
    if any((out / name / "checkpoints" / "last").exists() for name in MODELS) and not (
        args.resume or args.overwrite
    ):
        raise XmodalError(f"{out} already holds training checkpoints; pass --resume or --overwrite")
    progress = progress_wanted(args)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    train, val = load_split("train", cfg, progress=progress), load_split("val", cfg, progress=progress)
    vocab = AnswerVocab.from_items(train.items)
    tok = BPETokenizer.compact([i.question for i in train.items] + vocab.answers)
    targets = vocab.soft_targets(train.items)
    sampler = EpochSampler(len(train.items), batch_size=cfg.data.batch_size, seed=cfg.train.seed)
    mq, ma = cfg.data.max_question_len, cfg.data.max_answer_len
    shared = {"recipe": to_dict(cfg), "tokenizer": tok.state(), "answers": vocab.answers}
    seconds: dict[str, Any] = {
        "data_seconds": time.perf_counter() - t0,
        "data_cpu_seconds": time.process_time() - c0,
    }

    def cls_batch(step: int) -> dict[str, Tensor]:
        idx = sampler.indices(step)
        ids, mask = question_batch(tok, [train.items[int(k)].question for k in idx], mq)
        return {
            "question_ids": ids,
            "question_mask": mask,
            "targets": targets[idx],
            "image_tokens": train.images(idx),
        }

    for name, use_image in (("classifier", True), ("question_only", False)):
        torch.manual_seed(cfg.train.seed)
        model = build_classifier(cfg, tok, len(vocab), train.tokens, use_image=use_image)

        def cls_loss(m: Any, b: dict[str, Tensor], use_image: bool = use_image) -> Tensor:
            images = b["image_tokens"] if use_image else None
            return m(b["question_ids"], b["question_mask"], images, b["targets"]).loss  # type: ignore[no-any-return]

        def cls_val(m: Any) -> dict[str, Any]:
            return {"score": score(val, classify(m, tok, vocab, val, mq))["overall"]}

        r = _trainer(
            model, cfg, out / name, {**shared, "model": name}, cls_batch, cls_loss, cls_val, progress
        ).fit(resume=args.resume)
        seconds[name] = {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "best_step": r.best_step}

    torch.manual_seed(cfg.train.seed)
    gen = build_generative(cfg, tok, train.tokens)
    prompts = [prompt_of(tok, i.question, mq) for i in train.items]
    answers = [tok.encode(i.answer)[:ma] for i in train.items]

    def gen_batch(step: int) -> tuple[Tensor, Tensor, Tensor]:
        idx = sampler.indices(step)
        ids, labels, _ = teacher_forcing(
            [prompts[int(k)] for k in idx],
            [answers[int(k)] for k in idx],
            eos=tok.eos,
            pad=tok.pad,
            max_len=1 + mq + 1 + ma + 1,
        )
        return train.images(idx), ids, labels

    def gen_loss(m: Any, b: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        return m.loss(*b, label_smoothing=cfg.label_smoothing)  # type: ignore[no-any-return]

    def gen_val(m: Any) -> dict[str, Any]:
        return {"score": score(val, generate_answers(m, tok, val, cfg))["overall"]}

    r = _trainer(
        gen,
        cfg,
        out / "generative",
        {**shared, "model": "generative"},
        gen_batch,
        gen_loss,
        gen_val,
        progress,
    ).fit(resume=args.resume)
    seconds["generative"] = {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "best_step": r.best_step}
    metrics = evaluate(cfg, out, progress=progress, train=train)
    metrics["train"] = seconds
    write_json_atomic(out / "metrics.json", metrics)
    print(summary_line(metrics))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def load_models(
    run: Path, cfg: VQARecipe, tokens: Tensor
) -> tuple[dict[str, Any], BPETokenizer, AnswerVocab]:
    """The three saved models of a run folder, its tokenizer and answer vocabulary."""
    models: dict[str, Any] = {}
    tok = vocab = None
    for name in MODELS:
        folder = run / name / "model"
        if not (folder / MODEL_FILE).is_file():
            raise XmodalError(
                f"{folder} holds no {MODEL_FILE}; pass the VQA run folder (with {', '.join(MODELS)}/)"
            )
        saved = read_state(folder)["config"]
        tok, vocab = BPETokenizer.from_state(saved["tokenizer"]), AnswerVocab(saved["answers"])
        recorded = from_dict(VQARecipe, saved["recipe"])
        if name == "generative":
            model: Any = build_generative(recorded, tok, tokens)
        else:
            model = build_classifier(recorded, tok, len(vocab), tokens, use_image=name == "classifier")
        load_model_weights(model, folder / MODEL_FILE)
        models[name] = model.eval()
    assert tok is not None and vocab is not None
    return models, tok, vocab


def evaluate(cfg: VQARecipe, run: Path, *, progress: bool, train: SplitData | None = None) -> dict[str, Any]:
    """Test accuracy of the saved classifier, generative and question-only models and the prior."""
    t0, c0 = time.perf_counter(), time.process_time()
    train = train if train is not None else load_split("train", cfg, progress=progress)
    test = load_split("test", cfg, progress=progress)
    models, tok, vocab = load_models(run, cfg, test.tokens)
    mq = cfg.data.max_question_len
    preds = {
        "classification": classify(models["classifier"], tok, vocab, test, mq),
        "generative": generate_answers(models["generative"], tok, test, cfg),
        "question_only_classifier": classify(models["question_only"], tok, vocab, test, mq),
        "question_only_prior": prior_answers(train.items, test.items),
    }
    results = {k: score(test, p) for k, p in preds.items()}
    baseline = max(results["question_only_classifier"]["overall"], results["question_only_prior"]["overall"])
    return {
        "task": "vqa",
        "test_questions": len(test.items),
        "test_images": len({i.image_id for i in test.items}),
        "answer_vocabulary": len(vocab),
        "test_answer_coverage": vocab.coverage(test.items),
        **results,
        "beats_question_only": {
            k: results[k]["overall"] > baseline for k in ("classification", "generative")
        },
        "examples": [
            {"question": i.question, "answer": i.answer, **{k: preds[k][i.question_id] for k in preds}}
            for i in test.items[:: max(1, len(test.items) // 10)][:10]
        ],
        "eval_seconds": time.perf_counter() - t0,
        "eval_cpu_seconds": time.process_time() - c0,
    }


def summary_line(metrics: dict[str, Any]) -> str:
    """One line: the four accuracies."""
    acc = {
        k: metrics[k]["overall"]
        for k in ("classification", "generative", "question_only_classifier", "question_only_prior")
    }
    return f"VQA accuracy on {metrics['test_questions']} test questions: " + ", ".join(
        f"{k} {v:.2f}" for k, v in acc.items()
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """``xmodal eval configs/vqa.yaml --checkpoint RUN``: re-score a finished run's three models."""
    cfg = load_recipe(VQARecipe, args.config, args.set)
    run = Path(args.checkpoint)
    if run.name == "model":  # OUT/<model>/model given: the run is two levels up
        run = run.parent.parent
    metrics = evaluate(cfg, run, progress=progress_wanted(args))
    out = Path(args.out) if args.out else run / "eval.json"
    out = out if out.suffix == ".json" else out / "metrics.json"
    write_json_atomic(out, metrics)
    print(summary_line(metrics))
    print(f"metrics: {out}")
    return 0
