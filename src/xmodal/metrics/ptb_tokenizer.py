"""pycocoevalcap's caption tokenisation without Java: Stanford PTBTokenizer 3.4.1, then punctuation removal.

pycocoevalcap (https://github.com/salaniz/pycocoevalcap, ``tokenizer/ptbtokenizer.py``) writes every caption
of a split on its own line (newlines inside a caption become spaces), runs ``java -cp
stanford-corenlp-3.4.1.jar edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` on the file, and
drops the tokens in :data:`PUNCTUATIONS` from each output line. :func:`tokenize_captions` does the same in
Python: :mod:`xmodal.metrics.ptb_rules` restates the scanner's rules, this module applies each rule's
action (``-LRB-`` for ``(``, ````` `` ```` and ``''`` for double quotes, ``--`` for dashes, splitting
``cannot``, ``gonna``, ``don't`` and ``it's``, deleting characters the scanner cannot tokenise such as
emoji, ...) and lowercases as Java 17 does. Quirks that pycocoevalcap's scores depend on are kept on
purpose: ``-LRB-`` is lowercased to ``-lrb-`` and so survives the punctuation filter; the scanner looks
across line ends (``etc.`` at the end of a caption keeps or repeats its period depending on the next
caption's first letter), so the captions are scanned as one text in pycocoevalcap's order.

Speed: captions repeat their words, so the text is cut at spaces into chunks and each chunk's tokens come
from a cache, keyed by the chunk and by the few following characters that the scanner examined when it
first tokenised it (:func:`ptb_lines`); chunks whose tokens depend on more (``5 7/8``, ``U.S. The``) send
their line to the scanner as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from xmodal.metrics.ptb_lexer import Scanner
from xmodal.metrics.ptb_rules import MACROS, NAMED, RULES

PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
"""The tokens pycocoevalcap drops after tokenising (note: compared after lowercasing, so ``-lrb-`` stays)."""

NEWLINE = "\n"
"""The marker :func:`scan_tokens` yields for a line break."""

_SQ, _DQ = re.compile(r"&apos;|'"), re.compile(r"\"|&quot;")
_LSQ, _RSQ = re.compile("[\u0091\u2018\u201b\u2039]"), re.compile("[\u0092\u2019\u203a]")
_LDQ, _RDQ = re.compile("[\u0093\u201c\u00ab]"), re.compile("[\u0094\u201d\u00bb]")
_AMP = re.compile("&amp;", re.IGNORECASE | re.ASCII)
_CURRENCY = re.compile("[\u0080\u00a4\u20a0\u20ac]")
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_TRIM = frozenset(" \t\n\x0b\x0c\r\x85")
_CONSTANT = {
    "dash": "--",
    "ellipsis": "...",
    "less_than": "<",
    "greater_than": ">",
    **{k: k for k in ("-LCB-", "-RCB-", "-LSB-", "-RSB-", "-LRB-", "-RRB-")},
}


def latex_quotes(text: str, left: bool) -> str:
    """PTBLexer's ``latexQuotes``: straight quotes become ````` / ```` `` (opening) or ``'`` / ``''``."""
    text = _SQ.sub("`" if left else "'", text)
    text = _DQ.sub("``" if left else "''", text)
    text = _LSQ.sub("`", text)
    text = _RSQ.sub("'", text)
    text = _LDQ.sub("``", text)
    return _RDQ.sub("''", text)


def remove_soft_hyphens(text: str) -> str:
    """Drop U+00AD; a token that was only soft hyphens becomes ``-``."""
    if "\u00ad" not in text:
        return text
    return text.replace("\u00ad", "") or "-"


def _currency(text: str) -> str:
    return _CURRENCY.sub("$", text.replace("\u00a2", "cents").replace("\u00a3", "#"))


def _fraction(text: str) -> str:
    for k, v in _FRACTIONS.items():
        text = text.replace(k, v)
    return text


def _parens(text: str) -> str:
    return text.replace("(", "-LRB-").replace(")", "-RRB-")


_TRANSFORM = {
    "keep": lambda t: t,
    "word": remove_soft_hyphens,
    "quote": lambda t: latex_quotes(t, False),
    "left_quote": lambda t: latex_quotes(t, True),
    "amp": lambda t: _AMP.sub("&", t),
    "sgml": lambda t: t.replace(" ", "\u00a0"),
    "nbsp": lambda t: t.replace(" ", "\u00a0"),
    "fraction": _fraction,
    "currency": _currency,
    "phone": lambda t: _parens(t.replace(" ", "\u00a0")),
    "parens": _parens,
    "hyphens": lambda t: "--" if 3 <= len(t) <= 4 else t,
}


@lru_cache(maxsize=1)
def scanner() -> Scanner:
    """The PTB scanner (built once; its DFA grows lazily as new text is seen)."""
    return Scanner(RULES, MACROS, NAMED)


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def to_units(text: str) -> str:
    """``text`` with characters beyond U+FFFF split into surrogate pairs, as Java's ``char`` sees them."""
    if not _ASTRAL.search(text):
        return text
    return _ASTRAL.sub(_surrogates, text)


