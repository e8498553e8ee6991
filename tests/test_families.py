"""Families with several indices (Y^g_j ← … under g and j, P^i_t under ∀i, t): checked,
compiled, differentiated and interpreted alike; lists of such a family with every index but
the last bound (``[Y^g_0, …, Y^g_{J−1}]`` under g); slices that move with several loop indices
(``Z[:, (g·J + j)·w : (g·J + j + 1)·w]``).  The cards in tests/differential_cases/
(TwoIndexHeads, TwoIndexFamily) are compared with the interpreter by test_differential.py."""

from __future__ import annotations

import numpy as np
import pytest

import cardgen
from cardgen import CardError, parse
from cardgen.api import interpret
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check

from .conftest import ROOT

HEADER = ("algorithm Y ← F(X | W)\n  convention rows, 0-based\n  input  X ∈ ℝ^{T×D}\n  output Y ∈ ℝ^{T×D}\n"
          "  hyper  D, G, J ∈ ℕ\n  param  W ∈ ℝ^{D×D}\n")


# g and j step by the same width: the slices overlap, no reshape makes them
MOVING = ("  1 for g ∈ [G] do\n"
          "  2   for j ∈ [J] : V^g_j ← X[:, (g + j) · D / (G · J) : (g + j + 1) · D / (G · J)]\n"
          "  3 end\n  4 return Y = X + Σ_g Σ_j V^g_j[:, 0 : 1]\n")


def checked(steps: str):
    c = parse(HEADER + steps)
    lib = Library(cards={"F": c})
    return check(c, lib), lib


def test_two_index_card_renders_and_reads_back():
    src = (ROOT / "tests" / "differential_cases" / "TwoIndexHeads.card").read_text("utf-8")
    c = cardgen.loads(src)
    text = c.render("text")
    assert "Y^g_j ∈ ℝ^{T×D/(G·J)}" in text and "[Y^g_0, Y^g_1, …, Y^g_{J−1}]" in text
    assert parse(text) == parse(src)
    assert r"\sum_{g} \sum_{j}" in c.render("tex")


def test_grouped_heads_by_two_indices_match_numpy():
    ch, lib = checked(
        "  1 Z ← X W\n"
        "  2 for g ∈ [G] do\n"
        "  3   for j ∈ [J] : V^g_j ← tanh(Z[:, (g · J + j) · D / (G · J) : (g · J + j + 1) · D / (G · J)])\n"
        "  4   U_g ← [V^g_0, V^g_1, …, V^g_{J−1}] ⊙ (1 + g)\n"
        "  5 end\n"
        "  6 return Y = [U_0, U_1, …, U_{G−1}]\n")
    mod = load_module(ch, lib)
    cfg = mod.Config(D=12, G=2, J=3)
    rng = np.random.default_rng(0)
    p = mod.init_params(cfg, rng, np.float64)
    X = rng.standard_normal((4, 12))
    y, _ = mod.forward(cfg, p, X)
    z = np.tanh(X @ p.W)
    want = np.concatenate([z[:, 6 * g:6 * (g + 1)] * (1 + g) for g in range(2)], -1)
    assert np.allclose(y, want, rtol=1e-14, atol=1e-14)
    got = interpret(ch.card, {"X": X}, {"W": p.W}, {"G": 2, "J": 3, "D": 12}, lib=lib)["Y"]
    assert np.allclose(got, want, rtol=1e-14, atol=1e-14)
    assert gradcheck(ch, lib, {"D": 12, "G": 2, "J": 3}).worst < 1e-6


