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
from cardgen.lang.check import Library, check, check_all

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


# ------------------------------------------------------------- groups over two indices
# A group of named members repeated over two indices (𝓦^h_ℓ = {W^h_q_ℓ, …} for h ∈ [H], ℓ ∈ [N]),
# passed whole to a sub-algorithm per (head, layer).  tests/differential_cases/LayerHeadGroups.card
# passes one to the corpus Attention card in a layer loop (test_differential.py compares it).

HEAD_G = """algorithm Y ← HeadG(X | 𝓦)
  "One causal head whose projections come as a group."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×d_h}
  hyper  D, d_h ∈ ℕ
  param  W_q, W_k, W_v ∈ ℝ^{D×d_h}
  param  𝓦 = {W_q, W_k, W_v}
  1 S ← (X W_q) (X W_k)^⊤ / √d_h
  2 ∀t, u: if u > t then S[t, u] ← −∞
  3 return Y = softmax(S) (X W_v)
"""

GROUPS_HEAD = ("algorithm Y ← Heads2(X | 𝓦)\n  convention rows, 0-based\n  input  X ∈ ℝ^{T×D}\n"
               "  output Y ∈ ℝ^{T×D}\n  hyper  D, H, N ∈ ℕ\n")
GROUPS_DECLS = ("  param  W^h_q_ℓ, W^h_k_ℓ, W^h_v_ℓ ∈ ℝ^{D×D/H} for h ∈ [H], ℓ ∈ [N]\n"
                "  param  𝓦^h_ℓ = {W^h_q_ℓ, W^h_k_ℓ, W^h_v_ℓ} for h ∈ [H], ℓ ∈ [N]\n")
# The call names the group's indices by other letters, in the other nesting: 𝓦^j_m is head j of layer m.
GROUPS_STEPS = ("  1 for m ∈ [N] do\n"
                "  2   for j ∈ [H] : Z^m_j ← HeadG(X | 𝓦^j_m)\n"
                "  3 end\n"
                "  4 return Y = X + Σ_{m=0}^{N−1} [Z^m_0, Z^m_1, …, Z^m_{H−1}]\n")


def groups_card(decls: str = GROUPS_DECLS, steps: str = GROUPS_STEPS):
    c = parse(GROUPS_HEAD + decls + steps)
    lib = Library(cards={"Heads2": c, "HeadG": parse(HEAD_G)})
    return c, lib


def head_by_hand(X, Wq, Wk, Wv):
    S = (X @ Wq) @ (X @ Wk).T / np.sqrt(Wq.shape[1])
    S[np.triu_indices(len(X), 1)] = -np.inf
    A = np.exp(S - S.max(-1, keepdims=True))
    return A / A.sum(-1, keepdims=True) @ (X @ Wv)


def test_a_group_over_two_indices_is_passed_per_head_and_layer():
    c, lib = groups_card()
    ch = check(c, lib)
    mod = load_module(ch, lib)
    cfg = mod.Config(D=6, H=2, N=3)
    rng = np.random.default_rng(3)
    p = mod.init_params(cfg, rng, np.float64)
    assert p.W_q.shape == p.W_k.shape == p.W_v.shape == (2, 3, 6, 3)  # one array: H×N members
    X = rng.standard_normal((5, 6))
    y, _ = mod.forward(cfg, p, X)
    want = X + sum(np.concatenate([head_by_hand(X, p.W_q[h, m], p.W_k[h, m], p.W_v[h, m]) for h in range(2)], -1)
                   for m in range(3))
    assert np.allclose(y, want, rtol=1e-13, atol=1e-13)
    got = interpret(ch.card, {"X": X}, {"W^h_q_ℓ": p.W_q, "W^h_k_ℓ": p.W_k, "W^h_v_ℓ": p.W_v},
                    {"D": 6, "H": 2, "N": 3}, lib=lib)["Y"]
    assert np.allclose(got, want, rtol=1e-13, atol=1e-13)
    result = gradcheck(ch, lib, {"D": 6, "H": 2, "N": 3})
    assert result.worst < 1e-6 and {"W_q", "W_k", "W_v"} <= set(result.errors)


