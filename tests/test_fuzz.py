"""Mutation fuzzing of the front end as hypothesis property tests.

Every card in cards/, mutated 1–3 times (tokens and lines deleted, duplicated,
swapped; random Unicode, huge numbers, deep nesting, keywords and operators
inserted — the operators of scripts/fuzz.py, drawn by hypothesis so that a
failure shrinks), must parse and check or fail with a CardError at a line and
column ≥ 1: never another exception, never a RecursionError, and never more
than a second.  Random bytes read with ``parse_file``, and ``cardgen check`` on
mutated cards, likewise.

What the fuzzing found is kept at the end of the file, one regression test
per bug with its minimal reproduction (a strict xfail until it is fixed).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, note, settings, target
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cardgen import CardError, parse, parse_file
from cardgen.cli import main
from cardgen.lang.check import Library, check
from cardgen.lang.parse import MAX_BYTES, MAX_DEPTH, MAX_NUMBER
from cardgen.lang.shapes import MAX_TERMS

from .conftest import CARDS, ROOT

CARDS_DIR = str(ROOT / "cards")
TEXTS = {p: p.read_text("utf-8") for p in CARDS}
# CPU seconds for one input, parse and check together: CPU, not wall time, so
# that a machine shared with other jobs (wall time 3-4 × CPU) does not fail it.
LIMIT = 1.0

# Deterministic (the same examples on every run, as hypothesis does on CI anyway),
# so that the suite does not fail at random on a bug it has not met before:
# CARDGEN_FUZZ_EXPLORE=1 draws fresh examples each run (then --hypothesis-seed=N
# replays one), and scripts/fuzz.py explores far longer.
EXPLORE = os.environ.get("CARDGEN_FUZZ_EXPLORE") == "1"
SETTINGS = dict(deadline=None, derandomize=not EXPLORE,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ----------------------------------------------------------------- mutations
TOKEN = re.compile(r"\s+|\w+|.", re.S)  # as scripts/fuzz.py

# Keywords and operators of the card language (README "The card language" and
# grammar/card.lark), both spellings, and fragments that open or close things.
KEYWORDS = [
    "algorithm", "Algorithm:", "convention", "Convention:", "columns", "rows", "0-based", "1-based",
    "input", "output", "hyper", "param", "Input:", "Output:", "Hyperparameters:", "Parameters:",
    "Parameter count:", "for", "For", "do", "end", "while", "if", "then", "return", "with", "probability",
    "else", "in", "not", "inf", "forall", "propto", "grad", "sum_", "sqrt(", "R", "N", "Z", "x", "π",
    "length(", "softmax(", "exp(", "log", "max(", "σ(", "GELU(", "LayerNorm(", "GPT2Block(", "θ", "Mask =",
]
OPERATORS = [
    "←", "<-", "∈", "ℝ", "ℕ", "ℤ", "×", "⊙", "*", "·", "@", "^⊤", "ᵀ", "^T", "²", "√", "Σ", "Σ_", "∇", "∼",
    "~", "∝", "…", "...", "..", "−", "-", "+", "/", "≤", "<=", "≥", ">=", "≠", "!=", "<", ">", "==", "=",
    "≡", "¬", "∞", "▷", "#", "|", ",", ";", ":", "(", ")", "[", "]", "{", "}", "[[", "]]", "^", "_", "^{",
    "_{", "′", '"', "\\", "\\\n", "/*", "*/", "—", "1^⊤", "▷ x ∈ ℝ", "▷ x ∈ ℝ^{T×", "{0,1}", "{1..V}",
    "[N]", "(0, ∞)", "\n", "\n  ", "\r\n", "\t", " ",
]
# Characters a text editor or a copy from a PDF can leave behind: controls,
# line and paragraph separators, invisible and combining marks, astral letters.
ODD_CHARS = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\r", "\x1b", "\x1c", "\x7f", "\x85", "\xa0", "\xad",
    "\u200b", "\u200d", "\u2028", "\u2029", "\ufeff", "\ufffd", "\u0301", "\u0308", "\u0338", "\u20d7",
    "𝒳", "𝔸", "𝓦", "𝛼", "𐐀", "🙂", "\U000e0041", "ﬁ", "Å", "ℌ", "١", "²", "′", "ᵀ",
]
HUGE_NUMBERS = [
    str(10**400), "1e999", "1E+999", "1e-999", "−1e999", "9" * 400 + ".5", "0." + "0" * 400 + "1",
    "99999999999999999999999", "1e309", str(2**1000), "1" + "0" * 400 + "e999", "0", "00",
]
# Openers (and their closers) nested deeply: parentheses, prefix operators,
# calls to built-ins and to cards, lists, Iverson brackets, powers, sums.
NESTS = [
    ("(", ")"), ("−", ""), ("-", ""), ("¬", ""), ("√", ""), ("∇", ""), ("exp(", ")"), ("softmax(", ")"),
    ("LayerNorm(", " | γ, β)"), ("[", "]"), ("[[", "]]"), ("{", "}"), ("x^{", "}"), ("Σ_i (", ")"),
    ("x[", "]"), ("(1 + ", ")"),
]
NEST_CHARS = 7_500  # one nesting at most this long: 3,000 "(…)", 1,500 "exp(…)"


@st.composite
def insertions(draw) -> str:
    what = draw(st.sampled_from(["char", "text", "word", "number", "nest"]), label="insert")
    if what == "char":
        return draw(st.one_of(st.sampled_from(ODD_CHARS), st.characters()))
    if what == "text":
        pieces = st.one_of(st.sampled_from(ODD_CHARS + OPERATORS), st.characters())
        return "".join(draw(st.lists(pieces, max_size=8)))
    if what == "word":
        return draw(st.sampled_from(KEYWORDS + OPERATORS))
    if what == "number":
        return draw(st.sampled_from(HUGE_NUMBERS))
    opener, closer = draw(st.sampled_from(NESTS), label="nest")
    depth = draw(st.sampled_from([1, 2, 50, 500, 1500, 3000]), label="depth")
    depth = min(depth, NEST_CHARS // len(opener + closer))
    inner = draw(st.sampled_from(["x", "e", "1", ""]))
    if draw(st.booleans(), label="balanced"):
        return opener * depth + inner + closer * depth
    return opener * depth + inner


def mutate(text: str, data) -> str:
    """One mutation of ``text``, drawn from ``data`` (hypothesis)."""
    toks = TOKEN.findall(text)
    lines = text.splitlines(keepends=True)
    kind = data.draw(st.sampled_from(["delete token", "duplicate token", "swap tokens", "delete line",
                                      "duplicate line", "swap lines", "insert", "insert", "insert"]),
                     label="mutation")

    def index(seq) -> int:
        return data.draw(st.integers(0, len(seq) - 1), label="at")

    if kind == "delete token" and toks:
        del toks[index(toks)]
    elif kind == "duplicate token" and toks:
        i = index(toks)
        toks.insert(i, toks[i])
    elif kind == "swap tokens" and len(toks) > 1:
        i, j = index(toks), index(toks)
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == "delete line" and lines:
        del lines[index(lines)]
        return "".join(lines)
    elif kind == "duplicate line" and lines:
        i = index(lines)
        lines.insert(i, lines[i])
        return "".join(lines)
    elif kind == "swap lines" and len(lines) > 1:
        i, j = index(lines), index(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    else:
        at = data.draw(st.integers(0, len(toks)), label="at")
        toks.insert(at, data.draw(insertions()))
    return "".join(toks)


def mutated(data, text: str) -> str:
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = mutate(text, data)
    note(f"mutated card ({len(text)} characters): {text[:3000]!r}")
    return text


# -------------------------------------------------------------------- oracle
@contextlib.contextmanager
def cardgen_recursion_limit():
    """Run with the recursion limit cardgen sets when imported (10 × MAX_DEPTH,
    cardgen/__init__.py), which the later stages need for a card nested up to
    MAX_DEPTH.  Hypothesis lowers the limit while it runs an example (to the
    current depth + 2,000), and at that limit a legal card with 1,500 nested
    "√" raises RecursionError."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * MAX_DEPTH))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _frames(e: BaseException) -> int:
    n = 0
    while e is not None:
        n = max(n, sum(1 for _ in traceback.walk_tb(e.__traceback__)))
        e = e.__cause__ or e.__context__
    return n


