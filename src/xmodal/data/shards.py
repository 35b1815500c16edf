"""Writing a dataset as WebDataset tar shards, and finding the shards of a ``data.shards`` setting.

The layout is the one img2dataset produces (https://github.com/rom1504/img2dataset), so shards from
either tool stream the same way: every sample is three tar members sharing a key,

::

    000000123.png    the encoded image (the dataset's own file bytes; .jpg for JPEG sources)
    000000123.txt    the caption, UTF-8
    000000123.json   {"key", "caption", "width", "height", ...the dataset's own fields}

in shards ``DIR/{prefix}-000000.tar``, ``-000001.tar`` ..., written with ``webdataset.TarWriter`` with a
fixed mtime, so the same data gives byte-identical shards. ``DIR/shards.json`` records the dataset,
split, sample count and sha256 of every shard; the stream reader uses the counts to count samples lost
in a damaged shard (see :mod:`xmodal.data.stream`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import webdataset
from PIL import Image

from xmodal.errors import ConfigError, DataError

MANIFEST = "shards.json"
KEY_DIGITS = 9  # img2dataset's keys are 9 digits too ("000000123")


@dataclass(frozen=True)
class Record:
    """One sample to write: encoded image bytes and extension, caption, extra JSON fields."""

    image: bytes
    ext: str  # "png", "jpg" ...
    caption: str
    fields: dict[str, Any]


def _encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return value.name
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def dataset_records(dataset: Any) -> Iterator[Record]:
    """The samples of a registered dataset, in order.

    Two shapes are understood: image–caption datasets with ``.items`` holding ``image_path`` and
    ``caption`` (emoji; the image file's bytes are written unchanged) and labelled image datasets with
    ``classnames``, ``templates`` and ``load(i) -> (PIL image, label)`` (Fashion-MNIST; the caption is
    the first prompt template filled with the class name, the image is written as PNG).

    Raises:
        DataError: a dataset of neither shape.
    """
    items = getattr(dataset, "items", None)
    if items is not None and all(hasattr(it, "image_path") and hasattr(it, "caption") for it in items[:1]):
        for it in items:
            path = Path(it.image_path)
            fields = (
                {k: _jsonable(v) for k, v in dataclasses.asdict(it).items() if k not in ("caption",)}
                if dataclasses.is_dataclass(it) and not isinstance(it, type)
                else {}
            )
            ext = path.suffix.lower().lstrip(".") or "png"
            yield Record(path.read_bytes(), "jpg" if ext == "jpeg" else ext, it.caption, fields)
        return
    classnames = getattr(dataset, "classnames", None)
    templates = getattr(dataset, "templates", None)
    if classnames is not None and templates and hasattr(dataset, "load"):
        for i in range(len(dataset)):
            img, label = dataset.load(i)
            caption = templates[0].format(classnames[int(label)])
            fields = {"label": int(label), "classname": classnames[int(label)], "index": i}
            yield Record(_encode_png(img), "png", caption, fields)
        return
    raise DataError(
        f"cannot shard {type(dataset).__name__}: it has neither image-caption items nor classnames + load()"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        return int(im.width), int(im.height)


def write_shards(
    records: Iterator[Record],
    out: Path,
    *,
    prefix: str,
    shard_size: int,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``records`` as tar shards of ``shard_size`` samples into ``out``, then ``out/shards.json``.

    Each shard is written to a temporary name and renamed when complete; the manifest comes last, so
    a folder with a manifest holds complete shards.

    Args:
        records: the samples, in key order.
        out: the folder (created).
        prefix: shard file names are ``{prefix}-{index:06d}.tar``.
        shard_size: samples per shard (the last shard may hold fewer).
        info: extra manifest fields (dataset, split, skipped ...).

    Returns:
        the manifest.
    """
    if shard_size <= 0:
        raise ConfigError(f"--shard-size must be positive, got {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Any]] = []
    writer: Any = None
    tmp: Path | None = None
    n = 0

    def close() -> None:
        nonlocal writer, tmp
        if writer is None or tmp is None:
            return
        writer.close()
        final = out / shards[-1]["name"]
        os.replace(tmp, final)
        shards[-1]["sha256"] = _sha256(final)
        writer, tmp = None, None

    for rec in records:
        if n % shard_size == 0:
            close()
            name = f"{prefix}-{len(shards):06d}.tar"
            tmp = out / f".{name}.tmp"
            writer = webdataset.TarWriter(str(tmp), encoder=False, mtime=0.0)
            shards.append({"name": name, "samples": 0})
        key = f"{n:0{KEY_DIGITS}d}"
        width, height = _image_size(rec.image)
        meta = {"key": key, "caption": rec.caption, "width": width, "height": height, **rec.fields}
        writer.write(
            {
                "__key__": key,
                rec.ext: rec.image,
                "txt": rec.caption.encode("utf-8"),
                "json": json.dumps(meta, sort_keys=True).encode("utf-8"),
            }
        )
        shards[-1]["samples"] += 1
        n += 1
    close()
    if not shards:
        raise DataError("nothing to shard: the dataset has no samples")
    manifest = {
        "format": "webdataset",
        **(info or {}),
        "prefix": prefix,
        "shard_size": shard_size,
        "samples": n,
        "pattern": f"{prefix}-{{000000..{len(shards) - 1:06d}}}.tar",
        "shards": shards,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass(frozen=True)
class ShardSet:
    """The shard files of a ``data.shards`` setting and, where a manifest lists them, their sample counts."""

    paths: list[str]
    counts: dict[str, int]  # path → samples, from shards.json (absent for shards it does not list)


def _manifest_counts(folder: Path) -> dict[str, int]:
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {str(folder / s["name"]): int(s["samples"]) for s in doc["shards"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"data.shards: cannot read the shard manifest {path}") from None


def resolve_shards(spec: str) -> ShardSet:
    """The shards of ``spec``: a folder (its ``shards.json``, else its ``*.tar`` files, sorted) or a
    brace pattern ``DIR/emoji-{000000..000003}.tar`` (expanded by webdataset, ``::`` joins patterns).

    Only local files are read (no ``pipe:`` or URLs).

    Raises:
        ConfigError: no shards, or a listed shard that does not exist.
    """
    if not spec.strip():
        raise ConfigError(
            "data.shards: empty; give a folder of shards or a pattern like DIR/x-{000000..000003}.tar"
        )
    folder = Path(spec)
    if folder.is_dir():
        counts = _manifest_counts(folder)
        paths = list(counts) if counts else sorted(str(p) for p in folder.glob("*.tar"))
    else:
        paths = [str(Path(p)) for p in webdataset.shardlists.expand_urls(spec)]
        counts = {}
        for parent in dict.fromkeys(Path(p).parent for p in paths):
            counts.update(_manifest_counts(parent))
        counts = {p: c for p, c in counts.items() if p in set(paths)}
    if not paths:
        raise ConfigError(f"data.shards: no .tar shards in {spec!r}")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ConfigError(
            f"data.shards: {len(missing)} of {len(paths)} shards do not exist (first: {missing[0]})"
        )
    return ShardSet(paths=paths, counts=counts)
