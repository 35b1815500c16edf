"""VQA accuracy exactly as the official VQA evaluation computes it (VQA API, ``vqaEval.py``).

VQA (Antol et al., 2015, https://arxiv.org/abs/1505.00468; VQAv2: Goyal et al., 2017,
https://arxiv.org/abs/1612.00837) collects ten human answers per question. An answer is right in
proportion to how many humans gave it: ``min(#humans that said it / 3, 1)``, averaged over the ten subsets
of nine humans (leave one out). The official script (https://github.com/GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, Python 3 version) normalises answers first, and this
module keeps its exact behaviour, quirks included:

* the predicted answer: newlines and tabs become spaces, then strip, then :func:`process_punctuation`
  and :func:`process_digit_article` (lowercase, number words -> digits, drop a/an/the, add apostrophes to
  contractions such as ``dont``);
* the human answers only go through :func:`process_punctuation`, and only when they are not all equal;
* punctuation next to a space, or anywhere in a text holding a digit-comma-digit, is deleted, otherwise
  replaced by a space; periods not followed by a digit are deleted, but at most 32 of them (the script
  passes ``re.UNICODE`` as ``re.sub``'s ``count``);
* a human answer is left out of "the others" by dictionary equality, as the script does;
* accuracies are percentages rounded to ``n = 2`` decimals with Python's :func:`round`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
"""The official contractions map (keys with capitals can never match: words are lowercased first)."""

MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ("a", "an", "the")
PUNCT = list(';/[]"{}()=+\\_-><@`,?!')  # the official list, in its order
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # sic: a look-ahead, so it only means "not before a digit"
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PERIOD_COUNT = int(re.UNICODE)  # the official script passes re.UNICODE (32) as re.sub's count


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``."""
    out = text
    digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCT:
        out = out.replace(p, "" if p + " " in text or " " + p in text or digit_comma else " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lowercase, number words to digits, no articles, contractions."""
    words = [MANUAL_MAP.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_prediction(answer: str) -> str:
    """A predicted answer as the official script compares it."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def question_accuracy(prediction: str, human_answers: Sequence[Mapping[str, Any]]) -> float:
    """Accuracy (0..1) of one predicted answer against the human answers of one question.

    Args:
        prediction: the raw predicted answer.
        human_answers: the annotation's ``answers`` list of ``{"answer", "answer_confidence", "answer_id"}``
            dictionaries (ten in VQAv2).
    """
    res = normalize_prediction(prediction)
    answers = [dict(a) for a in human_answers]
    if len({a["answer"] for a in answers}) > 1:
        for a in answers:
            a["answer"] = process_punctuation(a["answer"])
    accs = []
    for datum in answers:
        matching = sum(1 for other in answers if other != datum and other["answer"] == res)
        accs.append(min(1, float(matching) / 3))
    return float(sum(accs)) / len(accs)


def vqa_accuracy(
    annotations: Sequence[Mapping[str, Any]],
    predictions: Mapping[Hashable, str],
    *,
    n: int = 2,
    per_question: bool = False,
) -> dict[str, Any]:
    """VQA accuracy of predicted answers, in the official ``accuracy`` dictionary's shape.

    Args:
        annotations: the ``annotations`` list of a VQA annotation file: dictionaries with ``question_id``,
            ``question_type``, ``answer_type`` and ``answers``. Every question is evaluated, in this order.
        predictions: ``{question_id: answer}`` for exactly those questions.
        n: decimals kept (the official default 2).
        per_question: also return ``"perQuestion": {question_id: accuracy}`` (the official ``evalQA``).

    Returns:
        ``{"overall": %, "perQuestionType": {type: %}, "perAnswerType": {type: %}}`` (percentages).

    Raises:
        KeyError: a question without a prediction (callers check ids first; see
            :func:`xmodal.eval.vqa.check_question_ids`).
    """
    acc_all: list[float] = []
    by_question_type: dict[str, list[float]] = {}
    by_answer_type: dict[str, list[float]] = {}
    per_q: dict[Hashable, float] = {}
    for ann in annotations:
        qid = ann["question_id"]
        acc = question_accuracy(predictions[qid], ann["answers"])
        acc_all.append(acc)
        by_question_type.setdefault(ann["question_type"], []).append(acc)
        by_answer_type.setdefault(ann["answer_type"], []).append(acc)
        per_q[qid] = round(100 * acc, n)
    if not acc_all:
        raise ValueError("no questions to evaluate")
    result: dict[str, Any] = {
        "overall": round(100 * float(sum(acc_all)) / len(acc_all), n),
        "perQuestionType": {k: round(100 * float(sum(v)) / len(v), n) for k, v in by_question_type.items()},
        "perAnswerType": {k: round(100 * float(sum(v)) / len(v), n) for k, v in by_answer_type.items()},
    }
    if per_question:
        result["perQuestion"] = per_q
    return result
