"""`cardgen check` means it builds (issue 10): whatever `build` refuses, `check` refuses
first, at the same line and column; a card `check` accepts builds, and its module runs
(gradcheck) without raising; exit codes 0 ok, 1 card error, 2 usage, 3 a bug in cardgen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.compile.gradcheck import TOL, gradcheck, load_module
from cardgen.lang.check import Library
from cardgen.lang.load import load

from . import test_errors
from .conftest import ROOT, load_generated
from .differential import compare
from .test_recurrence import ELMAN, ELMAN_FAMILY, FAMILY_UPDATE


def rows_card(name: str, hypers: str, *steps: str) -> str:
    head = (f"algorithm Y ← {name}(X | W)\n  convention rows, 0-based\n  input  X ∈ ℝ^{{T×D}}\n"
            f"  output Y ∈ ℝ^{{T×D}}\n  hyper  {hypers} ∈ ℕ\n  param  W ∈ ℝ^{{D×D}}\n")  # steps from line 7
    return head + "".join(f"  {s}\n" for s in steps)


# Cards the checker alone accepted and build refused or crashed on (issue 10's list and
# more): (card, line, col, words of the message).  Each is refused by check at build's place.
UNSUPPORTED = {
    "family-member-by-one-index-twice": (rows_card("Diag", "D, G", "1 for g ∈ [G] do", "2   Z^g_g ← X W",
                                                   "3 end", "4 return Y = X W"),
                                         8, 7, "names one index twice"),
    "slice-moving-with-overlapping-indices": (
        rows_card("TwoSlice", "D, G, J", "1 for g ∈ [G] do", "2   for j ∈ [J] do",
                  "3     Z^g_j ← X[:, (g + j) · D / (G · J) : (g + j + 1) · D / (G · J)]",
                  "4   end", "5 end", "6 return Y = X W"),
        9, 17, "must step by its own width"),
    "write-into-part-of-an-array": (rows_card("Part", "D", "1 Y ← X W", "2 Y[0] ← X[1]", "3 return Y"),
                                    8, 7, "0 picks part of Y"),
    "recurrence-reads-what-it-writes": (
        rows_card("ReadBack", "D", "1 h ← X[0]", "2 for t ∈ [T] do", "3   h ← tanh(h W)", "4   Y[t] ← h",
                  "5   h ← h + Y[t]", "6 end", "7 return Y"),
        11, 15, "cannot read Y as well"),
    "recurrence-writes-two-steps-at-once": (
        rows_card("TwoSteps", "D", "1 h ← X[0]", "2 for t ∈ [T] do", "3   h ← tanh(h W)", "4   Y[t, t] ← h",
                  "5 end", "6 return Y"),
        10, 7, "the loop's index once"),
    "recurrence-nested-in-a-layer-loop": (
        rows_card("Stacked", "D, L", "1 for l ∈ [L] do", "2   h ← X[0]", "3   for t ∈ [T] do",
                  "4     h ← tanh(X[t] W + h)", "5     Y[t] ← h", "6   end", "7   X ← Y", "8 end", "9 return Y = X"),
        9, 7, "not nested in one"),
    "carried-loop-starting-late": (
        rows_card("Late", "D, L", "1 for l = 1, 2, …, L do", "2   X ← tanh(X W)", "3 end", "4 return Y = X"),
        7, 5, "only from its first index (0); this one starts at 1"),
    "recurrence-shorter-than-its-output": (
        rows_card("Short", "D", "1 h ← X[0]", "2 for t = 1, 2, …, T − 1 do", "3   h ← tanh(X[t] W + h)",
                  "4   Y[t] ← h", "5 end", "6 return Y"),
        10, 7, "runs T − 1 steps, so Y gets shape (T − 1) × D, but the card declares T × D"),
    "recurrence-carries-a-number": (
        rows_card("FromZero", "D", "1 h ← 0", "2 for t ∈ [T] do", "3   h ← tanh(X[t] W + h)",
                  "4   Y[t] ← h", "5 end", "6 return Y"),
        8, 5, "starts as the number 0"),
}

# Cards that compile and run (each compared against PyTorch in test_recurrence.py, the corpus's
# recurrences in test_oracle_rnn.py).
SUPPORTED = {
    "family-update": FAMILY_UPDATE, "elman": ELMAN, "elman-family": ELMAN_FAMILY,
    **{f"corpus-{name.lower()}": (ROOT / "cards" / f"{name}.card").read_text("utf-8")
       for name in ("RNN", "LSTM", "GRU")},
    "join-of-two-arrays": rows_card("Join", "D", "1 C ← [X W, X]", "2 return Y = C[:, 0 : D] + C[:, D : 2·D]"),
    "elman-precomputed-inputs": rows_card("Pre", "D", "1 P ← X W", "2 h ← X[0]", "3 for t ∈ [T] do",
                                          "4   h ← tanh(P[t] + h W)", "5   Y[t] ← h", "6 end", "7 return Y"),
    "iverson-arithmetic": rows_card("Sign", "D", "1 S ← X X^⊤", "2 ∀t, u: S[t, u] ← S[t, u] ⊙ ([[t ≤ u]] − [[u ≤ t]])",
                                    "3 return Y = S X W"),
}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def first_error_line(output: str) -> str | None:
    return next((line for line in output.splitlines() if ": error: " in line), None)


def write(folder: Path, text: str | bytes, name: str = "case") -> Path:
    path = folder / f"{name}.card"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text, "utf-8")
    return path


def broken_cards() -> list:
    """Every broken card of test_errors.py (with the cards it calls), and the unsupported ones here."""
    return [pytest.param(case, id=case.id) for case in test_errors.CASES] + \
        [pytest.param(test_errors.C(key, text, line, col, words), id=key)
         for key, (text, line, col, words) in UNSUPPORTED.items()]


@pytest.mark.parametrize("case", broken_cards())
def test_check_and_build_agree_on_a_broken_card(case, tmp_path):
    path = test_errors.write_case(case, tmp_path)
    checked, built = cli("check", path), cli("build", path, "-o", tmp_path / "out")
    assert checked.exit_code == 1 and built.exit_code == 1, checked.output + built.output
    where = f"{path}:{case.line}:{case.col}: error: "
    assert first_error_line(checked.output).startswith(where), checked.output
    assert first_error_line(built.output) == first_error_line(checked.output), built.output
    assert all(w in checked.output for w in case.words), checked.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_a_card_check_accepts_builds_and_runs(text, tmp_path):
    path = write(tmp_path, text, text.split("←", 1)[1].split("(", 1)[0].strip())
    checked = cli("check", path)
    assert checked.exit_code == 0, checked.output
    built = cli("build", path, "-o", tmp_path / "out")
    assert built.exit_code == 0, built.output
    lib = Library(folders=[str(tmp_path)])
    _, card = load(str(path), lib)
    assert gradcheck(card, lib).worst <= TOL
    # and it computes what the card says: the reference interpreter agrees (forward ≤ 1e-12,
    # gradients against the interpreter's central differences ≤ 1e-6)
    assert not compare(card, lib, per_tensor=True).problems()


def test_iverson_brackets_count_as_numbers(tmp_path):
    """[[t ≤ u]] − [[u ≤ t]] was NumPy's boolean subtract at run time (a TypeError)."""
    path = write(tmp_path, SUPPORTED["iverson-arithmetic"], "Sign")
    lib = Library(folders=[str(tmp_path)])
    mod = load_module(load(str(path), lib)[1], lib)
    X = np.random.default_rng(0).standard_normal((4, 3))
    Y, _ = mod.forward(mod.Config(D=3), mod.Params(W=np.eye(3)), X)
    sign = np.sign(np.arange(4)[None, :] - np.arange(4)[:, None])
    assert np.allclose(Y, ((X @ X.T) * sign) @ X)