def test_a_group_over_two_indices_renders_and_reads_back(tmp_path):
    src = GROUPS_HEAD + GROUPS_DECLS + GROUPS_STEPS
    (tmp_path / "HeadG.card").write_text(HEAD_G, "utf-8")
    (tmp_path / "Heads2.card").write_text(src, "utf-8")
    c = cardgen.load(str(tmp_path / "Heads2.card"), path=[str(tmp_path)])
    text = c.render("text")
    assert "𝓦^h_ℓ = {W^h_q_ℓ, W^h_k_ℓ, W^h_v_ℓ} for h ∈ [H], ℓ ∈ [N]" in text
    assert "Z^m_j ← HeadG(X | 𝓦^j_m)" in text
    assert parse(text) == parse(src)
    for fmt in ("md", "tex"):
        shown = c.render(fmt)
        members = r"\{W^{h}_{q,\ell}, W^{h}_{k,\ell}, W^{h}_{v,\ell}\}"
        assert r"\mathcal{W}^{h}_{\ell} = " + members + r",\ h \in [H],\ \ell \in [N]" in shown, fmt
        assert r"\mathrm{HeadG}\left(X \mid \mathcal{W}^{j}_{m}\right)" in shown, fmt
    # one array per member over H×N, the group counted once, not again beside its members
    assert "Parameter count: 576 at D=8, H=2, N=3" in c.render("text", values={"D": 8, "H": 2, "N": 3})


def edited_decls(old: str, new: str) -> str:
    out = GROUPS_DECLS.replace(old, new)
    assert out != GROUPS_DECLS
    return out


@pytest.mark.parametrize("decls, line, col, message, hint", [
    # a member indexed by a name the group's `for` does not bind
    (edited_decls("{W^h_q_ℓ,", "{W^h_q_j,"), 7, 19,
     "group member W^h_q_j is indexed by j, which the group does not repeat over",
     "the group repeats for h, ℓ: add j ∈ […] to its `for`"),
    # a member's indices in the other order than its declaration's: ℓ ∈ [N] where h ∈ [H] goes
    (edited_decls("W^h_k_ℓ, W^h_v_ℓ}", "W^ℓ_k_h, W^h_v_ℓ}"), 7, 28,
     "group member W^ℓ_k_h reads ℓ ∈ [N] as index 1 of its family, which runs over [H]",
     "W^h_k_ℓ is declared for h ∈ [H], ℓ ∈ [N]: name the member's indices in that order"),
    # the group over another range than its members: ℓ ∈ [H], where they have ℓ ∈ [N]
    (edited_decls("W^h_v_ℓ} for h ∈ [H], ℓ ∈ [N]", "W^h_v_ℓ} for h ∈ [H], ℓ ∈ [H]"), 7, 19,
     "group member W^h_q_ℓ reads ℓ ∈ [H] as index 2 of its family, which runs over [N]", "over the same ranges"),
    # a group index the member's family is not repeated over
    (edited_decls("W^h_v_ℓ} for", "W^h_v_ℓ, U^h_ℓ} for").replace("  param  𝓦", "  param  U^h_ℓ ∈ ℝ^D for h ∈ [H]\n"
                                                                      "  param  𝓦"), 8, 46,
     "group member U^h_ℓ is indexed by ℓ, but its family is not repeated over ℓ", "it is declared for h ∈ [H]"),
    # the group's name must carry each of its indices
    (edited_decls("𝓦^h_ℓ = ", "𝓦^h = "), 7, 3, "𝓦^h is repeated for ℓ ∈ […] but has no script ℓ", "𝓦^h_ℓ"),
])
def test_group_member_misuse_is_an_error_at_the_member(decls, line, col, message, hint):
    c, lib = groups_card(decls)
    with pytest.raises(CardError) as e:
        check(c, lib)
    assert (e.value.pos.line, e.value.pos.col, e.value.message) == (line, col, message)
    assert hint in e.value.hint