@contextlib.contextmanager
def shallow_tracebacks():
    """Re-raise an exception that comes out of a deep recursion without its
    traceback: pytest compares the locals of every frame of a traceback to
    find the recursion in it, and on 20,000 frames holding deep expressions
    that takes minutes and can overflow the C stack."""
    try:
        yield
    except Exception as e:
        n = _frames(e)
        if n <= 500:
            raise
        e.add_note(f"(a traceback of {n} frames was dropped)")
        raise e.with_traceback(None) from None


def front_end(text: str, path: str = "<card>") -> None:
    """Parse and check ``text`` against the repo's cards: success or a located
    CardError (whose message renders), in under LIMIT seconds.  Any other
    exception propagates and fails the test."""
    outcome, elapsed = timed_front_end(text, path)
    if currently_in_test_context():
        event(outcome)
        target(elapsed, label="seconds")  # steer hypothesis towards slow inputs
    # A slow input is slow every time; one slow run is the machine. On CI a 0.1 s check once counted
    # 1.03 s and another 1.46 s of this thread's CPU, with the collector off, and neither repeated.
    for _ in range(2):
        if elapsed < LIMIT:
            break
        elapsed = min(elapsed, timed_front_end(text, path)[1])
    assert elapsed < LIMIT, f"parse and check took {elapsed:.2f} s of CPU (the least of 3 runs)"


