"""Streaming image–caption samples from WebDataset tar shards, with every unusable sample counted.

One *reader* is a (rank, data-loader worker) pair. Each epoch the shard list is shuffled with the
run's seed (the same order on every rank), and reader ``(r, w)`` of ``world`` ranks × ``W`` workers
takes ``order[r::world][w::W]`` — webdataset's ``split_by_node`` then ``split_by_worker``, written
out here because those read the rank from the environment and we pass it explicitly (tests simulate
ranks in one process). A reader's samples pass through webdataset's shuffle buffer with a seeded RNG,
so its output is a pure function of (seed, epoch, rank, worker): resuming skips the first ``n`` raw
samples (no image decoding) and continues with exactly the samples an uninterrupted run would see.

Nothing is dropped silently. A reader yields one event per sample: ``"ok"`` (decoded image tensor,
caption) or ``"skip"`` with a reason:

* ``image_truncated`` / ``image_unreadable`` / ``image_empty_file`` / ``image_decompression_bomb``:
  the image member does not decode (:func:`xmodal.data.images.decode_image`);
* ``missing_image``, ``missing_caption``: no image / no ``.txt`` member for the key;
* ``empty_caption``, ``bad_caption``: a blank or non-UTF-8 ``.txt``; ``bad_json``: a ``.json`` that is
  not a JSON object;
* ``truncated_member``: the shard ends inside this sample's member (a cut download);
  ``duplicate_member``: two members with the same key and extension;
* ``truncated_shard`` / ``unreadable_shard``: each sample ``shards.json`` lists for a shard that never
  came because the shard is cut (after a ``truncated_member`` or inside a header) or is not a tar at
  all; without a manifest the number lost is unknown and a cut header or unreadable shard counts
  once; ``missing_from_shard``: an intact shard holding fewer samples than its manifest entry.

Why not ``webdataset.WebDataset`` as a whole: its tar reader (``tar_file_iterator``) hands errors to a
handler without the member's name, and a shard cut inside a member then yields the partial sample as
if it were whole; :func:`shard_members` reads members with :mod:`tarfile` itself and names the sample a
truncation hits. Grouping (``webdataset.tariterators.group_by_keys``) and the shuffle buffer
(``webdataset.filters.shuffle``) are webdataset's.
"""

from __future__ import annotations

import json
import random
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import webdataset
from torch import Tensor

from xmodal.data.images import BadImage, decode_image

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
ERROR = "__error__"  # a raw sample's field naming why it is unusable


def shard_members(path: str) -> Iterator[dict[str, Any]]:
    """The regular-file members of a tar shard as ``{"fname", "data", "__url__"}``, in order.

    Plain (uncompressed) tars, as img2dataset writes them. A member the shard ends inside is yielded
    as ``{"fname": "<key>.__truncated__"}`` so that it groups with its sample; a shard that is not a
    tar ends with one ``{"fname": "__shard__.__unreadable__"}``, and one cut or garbled between members
    (``tarfile`` takes that for the end of the archive; we check for the two zero blocks that really
    end one) with ``"__shard__.__truncated__"``.
    """
    try:
        f = Path(path).open("rb")  # noqa: SIM115  (a generator: closed by `with f` below)
    except OSError:
        yield {"fname": "__shard__.__unreadable__", "data": b"", "__url__": path}
        return
    with f:
        try:
            tar = tarfile.open(fileobj=f, mode="r|")  # noqa: SIM115  (closed with f)
        except (tarfile.TarError, EOFError, OSError):
            yield {"fname": "__shard__.__unreadable__", "data": b"", "__url__": path}
            return
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, EOFError, OSError):
                yield {"fname": "__shard__.__truncated__", "data": b"", "__url__": path}
                return
            if info is None:  # tarfile also ends quietly at a cut or garbled header: look for the end marker
                f.seek(tar.offset)
                end = f.read(2 * tarfile.BLOCKSIZE)
                if len(end) < 2 * tarfile.BLOCKSIZE or end.strip(b"\0"):
                    yield {"fname": "__shard__.__truncated__", "data": b"", "__url__": path}
                return
            if not info.isreg():
                continue
            try:
                member = tar.extractfile(info)
                data = member.read() if member is not None else b""
                if len(data) != info.size:
                    raise EOFError("short read")
            except (tarfile.TarError, EOFError, OSError):
                key = webdataset.tariterators.base_plus_ext(info.name)[0] or info.name
                yield {"fname": f"{key}.__truncated__", "data": b"", "__url__": path}
                return
            yield {"fname": info.name, "data": data, "__url__": path}
            tar.members = []  # type: ignore[attr-defined]  # streaming: do not keep every TarInfo


def shard_samples(path: str, expected: int | None) -> Iterator[dict[str, Any]]:
    """Raw samples (``{"__key__", "__url__", ext: bytes ...}``) of one shard; unusable ones carry ``ERROR``.

    Args:
        path: the tar file.
        expected: its sample count from ``shards.json``, or None; each sample it promises that the
            shard does not hold comes out as one unusable sample (``truncated_shard``,
            ``unreadable_shard`` or ``missing_from_shard``).
    """
    errors: list[str] = []

    def handler(exn: Exception) -> bool:  # group_by_keys: a duplicate member of the sample being built
        errors.append("duplicate_member")
        return True

    seen = 0
    damaged: str | None = None  # what ended the shard early, if anything
    marker = False  # the shard itself (not a named member) was unreadable or cut
    for sample in webdataset.tariterators.group_by_keys(shard_members(path), handler=handler):
        if sample["__key__"] == "__shard__":
            damaged = "unreadable_shard" if "__unreadable__" in sample else "truncated_shard"
            marker = True
            continue
        seen += 1
        if "__truncated__" in sample:
            sample[ERROR] = "truncated_member"
            damaged = "truncated_shard"
        elif errors:
            sample[ERROR] = errors.pop()
        yield sample
    if expected is not None and seen < expected:  # samples the manifest promises that never came
        reason = "missing_from_shard" if damaged is None else damaged
        for i in range(seen, expected):
            yield {"__key__": f"{path}#{i}", "__url__": path, ERROR: reason}
    elif expected is None and marker and damaged is not None:  # an unknown number lost: count it once
        yield {"__key__": path, "__url__": path, ERROR: damaged}