def _surrogates(m: re.Match[str]) -> str:
    cp = ord(m.group()) - 0x10000
    return chr(0xD800 + (cp >> 10)) + chr(0xDC00 + (cp & 0x3FF))


def scan_tokens(units: str, start: int = 0, stop: int | None = None) -> tuple[list[str], int, int]:
    """The tokens starting in ``units[start:stop]`` (UTF-16 units: :func:`to_units`), not lowercased.

    Returns the tokens (a line break yields :data:`NEWLINE`), the offset where scanning stopped (``stop``, or
    beyond it when the last token runs past) and the end of the text the scanner examined: its trailing
    contexts read past ``stop``, across spaces and line ends.
    """
    scan = scanner()
    rules = scan.rules
    end = len(units)
    stop = end if stop is None else stop
    out: list[str] = []
    pos = seen = start
    while pos < stop:
        if units[pos] == " ":  # no rule but the whitespace one starts with a space: skip its whole run
            pos += 1
            while pos < end and units[pos] in SPACE_CHARS:
                pos += 1
            seen = max(seen, min(pos + 1, end))
            continue
        k, tok_end, tok_seen = scan.scan(units, pos, end)
        seen = max(seen, tok_seen)
        action = rules[k].action
        text = units[pos:tok_end]
        nxt = tok_end
        token: str | None
        if action in _TRANSFORM:
            token = _TRANSFORM[action](text)
        elif action in _CONSTANT:
            token = _CONSTANT[action]
        elif action in ("skip", "delete"):
            token = None
        elif action == "newline":
            token = NEWLINE
        elif action in ("split3", "split2"):  # cannot -> can|not, gonna -> gon|na
            nxt = tok_end - (3 if action == "split3" else 2)
            token = units[pos:nxt]
        elif action == "repeat_period":  # "etc." then "." again
            token, nxt = text, tok_end - 1
        elif action in ("acronym", "trim"):
            while nxt > pos and units[nxt - 1] in _TRIM:
                nxt -= 1
            token = units[pos:nxt]
            if action == "acronym":  # "I." -> "I" + "."; "U.S." -> "U.S." + "."
                if nxt - pos == 2:
                    token = units[pos : nxt - 1]
                nxt -= 1
        else:  # pragma: no cover - every rule's action is handled above
            raise AssertionError(f"unknown action {action!r}")
        if token is not None:
            out.append(token)
        pos = nxt
    return out, pos, seen