def timed_front_end(text: str, path: str) -> tuple[str, float]:
    """("checked" or "CardError", this thread's CPU seconds): not the process's, where a BLAS or
    OpenMP pool left spinning by an earlier test adds, and with the collector off (a full collection
    of the suite's heap is not the check's)."""
    gc_was_on = gc.isenabled()
    gc.disable()
    with cardgen_recursion_limit(), shallow_tracebacks():
        start = time.thread_time()
        try:
            check(parse(text, path), Library(folders=[CARDS_DIR]))
            outcome = "checked"
        except CardError as e:
            assert e.line >= 1 and e.col >= 1, f"CardError at {e.line}:{e.col}: {e.message}"
            str(e)  # what the user sees: the message with the source line and a caret
            outcome = "CardError"
        finally:
            elapsed = time.thread_time() - start
            if gc_was_on:
                gc.enable()
    return outcome, elapsed


@pytest.fixture(scope="module", autouse=True)
def _warm_parser():
    """Build the Lark parser (about half a second, once per process) before
    anything is timed."""
    check(parse(TEXTS[CARDS[0]], str(CARDS[0])), Library(folders=[CARDS_DIR]))


# ------------------------------------------------------------ 1. every card
@settings(max_examples=30, **SETTINGS)
@given(data=st.data())
def test_mutated_card_checks_or_fails_with_a_card_error(card_path, data):
    front_end(mutated(data, TEXTS[card_path]), str(card_path))


@settings(max_examples=60, **SETTINGS)
@given(card=st.sampled_from(CARDS), at=st.integers(0, 10**6), nest=st.sampled_from(NESTS),
       depth=st.sampled_from([1500, 3000]))
def test_deep_nesting_anywhere_is_refused_or_checked_in_time(card, at, nest, depth):
    """3,000 nested "(" or "−", 1,500 nested calls, … at any token of any card."""
    toks = TOKEN.findall(TEXTS[card])
    opener, closer = nest
    depth = min(depth, NEST_CHARS // len(opener + closer))
    toks.insert(at % (len(toks) + 1), opener * depth + "x" + closer * depth)
    front_end("".join(toks), str(card))


# ------------------------------------------------------------- 2. raw bytes
BAD_BYTES = [
    b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x80", b"\xc3", b"\xc3\x28", b"\xc0\xaf",
    b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\r", b"\r\n", b"\n\x00\n", b"\xe2\x80\xa8",
]


@st.composite
def byte_inputs(draw) -> bytes:
    card = TEXTS[draw(st.sampled_from(CARDS))]
    kind = draw(st.sampled_from(["random", "card with bad bytes", "BOM", "encoding"]), label="bytes")
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "card with bad bytes":
        data = bytearray(card.encode("utf-8"))
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.one_of(st.sampled_from(BAD_BYTES), st.binary(min_size=1, max_size=4)))
        return bytes(data)
    if kind == "BOM":
        return b"\xef\xbb\xbf" + draw(st.sampled_from([card.encode("utf-8"), b"", b"\xef\xbb\xbf", b"\x00"]))
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "latin-1",
                                     "cp1252", "gb18030", "shift_jis"]))
    return card.encode(encoding, errors="replace")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=300, **SETTINGS)