# ------------------------------------------------------------------ exit codes
def test_exit_codes(tmp_path, monkeypatch):
    ok = write(tmp_path, SUPPORTED["elman"], "Elman")
    assert cli("check", ok).exit_code == 0
    broken = write(tmp_path, rows_card("Bad", "D", "1 return Y = X V"), "Bad")
    assert cli("check", broken).exit_code == 1
    assert cli("check", "--no-such-flag", ok).exit_code == 2  # click's usage error
    assert cli("build", "--no-such-flag").exit_code == 2


def test_a_generated_module_refusing_its_inputs_is_an_input_error():
    """--set values the card's sizes cannot take are refused in the card's terms (exit 1, at the step
    whose size they break), not as "internal error" (exit 3); and the module itself, called with
    them directly, refuses them in the card's terms too."""
    r = cli("gradcheck", ROOT / "cards" / "CausalSelfAttention.card", "--set", "D=6", "--set", "H=4")
    assert r.exit_code == 1, r.output
    assert "CausalSelfAttention.card:14:14: error:" in r.output and "hint: H must divide D" in r.output
    assert "internal error" not in r.output
    import cardgen
    mod = cardgen.load(ROOT / "cards" / "CausalSelfAttention.card").compile()
    with pytest.raises(ValueError, match="D/H must be a whole number, but D = 6 is not a multiple of H = 4"):
        config = mod.Config(D=6, H=4)
        mod.forward(config, mod.init_params(config, np.random.default_rng(0)), np.zeros((3, 6)))


