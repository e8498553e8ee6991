"""Whole-number quotient and remainder of indices, ⌊a / b⌋ and a mod b (ASCII floor(a / b),
a % b): parsed in both spellings, checked (whole numbers only), rendered in every format and
read back, run by the interpreter and the generated code alike, and grouped-query slices that
move with ⌊h·G/H⌋ compiled without repeated work.  (tests/differential_cases/IndexArith.card and
GroupedHeads.card run through test_differential.py as well.)"""

from __future__ import annotations

import numpy as np
import pytest

import cardgen
from cardgen import CardError, parse
from cardgen.api import interpret
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check
from cardgen.lang.render import expr_text
from cardgen.lang.shapes import Poly

from .conftest import ROOT


def card(step: str, out: str = "ℝ^D", extra: str = "") -> str:
    return (f"algorithm Y ← F(X)\n  convention rows, 0-based\n  input  X ∈ ℝ^{{T×D}}\n  output Y ∈ {out}\n"
            f"  hyper  T, D ∈ ℕ\n{extra}  1 return Y = {step}\n")


def checked(src: str):
    c = parse(src)
    lib = Library(cards={c.name: c})
    return check(c, lib), lib


@pytest.mark.parametrize("ascii_, unicode_", [
    ("floor(T / 2)", "⌊T / 2⌋"), ("T % 2", "T mod 2"), ("floor((T + 1) / 2) % 3", "⌊(T + 1) / 2⌋ mod 3"),
    ("(2 * T) % 3", "(2 ⊙ T) mod 3"), ("(T % 2) * D", "(T mod 2) ⊙ D"), ("T % (2 * D)", "T mod (2 ⊙ D)"),
])
def test_ascii_spellings_read_as_the_symbols_and_print_back(ascii_, unicode_):
    a = parse(card(f"X[{ascii_}]")).steps[0].value.args[1]
    u = parse(card(f"X[{unicode_}]")).steps[0].value.args[1]
    assert a == u
    assert expr_text(a) == unicode_
    assert parse(card(f"X[{expr_text(a)}]")).steps[0].value.args[1] == a


def test_every_format_shows_floor_and_mod_and_text_reads_back():
    src = (ROOT / "tests" / "differential_cases" / "IndexArith.card").read_text("utf-8")
    c = cardgen.loads(src)
    text = c.render("text")
    assert "⌊(t + 1) / 2⌋" in text and "(h mod 2) · D / 2" in text and "D−⌊D/2⌋" in text
    assert parse(text) == parse(src) == parse(c.text())
    tex = c.render("tex")
    assert r"\left\lfloor T / 2 \right\rfloor" in tex and r"\bmod" in tex
    assert r"\lfloor" in c.render("md")


def test_values_floor_as_python_does():
    ch, lib = checked(card("X[⌊T / 2⌋] + X[T mod 3] + X[(5 − T) mod 3]"))
    X = np.arange(12.0).reshape(6, 2)
    got = interpret(ch.card, {"X": X}, {}, {}, lib=lib)["Y"]
    assert np.array_equal(got, X[3] + X[0] + X[(5 - 6) % 3])
    mod = load_module(ch, lib)
    y, _ = mod.forward(mod.Config(T=6, D=2), mod.Params(), X)
    assert np.array_equal(y, got)


def test_symbolic_sizes_cancel_and_fold():
    h, g, w = Poly.sym("h"), Poly.sym("G"), Poly.sym("w")
    q = (h * g).floordiv(Poly.sym("H"))
    assert (q + Poly.const(1)) * w - q * w == w
    assert q.symbols() == ["G", "H", "h"] and q.atoms() == [str(q)]
    assert q.subst({"G": Poly.const(2), "H": Poly.const(4), "h": Poly.const(3)}) == Poly.const(1)
    assert Poly.const(-7).mod(Poly.const(3)) == Poly.const(2)
    assert q.evaluate({"G": 2, "H": 4, "h": 7}) == 3