@given(payload=byte_inputs())
def test_parse_file_on_any_bytes_returns_a_card_or_a_card_error(payload, scratch):
    path = scratch / "input.card"
    path.write_bytes(payload)
    with cardgen_recursion_limit(), shallow_tracebacks():
        try:
            parse_file(path)
        except CardError as e:
            assert e.line >= 1 and e.col >= 1, f"CardError at {e.line}:{e.col}: {e.message}"
            str(e)


def test_a_utf8_bom_before_a_card_is_ignored(scratch):
    path = scratch / "bom.card"
    path.write_bytes(b"\xef\xbb\xbf" + TEXTS[CARDS[0]].encode("utf-8"))
    assert parse_file(path) == parse(TEXTS[CARDS[0]])


# ------------------------------------------------------------------ 3. CLI
def cardgen_check(path: Path):
    with cardgen_recursion_limit():
        return CliRunner().invoke(main, ["check", str(path)])


def assert_clean_exit(result) -> None:
    out = result.output + (getattr(result, "stderr", "") or "")
    # CliRunner turns an uncaught exception into exit code 1: look at the exception too.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1), out
    assert "Traceback" not in out, out


@settings(max_examples=60, **SETTINGS)
@given(card=st.sampled_from(CARDS), data=st.data())
def test_cli_check_on_a_mutated_card_exits_0_or_1(card, data):
    text = mutated(data, TEXTS[card])
    with tempfile.TemporaryDirectory() as d:  # a folder of its own: the CLI looks up callees beside the card
        path = Path(d) / card.name
        path.write_bytes(text.encode("utf-8"))
        result = cardgen_check(path)
    assert_clean_exit(result)
    if result.exit_code == 1:
        assert ": error: " in result.output, result.output


# ------------------------------------------- what the fuzzing found
@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block with TimeoutError after ``seconds`` of CPU time
    (SIGPROF), so a reproduction of a slow input costs a second, not minutes.
    The garbage collector is off meanwhile (an exception raised in
    hypothesis' gc callback is swallowed) and the alarm repeats until the
    block has stopped."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s of CPU")

    old = signal.signal(signal.SIGPROF, expire)
    gc_was_on = gc.isenabled()
    gc.disable()
    signal.setitimer(signal.ITIMER_PROF, seconds, 0.05)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)
        if gc_was_on:
            gc.enable()


def card(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def card_error(text: str) -> CardError:
    """The CardError that parsing and checking ``text`` raises, within LIMIT,
    once its message has rendered."""
    with cardgen_recursion_limit(), time_limit(LIMIT), pytest.raises(CardError) as info:
        check(parse(text, "f.card"), Library(folders=[CARDS_DIR]))
    shown = str(info.value)
    assert shown.startswith(f"f.card:{info.value.line}:{info.value.col}: error: "), shown
    return info.value


def at(err: CardError) -> tuple[int, int]:
    return err.line, err.col


def test_integer_literal_over_4300_digits():
    """Python's int() refuses more than 4,300 digits (ValueError); the parser
    refuses a number of more than MAX_NUMBER characters first."""
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ", "  output y ∈ ℝ",
                          "  1 return y = x + 1" + "0" * 4300))
    assert at(err) == (4, 20), str(err)
    assert err.message == f"a number of 4,301 characters; numbers have at most {MAX_NUMBER}"
    assert "hyperparameter" in err.hint


