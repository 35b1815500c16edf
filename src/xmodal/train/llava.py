"""The LLaVA recipe's data, training stages and evaluation (used by :mod:`xmodal.tasks.llava`).

Data (:mod:`xmodal.data.vl`, training splits only for training): emoji train captions for stage 1;
templated train questions (+ the caption requests) for stage 2; held-out emoji captions and test
questions for evaluation. Image tokens of every image come from one cached frozen-encoder table.
Baselines for the same test items are the shared ones of the caption and VQA tasks:
:func:`xmodal.tasks.caption.nearest_neighbour_captions` (Devlin et al. 2015,
https://arxiv.org/abs/1505.04467: the first reference of the training image whose mean frozen token is
most similar) and :func:`xmodal.tasks.vqa.prior_answers` (question-only: the most frequent training
answer to the same question text, else type; Goyal et al. 2017, https://arxiv.org/abs/1612.00837).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from xmodal.data.instruct import ChatSample, collate, encode_samples
from xmodal.lm.chat import user_turn
from xmodal.lm.sequences import MaskedCounter, TruncationCounter
from xmodal.metrics import vqa_accuracy
from xmodal.models.llava import Llava
from xmodal.train.generic import EpochSampler, FitResult, GenericTrainer

if TYPE_CHECKING:
    from xmodal.data.vl import CaptionItem, VQAItem
    from xmodal.tasks.llava import LlavaEvalSection, LlavaRecipe
    from xmodal.train.recipe import StageSection


def _spread(items: list[Any], cap: int | None) -> list[Any]:
    """At most ``cap`` items, evenly spaced (every source of a mixed list stays represented)."""
    if cap is None or cap >= len(items):
        return items
    if cap <= 0:
        return []
    step = len(items) / cap
    return [items[int(i * step)] for i in range(cap)]


@dataclass
class LlavaData:
    """Everything the recipe trains and evaluates on; ``table`` (N_images, T, C) holds the image tokens."""

    caption_prompt: str
    caption_train: list[CaptionItem]
    caption_test: list[CaptionItem]
    caption_val: list[CaptionItem]
    vqa_train: list[VQAItem]
    vqa_test: list[VQAItem]
    table: Tensor
    row: dict[str, int]
    # last-map tokens of the caption images (the first rows of `table`) for the nearest-neighbour
    # baseline when `table` holds multi-scale tokens (None: `table` itself)
    plain_table: Tensor | None = None
    stage2_captions: bool = True
    stage2_caption_repeats: int = 1
    references: str = "all"  # caption targets (xmodal.data.vl.training_references)
    # per-image caption prompts (retrieval-augmented); an image without one gets `caption_prompt`
    caption_prompts: dict[str, str] = field(default_factory=dict)
    truncation: TruncationCounter = field(default_factory=TruncationCounter)
    masked: MaskedCounter = field(default_factory=MaskedCounter)
    stage1: list[ChatSample] = field(default_factory=list)
    stage2: list[ChatSample] = field(default_factory=list)

    @classmethod
    def build(
        cls, cfg: LlavaRecipe, tokenizer: Any, *, log: Callable[[str], None] | None = None
    ) -> LlavaData:
        """Load the splits and the (cached) image-token table of every image they show."""
        from xmodal.data.vl import build_vqa, emoji_caption_items
        from xmodal.train.image_tokens import image_token_table

        d = cfg.data
        cap_train = _spread(emoji_caption_items("train"), d.max_train_captions)
        cap_test = _spread(emoji_caption_items("test"), cfg.eval.max_captions)
        cap_val = _spread(emoji_caption_items("val"), cfg.eval.val_captions) if cfg.eval.val_captions else []
        vqa_train = build_vqa("train", fmnist_images=d.fmnist_images, emoji=d.emoji_vqa, seed=d.seed)
        vqa_test = build_vqa("test", fmnist_images=d.fmnist_images, emoji=d.emoji_vqa, seed=d.seed)
        train_items = _spread(vqa_train.items, d.max_train_questions)
        test_items = _spread(vqa_test.items, cfg.eval.max_questions)
        loaders: dict[str, Callable[[], Any]] = {}
        for item in [*cap_train, *cap_test, *cap_val]:
            loaders.setdefault(item.image_id, item.load)
        cap_loaders = list(loaders.values())  # rows 0 .. n-1 of `table` are the caption images
        for vset, items in ((vqa_train, train_items), (vqa_test, test_items)):
            for q in items:
                loaders.setdefault(q.image_id, functools.partial(vset.load_image, q.image_id))
        ids = list(loaders)
        table = image_token_table(
            lambda i: loaders[ids[i]](),
            len(ids),
            encoder_name=cfg.model.image_encoder,
            image_size=cfg.model.image_size,
            stages=cfg.model.image_stages,
            log=log,
        )
        plain = None
        if cfg.model.image_stages is not None:  # the baseline uses every recipe's plain last-map features,
            plain = image_token_table(  # of the caption images only: the first rows of `table`
                lambda i: cap_loaders[i](),
                len(cap_loaders),
                encoder_name=cfg.model.image_encoder,
                image_size=cfg.model.image_size,
                log=log,
            )
        at = {k: i for i, k in enumerate(ids)}  # image id -> row of `table`
        caption_prompts: dict[str, str] = {}
        if d.retrieved_captions > 0:
            from xmodal.tasks.caption import neighbour_captions

            base = table if plain is None else plain
            train_tokens = base[torch.tensor([at[c.image_id] for c in cap_train])]
            for items in (cap_train, cap_val, cap_test):
                found = neighbour_captions(
                    train_tokens,
                    cap_train,
                    base[torch.tensor([at[c.image_id] for c in items])],
                    k=d.retrieved_captions,
                    image_ids=[c.image_id for c in items],
                )
                for c, caps in zip(items, found, strict=True):
                    caption_prompts[c.image_id] = f"similar: {'; '.join(caps)}. {d.caption_prompt}"
        return cls(
            caption_prompt=d.caption_prompt,
            caption_prompts=caption_prompts,
            caption_train=cap_train,
            caption_test=cap_test,
            caption_val=cap_val,
            vqa_train=train_items,
            vqa_test=test_items,
            table=table,
            plain_table=plain,
            row=at,
            stage2_captions=d.stage2_captions,
            stage2_caption_repeats=d.stage2_caption_repeats,
            references=d.references,
            masked=MaskedCounter(max_share=d.max_masked_share),
        )

    def prompt_of(self, image_id: str) -> str:
        """The caption request for one image (retrieval-augmented when configured)."""
        return self.caption_prompts.get(image_id, self.caption_prompt)

    def encode(self, tokenizer: Any, image_token_id: int, max_length: int) -> None:
        """Tokenise stage 1 (captions) and stage 2 (questions + caption requests); check the masked share."""
        from xmodal.data.vl import training_references

        T = self.table.shape[1]

        def enc(pairs: Sequence[tuple[str, str, str]]) -> list[ChatSample]:
            convs = [[user_turn(q), {"role": "assistant", "content": a}] for _, q, a in pairs]
            return encode_samples(
                tokenizer,
                convs,
                [[self.row[i]] for i, _, _ in pairs],
                image_token_id=image_token_id,
                tokens_per_image=T,
                max_length=max_length,
                truncation=self.truncation,
                masked=self.masked,
            )

        # every reference caption is a sample (as in the caption task): "keycap 1" and "one" both train
        captions = [
            (c.image_id, self.prompt_of(c.image_id), ref)
            for c in self.caption_train
            for ref in training_references(c, self.references)
        ]
        self.stage1 = enc(captions)
        self.stage2 = enc([(q.image_id, q.question, q.answer) for q in self.vqa_train])
        if self.stage2_captions:  # the caption requests, repeated to keep their share of stage 2
            self.stage2 += self.stage1 * max(1, self.stage2_caption_repeats)
        self.masked.check("training samples")

    def batch(self, samples: Sequence[ChatSample], pad_id: int) -> dict[str, Tensor | None]:
        """Model inputs for ``samples``: padded ids, mask, labels and (B, T, C) image tokens."""
        ids, mask, labels = collate([s.input_ids for s in samples], pad_id, [s.labels for s in samples])
        rows = torch.tensor([s.images[0] for s in samples])
        return {"input_ids": ids, "image_tokens": self.table[rows], "attention_mask": mask, "labels": labels}

    def tokens_of(self, image_ids: Sequence[str]) -> Tensor:
        """(N, T, C) image tokens of ``image_ids``."""
        return self.table[torch.tensor([self.row[i] for i in image_ids])]

    # -- baselines --------------------------------------------------------------------------------
    @functools.cached_property
    def baseline_predictions(self) -> tuple[dict[Hashable, str], dict[Hashable, str]]:
        """The nearest-neighbour captions of the test emoji and the question-only answers of the test
        questions (the caption / VQA tasks' own baselines; computed once, for scoring and the files)."""
        from xmodal.tasks.caption import nearest_neighbour_captions
        from xmodal.tasks.vqa import prior_answers

        plain = self.table if self.plain_table is None else self.plain_table

        def tokens(items: Sequence[CaptionItem]) -> Tensor:
            return plain[torch.tensor([self.row[c.image_id] for c in items])]

        nn_caps = nearest_neighbour_captions(
            tokens(self.caption_train),
            self.caption_train,
            tokens(self.caption_test),
        )
        captions: dict[Hashable, str] = {
            c.image_id: p for c, p in zip(self.caption_test, nn_caps, strict=True)
        }
        return captions, prior_answers(self.vqa_train, self.vqa_test)

    def baselines(self) -> dict[str, Any]:
        """Nearest-neighbour captions and question-only answers, scored."""
        from xmodal.tasks.caption import score

        captions, answers = self.baseline_predictions
        return {
            "nearest_neighbour_caption": {
                "captions": score(self.caption_test, [captions[c.image_id] for c in self.caption_test])
            },
            "question_only": {"vqa": vqa_accuracy([q.annotation() for q in self.vqa_test], answers)},
        }

    def write_predictions(
        self, folder: Path, captions: dict[Hashable, str], answers: dict[Hashable, str]
    ) -> dict[str, Any]:
        """The test references, questions and annotations, and the model's and the baselines' captions
        and answers, in the COCO / VQAv2 formats (:mod:`xmodal.eval.results_files`) under ``folder``."""
        from xmodal.eval.results_files import write_caption_files, write_vqa_files

        nn_caps, prior = self.baseline_predictions
        refs: dict[Hashable, list[str]] = {c.image_id: list(c.captions) for c in self.caption_test}
        return {
            "captions": write_caption_files(
                folder, "test", refs, {"llava": captions, "nearest_neighbour": nn_caps}
            ),
            "vqa": write_vqa_files(
                folder,
                "test",
                [q.annotation() for q in self.vqa_test],
                {q.question_id: q.question for q in self.vqa_test},
                {"llava": answers, "question_only": prior},
            ),
        }


def train_stage(
    model: Llava,
    data: LlavaData,
    samples: list[ChatSample],
    stage: StageSection,
    pad_id: int,
    run_dir: Path,
    config: dict[str, Any],
    resume: bool,
    progress: bool,
    evaluate: Callable[[nn.Module], dict[str, Any]] | None = None,
) -> FitResult:
    """Train ``model`` (its stage already set) on ``samples`` with xmodal's generic loop (validated by
    ``evaluate`` every ``stage.train.eval_every`` steps, best weights kept with ``select_best``)."""
    sampler = EpochSampler(len(samples), batch_size=stage.batch_size, seed=stage.train.seed)

    def batch_fn(step: int) -> dict[str, Tensor | None]:
        return data.batch([samples[i] for i in sampler.indices(step).tolist()], pad_id)

    def loss_fn(m: nn.Module, batch: dict[str, Tensor | None]) -> Tensor:
        loss = m(**batch).loss
        assert loss is not None
        return loss  # type: ignore[no-any-return]

    trainer = GenericTrainer(
        model,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        optim=stage.optim,
        train=stage.train,
        run_dir=run_dir,
        config=config,
        progress=progress,
        evaluate=evaluate,
        ema_decay=stage.ema_decay,
    )
    return trainer.fit(resume=resume)


def val_caption_scores(
    model: Llava, tokenizer: Any, data: LlavaData, cfg: LlavaEvalSection, generate_kwargs: Any = None
) -> dict[str, float]:
    """BLEU/ROUGE-L/CIDEr-D of the val emoji's captions under ``generate_kwargs`` (None: greedy)."""
    from xmodal.eval.llava import evaluate_captions

    refs: dict[Hashable, Sequence[str]] = {c.image_id: list(c.captions) for c in data.caption_val}
    scores, _ = evaluate_captions(
        model,
        tokenizer,
        refs,
        data.tokens_of([c.image_id for c in data.caption_val]),
        prompt=[data.prompt_of(c.image_id) for c in data.caption_val],
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        generate_kwargs=generate_kwargs,
    )
    return scores  # type: ignore[no-any-return]


def val_caption_scorer(
    tokenizer: Any, data: LlavaData, cfg: LlavaEvalSection
) -> Callable[[nn.Module], dict[str, Any]] | None:
    """Greedy captions of the val emoji → ``{"score": CIDEr-D, ...}`` (None without val emoji)."""
    if not data.caption_val:
        return None

    def evaluate(model: nn.Module) -> dict[str, Any]:
        from xmodal.tasks.caption import val_record

        return val_record(val_caption_scores(model, tokenizer, data, cfg))  # type: ignore[arg-type]

    return evaluate


def caption_decoding(
    model: Llava, tokenizer: Any, data: LlavaData, cfg: LlavaEvalSection
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The caption decoding (``generate`` kwargs) with the best CIDEr-D on the val emoji, and the search.

    Only val images take part (never test); without ``cfg.val_captions`` the first pair is returned.
    """
    grid = [
        {"num_beams": b, "length_penalty": lp} if b > 1 else {"num_beams": 1}
        for b in cfg.caption_beams
        for lp in (cfg.length_penalties if b > 1 else cfg.length_penalties[:1])
    ]
    if not data.caption_val or len(grid) == 1:
        return grid[0], []
    search = []
    for kw in grid:
        scores = val_caption_scores(model, tokenizer, data, cfg, kw)
        search.append({**kw, "val_Bleu_4": scores["Bleu_4"], "val_CIDEr": scores["CIDEr"]})
    best = max(range(len(grid)), key=lambda i: (search[i]["val_CIDEr"], search[i]["val_Bleu_4"]))
    return grid[best], search


def evaluate(
    model: Llava, tokenizer: Any, data: LlavaData, cfg: LlavaEvalSection, files: Path | None = None
) -> dict[str, Any]:
    """Caption scores on the held-out emoji and VQA accuracy on the test questions, with examples; with
    ``files``, every prediction (and the baselines') in the official formats there (``"files"``)."""
    from xmodal.eval.llava import evaluate_captions, evaluate_vqa

    truncation = TruncationCounter()
    kw = {"batch_size": cfg.batch_size, "max_new_tokens": cfg.max_new_tokens, "truncation": truncation}
    refs: dict[Hashable, Sequence[str]] = {c.image_id: list(c.captions) for c in data.caption_test}
    decoding, search = caption_decoding(model, tokenizer, data, cfg)
    caps, cap_preds = evaluate_captions(
        model,
        tokenizer,
        refs,
        data.tokens_of([c.image_id for c in data.caption_test]),
        prompt=[data.prompt_of(c.image_id) for c in data.caption_test],
        generate_kwargs=decoding,
        **kw,
    )
    qs = data.vqa_test
    acc, answers = evaluate_vqa(
        model,
        tokenizer,
        [q.annotation() for q in qs],
        [q.question for q in qs],
        data.tokens_of([q.image_id for q in qs]),
        **kw,
    )
    written = {} if files is None else {"files": data.write_predictions(files, cap_preds, answers)}
    return {
        **written,
        "captions": caps,
        "vqa": acc,
        "caption_decoding": {"chosen": decoding, "val_search": search, "val_images": len(data.caption_val)},
        "n_captions": len(refs),
        "n_questions": len(qs),
        "prompt_truncation": truncation.as_dict(),
        "examples": {
            "captions": [
                {"image_id": i, "prediction": p, "references": refs[i]}
                for i, p in list(cap_preds.items())[:8]
            ],
            "vqa": [
                {"question": q.question, "prediction": answers[q.question_id], "answer": q.answer}
                for q in qs[:: max(1, len(qs) // 8)][:8]
            ],
        },
    }