def test_a_broken_group_is_reported_once_not_again_where_it_is_used():
    c, lib = groups_card(edited_decls("{W^h_q_ℓ,", "{W^h_q_j,"))
    assert [e.message for e in check_all(c, lib).errors] == [
        "group member W^h_q_j is indexed by j, which the group does not repeat over"]


@pytest.mark.parametrize("steps, line, col, message", [
    # one of the group's two indices bound, the other not (ℓ is the declaration's letter, bound by no loop here)
    (GROUPS_STEPS.replace("𝓦^j_m", "𝓦^j_ℓ"), 9, 39,
     "𝓦^j_ℓ reads the family 𝓦^h_ℓ, but no enclosing for, ∀ or Σ binds ℓ"),
    # a group passed where the callee takes a single array
    (GROUPS_STEPS.replace("HeadG(X | 𝓦^j_m)", "HeadG(𝓦^j_m | 𝓦^j_m)"), 9, 35,
     "but 𝓦^j_m ∈ a parameter group"),
])
def test_group_over_two_indices_misused_in_a_call(steps, line, col, message):
    c, lib = groups_card(steps=steps)
    with pytest.raises(CardError) as e:
        check(c, lib)
    assert (e.value.pos.line, e.value.pos.col) == (line, col) and message in e.value.message, str(e.value)
    if "binds ℓ" in message:
        assert e.value.hint == "𝓦^h_ℓ is repeated for h ∈ [H], ℓ ∈ [N]: read it inside a loop over each of its indices"


def test_a_group_over_one_index_is_read_by_the_loop_index_of_the_call():
    """𝓦^h = {W^h_q, …} for h ∈ [H] passed as 𝓦^j under `for j`: its members are W^j_q, …
    (before, the checker looked for W^h_q by that name and refused the card: unknown name W^h_q)."""
    src = ("algorithm Y ← Heads1(X | 𝓦)\n  convention rows, 0-based\n  input  X ∈ ℝ^{T×D}\n  output Y ∈ ℝ^{T×D}\n"
           "  hyper  D, H ∈ ℕ\n  param  W^h_q, W^h_k, W^h_v ∈ ℝ^{D×D/H} for h ∈ [H]\n"
           "  param  𝓦^h = {W^h_q, W^h_k, W^h_v} for h ∈ [H]\n"
           "  1 for j ∈ [H] : Y_j ← HeadG(X | 𝓦^j)\n  2 return Y = [Y_0, Y_1, …, Y_{H−1}]\n")
    c = parse(src)
    lib = Library(cards={"Heads1": c, "HeadG": parse(HEAD_G)})
    ch = check(c, lib)
    mod = load_module(ch, lib)
    cfg = mod.Config(D=6, H=3)
    rng = np.random.default_rng(4)
    p = mod.init_params(cfg, rng, np.float64)
    X = rng.standard_normal((4, 6))
    y, _ = mod.forward(cfg, p, X)
    want = np.concatenate([head_by_hand(X, p.W_q[h], p.W_k[h], p.W_v[h]) for h in range(3)], -1)
    assert np.allclose(y, want, rtol=1e-13, atol=1e-13)
    got = interpret(ch.card, {"X": X}, {"W^h_q": p.W_q, "W^h_k": p.W_k, "W^h_v": p.W_v}, {"D": 6, "H": 3}, lib=lib)
    assert np.allclose(got["Y"], want, rtol=1e-13, atol=1e-13)


