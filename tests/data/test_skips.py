"""Tests for SkipCounter: counting by reason, kept examples, summary, and the skip-fraction check."""

from __future__ import annotations

import pytest

from xmodal.data.skips import SkipCounter
from xmodal.errors import DataError


def _counter() -> SkipCounter:
    skips = SkipCounter("emoji images", keep=2)
    for i in range(3):
        skips.skip("missing", f"img/{i}.png")
    skips.skip("empty_caption", "1F600")
    return skips


def test_counts_examples_and_total() -> None:
    skips = _counter()
    assert skips.total == 4
    assert skips.counts == {"missing": 3, "empty_caption": 1}
    assert skips.examples["missing"] == ["img/0.png", "img/1.png"]  # only the first `keep`


def test_summary_is_most_frequent_first() -> None:
    summary = _counter().summary()
    assert summary["total"] == 4
    assert list(summary["by_reason"]) == ["missing", "empty_caption"]
    assert summary["by_reason"]["empty_caption"] == {"count": 1, "examples": ["1F600"]}


def test_check_passes_at_the_limit() -> None:
    _counter().check(n_seen=400, max_fraction=0.01)  # exactly 1 %: allowed
    SkipCounter().check(n_seen=0, max_fraction=0.0)  # nothing seen, nothing skipped


def test_check_raises_one_line_naming_count_share_limit_reasons() -> None:
    with pytest.raises(DataError) as info:
        _counter().check(n_seen=100, max_fraction=0.01)
    message = str(info.value)
    assert "\n" not in message
    assert "4 of 100 skipped" in message
    assert "4.00%" in message and "limit 1.00%" in message
    assert "missing 3 (e.g. img/0.png)" in message and "empty_caption 1" in message


def test_check_everything_skipped() -> None:
    skips = SkipCounter("pairs")
    skips.skip("unreadable", "a.png")
    with pytest.raises(DataError, match="all pairs were skipped: unreadable 1"):
        skips.check(n_seen=0, max_fraction=0.5)


def test_state_round_trip_and_merge_add_counts() -> None:
    a = _counter()
    b = SkipCounter("emoji images", keep=2)
    b.load_state(a.state())
    assert b.counts == a.counts and b.examples == a.examples
    b.merge(a.state())  # another worker's or rank's counts
    assert b.counts == {"missing": 6, "empty_caption": 2}
    assert b.examples["missing"] == ["img/0.png", "img/1.png"]  # still at most `keep`
    assert b.examples["empty_caption"] == ["1F600", "1F600"]
