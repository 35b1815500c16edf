"""Tests for load_image / check_image: RGB conversion over white, and each BadImage reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.data.images import BadImage, check_image, decode_image, load_image, to_rgb
from xmodal.errors import XmodalError


def test_rgb_file_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and img.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(img), pixels)


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 128))  # half-transparent red
    img.save(tmp_path / "a.png")
    out = np.asarray(load_image(tmp_path / "a.png"))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent → white, not black
    assert out[0, 1].tolist() == [255, 127, 127]


def test_la_and_palette_transparency_over_white() -> None:
    la = Image.new("LA", (1, 1), (0, 0))
    assert to_rgb(la).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    out = to_rgb(pal)
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (10, 20, 30)
    assert to_rgb(Image.new("L", (1, 1), 77)).getpixel((0, 0)) == (77, 77, 77)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (20, 10), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    img.save(tmp_path / "a.jpg", exif=exif)
    assert load_image(tmp_path / "a.jpg").size == (10, 20)


def _reason(path: Path) -> str:
    with pytest.raises(BadImage) as info:
        load_image(path)
    assert isinstance(info.value, XmodalError)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    return info.value.reason


def test_missing_and_empty(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.png") == "missing"
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason(tmp_path / "empty.png") == "empty_file"


def test_truncated_png(tmp_path: Path, make_png) -> None:
    data = make_png(tmp_path / "full.png", (200, 10, 10, 255)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "cut.png") == "truncated"
    with pytest.raises(BadImage) as info:
        check_image(tmp_path / "cut.png")
    assert info.value.reason == "truncated"


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not a PNG\n")
    assert _reason(tmp_path / "notes.png") == "unreadable"


@pytest.mark.parametrize("limit", [30_000, 15_000], ids=["warning-range", "error-range"])
def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    Image.new("RGB", (200, 200)).save(tmp_path / "big.png")  # 40,000 pixels
    # Pillow warns above the limit and raises above twice the limit: both must become BadImage
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    for fn in (load_image, check_image):
        with pytest.raises(BadImage) as info:
            fn(tmp_path / "big.png")
        assert info.value.reason == "decompression_bomb"
        assert "40000 pixels" in str(info.value) and str(limit) in str(info.value)
        assert "big.png" in str(info.value)
    assert limit == Image.MAX_IMAGE_PIXELS  # the guard itself was left alone


def test_check_image_accepts_good_and_rejects_reasons(tmp_path: Path, make_png) -> None:
    check_image(make_png(tmp_path / "ok.png", (1, 2, 3, 255)))
    with pytest.raises(BadImage, match="missing image"):
        check_image(tmp_path / "gone.png")


def test_unknown_reason_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown BadImage reason"):
        BadImage("corrupt", "x.png")


def test_decode_image_bytes_matches_load_image_and_maps_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    np.testing.assert_array_equal(
        np.asarray(decode_image(data, "a.png")), np.asarray(load_image(tmp_path / "a.png"))
    )
    for bad, reason in (
        (data[: len(data) // 2], "truncated"),
        (b"not an image", "unreadable"),
        (b"", "empty_file"),
    ):
        with pytest.raises(BadImage) as err:
            decode_image(bad, "shard.tar:000000001.png")
        assert err.value.reason == reason and "000000001.png" in str(err.value)
