"""Truncation to the LM's context and label masking, both counted, never silent.

The issue's bad-input rules: a sequence longer than the LM's context is truncated and counted; a sample
whose labels are all masked (no answer token left, e.g. after truncation) is counted, and a run where
such samples exceed a set share stops with :class:`~xmodal.errors.XmodalError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xmodal.errors import XmodalError

IGNORE_INDEX = -100  # the label that cross-entropy skips (PyTorch's and transformers' convention)


@dataclass
class TruncationCounter:
    """How many sequences were seen and how many were cut to fit the context."""

    seen: int = 0
    truncated: int = 0
    tokens_dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for a run's metrics."""
        return {"seen": self.seen, "truncated": self.truncated, "tokens_dropped": self.tokens_dropped}


def truncate(ids: Sequence[int], max_len: int, counter: TruncationCounter | None = None) -> list[int]:
    """The first ``max_len`` ids; a cut is recorded in ``counter``.

    Raises:
        ValueError: ``max_len`` < 1.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = list(ids[:max_len])
    if counter is not None:
        counter.seen += 1
        if len(ids) > max_len:
            counter.truncated += 1
            counter.tokens_dropped += len(ids) - max_len
    return out


def mask_labels(ids: Sequence[int], answer_mask: Sequence[bool]) -> list[int]:
    """Labels for ``ids``: the id where ``answer_mask`` is True, :data:`IGNORE_INDEX` elsewhere."""
    if len(ids) != len(answer_mask):
        raise ValueError(f"{len(ids)} ids but {len(answer_mask)} mask entries")
    return [int(i) if keep else IGNORE_INDEX for i, keep in zip(ids, answer_mask, strict=True)]


@dataclass
class MaskedCounter:
    """Counts samples whose labels are all :data:`IGNORE_INDEX` (they teach nothing).

    Args:
        max_share: the largest acceptable share of such samples; :meth:`check` raises above it.
    """

    max_share: float = 0.05
    seen: int = 0
    all_masked: int = 0

    def record(self, labels: Sequence[int]) -> bool:
        """Count one sample; True if all its labels are masked."""
        self.seen += 1
        empty = all(int(x) == IGNORE_INDEX for x in labels)
        self.all_masked += int(empty)
        return empty

    @property
    def share(self) -> float:
        """all_masked / seen (0 when nothing was seen)."""
        return self.all_masked / self.seen if self.seen else 0.0

    def check(self, what: str = "samples") -> None:
        """Raise if the share of all-masked samples exceeds ``max_share``.

        Raises:
            XmodalError: with the counts and the limit, in one line.
        """
        if self.share > self.max_share:
            raise XmodalError(
                f"{self.all_masked} of {self.seen} {what} ({self.share:.1%}) have no answer token left to "
                f"learn from (all labels masked, e.g. after truncation to the context); the limit is "
                f"{self.max_share:.1%}: raise the context length or shorten the prompts"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for a run's metrics."""
        return {"seen": self.seen, "all_masked": self.all_masked, "max_share": self.max_share}


def next_token_loss(logits: Any, labels: Any, label_smoothing: float = 0.0) -> Any:
    """Shifted cross-entropy: ``logits`` (B, N, V) at position i predict ``labels`` (B, N) at i + 1.

    Positions labelled :data:`IGNORE_INDEX` are skipped; ``label_smoothing`` (Szegedy et al. 2016,
    https://arxiv.org/abs/1512.00567) spreads that much target mass uniformly over the vocabulary. With 0
    it equals ``transformers``' causal-LM loss.
    """
    import torch.nn.functional as F

    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
    )
