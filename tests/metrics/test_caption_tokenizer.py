"""Tests for xmodal.metrics.ptb_tokenizer: PTBTokenizer 3.4.1 (``-preserveLines -lowerCase``) without Java.

Expected outputs below were produced by ``stanford-corenlp-3.4.1.jar`` (the jar pycocoevalcap ships); when
Java and pycocoevalcap are installed, the jar itself is also run on a generated corpus.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from xmodal.metrics import ptb_tokenizer as pt

GOLDEN = [
    ("A man riding a horse on a beach.", "a man riding a horse on a beach ."),
    ("Two dogs don't like the cat's toy, it's true!", "two dogs do n't like the cat 's toy , it 's true !"),
    ("He cannot go; she's gonna wanna stay.", "he can not go ; she 's gon na wan na stay ."),
    (
        'A "vintage" car (red) parked near 1,000 people.',
        "a `` vintage '' car -lrb- red -rrb- parked near 1,000 people .",
    ),
    (
        "A 3.5 inch screen shows 10:30 a.m. and 5 7/8 inches.",
        "a 3.5 inch screen shows 10:30 a.m. and 5\xa07/8 inches .",
    ),
    ("A well-known t-shirt-wearing guy -- again...", "a well-known t-shirt-wearing guy -- again ..."),
    (
        "Café über naïve résumé jalapeño São Paulo ZÜRICH.",
        "café über naïve résumé jalapeño são paulo zürich .",
    ),
    ("A big 🍕 and 👍🏽 emoji next to a 🐶.", "a big and emoji next to a ."),
    (
        "Mr. Smith met Dr. Jones at St. Mary's on Jan. 5.",
        "mr. smith met dr. jones at st. mary 's on jan. 5 .",
    ),
    ("Made in the U.S. The end.", "made in the u.s. . the end ."),
    ("A sign says No. 5 and Fig. 3 etc. The rest.", "a sign says no. 5 and fig. 3 etc. . the rest ."),
    (
        "Prices: $5, US$3.50, €20, £3, ¢50 and ½ off.",
        "prices : $ 5 , us$ 3.50 , $ 20 , # 3 , cents 50 and 1/2 off .",
    ),
    (
        "Email foo@bar.com or visit http://example.com/a?b=c or www.google.com today.",
        "email foo@bar.com or visit http://example.com/a?b=c or www.google.com today .",
    ),
    ("Rock'n'roll y'all, 'twas the '90s o'clock.", "rock 'n' roll y' all , 't was the '90s o'clock ."),
    ("Brackets [x] {y} <z> and < or > signs.", "brackets -lsb- x -rsb- -lcb- y -rcb- <z> and < or > signs ."),
    (
        "Quotes `single' ‘curly’ “double” «guillemets».",
        "quotes ` single ' ` curly ' `` double '' `` guillemets '' .",
    ),
    ("AT&T and S&P-500 with &amp; entities &quot;x&quot;.", "at&t and s&p-500 with & entities `` x '' ."),
    (
        "Hyphens - and -- and --- and ---- and ----- dashes – — too.",
        "hyphens - and -- and -- and -- and ----- dashes -- -- too .",
    ),
    ("A. B. C. I. The letter A. was big.", "a. b. c. i . the letter a. was big ."),
    ("Co. Ltd and Pty. Ltd are companies.", "co. ltd and pty. ltd are companies ."),
    ("#hashtag @user c++ c# f# file.txt report.pdf.", "#hashtag @user c++ c# f# file.txt report.pdf ."),
    (":) :D ;) ^_^ (^_^) smiles", ":-rrb- :d ;-rrb- ^_^ -lrb-^_^-rrb- smiles"),
    ("Soft\xadhyphen and non\xa0breaking space.", "softhyphen and non breaking space ."),
    ("Tab\tseparated\twords", "tab separated words"),
    ("ALL CAPS SENTENCE WITH CANNOT AND DON'T.", "all caps sentence with can not and do n't ."),
    ("", ""),
    ("   leading and trailing spaces   ", "leading and trailing spaces"),
    (
        "Numbers like 1/2/2014, 555-1234, (555) 555-1234 and +44 20 1234 5678.",
        "numbers like 1/2/2014 , 555-1234 , -lrb-555-rrb-\xa0555-1234 and +44\xa020\xa01234\xa05678 .",
    ),
    ("Ellipsis... and . . . spaced and ….", "ellipsis ... and ... spaced and ... ."),
    ("Greek ΟΔΟΣ and Turkish İstanbul, Kelvin K.", "greek οδος and turkish i̇stanbul , kelvin k ."),
]

ALPHABET = [
    *"aAbBnNtTsSdDoOlLyYeEiImMcCpPxXkKrRuU'`’‘\".,;:!?-_/\\()[]{}<>&@#$%*+=~^|0123456789   \t",
    *"\u00a0\u00ad…–—“”«»éß\u0300\u212aſİı\r\u2028",
    "😀",
    "👍🏽",
]
KEYS = [
    "http://",
    "www.",
    ".com",
    ".txt",
    "&amp;",
    "&quot;",
    "&apos;",
    "&lt;",
    "&nbsp;",
    "cannot",
    "'twas",
    "'tis",
    "gonna",
    "wanna",
    "U.S.",
    "Mr.",
    "Dr.",
    "etc.",
    "Inc.",
    "Co.",
    "Ltd",
    "No.",
    "Fig.",
    "a.m.",
    "e.g.",
    "i.e.",
    "n't",
    "'s",
    "'re",
    "'ll",
    "o'",
    "y'",
    "-LRB-",
    "pro-",
    "anti-",
    "S&P-500",
    "AT&T",
    "Cap'n",
    "'90s",
    "'90",
    "1/2",
    "5",
    "7/8",
    "12/25/2014",
    "555-1234",
    "(555)",
    "3.5",
    "1,000",
    "$",
    "US$",
    "€",
    "£",
    "¢",
    "½",
    "²",
    "₂",
    "<p>",
    "</p>",
    ":)",
    ":D",
    "^_^",
    "...",
    ".",
    "--",
    "---",
    "''",
    "``",
    "«",
    "@user",
    "#tag",
    "c++",
    "c#",
    "x@y.com",
    "Ph.D",
    "a.k.a.",
    "vs.",
    "Jan.",
    "Calif.",
    "Pty.",
    "ca.",
    "The",
    "A",
    "I",
]


def tricky_line(rng: random.Random, max_len: int = 40) -> str:
    """A random line dense in the characters and words the scanner's rules care about."""
    parts: list[str] = []
    while sum(map(len, parts)) < rng.randint(0, max_len):
        parts.append(rng.choice(KEYS) + rng.choice(["", " "]) if rng.random() < 0.3 else rng.choice(ALPHABET))
    return "".join(parts)


