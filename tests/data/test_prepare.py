"""Tests for dataset preparation: clients (faked on PATH), --from inputs, hashes, atomicity, idempotence."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from xmodal.data import prepare as prep
from xmodal.data.prepare import (
    EMOJI_TGZ,
    EMOJI_TREE,
    MARKER,
    SOURCES,
    is_prepared,
    list_datasets,
    prepare,
    sha256_file,
    split_of,
    tree_sha256,
)
from xmodal.errors import DataError

FASHION_FILES = list(SOURCES["fashion-mnist"].sha256)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$XMODAL_HOME``."""
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake_emoji_source(fake_package, monkeypatch: pytest.MonkeyPatch):
    """Point SOURCES["emoji"] at the fake package's hashes."""
    sha = {
        EMOJI_TGZ: sha256_file(fake_package.tgz),
        EMOJI_TREE: tree_sha256(fake_package.folder, fake_package.kept),
    }
    monkeypatch.setitem(SOURCES, "emoji", dataclasses.replace(SOURCES["emoji"], sha256=sha))
    return fake_package


def _script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "data").iterdir() if p.name.startswith("."))


def test_emoji_from_tgz_keeps_only_what_is_needed(home: Path, fake_emoji_source) -> None:
    root = prepare("emoji", from_dir=fake_emoji_source.tgz)
    assert root == home / "data" / "emoji"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted([*fake_emoji_source.kept, MARKER, "splits.json"])  # no sheets, no pretty json
    marker = json.loads((root / MARKER).read_text())
    assert marker["verified_sha256"][EMOJI_TGZ] == sha256_file(fake_emoji_source.tgz)
    assert oct(root.stat().st_mode & 0o777) == "0o755"
    splits = json.loads((root / "splits.json").read_text())["splits"]
    assert {code: name for name, codes in splits.items() for code in codes} == {
        code: split_of(code) for code in ("1F600", "1F385", "2B05-FE0F")
    }
    assert _leftovers(home) == []


@pytest.mark.parametrize("which", ["folder", "parent of package/", "folder holding the tgz"])
def test_emoji_from_dir_variants(home: Path, fake_emoji_source, which: str) -> None:
    source = {
        "folder": fake_emoji_source.folder,
        "parent of package/": fake_emoji_source.folder.parent,
        "folder holding the tgz": fake_emoji_source.tgz.parent,
    }[which]
    if which == "folder holding the tgz":
        os.rename(fake_emoji_source.folder, fake_emoji_source.folder.with_name("moved"))
    root = prepare("emoji", from_dir=source)
    assert is_prepared("emoji") and (root / "img/google/64/1f385-1f3ff.png").is_file()


