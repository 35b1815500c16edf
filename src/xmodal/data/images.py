"""Loading image files safely: always RGB, transparency over white, and one error type with a reason.

Pillow's decompression-bomb guard stays on (``Image.MAX_IMAGE_PIXELS`` is never set to ``None``) and
truncated files stay errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set): a broken or hostile
file becomes a ``BadImage`` whose ``.reason`` a dataset can count in a ``SkipCounter``.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from xmodal.errors import XmodalError

REASONS = ("missing", "empty_file", "truncated", "unreadable", "decompression_bomb")


class BadImage(XmodalError):
    """An image file that cannot be used.

    Attributes:
        reason: one of ``REASONS``: "missing", "empty_file", "truncated", "unreadable",
            "decompression_bomb".
        path: the file.
    """

    def __init__(self, reason: str, path: str | Path, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown BadImage reason {reason!r}; expected one of {REASONS}")
        self.reason = reason
        self.path = Path(path)
        message = f"{reason.replace('_', ' ')} image {self.path}"
        super().__init__(f"{message}: {detail}" if detail else message)


def _bomb(path: Path, err: Exception) -> BadImage:
    # Pillow's message is "Image size (N pixels) exceeds limit of M pixels, ..."; keep its numbers.
    found = re.search(r"\((\d+) pixels\)", str(err))
    pixels = found.group(1) if found else "too many"
    return BadImage(
        "decompression_bomb",
        path,
        f"{pixels} pixels exceeds Pillow's limit of {Image.MAX_IMAGE_PIXELS} (Image.MAX_IMAGE_PIXELS); "
        "raise that limit only for files you trust",
    )


def _open_checked(path: str | Path, *, decode: bool) -> Image.Image:
    """Open ``path``, decode it fully (``decode``) or check its structure (PNG CRCs), mapping errors."""
    path = Path(path)
    if not path.is_file():
        raise BadImage("missing", path, "no such file")
    if path.stat().st_size == 0:
        raise BadImage("empty_file", path, "0 bytes")
    return _open_source(path, path, decode=decode)


def _open_source(source: Path | BinaryIO, path: Path, *, decode: bool) -> Image.Image:
    """Open a file or an in-memory stream (``path`` names it in errors), mapping Pillow's errors."""
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and twice that; treat both as errors.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(source)
            try:
                if decode:
                    im.load()
                else:
                    im.verify()
            except BaseException:
                im.close()
                raise
            return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb(path, err) from None
    except UnidentifiedImageError:
        raise BadImage("unreadable", path, "not an image Pillow can identify") from None
    except (OSError, EOFError, SyntaxError, ValueError) as err:
        text = str(err)
        reason = "truncated" if isinstance(err, EOFError) or "truncated" in text.lower() else "unreadable"
        raise BadImage(reason, path, text or type(err).__name__) from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparent modes (RGBA, LA, PA, P with transparency) composited over white."""
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Read an image file into memory as an RGB ``PIL.Image`` (H, W, 3), EXIF rotation applied.

    Raises:
        BadImage: with ``.reason`` "missing", "empty_file", "truncated", "unreadable" or
            "decompression_bomb" (more pixels than ``Image.MAX_IMAGE_PIXELS``).
    """
    raw = _open_checked(path, decode=True)
    try:
        return to_rgb(ImageOps.exif_transpose(raw))
    finally:
        raw.close()


def check_image(path: str | Path) -> None:
    """Cheap validity check without decoding pixels: existence, size, header, and (for PNG) chunk CRCs.

    About 10× faster than ``load_image``, so a dataset can check every file at construction.

    Raises:
        BadImage: as ``load_image``.
    """
    _open_checked(path, decode=False).close()


def decode_image(data: bytes, name: str | Path) -> Image.Image:
    """Decode image bytes (a tar member, a download) exactly as :func:`load_image` reads a file.

    Args:
        data: the encoded image (PNG, JPEG, WebP ...).
        name: what to call it in errors (``"shard-000003.tar:000001234.png"``).

    Returns:
        an RGB ``PIL.Image`` (H, W, 3), EXIF rotation applied, transparency over white.

    Raises:
        BadImage: with ``.reason`` "empty_file", "truncated", "unreadable" or "decompression_bomb".
    """
    if not data:
        raise BadImage("empty_file", name, "0 bytes")
    raw = _open_source(io.BytesIO(data), Path(name), decode=True)
    try:
        return to_rgb(ImageOps.exif_transpose(raw))
    finally:
        raw.close()