@pytest.mark.parametrize("step, message", [
    ("X[⌊T / 2.5⌋]", "⌊a / b⌋ takes whole numbers; 2.5 is ℝ"),
    ("X[T mod X[0, 0]]", "a mod b takes whole numbers; X[0, 0] is ℝ"),
    ("X[⌊T⌋]", "⌊…⌋ takes a division of whole numbers"),
    ("X[floor(T)]", "⌊…⌋ takes a division of whole numbers"),
    ("X[T mod 0]", "a mod b divides by zero"),
])
def test_misuse_is_an_error_at_its_place(step, message):
    with pytest.raises(CardError) as e:
        checked(card(step))
    assert message in e.value.message
    assert e.value.pos is not None and e.value.pos.line == 6 and e.value.hint


def test_interpreter_refuses_a_zero_divisor_known_only_at_run_time():
    ch, lib = checked(card("X[T mod (T − D)]"))
    with pytest.raises(CardError, match="divides by zero"):
        interpret(ch.card, {"X": np.zeros((2, 2))}, {}, {}, lib=lib)


def test_grouped_heads_gather_blocks_instead_of_masking_every_pair():
    path = ROOT / "tests" / "differential_cases" / "GroupedHeads.card"
    c = parse(path.read_text("utf-8"), str(path))
    lib = Library(cards={c.name: c})
    ch = check(c, lib)
    report = gradcheck(ch, lib, {"H": 4, "G": 2, "D": 8, "T": 3})
    assert report.worst < 1e-6
    mod = load_module(ch, lib)
    cfg = mod.Config(D=8, H=4, G=2)
    rng = np.random.default_rng(0)
    p = mod.init_params(cfg, rng, np.float64)
    X = rng.standard_normal((3, 8))
    y, _ = mod.forward(cfg, p, X)
    # the definition: head h attends with key/value head h·G // H
    w = 2
    Q, K, V = X @ p.W_q, X @ p.W_k, X @ p.W_v
    heads = []
    for h in range(4):
        g = h * 2 // 4
        s = Q[:, h * w:(h + 1) * w] @ K[:, g * w:(g + 1) * w].T
        a = np.exp(s - s.max(-1, keepdims=True))
        heads.append(a / a.sum(-1, keepdims=True) @ V[:, g * w:(g + 1) * w])
    assert np.allclose(y, np.concatenate(heads, -1), rtol=1e-13, atol=1e-13)


def test_grouped_heads_backward_adds_each_head_into_its_group_without_a_heads_by_groups_array():
    """The gradient of the gather (query head h reads key head ⌊h·G/H⌋) adds each head's slice into its
    group's; it used to scatter into an array H·G heads large and sum it back. A pick that moves along
    other axes still takes the general scatter. Both against a plain loop."""
    import tracemalloc
    mod = load_module(*_grouped_heads())
    rng = np.random.default_rng(1)
    b, h, g, t, w = 2, 8, 4, 64, 32
    grad = rng.standard_normal((b, h, t, w))
    idx = (np.arange(h) * g // h).reshape(h, 1, 1, 1)
    shape = (b, 1, t, g, w)
    want = np.zeros(shape)
    for head in range(h):
        want[:, 0, :, idx[head, 0, 0, 0], :] += grad[:, head]
    tracemalloc.start()
    got = mod._put_along(grad, idx, shape, -2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)
    assert peak < 2 * want.nbytes <= grad.nbytes * g / 4, peak  # the old scatter held grad.nbytes · G
    # a pick that moves along a kept axis too (a different key head per position): the general path
    moving = rng.integers(0, g, size=(h, t, 1, 1))
    want = np.zeros(shape)
    for head in range(h):
        for pos in range(t):
            want[:, 0, pos, moving[head, pos, 0, 0], :] += grad[:, head, pos]
    np.testing.assert_allclose(mod._put_along(grad, moving, shape, -2), want, rtol=1e-15, atol=1e-15)


def _grouped_heads():
    path = ROOT / "tests" / "differential_cases" / "GroupedHeads.card"
    c = parse(path.read_text("utf-8"), str(path))
    lib = Library(cards={c.name: c})
    return check(c, lib), lib
