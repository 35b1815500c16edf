"""Templated visual questions for the generative recipes (Flamingo few-shot, BLIP-2): the questions, their
images' frozen-encoder tokens, the prompt format and the report beside the question-only baseline.

The prompt is open_flamingo's / BLIP-2's ``Question: {q} Short answer:`` (Li et al. 2023,
https://arxiv.org/abs/2301.12597, §4.2; Awadalla et al. 2023, https://arxiv.org/abs/2308.01390); answers
are scored only by :func:`xmodal.metrics.vqa_accuracy` (the official normalisation and 10-human rule)
beside :func:`xmodal.tasks.vqa.prior_answers` (the question-only language-prior check every model must
beat).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from xmodal.data.vl import VQAItem
from xmodal.errors import ConfigError
from xmodal.metrics import vqa_accuracy


@dataclass
class QuestionsSection:
    """A recipe's ``vqa`` section: templated questions (:func:`xmodal.data.vl.build_vqa`) beside captions.

    Attributes:
        enabled: train on the training questions too and answer the test questions.
        fmnist_images: Fashion-MNIST images per split (five questions each).
        emoji: also the emoji questions (five per emoji of the split).
        seed: the questions' seed (image choice, distractors, yes/no balance).
        max_train_questions / max_test_questions: evenly spread caps (None: every question).
        max_new_tokens: the answer's length limit.
    """

    enabled: bool = False
    fmnist_images: int = 500
    emoji: bool = True
    seed: int = 0
    max_train_questions: int | None = None
    max_test_questions: int | None = None
    max_new_tokens: int = 6

    def check(self, key: str = "vqa") -> None:
        """Raises ConfigError on a section that cannot give questions."""
        if self.enabled and not (self.fmnist_images > 0 or self.emoji):
            raise ConfigError(f"{key}.enabled needs questions: {key}.fmnist_images > 0 or {key}.emoji")
        for name in ("max_train_questions", "max_test_questions"):
            cap = getattr(self, name)
            if cap is not None and cap < 1:
                raise ConfigError(f"{key}.{name} must be >= 1 (or null for every question), got {cap}")

    def splits(self, *, encoder_name: str, image_size: int, stages: list[int] | None) -> VQASplits:
        """The questions and their images' tokens from the recipe's (cached) frozen encoder."""
        from xmodal.train.image_tokens import image_token_table

        def table_of(loaders: Sequence[Callable[[], Any]]) -> Tensor:
            return image_token_table(
                lambda i: loaders[i](),
                len(loaders),
                encoder_name=encoder_name,
                image_size=image_size,
                stages=stages,
            )

        return VQASplits.build(
            fmnist_images=self.fmnist_images,
            emoji=self.emoji,
            seed=self.seed,
            max_train=self.max_train_questions,
            max_test=self.max_test_questions,
            table_of=table_of,
        )


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
        table_of: Callable[[Sequence[Callable[[], Any]]], Tensor],
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


def vqa_report(
    data: VQASplits,
    answers: Mapping[str, Mapping[Hashable, str]],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    files: Path | None = None,
) -> dict[str, Any]:
    """Every setting's VQA accuracy (``{name: {question_id: answer}}``, plus ``extra[name]``'s entries)
    beside the question-only baseline; with ``files``, the questions, annotations and every setting's
    answers in the VQAv2 formats there (``vqa_test_<name>_results.json``, "=" and "/" dropped from names).
    """
    from xmodal.eval.results_files import write_vqa_files
    from xmodal.tasks.vqa import prior_answers

    annotations = [q.annotation() for q in data.test]
    results = {
        name: {**vqa_accuracy(annotations, a), **(extra or {}).get(name, {})} for name, a in answers.items()
    }
    prior = prior_answers(data.train, data.test)
    baseline = vqa_accuracy(annotations, prior)
    written: dict[str, Any] = {}
    if files is not None:
        questions: dict[Hashable, str] = {q.question_id: q.question for q in data.test}
        named = {name.replace("=", "").replace("/", "_"): a for name, a in answers.items()}
        written = {
            "files": write_vqa_files(files, "test", annotations, questions, {**named, "question_only": prior})
        }
    return {
        **written,
        "test_questions": len(data.test),
        "train_questions": len(data.train),
        "results": results,
        "question_only": baseline,
        "beats_question_only": {name: r["overall"] > baseline["overall"] for name, r in results.items()},
    }