def test_number_of_max_number_digits_checks():
    front_end(card("algorithm y ← f(x)", "  input x ∈ ℝ", "  output y ∈ ℝ",
                   "  1 return y = x + 1" + "0" * (MAX_NUMBER - 1)))


@pytest.mark.parametrize("claim, what, message", [
    ("y ∈ ℝ^{T×1" + "0" * 200 + "}", "1" + "0" * 200, "a number of 201 characters"),
    ("y ∈ {0,2}^{T}", "{0,2}", "a two-element set must be {0,1}"),
])
def test_card_error_in_a_claim_is_reported_at_its_place(claim, what, message):
    """A ▷ claim is parsed apart from its step, as if on line 1; a CardError
    from it came out wrapped in two of Lark's VisitErrors."""
    line = "  1 return y = x  ▷ " + claim
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{T}", "  output y ∈ ℝ^{T}", line))
    assert at(err) == (4, line.index(what) + 1), str(err)
    assert message in err.message


def test_dimension_with_a_coefficient_over_100_digits():
    """10^99 · 10^99: poly_text could not print a coefficient of 4,300 digits
    or more (str(int)); shapes.Poly refuses one of more than 100."""
    big = "1" + "0" * 99
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{N}", f"  output y ∈ ℝ^{{{big}·{big}}}",
                          "  1 return y = x"))
    assert at(err) == (3, 17), str(err)
    assert err.message == "this dimension is too large to check: a coefficient has more than 100 digits"


def test_broadcast_dimension_in_a_claim_mismatch():
    """Checker.show went through to_set → parse_dim, which cannot parse the
    broadcast dimension ⋆ of b 1^⊤ (scripts/fuzz.py --seed 1, input 6548)."""
    err = card_error(card("algorithm Y ← f(X | b)", "  input  X ∈ ℝ^{D×T}", "  output Y ∈ ℝ^{D×T}",
                          "  param  b ∈ ℝ^{D}", "  1 Z ← b 1^⊤  ▷ Z ∈ ℝ^{D}", "  2 return Y = X"))
    assert at(err) == (5, 16), str(err)
    assert err.message == "the comment claims Z ∈ ℝ^D but this step computes ℝ^{D×*}"


def test_cli_on_the_broadcast_claim_card(tmp_path):
    """It was exit code 2, "internal error"."""
    path = tmp_path / "f.card"
    path.write_text(card("algorithm Y ← f(X | b)", "  input  X ∈ ℝ^{D×T}", "  output Y ∈ ℝ^{D×T}",
                         "  param  b ∈ ℝ^{D}", "  1 Z ← b 1^⊤  ▷ Z ∈ ℝ^{D}", "  2 return Y = X"), "utf-8")
    result = cardgen_check(path)
    assert_clean_exit(result)
    assert result.exit_code == 1
    assert f"{path}:5:16: error: the comment claims Z" in result.output


def test_empty_slice_with_a_symbolic_length():
    """X[T : 0] has length −T, which parse_dim could not read back for the
    message (scripts/fuzz.py --seed 1, input 8759); a length that is ≤ 0 for
    any sizes is now an empty slice, like a constant one."""
    err = card_error(card("algorithm Y ← f(X)", "  convention rows, 0-based", "  input  X ∈ ℝ^{T}",
                          "  output Y ∈ ℝ^{T}", "  1 return Y = X[T : 0]"))
    assert at(err) == (5, 18), str(err)
    assert err.message == "the slice T : 0 is empty: it ends before it starts"


def test_negative_leading_term_in_an_error_message():
    err = card_error(card("algorithm Y ← f(X)", "  convention rows, 0-based", "  input  X ∈ ℝ^{T}",
                          "  output Y ∈ ℝ^{T}", "  1 return Y = X[T : 1]"))
    assert at(err) == (5, 16), str(err)
    assert err.message == "Y is declared ℝ^T but this computes ℝ^{−T+1}"


