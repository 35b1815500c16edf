"""Test helper: a recipe's COCO prediction files, rescored, give the numbers in its metrics JSON."""

from __future__ import annotations

from typing import Any

from xmodal.eval.captions import evaluate_caption_files


def assert_rescored(files: dict[str, str], scores: dict[str, dict[str, Any]]) -> None:
    """Every COCO results file in ``files``, scored against its references file, gives ``scores[name]``'s
    BLEU-4 and CIDEr-D exactly."""
    assert set(files) == {"references", *scores}
    for name, want in scores.items():
        got = evaluate_caption_files(files["references"], files[name], meteor=False, spice=False)
        assert (got["Bleu_4"], got["CIDEr"]) == (want["Bleu_4"], want["CIDEr"]), name
