"""The trainer's batch source for WebDataset shards (``data.shards``): batches, skip counts, resume state.

:class:`ShardBatches` runs one :class:`~xmodal.data.stream.ShardStream` per epoch through a
``DataLoader`` with ``data.workers`` workers and merges the workers' events in a fixed order of its
own — the worker with the fewest consumed events next, ties to the lowest id (plain round-robin while
all are running) — rather than in the order the loader delivers them. The merged sequence is then a
pure function of (seed, epoch, consumed events per worker), which is exactly what the checkpoint
records, so ``--resume`` continues with the very next sample keys.

Epochs are per rank: a rank whose readers run out starts its next epoch on its own (ranks take the
same number of steps). The feature cache (``train.cache_features``) does not apply to streamed
training data: images are decoded and embedded online (the validation set still uses it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from xmodal.data.shards import ShardSet, resolve_shards
from xmodal.data.skips import SkipCounter
from xmodal.data.stream import ShardStream
from xmodal.errors import ConfigError, DataError

CHECK_AFTER = 1000  # data.max_skip_fraction is checked at every skip once this many samples were seen


class ImageFn:
    """``(PIL image, seed) -> (3, S, S)``: the training augmentation with a per-sample seed, else the
    eval preprocessing. A class (not a closure) so that data-loader workers can receive it pickled."""

    def __init__(self, preprocess: Callable[[Any], Tensor], augment: Any | None) -> None:
        self.preprocess = preprocess
        self.augment = augment

    def __call__(self, img: Any, seed: int) -> Tensor:
        if self.augment is None:
            return self.preprocess(img)
        return self.augment(img, torch.Generator().manual_seed(seed))  # type: ignore[no-any-return]


class ShardBatches:
    """This rank's training batches, streamed from shards.

    Args:
        shards: a ``data.shards`` setting (folder or brace pattern) or a resolved :class:`ShardSet`.
        image_fn: ``(PIL image, seed) -> (3, S, S)``.
        tokenize: the text tower's tokenizer, ``list[str] -> token inputs`` (its ``num_truncated``
            counts captions cut at the token limit).
        batch_size: samples per batch on this rank.
        seed: the run's seed.
        rank, world: this rank and the number of ranks.
        workers: data-loader workers per rank (0: decode in the main process).
        shuffle_buffer: samples in each reader's shuffle buffer (0 or 1: shard order).
        max_skip_fraction: the largest share of skipped samples; checked at the end of every epoch of
            this rank, at every skip once ``CHECK_AFTER`` samples were seen, and over all ranks by
            :meth:`summary`.

    Raises:
        ConfigError: fewer shards than ranks × readers (some reader would get none and the job would
            wait on it forever), or bad settings.
    """

    def __init__(
        self,
        shards: str | ShardSet,
        image_fn: Callable[[Any, int], Tensor],
        tokenize: Callable[[list[str]], Any],
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
        shuffle_buffer: int = 1000,
        max_skip_fraction: float = 0.01,
    ) -> None:
        self.shards = resolve_shards(shards) if isinstance(shards, str) else shards
        if workers < 0 or shuffle_buffer < 0 or batch_size <= 0:
            raise ConfigError(
                f"data.workers={workers}, data.shuffle_buffer={shuffle_buffer} must be >= 0 and the "
                f"per-rank batch size {batch_size} positive"
            )
        readers = max(1, workers)
        n = len(self.shards.paths)
        if n < world * readers:
            raise ConfigError(
                f"data.shards: {n} shards for {world} ranks x {readers} readers per rank "
                f"(data.workers={workers}) = {world * readers} readers; every reader needs at least one "
                f"shard: write more, smaller shards (--shard-size) or lower data.workers"
            )
        self.image_fn, self.tokenize = image_fn, tokenize
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.workers, self.readers, self.shuffle_buffer = workers, readers, shuffle_buffer
        self.max_skip_fraction = max_skip_fraction
        self.skips = SkipCounter("streamed samples")
        self.n_seen = 0  # events consumed, skipped ones included (for max_skip_fraction)
        self.epoch = 0
        self.consumed = [0] * readers  # events consumed per worker in this epoch
        self.truncated = 0  # captions cut at the text tower's token limit
        self._iter: Any = None
        self._ended: set[int] = set()
        self._pending: dict[int, list[dict[str, Any]]] = {}
        self._epoch_good = 0

    # ------------------------------------------------------------------ resume
    def state(self) -> dict[str, Any]:
        """Where this rank is: epoch, events consumed per worker, skip counts (JSON-serialisable)."""
        return {
            "epoch": self.epoch,
            "consumed": list(self.consumed),
            "readers": self.readers,
            "world": self.world,
            "shards": len(self.shards.paths),
            "n_seen": self.n_seen,
            "skips": self.skips.state(),
            "truncated": self.truncated,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (same shards, seed, ranks and workers).

        Raises:
            ConfigError: the state was written with other workers, ranks or shards.
        """
        if int(state["readers"]) != self.readers:
            raise ConfigError(
                f"data.workers: the checkpoint was written with {state['readers']} readers per rank, "
                f"this run has {self.readers}; resume with the same data.workers"
            )
        if (int(state["world"]), int(state["shards"])) != (self.world, len(self.shards.paths)):
            raise ConfigError(
                f"data.shards: the checkpoint was written by {state['world']} ranks reading "
                f"{state['shards']} shards, this run has {self.world} ranks and {len(self.shards.paths)} "
                "shards; resume with the same ranks and shards"
            )
        self.epoch = int(state["epoch"])
        self.consumed = [int(c) for c in state["consumed"]]
        self.n_seen = int(state["n_seen"])
        self.skips.load_state(state["skips"])
        self.truncated = int(state.get("truncated", 0))
        self._iter = None

    # ------------------------------------------------------------------ events
    def _open_epoch(self) -> None:
        dataset = ShardStream(
            self.shards.paths,
            self.shards.counts,
            self.image_fn,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world=self.world,
            workers=self.workers,
            shuffle_buffer=self.shuffle_buffer,
            start=self.consumed,
        )
        # its own generator: starting a loader must not draw from the global RNG (dropout, exact resume)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=self.workers, generator=generator
        )
        self._iter = iter(loader)
        self._ended = set()
        self._pending = {w: [] for w in range(self.readers)}
        self._epoch_good = 0

    def _merged_event(self) -> dict[str, Any] | None:
        """The next event in merge order, or None when every worker has ended this epoch."""
        while True:
            active = [w for w in range(self.readers) if w not in self._ended]
            if not active:
                return None
            w = min(active, key=lambda i: (self.consumed[i], i))
            while not self._pending[w]:
                event = next(self._iter)  # the loader ends only after every worker's "end"
                self._pending[int(event["worker"])].append(event)
            event = self._pending[w].pop(0)
            if event["kind"] == "end":
                self._ended.add(w)
                continue
            self.consumed[w] += 1
            return event

    def next_event(self) -> dict[str, Any] | None:
        """This rank's next sample event, counted: ``{"kind": "ok", "key", "image", "caption"}`` or
        ``{"kind": "skip", "reason", "key"}``; None once at the end of each epoch (the next call starts
        the next epoch).

        Raises:
            DataError: more than ``max_skip_fraction`` skipped, or an epoch without a usable sample.
        """
        if self._iter is None:
            self._open_epoch()
        event = self._merged_event()
        if event is None:
            if self._epoch_good == 0:
                raise DataError(
                    f"rank {self.rank}: a whole epoch of its shards gave no usable sample "
                    f"({self.skips._reasons() or 'no samples at all'})"
                )
            self.skips.check(self.n_seen, self.max_skip_fraction)
            self.epoch += 1
            self.consumed = [0] * self.readers
            self._iter = None
            return None
        self.n_seen += 1
        if event["kind"] == "skip":
            self.skips.skip(event["reason"], event["key"])
            if self.n_seen >= CHECK_AFTER:
                self.skips.check(self.n_seen, self.max_skip_fraction)
        else:
            self._epoch_good += 1
        return event

    def next_samples(self) -> list[dict[str, Any]]:
        """The next ``batch_size`` samples (``key``, ``image`` (3, S, S), ``caption``), skips counted."""
        out: list[dict[str, Any]] = []
        while len(out) < self.batch_size:
            event = self.next_event()
            if event is not None and event["kind"] == "ok":
                out.append(event)
        return out

    def batch_inputs(self, batch: list[dict[str, Any]], *, train: bool = True) -> dict[str, Any]:
        """Model keyword inputs of samples from :meth:`next_samples`: ``image`` (B, 3, S, S) and ``text``."""
        before = int(getattr(self.tokenize, "num_truncated", 0))
        text = self.tokenize([s["caption"] for s in batch])
        self.truncated += int(getattr(self.tokenize, "num_truncated", 0)) - before
        return {"image": torch.stack([s["image"] for s in batch]), "text": text}

    def summary(self, states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The run summary's skip section: this rank's counts, or every rank's (``states``) added up.

        ``{"total", "by_reason": {reason: {"count", "examples"}}, "seen"}``; a sample skipped in two
        epochs counts twice, as ``seen`` counts it twice.

        Raises:
            DataError: more than ``max_skip_fraction`` of the samples seen by all ranks were skipped.
        """
        total = SkipCounter(self.skips.what, keep=self.skips.keep)
        n_seen = 0
        for st in states if states is not None else [self.state()]:
            total.merge(st["skips"])
            n_seen += int(st["n_seen"])
        total.check(n_seen, self.max_skip_fraction)
        return {**total.summary(), "seen": n_seen}

    def close(self) -> None:
        """Stop the data-loader workers."""
        self._iter = None


def shard_batches(
    cfg: Any,
    model: Any,
    ctx: Any,
    batch_size: int,
    *,
    augment: Any | None,
    preprocess: Callable[[Any], Tensor],
) -> ShardBatches:
    """The batch source of a config with ``data.shards`` for one rank (``ctx``), ``batch_size`` per rank.

    ``train.cache_features`` does not apply to streamed data (every epoch decodes and embeds the images
    again; a locked tower still runs, without gradients); rank 0 says so once when it would have applied.
    """
    frozen = not any(p.requires_grad for p in model.image_encoder.parameters())
    if cfg.train.cache_features and frozen and ctx.rank == 0:
        print(
            "note: train.cache_features does not apply to data.shards; streamed images are embedded online",
            file=sys.stderr,
        )
    d = cfg.data
    return ShardBatches(
        d.shards,
        ImageFn(preprocess, augment),
        model.text_encoder.tokenizer,
        batch_size=batch_size,
        seed=cfg.train.seed,
        rank=ctx.rank,
        world=ctx.world,
        workers=d.workers,
        shuffle_buffer=d.shuffle_buffer,
        max_skip_fraction=d.max_skip_fraction,
    )