def test_one_deleted_plus_in_causal_self_attention():
    """`2 · D + (h + 1) · D / H` → `2 · D (h + 1) · D / H` makes the slice's
    length negative in its leading term; the claim mismatch is shown."""
    text = TEXTS[ROOT / "cards" / "CausalSelfAttention.card"]
    assert text.count("2 · D + (h + 1)") == 1
    err = card_error(text.replace("2 · D + (h + 1)", "2 · D (h + 1)"))
    line = next(i for i, ln in enumerate(text.split("\n"), 1) if "2 · D + (h + 1)" in ln)
    assert err.line == line, str(err)
    assert err.message.startswith("the comment claims V_h ∈ ℝ^{T×D/H} but this step computes ℝ^{T×−2·D"), \
        err.message


def test_dimension_with_many_terms_is_refused():
    """(A0+…+A99)·(B0+…+B99) has 10,000 terms; printed in a message it made
    render.Printer recurse once per term (RecursionError)."""
    a = [f"A{i}" for i in range(100)]
    b = [f"B{i}" for i in range(100)]
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{" + "×".join(a + b) + "}",
                          "  output y ∈ ℝ^{(" + "+".join(a) + ")·(" + "+".join(b) + ")}", "  1 return y = x"))
    assert at(err) == (3, 17), str(err)
    assert err.message == f"this dimension is too large to check: multiplied out it has more than {MAX_TERMS} terms"
    assert "hyper" in err.hint


def test_long_dimension_in_an_error_message_is_cut_short():
    a = [f"A{i}" for i in range(MAX_TERMS - 1)]  # and N: y = x compares N with the sum
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{" + "+".join(a) + "}", "  output y ∈ ℝ^{N}",
                          "  1 return y = x"))
    assert at(err) == (4, 16), str(err)
    assert err.message == ("y is declared ℝ^N but this computes "
                           f"ℝ^{{A0+A1+A10+A11+A12+A13+A14+… ({MAX_TERMS - 1} terms)}}")


def test_claim_nested_deeper_than_max_depth():
    """A ▷ claim is parsed on its own and escaped the MAX_DEPTH check: 10,000
    levels made parse._relined recurse too deeply (RecursionError in a
    VisitError).  2,500 fit in MAX_BYTES."""
    line = "  1 return y = x  ▷ y ∈ ℝ^{T" + "+0" * 2_500 + "}"
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{T}", "  output y ∈ ℝ^{T}", line))
    assert err.line == 4 and 28 < err.col < len(line), str(err)
    assert err.message == f"the expression is nested more than {MAX_DEPTH} levels deep"


def test_claim_nested_1000_levels_checks():
    front_end(card("algorithm y ← f(x)", "  input x ∈ ℝ^{T}", "  output y ∈ ℝ^{T}",
                   "  1 return y = x  ▷ y ∈ ℝ^{T" + "+0" * 1000 + "}"))


def test_product_of_sums_in_a_shape_is_refused_in_time():
    """shapes.Poly multiplied out (A+…+H+1)^12, 125,970 terms: far over a
    second (10 factors: 2.8 s)."""
    p = "·".join(["(A+B+C+D+E+F+G+H+1)"] * 12)
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ^{A×B×C×D×E×F×G×H}", "  output y ∈ ℝ",
                          "  param W ∈ ℝ^{" + p + "}", "  1 return y = 1"))
    assert at(err) == (4, 16), str(err)
    assert "more than 100 terms" in err.message


