"""A small JFlex-style scanner: longest match over prioritised regular-expression rules, built lazily.

Stanford CoreNLP's ``PTBTokenizer`` is a JFlex scanner (https://jflex.de). To reproduce it without Java this
module implements the part of JFlex's semantics that the tokenizer's rules rely on:

* **Rules** are regular expressions in JFlex syntax (``[a-z]``, ``[^...]``, ``[:letter:]``, ``{MACRO}``,
  ``"string"``, ``\\uXXXX``, ``*+?``, ``{n,m}``, ``|``, grouping). The scanner reads the *longest* prefix that
  any rule matches; among rules matching that same longest prefix the one listed first wins.
* **Trailing context** ``r1/r2``: the rule matches ``r1 r2`` (its full length counts for the longest-match
  choice) but the token is only the ``r1`` part; of the possible split points the one giving the longest
  ``r1`` is used, as JFlex's own look-ahead resolution does.
* ``%caseless``: a character outside ``[...]`` matches every character equal to it ignoring case
  (``k`` also matches U+212A KELVIN SIGN, ``s`` U+017F LONG S, ``i`` U+0130/U+0131), while character
  classes stay case-sensitive.
* Characters are UTF-16 code units (as in Java): text outside the Basic Multilingual Plane is scanned as
  two surrogate units.

Patterns are compiled to a Thompson NFA whose character sets are partitioned into equivalence classes;
the DFA is built lazily (subset construction on demand, as in RE2), so only states that the input reaches
are ever created.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_UNIT = 0xFFFF
Intervals = tuple[tuple[int, int], ...]
"""A character set: sorted, disjoint, non-adjacent closed intervals of UTF-16 code units."""


def normalize(intervals: Sequence[tuple[int, int]]) -> Intervals:
    """Sort and merge overlapping or adjacent intervals."""
    out: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def negate(intervals: Intervals) -> Intervals:
    """The complement over U+0000..U+FFFF."""
    out, nxt = [], 0
    for lo, hi in intervals:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_UNIT:
        out.append((nxt, MAX_UNIT))
    return tuple(out)


def parse_ranges(spec: str) -> Intervals:
    """``"0041-005A 00AA"`` (hex, space separated) as intervals."""
    out = []
    for item in spec.split():
        lo, _, hi = item.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return normalize(out)


def case_variants(ch: str) -> Intervals:
    """Every code unit equal to ``ch`` ignoring case, as JFlex's ``%caseless`` expands a literal."""
    target = {ch, ch.lower(), ch.upper()}
    extra = {"k": "\u212a", "s": "\u017f", "i": "\u0130\u0131"}.get(ch.lower(), "")
    units = {ord(c) for c in target | set(extra) if len(c) == 1}
    return normalize([(u, u) for u in units])


# ----------------------------------------------------------------------------------------------- parser

_NAMED_CLASS = re.compile(r":(\w+):\]")
Node = tuple  # ("set", Intervals) | ("cat", [Node]) | ("alt", [Node]) | ("rep", Node, lo, hi|None)
EPS: Node = ("cat", [])


class PatternError(ValueError):
    """A rule or macro that this JFlex subset cannot parse."""