def test_a_bug_in_lowering_exits_3_at_the_step(tmp_path, monkeypatch):
    """An exception that is not a refusal is a bug in cardgen: exit 3, said so, with the step."""
    from cardgen.compile.lower_expr import ExprLowering

    def broken(self, e):
        raise KeyError("oops")
    monkeypatch.setattr(ExprLowering, "x_matmul", broken, raising=False)
    monkeypatch.setattr(ExprLowering, "x_juxt", broken)
    path = write(tmp_path, rows_card("Buggy", "D", "1 Z ← X + X", "2 return Y = Z W"), "Buggy")
    for command in ("check", "build"):
        r = cli(command, path, *(["-o", tmp_path / "out"] if command == "build" else []))
        assert r.exit_code == 3, r.output
        assert "internal error" in r.output and "this is a bug in cardgen" in r.output
        assert f"{path}:8:5: KeyError: 'oops'" in r.output
        assert "Traceback" not in r.output


# ------------------------------------------------------- input errors, in the card's terms
def test_a_mask_given_as_0_1_numbers_is_read_as_true_false():
    """¬ of an integer 1 is NumPy's ~1 = −2, still true: an int mask masked everything."""
    mod = load_generated("Attention")
    rng = np.random.default_rng(0)
    cfg = mod.Config(d_z=3, d_x=3, d_attn=4, d_out=2)
    params = mod.init_params(cfg, rng, np.float64)
    X, Z = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    causal = np.tril(np.ones((5, 5), bool)).T  # Mask[t_z, t_x] = [[t_z ≤ t_x]]
    want, _ = mod.forward(cfg, params, X, Z, causal)
    for given in (causal.astype(np.int64), causal.astype(np.uint8), causal.astype(np.float32)):
        got, _ = mod.forward(cfg, params, X, Z, given)
        assert np.array_equal(got, want), given.dtype
    with pytest.raises(ValueError, match=r"Mask must be true/false values .* holding other numbers; "
                                         r"the card says Mask ∈ \{0,1\}\^\{ℓ_z×ℓ_x\}"):
        mod.forward(cfg, params, X, Z, 2 * causal.astype(np.int64))


def test_a_true_false_hyperparameter_that_is_one_number(tmp_path):
    """A scalar {0,1} hyperparameter was a float in Config and ¬ printed as ~, a TypeError
    on a float (and −2, true, on a bool): found by mutating MHAttention's Mask declaration."""
    text = (ROOT / "cards" / "MHAttention.card").read_text("utf-8")
    text = text.replace("hyper  Mask ∈ {0,1}^{ℓ_z×ℓ_x}", "hyper  Mask ∈ {0,1}")
    path = write(tmp_path, text, "MHAttention")
    lib = Library(folders=[str(tmp_path), str(ROOT / "cards")])
    mod = load_module(load(str(path), lib)[1], lib)
    assert mod.Config.__annotations__["Mask"] == "bool"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 4, 3))
    outs = {}
    for mask in (True, False):
        cfg = mod.Config(d_x=4, d_z=4, H=2, d_attn=3, d_mid=2, d_out=4, Mask=mask)
        params = mod.init_params(cfg, np.random.default_rng(1), np.float64)
        outs[mask], _ = mod.forward(cfg, params, X, X)
    full = mod.Config(d_x=4, d_z=4, H=2, d_attn=3, d_mid=2, d_out=4, Mask=True)
    assert not np.allclose(outs[True], outs[False])  # False masks every key: each head's output is 0
    params = mod.init_params(full, np.random.default_rng(1), np.float64)
    assert np.allclose(outs[False], np.broadcast_to(params.b_o[:, None], outs[False].shape))


