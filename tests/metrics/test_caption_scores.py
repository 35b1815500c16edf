"""Tests for xmodal.metrics.captions.caption_scores: parity with pycocoevalcap end to end (its Java
tokenizer and its scorers) on captions full of punctuation, contractions, numbers and non-ASCII text,
seeded expected values, id checks and METEOR through pycocoevalcap's jar."""

from __future__ import annotations

import importlib.util
import random
import shutil

import pytest

from xmodal.errors import DataError
from xmodal.metrics import caption_scores
from xmodal.metrics import meteor as meteor_module
from xmodal.metrics.captions import METRICS

SUBJECTS = [
    "A man", "a WOMAN", "Two dogs", "The kids'", "An old man's cat", "Several cows",
    "A t-shirt-wearing guy", "The chef", "A brown horse", "Mr. Smith", "A café owner", "Über-cool teens",
    "3 people", "A \"vintage\" car",
]  # fmt: skip
VERBS = [
    "riding", "sitting on", "standing next to", "holding", "eating", "looking at", "don't like",
    "can't reach", "it's near", "cannot see", "are gonna jump over", "parked beside", "(slowly) walking down",
    "won't leave",
]  # fmt: skip
OBJECTS = [
    "a bike", "the beach", "a large pizza 🍕", "a wooden bench", "the street", "a frisbee", "some snow",
    "a 3.5 inch screen", "1,000 balloons", "two slices (of cake)", "a well-known sign", "the U.S. flag",
    "a naïve résumé", "a 👍🏽 sticker", "«quoted» text", "the 90's style jalapeño", "1/2 a sandwich",
]  # fmt: skip
ENDINGS = [".", "", " .", "!", "?", " in the park.", ", smiling.", " -- again...", " at 10:30 a.m.", "; etc."]


def caption(rng: random.Random) -> str:
    text = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
    return text.upper() if rng.random() < 0.05 else text


def corpus(seed: int, n_images: int, n_refs: int = 5) -> tuple[dict, dict]:
    rng = random.Random(seed)
    refs = {1000 + i: [caption(rng) for _ in range(n_refs)] for i in range(n_images)}
    preds = {i: caption(rng) for i in refs}
    return refs, preds


def has_java_pycocoevalcap() -> bool:
    return shutil.which("java") is not None and importlib.util.find_spec("pycocoevalcap") is not None


def test_parity_with_pycocoevalcap_end_to_end():
    assert has_java_pycocoevalcap(), "needs java on PATH and pycocoevalcap (installed by make test)"
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    refs, preds = corpus(0, 300)
    tokenizer = PTBTokenizer()  # runs stanford-corenlp-3.4.1.jar
    gts = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in refs.items()})
    res = tokenizer.tokenize({i: [{"caption": preds[i]}] for i in refs})
    expected, per_expected = {}, {}
    for scorer, names in ((Bleu(4), METRICS[:4]), (Rouge(), ["ROUGE_L"]), (Cider(), ["CIDEr"])):
        score, per = scorer.compute_score(gts, res, **({"verbose": 0} if names[0] == "Bleu_1" else {}))
        scores, pers = (score, per) if len(names) > 1 else ([score], [per])
        for name, s, p in zip(names, scores, pers, strict=True):
            expected[name], per_expected[name] = s, list(p)

    got = caption_scores(refs, preds, per_image=True, meteor=False)
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name
        per = [got["per_image"][i][name] for i in refs]
        assert per == pytest.approx(per_expected[name], abs=1e-6), name
    assert "METEOR" not in got


def test_seeded_expected_values():
    # pycocoevalcap 1.2 (Java tokenizer) on this corpus
    refs, preds = corpus(1, 40)
    got = caption_scores(refs, preds, meteor=False)
    expected = {
        "Bleu_1": 0.4327956989235678,
        "Bleu_2": 0.29553561661180466,
        "Bleu_3": 0.216656591742476,
        "Bleu_4": 0.1568561711687106,
        "ROUGE_L": 0.31127378951805834,
        "CIDEr": 0.19614321410022767,
    }
    assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-9)


def test_identical_predictions_score_perfectly():
    refs = {
        1: ["A dog runs on the grass.", "A dog runs."],
        2: ["Two cats sleep on a red sofa.", "Cats sleep."],
    }
    got = caption_scores(
        refs, {1: "a dog runs on the grass", 2: "Two cats sleep on a red sofa!"}, meteor=False
    )
    assert got["Bleu_1"] == pytest.approx(1.0, abs=1e-6) and got["ROUGE_L"] == pytest.approx(1.0)


def test_mismatched_ids_are_listed():
    refs = {i: ["a dog"] for i in range(10)}
    preds = {i: "a dog" for i in range(3, 12)}
    with pytest.raises(DataError) as err:
        caption_scores(refs, preds)
    msg = str(err.value)
    assert "predictions without references: 10, 11 (2 in all)" in msg
    assert "images without a prediction: 0, 1, 2 (3 in all)" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="not a non-empty list"):
        caption_scores({1: []}, {1: "x"})
    with pytest.raises(DataError, match="not strings"):
        caption_scores({1: ["a"]}, {1: 5})  # type: ignore[dict-item]


METEOR_REFS = {
    1: ["A man riding a horse.", "A person rides a brown horse on the beach."],
    2: ["Two dogs play in the park.", "Dogs are playing with a ball."],
    3: ["A café in Zürich, at night."],
}
METEOR_PREDS = {1: "a man on a horse", 2: "a dog playing in a park", 3: "A cafe at night."}


@pytest.mark.slow
def test_meteor_through_pycocoevalcaps_jar():
    assert meteor_module.meteor_availability()[0], meteor_module.meteor_availability()[1]
    got = caption_scores(METEOR_REFS, METEOR_PREDS, per_image=True)
    # pycocoevalcap's Meteor().compute_score on the same (tokenised) captions
    assert got["METEOR"] == pytest.approx(0.3081739754982745, abs=1e-9)
    per = [got["per_image"][i]["METEOR"] for i in METEOR_REFS]
    assert per == pytest.approx([0.3571361959045425, 0.2866017972133953, 0.28492576331156255], abs=1e-9)


def test_meteor_unavailable(monkeypatch):
    monkeypatch.setattr(meteor_module.shutil, "which", lambda name: None)
    ok, why = meteor_module.meteor_availability()
    assert not ok and "no java on PATH" in why
    assert "METEOR" not in caption_scores(METEOR_REFS, METEOR_PREDS)  # None: only when available
    with pytest.raises(DataError, match="METEOR requested but METEOR not computed: no java"):
        caption_scores(METEOR_REFS, METEOR_PREDS, meteor=True)
