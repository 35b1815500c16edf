"""Generative VQA for the BLIP-2 recipe (used by :mod:`xmodal.tasks.blip2`).

BLIP-2 (Li et al. 2023, https://arxiv.org/abs/2301.12597, §4.2) answers a question by prompting the LM,
after the Q-Former's soft visual prefix, with ``Question: {q} Short answer:`` and decoding. Here the
training questions join the captions in stage 2 (instruction-style, the loss on the answer tokens and eos
only), and the test questions are answered greedily and scored beside the question-only baseline
(:func:`xmodal.train.questions.vqa_report`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xmodal.lm.sequences import IGNORE_INDEX, TruncationCounter, truncate
from xmodal.train.questions import VQASplits, question_text


@dataclass
class QuestionPrompts:
    """Token ids of question prompts and answers: ``<start> Question: {q} Short answer:`` + `` {a}<eos>``.

    Args:
        tokenizer: the LM's tokenizer.
        start: the first id (bos, or eos for LMs without one: GPT-2's convention).
        eos: the id that ends an answer.
        max_len: the text the LM may see after the visual prefix (longer sequences are cut, counted).
    """

    tokenizer: Any
    start: int
    eos: int
    max_len: int
    truncation: TruncationCounter = field(default_factory=TruncationCounter)
    unlabelled: int = 0  # training questions whose answer the cut removed entirely (they teach nothing)

    def prompt(self, question: str) -> list[int]:
        """The ids a test question is answered after."""
        ids = self.tokenizer(question_text(question), add_special_tokens=False)["input_ids"]
        return truncate([self.start, *ids], self.max_len, self.truncation)

    def training(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(ids, labels) of a training question: the labels are -100 except on the answer and eos."""
        q = [self.start, *self.tokenizer(question_text(question), add_special_tokens=False)["input_ids"]]
        a = [*self.tokenizer(f" {answer}", add_special_tokens=False)["input_ids"], self.eos]
        ids = truncate(q + a, self.max_len, self.truncation)
        labels = ([IGNORE_INDEX] * len(q) + a)[: len(ids)]
        self.unlabelled += all(t == IGNORE_INDEX for t in labels)
        return ids, labels


@torch.no_grad()
def answer_questions(
    model: Any,
    prompts: QuestionPrompts,
    data: VQASplits,
    *,
    batch_size: int = 64,
    max_new_tokens: int = 6,
) -> dict[Hashable, str]:
    """Greedy answers of the test questions, batched with left-padded prompts → ``{question_id: answer}``."""
    from xmodal.train.flamingo import pad

    model.eval()
    tok = prompts.tokenizer
    out: dict[Hashable, str] = {}
    for i in range(0, len(data.test), batch_size):
        qs = data.test[i : i + batch_size]
        ids, mask = pad([prompts.prompt(q.question) for q in qs], tok.pad_token_id, left=True)
        gen = model.generate(
            ids,
            features=data.test_table[[data.test_rows[i + j] for j in range(len(qs))]],
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=prompts.eos,
            pad_token_id=tok.pad_token_id,
        )
        for q, row in zip(qs, gen.tolist(), strict=True):
            kept = [t for t in row if t not in (tok.pad_token_id, prompts.eos)]
            out[q.question_id] = tok.decode(kept, skip_special_tokens=True).strip()
    return out


def evaluate_vqa(
    model: Any,
    prompts: QuestionPrompts,
    data: VQASplits,
    *,
    batch_size: int = 64,
    max_new_tokens: int = 6,
    files: Path | None = None,
) -> dict[str, Any]:
    """The test questions' VQA accuracy (``"model"``) beside the question-only baseline, a few examples;
    with ``files``, the VQAv2 files there (``vqa_test_blip2_results.json``, ...)."""
    from xmodal.train.questions import vqa_report

    preds = answer_questions(model, prompts, data, batch_size=batch_size, max_new_tokens=max_new_tokens)
    report = vqa_report(data, {"blip2": preds}, files=files)
    return {
        **{k: v for k, v in report.items() if k not in ("results", "beats_question_only")},
        "model": report["results"]["blip2"],
        "beats_question_only": report["beats_question_only"]["blip2"],
        "examples": [
            {"question": q.question, "prediction": preds[q.question_id], "answers": list(q.answers)}
            for q in data.test[:10]
        ],
        "truncation": {**prompts.truncation.as_dict(), "unlabelled_training_questions": prompts.unlabelled},
    }