@pytest.mark.parametrize("shape", ["sum", "steps", "claims"])
def test_card_just_under_max_bytes_is_answered_in_time(shape):
    """The front end reads about 50,000 characters a second; MAX_BYTES was
    1,000,000 (17.5 s for a card of 1 MB)."""
    head = ["algorithm y ← f(x)", "  input x ∈ ℝ^{T}", "  output y ∈ ℝ^{T}"]
    room = MAX_BYTES - len(card(*head)) - 100
    if shape == "sum":  # refused after parsing: nested more than MAX_DEPTH
        body = ["  1 return y = " + "x+" * (room // 2) + "x"]
    else:
        step = "  1 a ← x + 1 ⊙ x" if shape == "steps" else "  1 a ← x  ▷ a ∈ ℝ^{T}"
        body = [step] * (room // (len(step) + 1)) + ["  2 return y = x"]
    text = card(*head, *body)
    assert MAX_BYTES - 150 < len(text) <= MAX_BYTES
    with time_limit(LIMIT):
        front_end(text)


def test_card_over_max_bytes_is_refused_at_the_limit():
    text = card("algorithm y ← f(x)", "  input x ∈ ℝ", "  output y ∈ ℝ", "  1 return y = x  ▷ " + "x" * MAX_BYTES)
    err = card_error(text)
    assert at(err) == (4, MAX_BYTES + 1 - len(card("algorithm y ← f(x)", "  input x ∈ ℝ", "  output y ∈ ℝ")))
    assert err.message == f"the file is {len(text):,} characters; cards are at most {MAX_BYTES:,} characters"


@pytest.mark.parametrize("path", ["/dev/zero", "huge.card"])
def test_parse_file_reads_no_more_than_a_card_can_hold(path, scratch):
    """It read the whole file first: /dev/zero for ever, a huge file
    into memory."""
    if path == "huge.card":
        path = scratch / path
        with path.open("wb") as f:
            f.truncate(2**27)  # 128 MB of NUL bytes, sparse: nothing is written
    with time_limit(LIMIT), pytest.raises(CardError) as info:
        parse_file(path)
    assert info.value.message == f"the file is more than {4 * MAX_BYTES + 3:,} bytes; cards are at most " \
                                 f"{MAX_BYTES:,} characters"
    assert at(info.value) == (1, MAX_BYTES + 1)
    assert str(info.value).startswith(f"{path}:1:{MAX_BYTES + 1}: error: ")


@pytest.mark.parametrize("command", ["check", "fmt"])
def test_an_endless_stdin_is_refused_at_the_limit(command):
    """`cardgen fmt -` read standard input to its end: for ever from /dev/zero."""
    with open("/dev/zero", "rb") as zero:
        run = subprocess.run([sys.executable, "-m", "cardgen.cli", command, "-"], stdin=zero, capture_output=True,
                             text=True, timeout=30, cwd=ROOT)
    assert run.returncode == 1
    assert run.stderr.startswith(f"<stdin>:1:{MAX_BYTES + 1}: error: the file is more than {4 * MAX_BYTES + 3:,}")


def test_error_message_shows_the_line_it_names():
    """CardError.__str__ numbered lines with str.splitlines, which also splits
    at U+2028, \\x0b, \\x0c, \\x1c–\\x1e, \\x85, U+2029 and a lone \\r; Lark
    counts only \\n, so after such a character the message showed the wrong line."""
    for odd in "\u2028\u2029\x0b\x0c\x1c\x85\r":
        text = card("algorithm y ← f(x)", f'  "a purpose{odd}with a line separator"', "  input x ∈ ℝ",
                    "  output y ∈ ℝ", "  1 return y = x + z")
        err = card_error(text)
        assert at(err) == (5, 20), repr(odd)
        assert str(err).split("\n")[1] == "    1 return y = x + z", repr(odd)


def test_caret_is_under_the_column_after_odd_characters():
    """Lark counts a column per character; the shown line keeps one printable
    character per character (a control character or a line separator shows
    as �), so the caret stays under the offending text."""
    err = card_error(card("algorithm y ← f(x)", '  "a\u2028\x0c\x85\u200b\tpurpose" z', "  input x ∈ ℝ"))
    assert at(err) == (2, 19), str(err)
    shown, caret = str(err).split("\n")[1:3]
    assert shown == '    "a\ufffd\ufffd\ufffd\ufffd purpose" z'
    assert caret == "  " + " " * 18 + "^", str(err)
    err = card_error(card("algorithm y ← f(x)", "  input x ∈ ℝ", "  output y ∈ ℝ", "  1 return y = x\x0b + z"))
    assert at(err) == (4, 17), str(err)
    shown, caret = str(err).split("\n")[1:3]
    assert shown == "    1 return y = x\ufffd + z"
    assert caret.index("^") == shown.index("\ufffd"), str(err)
