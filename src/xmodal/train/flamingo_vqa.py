"""Few-shot visual question answering for the Flamingo recipe (used by :mod:`xmodal.tasks.flamingo`).

Flamingo (Alayrac et al. 2022, https://arxiv.org/abs/2204.14198, App. B.1.5) answers VQA after k
in-context (image, question, answer) examples; the prompt is open_flamingo's
``<image>Question: {q} Short answer: {a}<|endofchunk|>`` per demonstration, then
``<image>Question: {q} Short answer:`` for the query, continued greedily until ``<|endofchunk|>``. The
answer is scored with :func:`xmodal.metrics.vqa_accuracy` (the official normalisation and 10-human rule)
beside the question-only baseline (:func:`xmodal.tasks.vqa.prior_answers`, the language-prior check).

Training adds the same chunks (with the answer) of the training questions to the interleaved sequences,
so one model captions and answers. Demonstrations come from the training questions only: at random, or
by RICES on the frozen encoder's mean image token.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from xmodal.data.vl import VQAItem
from xmodal.eval.few_shot import Method, select_demonstrations
from xmodal.metrics import vqa_accuracy
from xmodal.models.flamingo import Flamingo
from xmodal.train.flamingo import CaptionSequences, FlamingoTokens, few_shot_generate


def question_text(question: str) -> str:
    """The query text after ``<image>`` (open_flamingo's VQA prompt)."""
    return f"Question: {question} Short answer:"


def demonstration_text(question: str, answer: str) -> str:
    """A demonstration (and training chunk): the question and its answer."""
    return f"{question_text(question)} {answer}"


@dataclass
class VQASplits:
    """The training and test questions and the image tokens of the images they show.

    Attributes:
        train / test: the questions.
        train_table / test_table: (N_images, T, C) image tokens of each split's distinct images.
        train_rows / test_rows: the table row of each question's image.
    """

    train: list[VQAItem]
    test: list[VQAItem]
    train_table: Tensor
    test_table: Tensor
    train_rows: list[int]
    test_rows: list[int]

    @classmethod
    def build(
        cls,
        *,
        fmnist_images: int,
        emoji: bool,
        seed: int,
        max_train: int | None,
        max_test: int | None,
        table_of: Callable[[list[Callable[[], Any]]], Tensor],
    ) -> VQASplits:
        """The templated questions (:func:`xmodal.data.vl.build_vqa`), capped evenly, and their images'
        tokens from ``table_of(loaders)`` (the recipe's cached frozen encoder)."""
        import functools

        from xmodal.data.vl import build_vqa
        from xmodal.train.llava import _spread

        parts: list[tuple[list[VQAItem], Tensor, list[int]]] = []
        for split, cap in (("train", max_train), ("test", max_test)):
            vset = build_vqa(split, fmnist_images=fmnist_images, emoji=emoji, seed=seed)  # type: ignore[arg-type]
            items = _spread(vset.items, cap)
            row: dict[str, int] = {}
            for q in items:
                row.setdefault(q.image_id, len(row))
            loaders = [functools.partial(vset.load_image, i) for i in row]
            parts.append((items, table_of(loaders), [row[q.image_id] for q in items]))
        (train, train_table, train_rows), (test, test_table, test_rows) = parts
        return cls(train, test, train_table, test_table, train_rows, test_rows)

    def demonstrations(self, tokenizer: Any, tokens: FlamingoTokens, max_len: int) -> CaptionSequences:
        """The training questions as chunks with their answers (demonstrations and training text)."""
        texts = [demonstration_text(q.question, q.answer) for q in self.train]
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return CaptionSequences(ids, tokens, max_len, image_of=self.train_rows)


def few_shot_answers(
    model: Flamingo,
    tokenizer: Any,
    demos_seqs: CaptionSequences,
    data: VQASplits,
    *,
    k: int,
    method: Method,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 6,
) -> tuple[dict[Hashable, str], list[list[int]], dict[str, int]]:
    """Answer each test question after k demonstrations from the training questions, greedily. A prompt
    that would not fit the LM's context with ``max_new_tokens`` more loses its first (least similar)
    demonstrations (:meth:`CaptionSequences.fit_demonstrations`), counted.

    Returns:
        ({question_id: answer}, the demonstrations' training indices per test question,
        ``{"prompts_shortened": n, "demonstrations_dropped": m}``).
    """
    demos = select_demonstrations(
        [q.image_id for q in data.test],
        [q.image_id for q in data.train],
        k,
        method=method,
        query_features=data.test_table.mean(dim=1)[data.test_rows],
        pool_features=data.train_table.mean(dim=1)[data.train_rows],
        seed=seed,
    )
    queries = [tokenizer(question_text(q.question), add_special_tokens=False)["input_ids"] for q in data.test]
    demos, shortened, dropped = demos_seqs.fit_demonstrations(demos, queries, max_new_tokens)
    answers = few_shot_generate(
        model,
        tokenizer,
        demos_seqs,
        demos=demos,
        queries=queries,
        pool_table=data.train_table,
        query_table=data.test_table,
        pool_rows=data.train_rows,
        query_rows=data.test_rows,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    fit = {"prompts_shortened": shortened, "demonstrations_dropped": dropped}
    return {q.question_id: a for q, a in zip(data.test, answers, strict=True)}, demos, fit


def evaluate_vqa(
    model: Flamingo,
    tokenizer: Any,
    tokens: FlamingoTokens,
    data: VQASplits,
    *,
    shots: Sequence[int],
    methods: Sequence[str],
    max_len: int,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 6,
    files: Path | None = None,
) -> dict[str, Any]:
    """VQA accuracy after k = ``shots`` demonstrations (each method; k = 0 once) beside the question-only
    baseline; with ``files``, the questions, annotations and every setting's answers in the VQAv2 formats
    there (``vqa_test_k0_results.json``, ..., ``vqa_test_question_only_results.json``).
    """
    from xmodal.eval.results_files import write_vqa_files
    from xmodal.tasks.vqa import prior_answers

    seqs = data.demonstrations(tokenizer, tokens, max_len)
    annotations = [q.annotation() for q in data.test]
    results: dict[str, Any] = {}
    answers: dict[str, dict[Hashable, str]] = {}
    examples: dict[str, Any] = {}
    for k in shots:
        for method in methods if k > 0 else methods[:1]:
            name = f"k={k}" if k == 0 else f"k={k}/{method}"
            preds, demos, fit = few_shot_answers(
                model,
                tokenizer,
                seqs,
                data,
                k=k,
                method=method,  # type: ignore[arg-type]
                seed=seed,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
            )
            results[name] = {**vqa_accuracy(annotations, preds), **fit}
            answers[name.replace("=", "").replace("/", "_")] = preds
            q0 = data.test[0]
            shown = "".join(
                f"<image>{demonstration_text(data.train[j].question, data.train[j].answer)}<|endofchunk|>"
                for j in demos[0]
            )
            examples[name] = {
                "question_id": q0.question_id,
                "prompt": f"{shown}<image>{question_text(q0.question)}",
                "prediction": preds[q0.question_id],
                "answers": list(q0.answers),
            }
    prior = prior_answers(data.train, data.test)
    baseline = vqa_accuracy(annotations, prior)
    written: dict[str, Any] = {}
    if files is not None:
        questions: dict[Hashable, str] = {q.question_id: q.question for q in data.test}
        written = {
            "files": write_vqa_files(
                files, "test", annotations, questions, {**answers, "question_only": prior}
            )
        }
    return {
        **written,
        "test_questions": len(data.test),
        "train_questions": len(data.train),
        "few_shot": results,
        "question_only": baseline,
        "beats_question_only": {name: r["overall"] > baseline["overall"] for name, r in results.items()},
        "examples": examples,
        "truncation": seqs.truncation.as_dict(),
    }