@pytest.mark.parametrize("steps, message", [
    (MOVING, "must step by its own width"),
    ("  1 ∀i, t: P^i_t ← X[t, i]\n  2 return Y = X ⊙ Σ_i P^i_i\n", "names one index twice"),
    ("  1 for g ∈ [3] do\n  2   for j ∈ [J] : V^g_j ← X[:, j · D / J : (j + 1) · D / J]\n  3 end\n"
     "  4 return Y = [V^5_0, V^5_1, …, V^5_{J−1}]\n", "picks member 5 of an index that runs 0…2"),
])
def test_misuse_is_an_error_at_its_place(steps, message):
    with pytest.raises(CardError) as e:
        load_module(*checked(steps))
    assert message in e.value.message
    assert e.value.pos is not None and e.value.pos.line >= 7


def test_moving_slice_hint_shows_the_nesting():
    with pytest.raises(CardError) as e:
        load_module(*checked(MOVING))
    assert "A[:, (g·J + j)·w : (g·J + j + 1)·w]" in e.value.hint


def test_a_list_with_a_whole_number_fixed_picks_that_member():
    ch, lib = checked("  1 for g ∈ [G] do\n  2   for j ∈ [J] : V^g_j ← (g + 1) ⊙ X[:, j · D / J : (j + 1) · D / J]\n"
                      "  3 end\n  4 return Y = [V^1_0, V^1_1, …, V^1_{J−1}] W\n")
    mod = load_module(ch, lib)
    cfg = mod.Config(D=6, G=3, J=2)
    rng = np.random.default_rng(2)
    p = mod.init_params(cfg, rng, np.float64)
    X = rng.standard_normal((4, 6))
    y, _ = mod.forward(cfg, p, X)
    assert np.allclose(y, 2 * X @ p.W, rtol=1e-14, atol=1e-14)
    got = interpret(ch.card, {"X": X}, {"W": p.W}, {"G": 3, "J": 2, "D": 6}, lib=lib)["Y"]
    assert np.allclose(got, y, rtol=1e-14, atol=1e-14)
    assert gradcheck(ch, lib, {"D": 6, "G": 3, "J": 2}).worst < 1e-6


def test_a_parameter_repeated_over_two_indices_is_one_array():
    path = ROOT / "tests" / "differential_cases" / "HeadsPerLayer.card"
    c = cardgen.load(str(path))
    text = c.render("text")
    assert "W^h_ℓ ∈ ℝ^{D×D/H} for h ∈ [H], ℓ ∈ [N]" in text
    assert parse(text) == parse(path.read_text("utf-8"))
    assert r"h \in [H],\ \ell \in [N]" in c.render("tex")
    assert "Parameter count: 192 at D=8, H=2, N=3" in cardgen.render(c, "text", values={"D": 8, "H": 2, "N": 3})
    mod = c.compile()
    cfg = mod.Config(D=8, H=2, N=3)
    p = mod.init_params(cfg, np.random.default_rng(0), np.float64)
    assert p.W.shape == (2, 3, 8, 4)
    X = np.random.default_rng(1).standard_normal((5, 8))
    y, _ = mod.forward(cfg, p, X)
    for layer in range(3):
        X = X + np.concatenate([np.tanh(X @ p.W[h, layer]) for h in range(2)], -1) / 2
    assert np.allclose(y, X, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("decl, message", [
    ("param  W^h_ℓ ∈ ℝ^{D×D} for ℓ ∈ [N], h ∈ [H]", "its scripts name them in that order"),
    ("param  W^h_ℓ ∈ ℝ^{D×D} for h ∈ [H], h ∈ [N]", "repeats over each index once"),
    ("param  W^h ∈ ℝ^{D×D} for h ∈ [H], ℓ ∈ [N]", "has no script ℓ"),
])
def test_a_declaration_over_two_indices_names_them_in_its_scripts(decl, message):
    src = (f"algorithm Y ← F(X | W)\n  convention rows, 0-based\n  input  X ∈ ℝ^{{T×D}}\n  output Y ∈ ℝ^{{T×D}}\n"
           f"  hyper  D, H, N ∈ ℕ\n  {decl}\n  1 return Y = X\n")
    with pytest.raises(CardError) as e:
        check(parse(src), Library())
    assert message in e.value.message and e.value.pos.line == 6
