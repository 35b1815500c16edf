"""Tests for xmodal.report: figures are real, readable PNGs and report.md carries the numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from xmodal.errors import DataError
from xmodal.report import _fmt, metrics_markdown, read_loss_log, smooth, write_report

CLASSNAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_loss_log(path: Path, steps: int = 300) -> None:
    """A log as the training loop writes it: a config header, train records, validation records."""
    rng = np.random.default_rng(0)
    with path.open("w") as f:
        f.write(json.dumps({"config": {"optim": {"lr": 1e-3}}}) + "\n")
        for s in range(1, steps + 1):
            loss = 4.0 * math.exp(-s / 80) + 0.8 + 0.3 * rng.standard_normal()
            lr = 1e-3 * min(1.0, s / 30) * 0.5 * (1 + math.cos(math.pi * s / steps))
            f.write(json.dumps({"step": s, "loss": loss, "lr": lr, "logit_scale": 14.3}) + "\n")
            if s % 50 == 0:
                val = {"val/loss": 4.0 * math.exp(-s / 80) + 1.0, "val/score": 0.1 + s / 1000}
                val |= {"val/image_to_text/R@1": 0.05 + s / 1500, "val/text_to_image/R@1": 0.04 + s / 1800}
                val |= {f"val/{d}/median_rank": 300 / s for d in ("image_to_text", "text_to_image")}
                f.write(json.dumps({"step": s, **val}) + "\n")
        f.write("\n")  # a trailing blank line is fine


def emoji_like(path: Path, rgb: tuple[int, int, int]) -> Path:
    """A 64×64 RGBA disc on transparency, like the google emoji PNGs."""
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((6, 6, 58, 58), fill=(*rgb, 255))
    im.save(path)
    return path


@pytest.fixture
def examples(tmp_path: Path) -> list[tuple[str, list[Path], list[bool]]]:
    from skimage import data

    photo = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).resize((96, 64)).save(photo)
    colours = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40)}
    img = {name: emoji_like(tmp_path / f"{name}.png", rgb) for name, rgb in colours.items()}
    red, green, blue, yellow = (img[c] for c in colours)
    no = False
    return [
        ("red circle", [red, yellow, green, blue, photo], [True, no, no, no, no]),
        ("cat face", [blue, photo, red, green, yellow], [no, True, no, no, no]),
        ("large blue circle with a very long caption that needs wrapping", [red, green, blue, yellow, photo],
         [no, no, True, no, no]),
    ]  # fmt: skip


def check_png(path: Path, min_w: int, min_h: int) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.load()
        assert im.width >= min_w and im.height >= min_h
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10  # something is drawn, not a blank canvas
    return pixels


def test_write_report_full(tmp_path: Path, examples):
    log = tmp_path / "train.jsonl"
    write_loss_log(log)
    rng = np.random.default_rng(1)
    confusion = rng.integers(0, 20, (10, 10)) + np.diag(rng.integers(50, 150, 10))
    metrics = {
        "retrieval": {
            "n": 382,
            "n_texts": 382,
            "image_to_text": {
                "R@1": 0.2431,
                "R@5": 0.4612,
                "R@10": 0.5833,
                "median_rank": 6.0,
                "mean_rank": 21.37,
            },
            "text_to_image": {
                "R@1": 0.2218,
                "R@5": 0.4477,
                "R@10": 0.5611,
                "median_rank": 7.5,
                "mean_rank": 23.9,
            },
        },
        "zero-shot": {
            "n": 10000,
            "top1": 0.2034,
            "top5": 0.6671,
            "per_class": dict(zip(CLASSNAMES, np.linspace(0.05, 0.5, 10).tolist(), strict=True)),
            "confusion": confusion.tolist(),
        },
    }
    ablations = [
        {"run": "baseline", "image R@1": 0.2431, "zero-shot top1": 0.2034},
        {"run": "no prompt ensemble", "image R@1": 0.2431, "zero-shot top1": 0.1712, "notes": "1 template"},
        {"run": "unlocked last block", "settings": {"lock": 3}, "image R@1": 0.3105},
    ]
    out = tmp_path / "report"
    md_path = write_report(
        out,
        metrics,
        loss_log=log,
        retrieval_examples=examples,
        confusion=confusion,
        classnames=CLASSNAMES,
        ablations=ablations,
    )
    assert md_path == out / "report.md"
    check_png(out / "loss.png", 1200, 350)  # three panels: loss, validation, lr
    grid = check_png(out / "retrieval_grid.png", 600, 300)
    check_png(out / "confusion.png", 500, 500)
    assert (grid[..., 1] - grid[..., 0] > 80).sum() > 200  # green frames are drawn

    md = md_path.read_text()
    for fig in ("loss.png", "retrieval_grid.png", "confusion.png"):
        assert f"]({fig})" in md
    assert "| image_to_text | 0.2431 | 0.4612 | 0.5833 | 6.0 | 21.37 |" in md
    assert "| text_to_image | 0.2218 | 0.4477 | 0.5611 | 7.5 | 23.90 |" in md
    assert "| top1 | 0.2034 |" in md and "| n | 10000 |" in md
    assert "| T-shirt/top | 0.05 |" in md and "| Ankle boot | 0.50 |" in md
    assert "Top-1 correct for 1 of 3 example queries." in md
    assert "| run | image R@1 | zero-shot top1 | notes | settings/lock |" in md
    assert "| no prompt ensemble | 0.2431 | 0.1712 | 1 template |  |" in md
    assert "| unlocked last block | 0.3105 |  |  | 3 |" in md
    assert "confusion" in md and "[[" not in md  # the raw matrix is a figure, not text


def test_sections_without_inputs_are_skipped(tmp_path: Path):
    md_path = write_report(tmp_path, {"top1": 0.5, "n": 4}, title="zero-shot only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
    md = md_path.read_text()
    assert md.startswith("# zero-shot only")
    assert "| top1 | 0.5 |" in md and ".png" not in md


def test_loss_only_log_gives_one_panel(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"step": s, "loss": 2.0 / (s + 1)}) for s in range(20)))
    write_report(tmp_path, {"top1": 0.1}, loss_log=log)
    with Image.open(tmp_path / "loss.png") as im:
        assert im.width < 800  # one panel
    assert "Final step 19: loss 0.1." in (tmp_path / "report.md").read_text()


def test_loss_log_skips_header_and_non_numeric_fields(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    lines = [
        {"config": {"a": 1}},
        {"step": 1, "loss": 2.5, "note": "warm-up"},
        {"step": 2, "loss": float("nan")},
    ]
    log.write_text("\n".join(json.dumps(r) for r in lines))
    records = read_loss_log(log)
    assert len(records) == 2 and records[0] == {"step": 1.0, "loss": 2.5} and math.isnan(records[1]["loss"])


def test_bad_loss_log_names_file_and_line(tmp_path: Path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": \n')
    with pytest.raises(DataError, match=r"log\.jsonl:2: not a JSON object"):
        read_loss_log(log)
    log.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"log\.jsonl:1: not a JSON object"):
        read_loss_log(log)
    with pytest.raises(DataError, match="cannot read training log"):
        read_loss_log(tmp_path / "missing.jsonl")
    log.write_text('{"step": 3, "val/loss": 1.0}\n')
    with pytest.raises(DataError, match="no record has a 'loss' key"):
        read_loss_log(log)


def test_missing_retrieval_image_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="cannot read image"):
        write_report(tmp_path, {}, retrieval_examples=[("q", [tmp_path / "nope.png"], [True])])


def test_confusion_needs_matching_classnames(tmp_path: Path):
    with pytest.raises(ValueError, match="needs its class names"):
        write_report(tmp_path, {}, confusion=[[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"expected \(3, 3\)"):
        write_report(tmp_path, {}, confusion=[[1, 0], [0, 1]], classnames=["a", "b", "c"])


def test_smooth_is_a_debiased_ema():
    np.testing.assert_allclose(smooth([2.0] * 10, window=5), np.full(10, 2.0))  # no start-up bias
    np.testing.assert_allclose(smooth([1.0, 3.0], window=1), [1.0, 3.0])
    # beta = 0.5: [1, (0.25 + 1.5) / 0.75]
    np.testing.assert_allclose(smooth([1.0, 3.0], window=2), [1.0, 1.75 / 0.75])
    # a NaN (diverged step) stays a gap and does not poison the rest
    np.testing.assert_allclose(smooth([1.0, math.nan, 3.0], window=2), [1.0, math.nan, 1.75 / 0.75])


def test_cell_format():
    cells = [_fmt(v) for v in (3, 0.24312, 21.371, 6.0, 0.5, math.nan, True, "a|b")]
    assert cells == ["3", "0.2431", "21.37", "6", "0.5", "–", "True", "a\\|b"]
    assert _fmt(0.5, decimals=4) == "0.5000"


def test_metrics_markdown_groups_directions():
    md = "\n".join(metrics_markdown("r", {"a": {"R@1": 0.5, "R@5": 1.0}, "b": {"R@1": 0.25, "R@5": 0.75}}))
    # one row per direction; a column's floats share their decimals
    assert "|  | R@1 | R@5 |" in md and "| a | 0.50 | 1.00 |" in md and "| b | 0.25 | 0.75 |" in md
