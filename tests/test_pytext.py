"""compile/pytext's comment and docstring go through translate tables now (issue 13, point 5):
they must give, for any text, what the per-character rules gave, and still keep text out of code."""

import ast
import random
import re
import unicodedata

import pytest

from cardgen.compile import pytext
from cardgen.compile.pytext import LINE_BREAKS, _escape, comment, docstring


def _visible(ch):
    return ch.isprintable() and unicodedata.category(ch) not in ("Zl", "Zp")


def comment_per_char(text):
    text = "".join(" " if ch in LINE_BREAKS or ch == "\t" else ch if _visible(ch) else _escape(ch) for ch in text)
    return re.sub(" {2,}", " ", text).strip()


def docstring_per_char(text):
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"' and (i + 1 == len(text) or text[i + 1] == '"'):
            out.append('\\"')
        elif ch == "\n" or _visible(ch) or ch == " ":
            out.append(ch)
        else:
            out.append(_escape(ch))
    return "".join(out)


ALPHABET = ('"', '"', "\\", "'", " ", " ", "\t", "a", "Z", "#", "γ", "·", "−", "▷", "\u0303", "\u200b",
            "\x00", "\x7f", "\u00a0", "\U0001f600", "\U000e0001", "\ud800") + tuple(LINE_BREAKS)


def texts():
    rng = random.Random(13)
    yield from ["", '"', '""', '"""', 'a"', '\\"', "x\\", "plain ascii text", "  two  spaces  "]
    for _ in range(3000):
        yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12)))


def test_comment_and_docstring_match_the_per_character_rules():
    for t in texts():
        assert comment(t) == comment_per_char(t), repr(t)
        assert docstring(t) == docstring_per_char(t), repr(t)


@pytest.mark.parametrize("text", ['say "hi""', 'end"', "a\\b\u2028c\r\nd\x00", '""""""', "γ\u0085δ"])
def test_docstring_reads_back_as_the_text(text):
    src = f'"""{docstring(text)}"""'
    assert ast.literal_eval(src) == text
    assert "\n" not in comment(text) and "\u2028" not in comment(text)


def test_the_tables_stay_bounded():
    for code in range(0x4E00, 0x4E00 + 6000):  # more distinct characters than a table keeps
        comment(chr(code))
        docstring(chr(code))
    assert len(pytext._COMMENT) <= 4096 and len(pytext._DOCSTRING) <= 4096
    assert comment("\u4e00\u2028\u9fff") == comment_per_char("\u4e00\u2028\u9fff")
