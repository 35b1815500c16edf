"""Tests for xmodal.metrics.vqa: hand-computed accuracies and parity with the official VQA evaluation.

``OfficialVQAEval`` below is transcribed from the official VQA API (https://github.com/GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, Python 3 version, class ``VQAEval``): the same
normalisation code and accuracy loop, with the progress bar and the VQA helper objects left out. It is
not on PyPI, so it is kept here as the reference.
"""

from __future__ import annotations

import copy
import random
import re

import pytest

from xmodal.metrics import vqa_accuracy
from xmodal.metrics.vqa import CONTRACTIONS, MANUAL_MAP, normalize_prediction, process_punctuation

# the official contractions map, copied again from vqaEval.py (independently of xmodal's copy)
OFFICIAL_CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt':
    "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't",
    'doesnt': "doesn't", 'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve":
    "hadn't've", 'hasnt': "hasn't", 'havent': "haven't", 'hed': "he'd", "hed've": "he'd've",
    "he'dve": "he'd've", 'hes': "he's", 'howd': "how'd", 'howll': "how'll", 'hows': "how's",
    "Id've": "I'd've", "I'dve": "I'd've", 'Im': "I'm", 'Ive': "I've", 'isnt': "isn't", 'itd':
    "it'd", "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll", "let's": "let's", 'maam':
    "ma'am", 'mightnt': "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've", 'neednt': "needn't", 'notve':
    "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at", "'ows'at":
    "'ow's'at", "'ow'sat": "'ow's'at", 'shant': "shan't", "shed've": "she'd've", "she'dve":
    "she'd've", "she's": "she's", 'shouldve': "should've", 'shouldnt': "shouldn't", "shouldnt've":
    "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd', "somebodyd've":
    "somebody'd've", "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll", 'somebodys':
    "somebody's", 'someoned': "someone'd", "someoned've": "someone'd've", "someone'dve":
    "someone'd've", 'someonell': "someone'll", 'someones': "someone's", 'somethingd': "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", 'somethingll':
    "something'll", 'thats': "that's", 'thered': "there'd", "thered've": "there'd've", "there'dve":
    "there'd've", 'therere': "there're", 'theres': "there's", 'theyd': "they'd", "theyd've":
    "they'd've", "they'dve": "they'd've", 'theyll': "they'll", 'theyre': "they're", 'theyve':
    "they've", 'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've", "we'dve": "we'd've", 'weve':
    "we've", 'werent': "weren't", 'whatll': "what'll", 'whatre': "what're", 'whats': "what's",
    'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's", 'whereve':
    "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've", 'wholl': "who'll",
    'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's",
    'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", 'yall': "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd':
    "you'd", "youd've": "you'd've", "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're",
    'youve': "you've",
}  # fmt: skip


class OfficialVQAEval:
    """Transcribed from the official vqaEval.py (VQAEval.evaluate, processPunctuation, processDigitArticle,
    setAccuracy); ``qa`` and ``res`` replace the VQA objects' ``qa`` dictionaries."""

    def __init__(self, qa, res, n=2):
        self.n = n
        self.accuracy = {}
        self.evalQA = {}
        self.qa, self.res = qa, res
        self.contractions = dict(OFFICIAL_CONTRACTIONS)
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
                          "ten": "10"}  # fmt: skip
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}",
                      "(", ")", "=", "+", "\\", "_", "-",
                      ">", "<", "@", "`", ",", "?", "!"]  # fmt: skip

    def evaluate(self):
        quesIds = list(self.qa)
        gts = {q: self.qa[q] for q in quesIds}
        res = {q: self.res[q] for q in quesIds}
        accQA, accQuesType, accAnsType = [], {}, {}
        for quesId in quesIds:
            resAns = res[quesId]["answer"]
            resAns = resAns.replace("\n", " ")
            resAns = resAns.replace("\t", " ")
            resAns = resAns.strip()
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)
            gtAcc = []
            gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
            if len(set(gtAnswers)) > 1:
                for ansDic in gts[quesId]["answers"]:
                    ansDic["answer"] = self.processPunctuation(ansDic["answer"])
            for gtAnsDatum in gts[quesId]["answers"]:
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            quesType = gts[quesId]["question_type"]
            ansType = gts[quesId]["answer_type"]
            avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            accQuesType.setdefault(quesType, []).append(avgGTAcc)
            accAnsType.setdefault(ansType, []).append(avgGTAcc)
            self.evalQA[quesId] = round(100 * avgGTAcc, self.n)
        self.accuracy["overall"] = round(100 * float(sum(accQA)) / len(accQA), self.n)
        self.accuracy["perQuestionType"] = {
            t: round(100 * float(sum(v)) / len(v), self.n) for t, v in accQuesType.items()
        }
        self.accuracy["perAnswerType"] = {
            t: round(100 * float(sum(v)) / len(v), self.n) for t, v in accAnsType.items()
        }

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)


