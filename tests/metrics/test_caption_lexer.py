"""Tests for xmodal.metrics.ptb_lexer: the JFlex semantics the PTB tokenizer relies on, on small rule sets."""

from __future__ import annotations

import pytest

from xmodal.metrics.ptb_lexer import (
    PatternError,
    Rule,
    Scanner,
    case_variants,
    negate,
    normalize,
    parse_ranges,
)

NAMED = {"letter": parse_ranges("0041-005A 0061-007A 00E9"), "digit": parse_ranges("0030-0039")}


def tokens(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    """(action, text) of every token, scanning the whole text (no actions applied)."""
    out, pos = [], 0
    while pos < len(text):
        k, stop, _ = scanner.scan(text, pos, len(text))
        out.append((scanner.rules[k].action, text[pos:stop]))
        pos = stop
    return out


def test_intervals_helpers():
    assert normalize([(5, 9), (1, 3), (4, 4), (20, 20)]) == ((1, 9), (20, 20))
    assert negate(((0, 9), (20, 0xFFFF))) == ((10, 19),)
    assert parse_ranges("0041-0043 0061") == ((0x41, 0x43), (0x61, 0x61))
    # %caseless: k also matches KELVIN SIGN, s LONG S, i DOTTED/DOTLESS I
    assert case_variants("k") == normalize([(ord("k"), ord("k")), (ord("K"), ord("K")), (0x212A, 0x212A)])
    assert (0x017F, 0x017F) in case_variants("S")
    assert {0x130, 0x131} <= {c for lo, hi in case_variants("i") for c in range(lo, hi + 1)}


def test_longest_match_then_first_rule():
    rules = [Rule("kw", "if"), Rule("word", "[a-z]+"), Rule("num", "[0-9]+"), Rule("other", ".")]
    scan = Scanner(rules, [], NAMED)
    assert tokens(scan, "if iffy 42!") == [
        ("kw", "if"),  # same length as word: the earlier rule wins
        ("other", " "),
        ("word", "iffy"),  # longer than "if": the longest match wins
        ("other", " "),
        ("num", "42"),
        ("other", "!"),
    ]


def test_caseless_literals_but_case_sensitive_classes():
    rules = [Rule("cannot", "cannot"), Rule("upper", "[A-Z]+"), Rule("other", ".")]
    scan = Scanner(rules, [], NAMED)
    assert tokens(scan, "CANNOT")[0] == ("cannot", "CANNOT")
    assert tokens(scan, "Cannot")[0] == ("cannot", "Cannot")
    assert tokens(scan, "\u212aB")[0] == ("other", "\u212a")  # KELVIN SIGN is not in [A-Z] ...
    kelvin = Scanner([Rule("k", "k"), Rule("other", ".")], [], NAMED)
    assert tokens(kelvin, "\u212a") == [("k", "\u212a")]  # ... but matches a caseless k


def test_trailing_context_takes_the_longest_head():
    # "a+" followed by "ab": on "aaab" the head is "aa", the trail "ab"; the match length counts the trail
    rules = [Rule("head", "a+", "ab"), Rule("as", "a+"), Rule("other", ".")]
    scan = Scanner(rules, [], NAMED)
    assert tokens(scan, "aaab") == [("head", "aa"), ("as", "a"), ("other", "b")]
    assert tokens(scan, "aaa") == [("as", "aaa")]  # no trail: the other rule
    # variable-length head and trail: the split gives the head as much as the trail allows
    var = Scanner([Rule("x", "[a-z]+[0-9]*", "[0-9]+!"), Rule("o", ".")], [], NAMED)
    assert tokens(var, "ab123!")[0] == ("x", "ab12")


def test_macros_named_classes_and_repetition():
    macros = [("L", "[:letter:]"), ("W", "{L}({L}|[:digit:]){0,2}")]
    scan = Scanner([Rule("w", "{W}"), Rule("o", "[^]")], macros, NAMED)
    assert tokens(scan, "é12345") == [("w", "é12"), ("o", "3"), ("o", "4"), ("o", "5")]
    quoted = Scanner([Rule("s", '"a.b"'), Rule("o", ".")], [], NAMED)
    assert tokens(quoted, "A.B")[0] == ("s", "A.B")  # a "string" is literal (and caseless)
    assert tokens(quoted, "axb")[0] == ("o", "a")


def test_seen_reports_how_far_the_scanner_looked():
    scan = Scanner([Rule("ab", "ab", "cde"), Rule("a", "a"), Rule("o", ".")], [], NAMED)
    k, stop, seen = scan.scan("abcdx", 0, 5)
    assert scan.rules[k].action == "a" and stop == 1
    assert seen == 5  # it read up to the "x" that failed the trailing context


def test_rules_starting_with():
    scan = Scanner([Rule("sp", " +"), Rule("w", "[a-z]+"), Rule("o", ".")], [], NAMED)
    assert {scan.rules[k].action for k in scan.rules_starting_with(" ")} == {"sp", "o"}
    assert {scan.rules[k].action for k in scan.rules_starting_with("q")} == {"w", "o"}


@pytest.mark.parametrize("pattern", ["(ab", "[ab", "{NOPE}", "a|*", "a)"])
def test_bad_patterns_raise(pattern):
    with pytest.raises((PatternError, ValueError)):
        Scanner([Rule("x", pattern)], [], NAMED)