def reader_shards(
    paths: list[str], *, seed: int, epoch: int, rank: int, world: int, worker: int, workers: int
) -> list[str]:
    """The shards reader ``(rank, worker)`` reads in ``epoch``: seeded shuffle, split by rank, by worker."""
    order = list(paths)
    random.Random(f"shards/{seed}/{epoch}").shuffle(order)
    return order[rank::world][worker::workers]


def raw_stream(
    paths: list[str],
    counts: dict[str, int],
    *,
    shuffle_buffer: int,
    seed: int,
    epoch: int,
    rank: int,
    worker: int,
) -> Iterator[dict[str, Any]]:
    """One reader's raw samples for one epoch, through a seeded shuffle buffer (0 or 1: file order)."""
    samples = (s for p in paths for s in shard_samples(p, counts.get(p)))
    if shuffle_buffer <= 1:
        return samples
    rng = random.Random(f"samples/{seed}/{epoch}/{rank}/{worker}")
    initial = max(1, shuffle_buffer // 2)
    shuffle = webdataset.filters.shuffle(bufsize=shuffle_buffer, initial=initial, rng=rng)
    return iter(shuffle(samples))


def sample_seed(seed: int, epoch: int, key: str) -> int:
    """The augmentation seed of a sample: a function of (run seed, epoch, key), not of which reader had it."""
    return (seed * 1_000_003 + epoch * 7919 + zlib.crc32(key.encode("utf-8"))) % (2**63 - 1)


def decode_sample(
    sample: dict[str, Any], image_fn: Callable[[Any, int], Tensor], *, seed: int, epoch: int
) -> dict[str, Any]:
    """A raw sample → ``{"kind": "ok", "key", "image": (3, S, S), "caption"}`` or a skip event.

    A skip event is ``{"kind": "skip", "reason", "key"}`` (reasons in the module docstring).

    Args:
        image_fn: ``(PIL image, augmentation seed) -> (3, S, S)`` (the trainer's augment/preprocess).
    """
    key = str(sample["__key__"])
    name = f"{sample.get('__url__', '')}:{key}"

    def skip(reason: str) -> dict[str, Any]:
        return {"kind": "skip", "reason": reason, "key": name}

    if ERROR in sample:
        return skip(sample[ERROR])
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None:
        return skip("missing_image")
    if "txt" not in sample:
        return skip("missing_caption")
    try:
        caption = sample["txt"].decode("utf-8").strip()
    except UnicodeDecodeError:
        return skip("bad_caption")
    if not caption:
        return skip("empty_caption")
    if "json" in sample:
        try:
            meta = json.loads(sample["json"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return skip("bad_json")
        if not isinstance(meta, dict):
            return skip("bad_json")
    try:
        img = decode_image(sample[ext], f"{name}.{ext}")
    except BadImage as bad:
        return skip(f"image_{bad.reason}")
    image = image_fn(img, sample_seed(seed, epoch, key))
    return {"kind": "ok", "key": name, "image": image, "caption": caption}


class ShardStream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """One rank's readers for one epoch, as a ``DataLoader`` dataset (``batch_size=None``).

    Each data-loader worker (or the main process when ``workers == 0``) yields its reader's events,
    tagged with ``"worker"``, skipping the first ``start[worker]`` raw samples (resume), then one
    ``{"kind": "end", "worker"}``.

    Args:
        paths, counts: the shards and their manifest sample counts (:class:`xmodal.data.shards.ShardSet`).
        image_fn: ``(PIL image, seed) -> (3, S, S)``; must be picklable for non-fork worker starts.
        seed, epoch: the run's seed and this epoch.
        rank, world: this rank and the number of ranks.
        workers: data-loader workers (0: read in the main process, one reader).
        shuffle_buffer: samples in each reader's shuffle buffer.
        start: raw samples already consumed per worker (resume); default none.
    """

    def __init__(
        self,
        paths: list[str],
        counts: dict[str, int],
        image_fn: Callable[[Any, int], Tensor],
        *,
        seed: int,
        epoch: int,
        rank: int,
        world: int,
        workers: int,
        shuffle_buffer: int,
        start: list[int] | None = None,
    ) -> None:
        self.paths, self.counts, self.image_fn = paths, counts, image_fn
        self.seed, self.epoch, self.rank, self.world = seed, epoch, rank, world
        self.readers = max(1, workers)
        self.shuffle_buffer = shuffle_buffer
        self.start = list(start) if start is not None else [0] * self.readers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None:
            torch.set_num_threads(1)  # workers decode; the main process trains
        mine = reader_shards(
            self.paths,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world=self.world,
            worker=worker,
            workers=self.readers,
        )
        raw = raw_stream(
            mine,
            self.counts,
            shuffle_buffer=self.shuffle_buffer,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            worker=worker,
        )
        for i, sample in enumerate(raw):
            if i < self.start[worker]:
                continue  # already consumed before the checkpoint: not decoded again
            event = decode_sample(sample, self.image_fn, seed=self.seed, epoch=self.epoch)
            event["worker"] = worker
            yield event
        yield {"kind": "end", "worker": worker}