def annotation(qid, answers, qtype="how many", atype="number"):
    humans = [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]
    return {
        "question_id": qid,
        "image_id": 7,
        "question_type": qtype,
        "answer_type": atype,
        "answers": humans,
    }


def test_tables():
    assert CONTRACTIONS == OFFICIAL_CONTRACTIONS and len(CONTRACTIONS) == 120
    assert OfficialVQAEval({}, {}).manualMap == MANUAL_MAP


def test_normalisation_by_hand():
    assert normalize_prediction("  Two\tdogs. ") == "2 dogs"
    assert normalize_prediction("The Cat") == "cat"
    assert normalize_prediction("dont know") == "don't know"
    assert normalize_prediction("1,000") == "1000"  # digit-comma-digit: punctuation deleted, not spaced
    assert normalize_prediction("red,white") == "red white"
    assert normalize_prediction("3.5") == "3.5"  # a period before a digit stays
    assert process_punctuation("yes!") == "yes "
    assert process_punctuation("a" + "." * 40) == "a" + "." * 8  # the script's count=re.UNICODE: 32 removed


def test_accuracy_by_hand():
    anns = [
        annotation(1, ["2"] * 3 + ["3"] * 7),  # 3 humans said 2
        annotation(2, ["2"] * 2 + ["3"] * 8),  # 2 humans said 2
        annotation(3, ["yes"] * 10, "is this", "yes/no"),
        annotation(4, ["Two"] * 10),  # unanimous: the humans' answers are not normalised at all
    ]
    got = vqa_accuracy(anns, {1: "two", 2: "2", 3: "Yes.", 4: "two"}, per_question=True)
    # q1: leaving out one of the three "2": 2/3, else 1 -> (3 * 2/3 + 7) / 10 = 0.9
    # q2: 2 matches: 1/3 when one is left out (2 of 10 subsets), 2/3 otherwise -> 0.6
    assert got["perQuestion"] == {1: 90.0, 2: 60.0, 3: 100.0, 4: 0.0}
    assert got["overall"] == 62.5
    assert got["perAnswerType"] == {"number": 50.0, "yes/no": 100.0}
    assert got["perQuestionType"] == {"how many": 50.0, "is this": 100.0}


def random_answer(rng):
    base = rng.choice(
        ["2", "two", "Two", "2 ", "ten", "10", "none", "0", "yes", "Yes", "no", "a dog", "the dog", "dog",
         "dog.", "dogs", "dont know", "don't know", "1,000", "1000", "3.5", "red, white", "red white",
         "left-side", "left side", "t-shirt", "(yes)", "yes!", "it's", "its", "an apple", "apple", "...",
         "a.b.c", "12:30", "new york", "New York", "n/a", "#1", "@home", "c++", "x\ty", "  padded  "]
    )  # fmt: skip
    return base if rng.random() < 0.8 else base + rng.choice([".", "?", " ", "!", ","])


def test_parity_with_official_evaluation():
    rng = random.Random(0)
    anns, preds = [], {}
    for qid in range(1500):
        pool = [random_answer(rng) for _ in range(rng.randint(1, 4))]
        humans = [rng.choice(pool) for _ in range(10)]
        anns.append(
            annotation(
                qid,
                humans,
                rng.choice(["how many", "what color", "is the"]),
                rng.choice(["number", "other", "yes/no"]),
            )
        )
        preds[qid] = rng.choice(pool) if rng.random() < 0.7 else random_answer(rng)
    official = OfficialVQAEval(
        {a["question_id"]: copy.deepcopy(a) for a in anns}, {q: {"answer": p} for q, p in preds.items()}
    )
    official.evaluate()
    got = vqa_accuracy(anns, preds, per_question=True)
    assert got["perQuestion"] == official.evalQA
    assert {k: got[k] for k in ("overall", "perQuestionType", "perAnswerType")} == official.accuracy
    assert 0 < got["overall"] < 100
    assert (
        anns[0]["answers"][0]["answer"] == copy.deepcopy(anns[0])["answers"][0]["answer"]
    )  # input untouched


def test_n_decimals_and_empty():
    got = vqa_accuracy([annotation(1, ["x"] * 2 + ["b"] * 8)], {1: "x"}, n=4)
    assert got["overall"] == 60.0
    got = vqa_accuracy([annotation(1, ["x"] * 1 + ["b"] * 9)], {1: "x"}, n=1)
    assert got["overall"] == 30.0  # nine subsets hold the one "x": 9 * (1/3) / 10
    with pytest.raises(ValueError, match="no questions"):
        vqa_accuracy([], {})