def test_card_names_that_are_the_generated_code_s_own_locals(tmp_path):
    """A value named dtype or batch overwrote the forward's own dtype and batch (a NumPy error)."""
    text = rows_card("Clash", "D", "1 dtype ← X W", "2 batch ← tanh(dtype)", "3 workspace ← batch W",
                     "4 grads ← workspace + X", "5 return Y = grads W")
    path = write(tmp_path, text, "Clash")
    lib = Library(folders=[str(tmp_path)])
    assert gradcheck(load(str(path), lib)[1], lib).worst <= TOL


def test_a_size_the_card_divides_must_divide_evenly(tmp_path):
    """D // H dropped the rest, or a reshape failed in NumPy's terms; found by a mutation that
    removed `hyper D` from CausalSelfAttention (D then comes from X's shape)."""
    mod = load_generated("CausalSelfAttention")
    cfg = mod.Config(D=6, H=4)
    params = mod.init_params(mod.Config(D=6, H=2), np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"D/H must be a whole number, but D = 6 is not a multiple of H = 4: "
                                         r"the card divides D by H"):
        mod.forward(cfg, params, np.zeros((2, 5, 6)))
    text = (ROOT / "cards" / "CausalSelfAttention.card").read_text("utf-8")
    path = write(tmp_path, text.replace('  hyper  D ∈ ℕ              "model width"\n', ""), "CausalSelfAttention")
    lib = Library(folders=[str(tmp_path), str(ROOT / "cards")])
    mod = load_module(load(str(path), lib)[1], lib)
    with pytest.raises(ValueError, match=r"D/H must be a whole number, but D = 6 is not a multiple of H = 4"):
        mod.forward(mod.Config(D=6, H=4), params, np.zeros((2, 5, 6)))
    # gradcheck picks sizes the card's quotients divide (it gave D, an input length, 3 for H = 2)
    assert gradcheck(load(str(path), lib)[1], lib).worst <= TOL


def test_a_length_the_card_computes_must_not_be_negative():
    """Σ_{t=1}^{ℓ−1} over an empty sequence: ℓ − 1 = −1 was NumPy's "negative dimensions are not
    allowed"; found by a mutation (Σ_{t=11}^{ℓ−1}) that gradcheck ran with ℓ = 3."""
    mod = load_generated("DTraining")
    fields = {f: 4 for f in mod.Config.__dataclass_fields__}
    cfg = mod.Config(**{**fields, "H": 2, "d_e": 8, "N_V": 5})
    params = mod.init_params(cfg, np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"ℓ − 1 is -1 here \(ℓ = 0\), a negative length: the inputs or sizes"):
        mod.forward(cfg, params, np.zeros((2, 0), np.int64))


def test_gradcheck_is_not_fooled_by_a_kink_in_its_stencil():
    """EDTransformer with two declarations swapped drew other weights, and a ReLU input landed within
    the five-point stencil's reach of 0: gradcheck failed a right gradient (1.9e-2; scripts/fuzz_build.py)."""
    from cardgen.compile.gradcheck import EPS, derivative, relative_error

    def relu(h):
        return max(0.0, h + 1.5 * EPS)  # the kink at −1.5·EPS: inside the stencil (±2·EPS), slope 1 at 0
    assert abs(derivative(relu) - 1.0) > TOL  # the plain stencil is fooled
    assert relative_error(relu, 1.0, 1e-4) <= TOL  # a smaller step is not
    assert relative_error(relu, 2.0, 1e-4) > 0.1  # and a wrong gradient fails at every step