class _Parser:
    """Recursive-descent parser for the JFlex regular-expression subset described in the module doc."""

    META = frozenset('|()[]{}*+?."\\/')

    def __init__(self, text: str, macros: Mapping[str, Node], named: Mapping[str, Intervals], caseless: bool):
        self.s, self.i, self.macros, self.named, self.caseless = text, 0, macros, named, caseless

    def error(self, why: str) -> PatternError:
        return PatternError(f"{why} at offset {self.i} of pattern {self.s!r}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def parse(self) -> Node:
        node = self.alt()
        if self.i != len(self.s):
            raise self.error("unexpected character")
        return node

    def alt(self) -> Node:
        branches = [self.cat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.cat())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def cat(self) -> Node:
        items = []
        while self.peek() and self.peek() not in "|)":
            items.append(self.repeat())
        return items[0] if len(items) == 1 else ("cat", items)

    def repeat(self) -> Node:
        node = self.atom()
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                node = ("rep", node, 0 if c != "+" else 1, None if c != "?" else 1)
            elif c == "{" and self.s[self.i + 1 : self.i + 2].isdigit():
                end = self.s.index("}", self.i)
                lo, _, hi = self.s[self.i + 1 : end].partition(",")
                node = ("rep", node, int(lo), int(hi) if hi else int(lo))
                self.i = end + 1
            else:
                return node

    def literal(self, ch: str) -> Node:
        return ("set", case_variants(ch) if self.caseless else ((ord(ch), ord(ch)),))

    def escape(self) -> str:
        """The character of a backslash escape (``self.i`` is just past the backslash)."""
        c = self.s[self.i]
        self.i += 1
        if c == "u":
            code = self.s[self.i : self.i + 4]
            self.i += 4
            return chr(int(code, 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "b": "\b", "0": "\0"}.get(c, c)

    def atom(self) -> Node:
        c = self.peek()
        self.i += 1
        if c == "(":
            node = self.alt()
            if self.peek() != ")":
                raise self.error("missing )")
            self.i += 1
            return node
        if c == "[":
            named = _NAMED_CLASS.match(self.s, self.i)
            if named:  # a predefined class such as [:letter:]
                self.i = named.end()
                return ("set", self.named[named.group(1)])
            return ("set", self.char_class())
        if c == "{":
            end = self.s.index("}", self.i)
            name = self.s[self.i : end]
            self.i = end + 1
            if name not in self.macros:
                raise self.error(f"unknown macro {{{name}}}")
            return self.macros[name]
        if c == '"':
            end = self.s.index('"', self.i)
            text = self.s[self.i : end]
            self.i = end + 1
            return ("cat", [self.literal(ch) for ch in text])
        if c == ".":
            return ("set", negate(((10, 10),)))
        if c == "\\":
            return self.literal(self.escape())
        if c in self.META:
            raise self.error(f"unescaped {c!r}")
        return self.literal(c)

    def char_class(self) -> Intervals:
        negated = self.peek() == "^"
        self.i += negated
        items: list[tuple[int, int]] = []
        while self.peek() != "]":  # "[^]" is any character, "[]" none
            if not self.peek():
                raise self.error("missing ]")
            named = _NAMED_CLASS.match(self.s, self.i + 1) if self.peek() == "[" else None
            if named:
                items += self.named[named.group(1)]
                self.i = named.end()
                continue
            lo = self.class_char()
            if self.peek() == "-" and self.s[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                items.append((ord(lo), ord(self.class_char())))
            else:
                items.append((ord(lo), ord(lo)))
        self.i += 1
        ranges = normalize(items)
        return negate(ranges) if negated else ranges

    def class_char(self) -> str:
        c = self.s[self.i]
        self.i += 1
        return self.escape() if c == "\\" else c


def parse(
    pattern: str, macros: Mapping[str, Node], named: Mapping[str, Intervals], caseless: bool = True
) -> Node:
    """Parse one JFlex-style regular expression into a syntax tree."""
    return _Parser(pattern, macros, named, caseless).parse()


def reverse(node: Node) -> Node:
    """The tree of the reversed language (used to test a trailing context from its end)."""
    kind = node[0]
    if kind == "cat":
        return ("cat", [reverse(n) for n in reversed(node[1])])
    if kind == "alt":
        return ("alt", [reverse(n) for n in node[1]])
    if kind == "rep":
        return ("rep", reverse(node[1]), node[2], node[3])
    return node


# ------------------------------------------------------------------------------------------ NFA / DFA


class _NFA:
    """Thompson NFA: ε-edges and character-set edges; ``finals[state] = rule index``."""

    def __init__(self) -> None:
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[Intervals, int]]] = []
        self.finals: dict[int, int] = {}

    def state(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def build(self, node: Node, start: int) -> int:
        """Add ``node`` after ``start``; returns its end state."""
        kind = node[0]
        if kind == "set":
            end = self.state()
            self.edges[start].append((node[1], end))
            return end
        if kind == "cat":
            for child in node[1]:
                start = self.build(child, start)
            return start
        if kind == "alt":
            end = self.state()
            for child in node[1]:
                s = self.state()
                self.eps[start].append(s)
                self.eps[self.build(child, s)].append(end)
            return end
        _, child, lo, hi = node
        for _ in range(lo):
            start = self.build(child, start)
        if hi is None:  # child*
            loop = self.state()
            self.eps[start].append(loop)
            self.eps[self.build(child, loop)].append(loop)
            return loop
        end = self.state()
        self.eps[start].append(end)
        for _ in range(hi - lo):
            start = self.build(child, start)
            self.eps[start].append(end)
        return end


@dataclass
class CharClasses:
    """A partition of the code units into classes that no rule distinguishes (JFlex's ``CMAP``)."""

    cmap: array
    masks: dict[Intervals, int]
    count: int

    @classmethod
    def of(cls, sets: Sequence[Intervals]) -> CharClasses:
        bounds = sorted({0, MAX_UNIT + 1} | {b for s in sets for lo, hi in s for b in (lo, hi + 1)})
        sigs: list[list[int]] = [[] for _ in range(len(bounds) - 1)]
        for k, s in enumerate(sets):
            for lo, hi in s:
                for e in range(bisect.bisect_left(bounds, lo), bisect.bisect_left(bounds, hi + 1)):
                    sigs[e].append(k)
        ids: dict[tuple[int, ...], int] = {}
        cmap = array("H", bytes(2 * (MAX_UNIT + 1)))
        masks = [0] * len(sets)
        for e, sig in enumerate(sigs):
            cid = ids.setdefault(tuple(sig), len(ids))
            cmap[bounds[e] : bounds[e + 1]] = array("H", [cid]) * (bounds[e + 1] - bounds[e])
            for k in sig:
                masks[k] |= 1 << cid
        return cls(cmap, dict(zip(sets, masks, strict=True)), len(ids))


class LazyDFA:
    """A DFA over an NFA's ε-closed state sets, each transition computed the first time it is taken."""

    def __init__(self, nfa: _NFA, start: int, classes: CharClasses):
        self.nfa, self.classes = nfa, classes
        self.edge_masks = [[(classes.masks[s], t) for s, t in out] for out in nfa.edges]
        self.sets: list[frozenset[int]] = []
        self.index: dict[frozenset[int], int] = {}
        self.trans: list[list[int]] = []
        self.accept: list[int] = []
        self.final: list[bool] = []  # no character can follow (JFlex stops there without reading on)
        self.add(self.closure({start}))

    def closure(self, states: set[int]) -> frozenset[int]:
        stack, seen = list(states), set(states)
        while stack:
            for t in self.nfa.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def add(self, states: frozenset[int]) -> int:
        if states not in self.index:
            self.index[states] = len(self.sets)
            self.sets.append(states)
            self.trans.append([-2] * self.classes.count)
            finals = [self.nfa.finals[s] for s in states if s in self.nfa.finals]
            self.accept.append(min(finals) if finals else -1)
            self.final.append(not any(self.nfa.edges[s] for s in states))
        return self.index[states]

    def step(self, state: int, cid: int) -> int:
        """The next state on class ``cid`` (-1: no rule can continue)."""
        nxt = self.trans[state][cid]
        if nxt == -2:
            bit = 1 << cid
            targets = {t for s in self.sets[state] for mask, t in self.edge_masks[s] if mask & bit}
            nxt = self.add(self.closure(targets)) if targets else -1
            self.trans[state][cid] = nxt
        return nxt

    def longest(self, text: str, pos: int, end: int) -> tuple[int, int, int]:
        """``(rule, stop, seen)`` of the longest match in ``text[pos:end]`` (rule -1 if none).

        ``seen`` is the end of the text examined: the match depends on ``text[pos:seen]`` only.
        """
        cmap, trans, accept, final = self.classes.cmap, self.trans, self.accept, self.final
        state, rule, stop, i = 0, -1, pos, pos
        while i < end:
            cid = cmap[ord(text[i])]
            nxt = trans[state][cid]
            if nxt < 0 and (nxt == -1 or (nxt := self.step(state, cid)) == -1):
                return rule, stop, i + 1
            state = nxt
            i += 1
            if accept[state] >= 0:
                rule, stop = accept[state], i
                if final[state]:
                    break
        return rule, stop, i

    def fullmatch(self, text: str, pos: int, end: int) -> bool:
        """Whether all of ``text[pos:end]`` is in the language."""
        state = 0
        for i in range(pos, end):
            state = self.step(state, self.classes.cmap[ord(text[i])])
            if state < 0:
                return False
        return self.accept[state] >= 0

    def prefix_ends(self, text: str, pos: int, end: int) -> list[int]:
        """Every ``j`` in ``[pos, end]`` with ``text[pos:j]`` in the language."""
        state, out = 0, []
        for i in range(pos, end + 1):
            if self.accept[state] >= 0:
                out.append(i)
            if i == end or (state := self.step(state, self.classes.cmap[ord(text[i])])) < 0:
                break
        return out


@dataclass(frozen=True)
class Rule:
    """One scanner rule: ``pattern`` (optionally ``head/trail``) and the name of its action."""

    action: str
    pattern: str
    trail: str | None = None


class Scanner:
    """Longest-match scanner over ``rules`` (earlier rules win ties), with JFlex trailing contexts."""

    def __init__(
        self, rules: Sequence[Rule], macros: Sequence[tuple[str, str]], named: Mapping[str, Intervals]
    ):
        trees: dict[str, Node] = {}
        for name, pattern in macros:  # macros may use the macros defined before them
            trees[name] = parse(pattern, trees, named)
        self.rules = list(rules)
        nfa, parts = _NFA(), []
        start = nfa.state()
        for k, rule in enumerate(self.rules):
            head = parse(rule.pattern, trees, named)
            trail = parse(rule.trail, trees, named) if rule.trail is not None else None
            s = nfa.state()
            nfa.eps[start].append(s)
            end = nfa.build(head, s)
            if trail is not None:
                end = nfa.build(trail, end)
            nfa.finals[end] = k
            parts.append((head, trail))
        sets = sorted({iv for out in nfa.edges for iv, _ in out})
        self.classes = CharClasses.of(sets)
        self.dfa = LazyDFA(nfa, start, self.classes)
        self.heads: dict[int, LazyDFA] = {}
        self.trails: dict[int, LazyDFA] = {}
        for k, (head, trail) in enumerate(parts):
            if trail is not None:
                self.heads[k] = self._single(head)
                self.trails[k] = self._single(trail)

    def _single(self, tree: Node) -> LazyDFA:
        nfa = _NFA()
        start = nfa.state()
        nfa.finals[nfa.build(tree, start)] = 0
        return LazyDFA(nfa, start, self.classes)

    def scan(self, text: str, pos: int, end: int) -> tuple[int, int, int]:
        """``(rule, stop, seen)`` for the token at ``pos``: ``stop`` excludes any trailing context.

        The choice depends on ``text[pos:seen]`` only. Raises ``ValueError`` when no rule matches (the
        tokenizer's rules include a catch-all).
        """
        rule, stop, seen = self.dfa.longest(text, pos, end)
        if rule < 0:
            raise ValueError(f"no rule matches at offset {pos}")
        if rule in self.heads:  # the longest head whose remainder is the trailing context
            trail = self.trails[rule]
            for j in reversed(self.heads[rule].prefix_ends(text, pos, stop)):
                if trail.fullmatch(text, j, stop):
                    return rule, j, seen
            raise AssertionError("unreachable: the rule matched head and trail")
        return rule, stop, seen

    def rules_starting_with(self, unit: str) -> set[int]:
        """The rules whose match can begin with ``unit``."""
        state = self.dfa.step(0, self.classes.cmap[ord(unit)])
        if state < 0:
            return set()
        finals = self.dfa.nfa.finals
        return {self._rule_of(s, finals) for s in self.dfa.sets[state]} - {-1}

    def _rule_of(self, state: int, finals: Mapping[int, int]) -> int:
        """The rule an NFA state belongs to (found by following edges to a final state)."""
        stack, seen = [state], {state}
        while stack:
            s = stack.pop()
            if s in finals:
                return finals[s]
            for t in [*self.dfa.nfa.eps[s], *(t for _, t in self.dfa.nfa.edges[s])]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return -1
