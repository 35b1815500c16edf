"""SPICE plumbing: availability messages, and the jar protocol against a stand-in ``java`` on PATH.

The real SPICE needs the Stanford CoreNLP 3.6.0 jars, which cannot be fetched here; the stand-in checks
what xmodal sends (pycocoevalcap's input JSON and flags, run from the spice folder) and how it reads the
answer (per-image ``All`` F-scores in input order, their mean).
"""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from xmodal.errors import DataError
from xmodal.metrics import captions as captions_module
from xmodal.metrics import spice as spice_module
from xmodal.metrics.captions import caption_scores

FAKE_JAVA = """#!{python}
import json, os, sys
args = sys.argv[1:]
assert args[:3] == ["-jar", "-Xmx8G", "spice-1.0.jar"], args
assert os.path.isfile("spice-1.0.jar") and os.path.isfile("lib/stanford-corenlp-3.6.0-models.jar")
assert "-subset" in args and "-silent" in args and "-cache" in args
rows = json.load(open(args[3]))
mode = os.environ.get("FAKE_SPICE", "ok")
if mode == "fail":
    sys.stderr.write("Exception in thread main: out of memory\\n")
    sys.exit(3)
out = []
for r in reversed(rows):  # any order: xmodal matches rows by image_id
    f = "NaN" if mode == "nan" else len(r["test"].split()) / 10 + len(r["refs"]) / 100
    out.append({{"image_id": r["image_id"], "scores": {{"All": {{"f": f, "pr": 0.0, "re": 0.0}}}}}})
json.dump(out, open(args[args.index("-out") + 1], "w"))
"""


@pytest.fixture
def fake_spice(tmp_path, monkeypatch):
    """A spice folder with the jars in place (empty files) and a stand-in ``java`` first on PATH."""
    folder = tmp_path / "spice"
    (folder / "lib").mkdir(parents=True)
    for name in ("spice-1.0.jar", *(f"lib/{j}" for j in spice_module.CORENLP_JARS)):
        (folder / name).write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA.format(python=sys.executable))
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(spice_module, "spice_dir", lambda: folder)
    return folder


def test_missing_corenlp_jars_are_named(fake_spice):
    (fake_spice / "lib" / "stanford-corenlp-3.6.0-models.jar").unlink()
    ok, why = spice_module.spice_availability()
    assert not ok
    assert "stanford-corenlp-3.6.0-models.jar missing from" in why and str(fake_spice / "lib") in why
    assert "stanford-corenlp-3.6.0.jar missing" not in why  # that one is there
    with pytest.raises(DataError, match="SPICE requested but SPICE not computed"):
        caption_scores({1: ["a cat"]}, {1: "a cat"}, meteor=False, spice=True)
    assert "SPICE" not in caption_scores({1: ["a cat"]}, {1: "a cat"}, meteor=False)  # None: when available


def test_no_java_or_no_pycocoevalcap(monkeypatch, fake_spice):
    monkeypatch.setattr(spice_module.shutil, "which", lambda name: None)
    assert spice_module.spice_availability() == (
        False,
        "SPICE not computed: no java on PATH (it runs pycocoevalcap's spice-1.0.jar)",
    )
    monkeypatch.undo()
    monkeypatch.setattr(spice_module, "spice_dir", lambda: None)
    why = spice_module.spice_availability()[1]
    assert "pycocoevalcap (which ships spice-1.0.jar) is not installed" in why


def test_protocol_order_and_mean(fake_spice):
    refs = [["a red car", "a car"], ["two dogs play"], ["one", "two", "three"]]
    hyps = ["a red car on a road", "dogs", "a b c"]
    score, per = spice_module.spice_score(refs, hyps)
    expected = [len(h.split()) / 10 + len(r) / 100 for r, h in zip(refs, hyps, strict=True)]
    assert per == pytest.approx(expected)
    assert score == pytest.approx(sum(expected) / 3)
    assert not list((fake_spice).glob("tmp*")), "nothing written inside the spice folder"


def test_caption_scores_include_spice_when_available(fake_spice):
    refs = {7: ["A red car.", "A car!"], 3: ["Two dogs play."]}
    got = caption_scores(refs, {7: "A red car", 3: "Dogs"}, meteor=False, per_image=True)
    # PTB-tokenised as pycocoevalcap feeds SPICE: lowercased, punctuation dropped
    assert got["SPICE"] == pytest.approx(((3 / 10 + 2 / 100) + (1 / 10 + 1 / 100)) / 2)
    assert got["per_image"][7]["SPICE"] == pytest.approx(0.32)
    assert set(got) >= {*captions_module.METRICS, "SPICE"}


@pytest.mark.parametrize(("mode", "message"), [("fail", "failed with exit code 3"), ("nan", "NaN")])
def test_failures_are_one_line_errors(fake_spice, monkeypatch, mode, message):
    monkeypatch.setenv("FAKE_SPICE", mode)
    with pytest.raises(DataError, match=message) as info:
        spice_module.spice_score([["a cat"]], ["a cat"])
    assert "\n" not in str(info.value)


def test_cli_notes_say_why_spice_did_not_run(tmp_path, fake_spice, capsys):
    from xmodal.cli import main

    (fake_spice / "lib" / "stanford-corenlp-3.6.0.jar").unlink()
    refs = {
        "images": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "a cat"}],
    }
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    (tmp_path / "preds.json").write_text(json.dumps([{"image_id": 1, "caption": "a cat"}]))
    out = tmp_path / "scores.json"
    args = ["eval", "captions", "--references", str(tmp_path / "refs.json")]
    args += ["--predictions", str(tmp_path / "preds.json"), "--out", str(out), "--no-meteor"]
    assert main(args) == 0
    notes = json.loads(out.read_text())["notes"]
    assert any("stanford-corenlp-3.6.0.jar missing from" in n for n in notes)
    assert main([*args, "--no-spice"]) == 0
    assert "SPICE not computed: turned off (--no-spice)" in json.loads(out.read_text())["notes"]
    assert "SPICE" in capsys.readouterr().out
