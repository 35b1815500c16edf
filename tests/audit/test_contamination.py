"""Tests for xmodal.audit: sources (JSONL, folder, registered split), pairing rules, the embedding test,
the outputs and the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from xmodal.audit import AuditSettings, audit, open_source, write_audit
from xmodal.cli import main
from xmodal.errors import DataError


def photo(name: str, size: int | None = None) -> Image.Image:
    im = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    return im.resize((size, size), Image.Resampling.BICUBIC) if size else im


@pytest.fixture
def sets(tmp_path: Path) -> tuple[Path, Path]:
    """train.jsonl (coffee twice with two captions, astronaut at 96 px, a broken file) and an eval folder."""
    (tmp_path / "img").mkdir()
    photo("coffee", 128).save(tmp_path / "img" / "coffee.png")
    photo("astronaut", 96).save(tmp_path / "img" / "astro.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    rows = [
        {"image": "img/coffee.png", "caption": "A cup of coffee on a saucer.", "id": 1},
        {"image": "img/coffee.png", "caption": "espresso in a white cup", "id": 2},
        {"image": "img/astro.png", "caption": "an astronaut", "id": 3},
        {"image": "img/broken.png", "caption": "broken", "id": 4},
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = tmp_path / "eval"
    ev.mkdir()
    photo("coffee", 128).save(ev / "a_coffee.png")  # same pixels as the training coffee
    photo("astronaut").save(ev / "b_astronaut.png")  # 512 px original: a near duplicate of the 96 px one
    photo("camera").save(ev / "c_camera.png")
    (ev / "notes.txt").write_text("not an image")
    return train, ev


def test_sources(sets):
    train, ev = sets
    t = open_source(str(train))
    assert [it.key for it in t.items] == ["train.jsonl:1", "train.jsonl:2", "train.jsonl:3", "train.jsonl:4"]
    assert t.items[0].image_key == t.items[1].image_key != t.items[2].image_key
    assert t.items[1].record == {"image": "img/coffee.png", "caption": "espresso in a white cup", "id": 2}
    assert t.load(0).size == (128, 128)
    e = open_source(str(ev))
    assert [Path(it.key).name for it in e.items] == ["a_coffee.png", "b_astronaut.png", "c_camera.png"]
    assert all(it.caption is None for it in e.items)


def test_registered_split_source():
    s = open_source("fashion-mnist:test")
    assert len(s) == 10_000 and s.items[3].key == "fashion-mnist:test#3" and s.items[3].caption is None
    assert s.items[3].record == {"dataset": "fashion-mnist", "split": "test", "index": 3}
    assert np.asarray(s.load(3)).shape == (28, 28, 3)
    e = open_source("emoji:test")
    assert e.items[0].caption and Path(e.items[0].record["image"]).is_file()


@pytest.mark.parametrize(
    ("spec", "match"),
    [("nope:test", "unknown dataset 'nope'"), ("missing/folder", "not a registered dataset")],
)
def test_bad_source(spec, match):
    with pytest.raises(DataError, match=match):
        open_source(spec)


def test_audit_pairs_outputs_and_clean_list(sets, tmp_path):
    train, ev = sets
    result = audit(open_source(str(train)), open_source(str(ev)))
    got = {(p.train, p.eval, p.kind) for p in result.pairs}
    # coffee's two rows share one image: both pair with the eval coffee, as exact pixels only
    assert (0, 0, "exact_pixels") in got and (1, 0, "exact_pixels") in got
    assert not any(k == "phash" and e == 0 for _, e, k in got)
    assert (2, 1, "phash") in got  # astronaut 96 px vs 512 px
    assert not any(e == 2 for _, e, _ in got)  # the camera pairs with nothing
    assert result.unreadable["train"] == ["train.jsonl:4: unreadable"]
    summary = write_audit(result, tmp_path / "out", tmp_path / "clean.jsonl")
    assert summary["flagged_train_items"] == 3 and summary["unreadable"] == {"train": 1, "eval": 0}
    assert summary["kinds"]["exact_pixels"] == {"pairs": 2, "train_items": 2, "eval_items": 1}
    rows = [json.loads(x) for x in (tmp_path / "out" / "pairs.jsonl").read_text().splitlines()]
    assert rows[0] == {
        "train": "train.jsonl:1", "eval": str(ev / "a_coffee.png"), "kind": "exact_pixels", "distance": 0.0,
        "train_index": 0, "eval_index": 0,
    }  # fmt: skip
    # the broken file cannot be checked and is kept, verbatim
    clean = [json.loads(x) for x in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert clean == [{"image": "img/broken.png", "caption": "broken", "id": 4}]


def test_radius_zero_and_no_hash(sets):
    train, ev = sets
    strict = audit(open_source(str(train)), open_source(str(ev)), AuditSettings(radius=0))
    assert all(p.distance == 0 for p in strict.pairs)
    loose = audit(open_source(str(train)), open_source(str(ev)), AuditSettings(radius=64))
    assert len(loose.pairs) == 3 * 3  # 3 decodable training items x 3 eval images, each pair once
    none = audit(open_source(str(train)), open_source(str(ev)), AuditSettings(hash="none"))
    assert {p.kind for p in none.pairs} == {"exact_pixels"}


def test_embedding_pairs(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "e").mkdir()
    photo("coffee", 96).save(tmp_path / "t" / "coffee.png")
    photo("rocket", 96).save(tmp_path / "t" / "rocket.png")
    photo("coffee", 256).save(tmp_path / "e" / "coffee.png")
    photo("chelsea", 96).save(tmp_path / "e" / "chelsea.png")
    settings = AuditSettings(hash="none", embed="efficientnet_lite0", embed_size=96, cosine=0.9)
    result = audit(open_source(str(tmp_path / "t")), open_source(str(tmp_path / "e")), settings)
    assert [(p.train, p.eval, p.kind) for p in result.pairs] == [
        (0, 1, "embedding")
    ]  # sorted: chelsea, coffee
    assert 0.0 <= result.pairs[0].distance < 0.1


def test_cli_errors(sets, tmp_path, capsys):
    train, ev = sets
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png"}\nnot json\n')
    assert (
        main(["audit", "contamination", "--train", str(bad), "--eval", str(ev), "--out", str(tmp_path)]) == 2
    )
    assert "bad.jsonl:2: not JSON" in capsys.readouterr().err
    args = ["audit", "contamination", "--train", str(train), "--eval", str(ev), "--out", str(tmp_path / "o")]
    assert main([*args, "--radius", "65"]) == 2
    assert main([*args, "--embed", "resnet"]) == 2
    assert "unknown image encoder 'resnet'" in capsys.readouterr().err
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "exact_pixels" in out and "3 of 4 training items" in out
