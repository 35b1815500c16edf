"""The emoji image–caption dataset: Google's 64 px emoji with captions built from their Unicode names.

Data: the npm package ``emoji-datasource-google@16.0.0`` (prepared with ``xmodal data prepare emoji``):
1,911 emoji, 3,786 images with the skin-tone variants. Images are RGBA, composited over white. The
train / val / test split is by emoji (``splits.json``, written once at prepare time), so a skin-tone
variant is always in its base emoji's split and held-out emoji are never seen in training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from xmodal.data.images import BadImage, check_image, load_image
from xmodal.data.prepare import EMOJI_IMAGE_DIR, SPLITS_FILE
from xmodal.data.skips import SkipCounter
from xmodal.errors import DataError
from xmodal.paths import data_dir
from xmodal.registry import DATASETS

Split = Literal["train", "val", "test", "all"]


@dataclass(frozen=True)
class EmojiItem:
    """One image of one emoji.

    Attributes:
        image_path: the 64×64 RGBA PNG.
        caption: ``emoji_caption`` of the emoji (the same for all its skin tones).
        emoji_id: the base emoji's ``unified`` code ("1F385"), shared by its skin-tone variants.
        category, subcategory: as in emoji.json ("People & Body", "person-fantasy").
        unified: this image's own code ("1F385-1F3FB" for a variant; equal to ``emoji_id`` for the base).
    """

    image_path: Path
    caption: str
    emoji_id: str
    category: str
    subcategory: str
    unified: str


def _words(text: Any) -> str:
    """Lower-case, underscores and hyphens to spaces, whitespace collapsed."""
    return " ".join(re.sub(r"[_-]+", " ", str(text or "").lower()).split())


def emoji_caption(entry: dict[str, Any]) -> str:
    """A caption from an emoji.json entry: "name (short names), category, subcategory".

    E.g. GRINNING FACE / ["grinning"] / "Smileys & Emotion" / "face-smiling" →
    "grinning face (grinning), smileys & emotion, face smiling". Lower-case, underscores and hyphens
    become spaces, and a part equal to an earlier one is dropped. Without a name or short name the
    caption is "" (a category alone does not describe an emoji).
    """
    name = _words(entry.get("name"))
    shorts: list[str] = []
    for short in entry.get("short_names") or []:
        text = _words(short)
        if text and text != name and text not in shorts:
            shorts.append(text)
    if not name:
        if not shorts:
            return ""
        name, shorts = shorts[0], shorts[1:]
    parts = [f"{name} ({', '.join(shorts)})" if shorts else name]
    for extra in (entry.get("category"), entry.get("subcategory")):
        text = _words(extra)
        if text and text != name and text not in parts:
            parts.append(text)
    return ", ".join(parts)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(
            f"cannot read {what} {path}: {err}; run `xmodal data prepare emoji --force`"
        ) from None


def read_splits(root: Path) -> dict[str, str]:
    """``{base unified code: "train" | "val" | "test"}`` from ``root/splits.json``."""
    path = root / SPLITS_FILE
    if not path.is_file():
        raise DataError(f"emoji split file {path} is missing; run `xmodal data prepare emoji --force`")
    doc = _read_json(path, "emoji split file")
    try:
        return {code: name for name, codes in doc["splits"].items() for code in codes}
    except (KeyError, TypeError, AttributeError):
        raise DataError(f"emoji split file {path} has no 'splits' mapping of lists") from None


@DATASETS.register("emoji")
class EmojiDataset:
    """Emoji images with captions, one item per image (skin tones are extra items of the same emoji).

    Every image is checked at construction (exists, non-empty, a valid PNG): unusable ones and empty
    captions are skipped and counted in ``.skips``; more than ``max_skip_fraction`` skipped is an error.

    Args:
        root: the prepared folder; default ``data_dir("emoji")``.
        split: "train", "val", "test" (by emoji, from splits.json) or "all".
        variants: include the skin-tone variant images.
        max_skip_fraction: the largest acceptable share of skipped images.

    Raises:
        DataError: dataset not prepared, unreadable emoji.json / splits.json, or too many skips.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        split: Split = "all",
        variants: bool = True,
        max_skip_fraction: float = 0.01,
    ) -> None:
        if split not in ("train", "val", "test", "all"):
            raise DataError(f"unknown emoji split {split!r}; expected train, val, test or all")
        self.root = Path(root) if root is not None else data_dir("emoji")
        self.split = split
        self.variants = variants
        listing = self.root / "emoji.json"
        if not listing.is_file():
            raise DataError(
                f"emoji dataset not found ({listing} is missing); run `xmodal data prepare emoji`"
            )
        entries = _read_json(listing, "emoji list")
        if not isinstance(entries, list):
            raise DataError(f"emoji list {listing} is not a JSON list")
        assigned = read_splits(self.root) if split != "all" else {}

        self.skips = SkipCounter("emoji images")
        self.items: list[EmojiItem] = []
        n_seen = 0
        for entry in entries:
            base = entry.get("unified") if isinstance(entry, dict) else None
            if not base or not entry.get("image"):
                n_seen += 1
                self.skips.skip("bad_entry", str(entry)[:80])
                continue
            if split != "all":
                if base not in assigned:
                    n_seen += 1
                    self.skips.skip("no_split", base)
                    continue
                if assigned[base] != split:
                    continue
            images = [(entry["image"], base)]
            if variants:
                for variant in (entry.get("skin_variations") or {}).values():
                    images.append((variant.get("image"), variant.get("unified") or base))
            caption = emoji_caption(entry)
            for image, unified in images:
                n_seen += 1
                if not caption:
                    self.skips.skip("empty_caption", unified)
                    continue
                path = self.root / EMOJI_IMAGE_DIR / str(image)
                try:
                    check_image(path)
                except BadImage as bad:
                    self.skips.skip(bad.reason, str(path))
                    continue
                self.items.append(
                    EmojiItem(
                        image_path=path,
                        caption=caption,
                        emoji_id=base,
                        category=str(entry.get("category") or ""),
                        subcategory=str(entry.get("subcategory") or ""),
                        unified=unified,
                    )
                )
        self.n_seen = n_seen
        self.skips.check(n_seen, max_skip_fraction)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> EmojiItem:
        return self.items[i]

    def load(self, i: int) -> tuple[Image.Image, str]:
        """(RGB image composited over white, 64×64; caption) of item ``i``.

        Raises:
            BadImage: if the file went bad after construction.
        """
        item = self.items[i]
        return load_image(item.image_path), item.caption

    def emoji_ids(self) -> list[str]:
        """The distinct base emoji codes, in item order."""
        return list(dict.fromkeys(item.emoji_id for item in self.items))

    def __repr__(self) -> str:
        return (
            f"EmojiDataset(root={str(self.root)!r}, split={self.split!r}, variants={self.variants}, "
            f"items={len(self)}, emoji={len(self.emoji_ids())}, skipped={self.skips.total})"
        )