def java_jar() -> Path | None:
    """pycocoevalcap's stanford-corenlp-3.4.1.jar when it and java are installed."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if shutil.which("java") is None or spec is None:
        return None
    for root in spec.submodule_search_locations or []:
        jar = Path(root) / "tokenizer" / "stanford-corenlp-3.4.1.jar"
        if jar.is_file():
            return jar
    return None


def java_lines(text: str, tmp_path: Path) -> list[str]:
    """The jar's output lines for ``text``, run exactly as pycocoevalcap runs it."""
    jar = java_jar()
    assert jar is not None
    src = tmp_path / "captions.txt"
    src.write_bytes(text.encode())
    cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    out = subprocess.run([*cmd, str(src)], capture_output=True, check=True, timeout=120).stdout
    return out.decode().split("\n")


@pytest.mark.parametrize(("caption", "expected"), GOLDEN)
def test_golden_captions(caption, expected):
    assert pt.ptb_lines(caption) == [expected]
    assert pt.ptb_lines_reference(caption) == [expected]


def test_a_whitespace_token_takes_the_whole_run():
    # " \u00a0" is one whitespace token: the URL rule (whose characters include U+00A0) starts after it
    text = 'Visit \u00a0www.google.com now\nA\t\u00a0b \u2003(x) \u3000"q"'
    expected = ["visit www.google.com now", "a b -lrb- x -rrb- `` q ''"]
    assert pt.ptb_lines(text) == expected
    assert pt.ptb_lines_reference(text) == expected


def test_scanner_looks_across_line_ends():
    # "etc." repeats its period before a capital on the next line; "No." keeps it before a digit there
    text = "See etc.\nThe dog\nSee etc.\nthe dog\nU.S.\nThe x\nNo.\n5 dogs\nA.\nThe end"
    expected = [
        "see etc. .",
        "the dog",
        "see etc.",
        "the dog",
        "u.s. .",
        "the x",
        "no.",
        "5 dogs",
        "a .",
        "the end",
    ]
    assert pt.ptb_lines(text) == expected
    assert pt.ptb_lines_reference(text) == expected


def test_line_separators_inside_a_caption():
    # a lone \r breaks a line; \r before the \n is one line break with it
    assert pt.ptb_lines("first\rsecond\nthird\r\nfourth") == ["first", "second", "third", "fourth"]


def test_tokenize_captions_like_pycocoevalcap():
    caps = {
        1: ["A man (smiling) rides a horse.", "Two\nlines, one caption!"],
        "b": ["It's a DOG's life... isn't it?"],
        7: ["   "],
    }
    assert pt.tokenize_captions(caps) == {
        1: ["a man -lrb- smiling -rrb- rides a horse", "two lines one caption"],
        "b": ["it 's a dog 's life is n't it"],
        7: [""],
    }
    # a \r inside a caption shifts the following captions by a line, as in pycocoevalcap
    assert pt.tokenize_captions({1: ["a\rb"], 2: ["c"]}) == {1: ["a"], 2: ["b"]}


def test_punctuation_filter_and_java_lowercase():
    assert pt.drop_punctuation("a -lrb- b -LRB- `` '' . , ; -- ... c  ") == "a -lrb- b c"
    assert pt.java_lower("ÀB\u2c2fX") == "àb\u2c2fx"  # Java 17 has no lowercase for U+2C2F
    assert pt.java_lower("ΟΔΟΣ") == "οδος"  # final sigma, as Java


def test_no_rule_but_whitespace_starts_with_a_space():
    scan = pt.scanner()
    assert {scan.rules[k].action for k in scan.rules_starting_with(" ")} == {"skip", "delete"}


def test_chunk_cache_matches_the_scanner():
    rng = random.Random(0)
    for _ in range(40):
        text = "\n".join(tricky_line(rng) for _ in range(25))
        assert pt.ptb_lines(text) == pt.ptb_lines_reference(text)
    # realistic captions: repeated through the (now warm) cache
    text = "\n".join(c for c, _ in GOLDEN) * 2
    assert pt.ptb_lines(text) == pt.ptb_lines_reference(text)


def test_matches_the_java_tokenizer(tmp_path):
    # java and the jar are test requirements (make test installs pycocoevalcap; java is on the machine)
    assert java_jar() is not None, "needs java on PATH and pycocoevalcap (its stanford-corenlp-3.4.1.jar)"
    rng = random.Random(1)
    lines = [tricky_line(rng, 60) for _ in range(8000)] + [c for c, _ in GOLDEN]
    text = "\n".join(lines)
    assert pt.ptb_lines(text) == java_lines(text, tmp_path)
