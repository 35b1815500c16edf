"""Counting the samples a dataset had to skip, and failing loudly when there are too many.

A few broken files in a scraped dataset are normal; a third of them broken means a bad download or a
wrong path, and training on what is left would silently measure the wrong thing. ``SkipCounter``
records every skip with its reason, keeps the first few offending items per reason for the error
message, and ``check`` turns "too many" into a one-line ``DataError``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from xmodal.errors import DataError


class SkipCounter:
    """Skipped samples, counted by reason (``"missing"``, ``"empty_caption"`` ...).

    Args:
        what: what a sample is called in messages ("emoji images", "pairs").
        keep: how many example items to keep per reason.
    """

    def __init__(self, what: str = "items", *, keep: int = 5) -> None:
        self.what = what
        self.keep = keep
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def skip(self, reason: str, item: str) -> None:
        """Record that ``item`` (a path or an id) was skipped because of ``reason``."""
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.keep:
            kept.append(str(item))

    @property
    def total(self) -> int:
        """How many items were skipped, all reasons together."""
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """``{"total": n, "by_reason": {reason: {"count": c, "examples": [...]}}}``, most frequent first."""
        return {
            "total": self.total,
            "by_reason": {
                reason: {"count": count, "examples": list(self.examples[reason])}
                for reason, count in self.counts.most_common()
            },
        }

    def state(self) -> dict[str, Any]:
        """Plain-data form (JSON, a checkpoint, another process): ``{"counts": ..., "examples": ...}``."""
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the counts with those of :meth:`state` (resuming a stream)."""
        self.counts = Counter({str(k): int(v) for k, v in state.get("counts", {}).items()})
        self.examples = {str(k): [str(x) for x in v] for k, v in state.get("examples", {}).items()}

    def merge(self, state: dict[str, Any]) -> None:
        """Add another counter's :meth:`state` (another data-loader worker or rank) to this one."""
        for reason, count in state.get("counts", {}).items():
            self.counts[reason] += int(count)
        for reason, items in state.get("examples", {}).items():
            kept = self.examples.setdefault(reason, [])
            kept.extend(str(x) for x in items[: max(0, self.keep - len(kept))])

    def check(self, n_seen: int, max_fraction: float) -> None:
        """Raise ``DataError`` if more than ``max_fraction`` of the ``n_seen`` items were skipped.

        Args:
            n_seen: items looked at, skipped ones included.
            max_fraction: the largest acceptable share of skipped items, in [0, 1].
        """
        if n_seen <= 0:
            if self.total:
                raise DataError(f"all {self.what} were skipped: {self._reasons()}")
            return
        share = self.total / n_seen
        if share > max_fraction:
            raise DataError(
                f"too many unusable {self.what}: {self.total} of {n_seen} skipped ({share:.2%}, "
                f"limit {max_fraction:.2%}); top reasons: {self._reasons()}"
            )

    def _reasons(self, top: int = 3) -> str:
        parts = []
        for reason, count in self.counts.most_common(top):
            example = f" (e.g. {self.examples[reason][0]})" if self.examples.get(reason) else ""
            parts.append(f"{reason} {count}{example}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"SkipCounter({self.what!r}, total={self.total}, counts={dict(self.counts)})"
