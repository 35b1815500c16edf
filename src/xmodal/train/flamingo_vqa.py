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

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from xmodal.eval.few_shot import Method, few_shot_text, select_demonstrations
from xmodal.models.flamingo import Flamingo
from xmodal.train.flamingo import CaptionSequences, FlamingoTokens, few_shot_generate
from xmodal.train.questions import VQASplits, demonstration_text, question_text


def demonstrations(data: VQASplits, tokenizer: Any, tokens: FlamingoTokens, max_len: int) -> CaptionSequences:
    """The training questions as chunks with their answers (demonstrations and training text)."""
    texts = [demonstration_text(q.question, q.answer) for q in data.train]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return CaptionSequences(ids, tokens, max_len, image_of=data.train_rows)


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
    from xmodal.train.questions import vqa_report

    seqs = demonstrations(data, tokenizer, tokens, max_len)
    answers: dict[str, dict[Hashable, str]] = {}
    fits: dict[str, dict[str, int]] = {}
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
            answers[name], fits[name] = preds, fit
            q0 = data.test[0]
            shown = [demonstration_text(data.train[j].question, data.train[j].answer) for j in demos[0]]
            examples[name] = {
                "question_id": q0.question_id,
                "prompt": few_shot_text(shown, query_text=question_text(q0.question)),
                "prediction": preds[q0.question_id],
                "answers": list(q0.answers),
            }
    report = vqa_report(data, answers, fits, files)
    return {
        **{k: v for k, v in report.items() if k != "results"},
        "few_shot": report["results"],
        "examples": examples,
        "truncation": seqs.truncation.as_dict(),
    }