def test_a_member_may_leave_out_an_index_of_its_group():
    """W^h_k, repeated for h only, in 𝓦^h_ℓ: every layer's head h reads the same key projection,
    and its gradient sums over the layers."""
    decls = ("  param  W^h_q_ℓ, W^h_v_ℓ ∈ ℝ^{D×D/H} for h ∈ [H], ℓ ∈ [N]\n  param  W^h_k ∈ ℝ^{D×D/H} for h ∈ [H]\n"
             "  param  𝓦^h_ℓ = {W^h_q_ℓ, W^h_k, W^h_v_ℓ} for h ∈ [H], ℓ ∈ [N]\n")
    c, lib = groups_card(decls)
    ch = check(c, lib)
    mod = load_module(ch, lib)
    cfg = mod.Config(D=6, H=2, N=3)
    rng = np.random.default_rng(5)
    p = mod.init_params(cfg, rng, np.float64)
    assert p.W_k.shape == (2, 6, 3)
    X = rng.standard_normal((5, 6))
    y, _ = mod.forward(cfg, p, X)
    want = X + sum(np.concatenate([head_by_hand(X, p.W_q[h, m], p.W_k[h], p.W_v[h, m]) for h in range(2)], -1)
                   for m in range(3))
    assert np.allclose(y, want, rtol=1e-13, atol=1e-13)
    got = interpret(ch.card, {"X": X}, {"W^h_q_ℓ": p.W_q, "W^h_k": p.W_k, "W^h_v_ℓ": p.W_v},
                    {"D": 6, "H": 2, "N": 3}, lib=lib)["Y"]
    assert np.allclose(got, want, rtol=1e-13, atol=1e-13)
    assert gradcheck(ch, lib, {"D": 6, "H": 2, "N": 3}).worst < 1e-6


@pytest.mark.parametrize("steps, H", [
    ("  1 ∀m, j: Z^m_j ← HeadG(X | 𝓦^j_m)\n  2 return Y = X + Σ_{m=0}^{N−1} [Z^m_0, Z^m_1, …, Z^m_{H−1}]\n", 2),
    ("  1 for j ∈ [H] : Y_j ← Σ_m HeadG(X | 𝓦^j_m)\n  2 return Y = X + [Y_0, Y_1, …, Y_{H−1}]\n", 2),
], ids=["forall", "sum"])
def test_forall_and_sum_take_their_ranges_from_the_group(steps, H):
    """∀m, j and Σ_m read how far m and j run off the group 𝓦^j_m (its for h ∈ [H], ℓ ∈ [N]);
    the compiler could not tell before ("cannot tell what m ranges over")."""
    c, lib = groups_card(steps=steps)
    ch = check(c, lib)
    mod = load_module(ch, lib)
    cfg = mod.Config(D=6, H=H, N=3)
    rng = np.random.default_rng(6)
    p = mod.init_params(cfg, rng, np.float64)
    X = rng.standard_normal((5, 6))
    y, _ = mod.forward(cfg, p, X)
    want = X + sum(np.concatenate([head_by_hand(X, p.W_q[h, m], p.W_k[h, m], p.W_v[h, m]) for h in range(H)], -1)
                   for m in range(3))
    assert np.allclose(y, want, rtol=1e-13, atol=1e-13)
    got = interpret(ch.card, {"X": X}, {"W^h_q_ℓ": p.W_q, "W^h_k_ℓ": p.W_k, "W^h_v_ℓ": p.W_v},
                    {"D": 6, "H": H, "N": 3}, lib=lib)["Y"]
    assert np.allclose(got, want, rtol=1e-13, atol=1e-13)
    assert gradcheck(ch, lib, {"D": 6, "H": H, "N": 3}).worst < 1e-6


def test_a_local_family_read_with_one_index_loose_names_it():
    with pytest.raises(CardError) as e:
        checked("  1 for g ∈ [G] do\n  2   for j ∈ [J] : V^g_j ← X[:, j · D / J : (j + 1) · D / J]\n"
                "  3   U_g ← V^g_j\n  4 end\n  5 return Y = X\n")
    assert (e.value.pos.line, e.value.pos.col) == (9, 13)
    assert e.value.message == "V^g_j reads the family V^•_•, but no enclosing for, ∀ or Σ binds j"
    assert e.value.hint == "V^•_• has a member per index in [G] × [J]: read it inside a loop over each of its indices"