# Code points that Java 17's String.toLowerCase leaves unchanged but Python (Unicode 14+) lowercases.
_JAVA_NO_LOWER = re.compile(
    "[\u2c2f\ua7c0\ua7d0\ua7d6\ua7d8\U00010570-\U0001057a\U0001057c-\U0001058a"
    "\U0001058c-\U00010592\U00010594\U00010595]"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def java_lower(token: str) -> str:
    """``token.toLowerCase(Locale.ENGLISH)`` as Java 17 computes it, written out as UTF-8 by Java."""
    if not token.isascii():
        if _LONE_SURROGATE.search(token):  # rejoin pairs; Java's encoder writes a lone surrogate as "?"
            token = token.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
            token = token.replace("\ufffd", "?")
        if _JAVA_NO_LOWER.search(token):
            parts = _JAVA_NO_LOWER.split(token)
            keep = _JAVA_NO_LOWER.findall(token)
            return "".join(p.lower() + k for p, k in zip(parts, [*keep, ""], strict=True))
    return token.lower()


def ptb_lines(text: str) -> list[str]:
    """What ``PTBTokenizer -preserveLines -lowerCase`` prints for ``text``: one string per output line.

    The text is cut at spaces into chunks; a chunk's tokens come from a cache keyed by the chunk and the
    few characters after it that the scanner examined when it first tokenised that chunk, so the result is
    the scanner's own (``tests/metrics/test_caption_tokenizer.py`` compares it with
    :func:`ptb_lines_reference`).
    A line with a chunk whose tokens reach into the next one (``5 7/8``, ``<a href="x">``) or depend on
    more than three following characters (``U.S. The``) is scanned as a whole.
    """
    return _lines(text, keep_punctuation=True)


def ptb_lines_reference(text: str) -> list[str]:
    """:func:`ptb_lines` computed by the scanner alone, without the chunk cache (for tests)."""
    out: list[list[str]] = [[]]
    for token in scan_tokens(to_units(text))[0]:
        if token == NEWLINE:
            out.append([])
        else:
            out[-1].append(java_lower(token))
    return [" ".join(line) for line in out]


def drop_punctuation(line: str) -> str:
    """pycocoevalcap's filter: split on single spaces, drop :data:`PUNCTUATIONS`, join with spaces."""
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def _lines(text: str, keep_punctuation: bool) -> list[str]:
    """:func:`ptb_lines`, or its lines through :func:`drop_punctuation` when not ``keep_punctuation``."""
    units = to_units(text)
    out: list[str] = []
    lines = units.split("\n")
    last = len(lines) - 1
    start = 0
    for i, line in enumerate(lines):  # every line starts a fresh output line (see the loop's end)
        end = start + len(line)
        entry = _cached_line(units, line, start, end, i == last)
        if entry is not None:
            joined, kept = entry
            if keep_punctuation:
                out.append(joined)
            else:  # pycocoevalcap strips trailing whitespace before filtering
                out.append(kept if not joined or not joined[-1].isspace() else drop_punctuation(joined))
        else:
            raw, stop, _ = scan_tokens(units, start, end)
            produced: list[str] = []
            current: list[str] = []
            for token in raw:
                if token == NEWLINE:
                    produced.append(" ".join(current))
                    current = []
                else:
                    current.append(java_lower(token))
            if stop <= end or i == last:  # else a final "\r" and the "\n" were one line break, already out
                produced.append(" ".join(current))
            out.extend(produced if keep_punctuation else map(drop_punctuation, produced))
        start = end + 1
    return out


_LOOKAHEAD = 3
SPACE_CHARS = " \t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u3000"
"""The scanner's SPACE characters: a whitespace token takes a whole run of them."""
_SPACE_AFTER_SPACE = re.compile(f" [{SPACE_CHARS[1:]}]")
_MISSING: Any = object()
_EMPTY = ("", "")
Entry = tuple[str, str]
"""A chunk's lowercased tokens joined by spaces, and the same without :data:`PUNCTUATIONS`."""
_CHUNKS: dict[tuple[str, str, bool], Entry | None] = {}
_AFTER_SPACE: dict[str, Entry | None] = {}  # chunks whose scan examined only the space after them
_AFTER_NEWLINE: dict[str, Entry | None] = {}  # ... only the line break after them


def _cached_line(units: str, line: str, start: int, end: int, last_line: bool) -> Entry | None:
    """The tokens of ``line = units[start:end]`` from the chunk cache; None if a chunk needs more context
    than the cache keeps (then the scanner tokenises the line as a whole)."""
    pieces = line.split(" ")
    chunks = pieces
    if _SPACE_AFTER_SPACE.search(line):  # the whitespace token after a space also takes these: drop them
        chunks = [pieces[0], *(p.lstrip(SPACE_CHARS) for p in pieces[1:])]
    get = _AFTER_SPACE.get
    entries = [get(c, _MISSING) if c else _EMPTY for c in chunks[:-1]]
    if None in entries:
        return None
    if _MISSING in entries:
        a = start
        for j, c in enumerate(chunks[:-1]):
            a += len(pieces[j])  # the chunk's end
            if entries[j] is _MISSING:
                entries[j] = _chunk_lookup(units, c, a)
                if entries[j] is None:
                    return None
            a += 1
    c = chunks[-1]
    if c:
        entry = _MISSING if last_line else _AFTER_NEWLINE.get(c, _MISSING)
        if entry is _MISSING:
            entry = _chunk_lookup(units, c, end)
        if entry is None:
            return None
        entries.append(entry)
    return " ".join([e[0] for e in entries if e[0]]), " ".join([e[1] for e in entries if e[1]])


def _chunk_lookup(units: str, chunk: str, b: int) -> Entry | None:
    """The cache entry of ``chunk`` ending at ``units[b]`` (computed by the scanner if missing): keyed by the
    chunk and the part of the following text that the scanner examined; None if its tokens run past the
    chunk or depend on more than :data:`_LOOKAHEAD` following characters."""
    follow = units[b : b + _LOOKAHEAD]
    eof = b + _LOOKAHEAD >= len(units)  # `follow` is all the rest of the text
    for d in range(1 if follow else 0, len(follow) + 1):
        key = (chunk, follow[:d], eof and d == len(follow))
        if key in _CHUNKS:
            return _CHUNKS[key]
    raw, stop, seen = scan_tokens(chunk + follow, 0, len(chunk))
    used = seen - len(chunk)
    key = (chunk, follow[:used], eof and used == len(follow))
    entry: Entry | None = None
    if stop == len(chunk) and NEWLINE not in raw and (used < len(follow) or eof):
        lowered = [java_lower(t) for t in raw]
        entry = (" ".join(lowered), " ".join(t for t in lowered if t not in PUNCTUATIONS))
    if len(_CHUNKS) > 500_000:
        for cache in (_CHUNKS, _AFTER_SPACE, _AFTER_NEWLINE):
            cache.clear()
    _CHUNKS[key] = entry
    if key[1] == " " and not key[2]:
        _AFTER_SPACE[chunk] = entry
    elif key[1] == "\n" and not key[2]:
        _AFTER_NEWLINE[chunk] = entry
    return entry


def tokenize_captions(captions: Mapping[Hashable, Iterable[str]]) -> dict[Hashable, list[str]]:
    """pycocoevalcap's ``PTBTokenizer().tokenize``, for ``{id: [caption, ...]}`` (plain strings).

    Returns ``{id: [tokenised caption, ...]}``: lowercased tokens joined by single spaces, punctuation
    removed. As in pycocoevalcap the captions are tokenised as one text, in the mapping's order; a caption
    holding a line separator other than ``\\n`` (``\\r``, U+2028, ...) is split by the scanner into several
    output lines, which shifts later captions exactly as it does in pycocoevalcap.
    """
    captions = {key: list(caps) for key, caps in captions.items()}
    ids = [key for key, caps in captions.items() for _ in caps]
    text = "\n".join(c.replace("\n", " ") for caps in captions.values() for c in caps)
    out: dict[Hashable, list[str]] = {}
    for key, line in zip(ids, _lines(text, keep_punctuation=False), strict=False):
        out.setdefault(key, []).append(line)
    return out
