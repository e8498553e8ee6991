"""Σ_i Σ_j without parentheses, sums whose range moves with an outer index (Σ_{u=0}^{t}), and
the error where Σ binds tighter than the card meant (Σ_i a_i + b_i).  The compiled sums are
compared with the interpreter in tests/differential_cases/NestedSums.card."""

from __future__ import annotations

import numpy as np
import pytest

import cardgen
from cardgen import CardError, parse
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check


def card(step: str, extra: str = "") -> str:
    return ("algorithm y ← F(A, b)\n  convention rows, 0-based\n  input  A ∈ ℝ^{T×D}\n  input  b ∈ ℝ^T\n"
            f"  output y ∈ ℝ\n{extra}  1 return y = {step}\n")


def test_nested_sums_parse_render_and_read_back_without_parentheses():
    c = cardgen.loads(card("Σ_{t=0}^{T − 1} Σ_{i=0}^{D − 1} A[t, i]² + Σ_t Σ_{u=0}^{t} b[u] b[t]"))
    (step,) = parse(c.text()).steps
    outer = step.value.args[0]
    assert outer.op == "sum" and outer.args[0].op == "sum"
    text = c.render("text")
    assert "Σ_{t=0}^{T − 1} Σ_{i=0}^{D − 1} A[t, i]²" in text and "Σ_t Σ_{u=0}^{t} b[u] b[t]" in text
    assert parse(text) == parse(c.text())
    assert r"\sum_{t=0}^{T - 1} \sum_{i=0}^{D - 1}" in c.render("tex")


def test_parenthesized_and_bare_nested_sums_are_one_expression():
    bare = parse(card("Σ_{t=0}^{T − 1} Σ_{i=0}^{D − 1} A[t, i]"))
    paren = parse(card("Σ_{t=0}^{T − 1} (Σ_{i=0}^{D − 1} A[t, i])"))
    assert bare == paren


def test_ragged_sums_compile_to_the_triangle():
    c = parse(card("Σ_{t=0}^{T − 1} Σ_{u=0}^{t} b[u] b[t] + Σ_{t=0}^{T − 1} Σ_{u=t}^{T − 1} A[u, 0] A[t, 1]"))
    lib = Library(cards={"F": c})
    ch = check(c, lib)
    mod = load_module(ch, lib)
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((5, 3)), rng.standard_normal(5)
    y, _ = mod.forward(mod.Config(), mod.Params(), A, b)
    want = sum(b[u] * b[t] for t in range(5) for u in range(t + 1)) + \
        sum(A[u, 0] * A[t, 1] for t in range(5) for u in range(t, 5))
    assert abs(y - want) <= 1e-12 * abs(want)
    assert gradcheck(ch, lib).worst < 1e-6


@pytest.mark.parametrize("step, at, hint", [
    ("Σ_{t=0}^{T − 1} A[t, 0] + b[t]", "b[t]", "Σ_{t=0}^{T − 1} (A[t, 0] + b[t])"),
    ("Σ_{t=0}^{T − 1} A[t, 0] · b[t]", "b[t]", "Σ_{t=0}^{T − 1} (A[t, 0] · b[t])"),
    ("Σ_t Σ_{i=0}^{D − 1} A[t, i] ⊙ A[t, i]", "A[t, i]", "Σ_{i=0}^{D − 1} (A[t, i] ⊙ A[t, i])"),
    ("1 + Σ_{t=0}^{T − 1} A[t, 0] − b[t]", "b[t]", "Σ_{t=0}^{T − 1} (A[t, 0] − b[t])"),
])
def test_sigma_binding_tighter_than_meant_is_an_error_with_the_parentheses(step, at, hint):
    with pytest.raises(CardError) as e:
        check(parse(card(step)), Library())
    err = e.value
    assert err.message.startswith(f"{at} uses ") and "the index of the Σ before it" in err.message
    assert err.hint.endswith(hint)
    line = card(step).splitlines()[err.pos.line - 1]
    assert line[err.pos.col - 1:].startswith(at)


def test_an_index_bound_outside_the_sum_is_no_mistake():
    c = parse(card("Σ_{t=0}^{T − 1} (Σ_{u=0}^{t} b[u] + b[t])"))
    check(c, Library(cards={"F": c}))
    c = parse("algorithm Y ← F(A)\n  convention rows, 0-based\n  input  A ∈ ℝ^{T×D}\n  output Y ∈ ℝ^{T×D}\n"
              "  1 ∀t, i: Y[t, i] ← Σ_{u=0}^{T − 1} A[u, i] + A[t, i]\n  2 return Y\n")
    check(c, Library(cards={"F": c}))


def test_a_name_that_only_looks_indexed_is_not_the_sums_index():
    """b_t declared as it is (an input named b_t) is no use of the Σ's t."""
    src = ("algorithm y ← F(A, b_t)\n  convention rows, 0-based\n  input  A ∈ ℝ^{T×D}\n  input  b_t ∈ ℝ\n"
           "  output y ∈ ℝ\n  1 return y = Σ_{t=0}^{T − 1} A[t, 0] + b_t\n")
    c = parse(src)
    check(c, Library(cards={"F": c}))