def test_second_call_returns_at_once_and_force_redoes(
    home: Path, fake_emoji_source, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = prepare("emoji", from_dir=fake_emoji_source.tgz)
    first = (root / MARKER).read_text()

    def boom(*args: object) -> dict[str, str]:
        raise AssertionError("must not install again")

    monkeypatch.setitem(SOURCES, "emoji", dataclasses.replace(SOURCES["emoji"], install=boom))
    assert prepare("emoji") == root  # no client, no --from: the marker is enough
    with pytest.raises(AssertionError, match="must not install again"):
        prepare("emoji", force=True)
    assert (root / MARKER).read_text() == first  # a failed re-prepare leaves the old copy in place
    assert _leftovers(home) == []


def test_force_replaces_the_folder(home: Path, fake_emoji_source) -> None:
    root = prepare("emoji", from_dir=fake_emoji_source.tgz)
    (root / "stray.txt").write_text("left from an older version")
    prepare("emoji", from_dir=fake_emoji_source.folder, force=True)
    assert not (root / "stray.txt").exists() and is_prepared("emoji")
    assert json.loads((root / MARKER).read_text())["from"] == str(fake_emoji_source.folder)
    assert _leftovers(home) == []


def test_hash_mismatch_names_file_expected_and_actual(home: Path, fake_package) -> None:
    # the real expected hash against the fake tarball
    actual = sha256_file(fake_package.tgz)
    with pytest.raises(DataError) as info:
        prepare("emoji", from_dir=fake_package.tgz)
    message = str(info.value)
    assert str(fake_package.tgz) in message and actual in message
    assert SOURCES["emoji"].sha256[EMOJI_TGZ] in message and "\n" not in message
    assert not (home / "data" / "emoji").exists() and _leftovers(home) == []


def test_tampered_unpacked_folder_is_caught(home: Path, fake_emoji_source) -> None:
    (fake_emoji_source.folder / "img/google/64/1f600.png").write_bytes(b"\x89PNG tampered")
    with pytest.raises(DataError, match="sha256 mismatch for the kept files"):
        prepare("emoji", from_dir=fake_emoji_source.folder)
    assert not is_prepared("emoji")


def test_npm_client_is_run(home: Path, fake_emoji_source, tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "npm.log"
    bin_dir = _script(tmp_path / "bin", "npm", f'echo "$@" >> {log}\ncp {fake_emoji_source.tgz} .\n').parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = prepare("emoji")
    assert log.read_text().split() == ["pack", "emoji-datasource-google@16.0.0"]
    assert json.loads((root / MARKER).read_text())["from"] == "npm"


def test_npm_failure_is_reported(home: Path, tmp_path: Path, monkeypatch) -> None:
    bin_dir = _script(tmp_path / "bin", "npm", "echo 'npm error code E404' >&2\nexit 1\n").parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(
        DataError, match=r"`npm pack emoji-datasource-google@16.0.0` failed: npm error code E404"
    ):
        prepare("emoji")


def test_missing_client_says_which_and_how_to_supply(home: Path, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"npm is not installed.*--from DIR.*\.tgz or its unpacked package/"):
        prepare("emoji")
    monkeypatch.setitem(
        SOURCES, "fashion-mnist", dataclasses.replace(SOURCES["fashion-mnist"], system_dir=tmp_path / "none")
    )
    with pytest.raises(DataError, match=r"apt-get is not available.*t10k-images-idx3-ubyte.gz.*--from DIR"):
        prepare("fashion-mnist")


def _fake_fashion_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(FASHION_FILES):
        with gzip.open(folder / name, "wb") as f:
            f.write(bytes([i]) * 10)
    return {name: sha256_file(folder / name) for name in FASHION_FILES}


def test_fashion_mnist_from_dir(home: Path, tmp_path: Path, monkeypatch) -> None:
    sha = _fake_fashion_files(tmp_path / "gz")
    monkeypatch.setitem(SOURCES, "fashion-mnist", dataclasses.replace(SOURCES["fashion-mnist"], sha256=sha))
    root = prepare("fashion-mnist", from_dir=tmp_path / "gz")
    assert sorted(p.name for p in root.iterdir()) == sorted([*FASHION_FILES, MARKER])
    (tmp_path / "gz" / FASHION_FILES[0]).unlink()
    with pytest.raises(DataError, match=f"lacks {FASHION_FILES[0]}"):
        prepare("fashion-mnist", from_dir=tmp_path / "gz", force=True)


def test_fashion_mnist_apt_get_retries_after_update(home: Path, tmp_path: Path, monkeypatch) -> None:
    system = tmp_path / "usr-share"
    sha = _fake_fashion_files(tmp_path / "deb")
    monkeypatch.setitem(
        SOURCES, "fashion-mnist", dataclasses.replace(SOURCES["fashion-mnist"], sha256=sha, system_dir=system)
    )
    log = tmp_path / "apt.log"
    body = (
        f'echo "$@" >> {log}\n'
        f'if [ "$1" = update ]; then touch {tmp_path}/updated; exit 0; fi\n'
        f'if [ ! -f {tmp_path}/updated ]; then echo "E: Unable to locate package $3" >&2; exit 100; fi\n'
        f"mkdir -p {system} && cp {tmp_path}/deb/*.gz {system}/\n"
    )
    bin_dir = _script(tmp_path / "bin", "apt-get", body).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = prepare("fashion-mnist")
    assert log.read_text().splitlines() == [
        "install -y dataset-fashion-mnist",
        "update",
        "install -y dataset-fashion-mnist",
    ]
    assert sha256_file(root / FASHION_FILES[2]) == sha[FASHION_FILES[2]]


def test_fashion_mnist_apt_get_failure(home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(
        SOURCES, "fashion-mnist", dataclasses.replace(SOURCES["fashion-mnist"], system_dir=tmp_path / "none")
    )
    bin_dir = _script(
        tmp_path / "bin", "apt-get", "echo 'E: Could not open lock file' >&2\nexit 100\n"
    ).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataError, match="failed \\(needs root\\): E: Could not open lock file; or supply"):
        prepare("fashion-mnist")


def test_tarball_members_outside_the_kept_set_are_never_written(
    home: Path, tmp_path: Path, fake_package
) -> None:
    evil = tmp_path / "evil.tgz"
    with tarfile.open(fake_package.tgz) as src, tarfile.open(evil, "w:gz") as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name in (
            "package/img/google/64/../../../../escape.png",
            "/abs.png",
            "package/img/google/64/x/y.png",
        ):
            info = tarfile.TarInfo(name)
            info.size = 3
            dst.addfile(info, io.BytesIO(b"bad"))
    staging = tmp_path / "staging"
    staging.mkdir()
    kept = prep._extract_emoji(evil, staging)
    assert sorted(kept) == fake_package.kept
    assert not any("escape" in p.name or p.name == "abs.png" for p in tmp_path.rglob("*.png"))


def test_split_rule_is_stable_and_about_70_10_20() -> None:
    assert split_of("1F600") == split_of("1F600")
    codes = [f"{i:05X}" for i in range(20_000)]
    counts = Counter(split_of(code) for code in codes)
    assert counts["train"] / 20_000 == pytest.approx(0.7, abs=0.015)
    assert counts["val"] / 20_000 == pytest.approx(0.1, abs=0.015)
    assert counts["test"] / 20_000 == pytest.approx(0.2, abs=0.015)
    digest = hashlib.sha256(b"xmodal-emoji-split-v1:1F600").digest()
    assert split_of("1F600") == (
        "train" if int.from_bytes(digest[:8], "big") % 1000 < 700 else split_of("1F600")
    )


def test_list_datasets_and_unknown_name(home: Path, fake_emoji_source) -> None:
    rows = {row["name"]: row for row in list_datasets()}
    assert set(rows) == {"emoji", "fashion-mnist"}
    assert rows["emoji"]["prepared"] is False and rows["emoji"]["size"] == 0
    root = prepare("emoji", from_dir=fake_emoji_source.tgz)
    row = {row["name"]: row for row in list_datasets()}["emoji"]
    assert row["prepared"] is True and row["path"] == str(root)
    assert row["size"] == sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != MARKER)
    with pytest.raises(DataError, match="unknown dataset 'coco'; known: emoji, fashion-mnist"):
        prepare("coco")
    with pytest.raises(DataError, match=r"--from .*nowhere does not exist"):
        prepare("fashion-mnist", from_dir=home / "nowhere")


@pytest.mark.slow
def test_real_emoji_is_prepared(real_emoji_root: Path) -> None:
    assert is_prepared("emoji", real_emoji_root)
    marker = json.loads((real_emoji_root / MARKER).read_text())
    assert marker["verified_sha256"][EMOJI_TREE] == SOURCES["emoji"].sha256[EMOJI_TREE]
    assert len(list((real_emoji_root / "img/google/64").glob("*.png"))) == 3_786
    assert prepare("emoji") == real_emoji_root  # second call: instant, same place
