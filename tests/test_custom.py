"""Custom backward rules (``backward`` after a card's steps): checked at their place, rendered and
parsed back, used by the generated backward (the card's own and its callers'), checked against
finite differences, a straight-through estimator reported as one; the corpus' fused softmax
cross-entropy gives GPT-2 training the gradients the derived rule gave."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import cardgen
from cardgen.cli import main
from cardgen.compile.gradcheck import gradcheck
from cardgen.lang.check import Library, check_all
from cardgen.lang.errors import CardError
from cardgen.lang.parse import parse
from cardgen.lang.render import card_text, pseudocode

from .conftest import ROOT
from .differential import GRAD_TOL, compare

CARDS = ROOT / "cards"
CE = (CARDS / "cross_entropy.card").read_text("utf-8")
QUANT = (CARDS / "QuantLinear.card").read_text("utf-8")


def derived_only(text: str) -> str:
    """The card without its rule: what cardgen derives by itself."""
    return text[: text.index("\n  backward")] + "\n"


def loads(text: str, name: str = "<test>"):
    return cardgen.loads(text, path=[CARDS], name=name)


def errors_of(text: str) -> list[CardError]:
    card = parse(text, "bad.card")
    return check_all(card, Library(folders=[str(CARDS)])).errors


def one_error(text: str) -> CardError:
    errs = errors_of(text)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


# ------------------------------------------------------------------ check
def test_a_gradient_of_the_wrong_shape_is_refused_at_its_place():
    bad = CE[: CE.index("  3 ∀t")] + "  3 d_P ← z^⊤\n"
    e = one_error(bad)
    line = bad.splitlines().index(next(x for x in bad.splitlines() if "d_P ← z^⊤" in x)) + 1
    assert (e.pos.line, e.pos.col) == (line, bad.splitlines()[line - 1].index("z^⊤") + 1)
    assert "d_P is ℝ^{V×T}, but P ∈ ℝ^{T×V}" in e.message
    assert e.hint == "d_P must be ℝ^{T×V} (transpose it?)"


def test_an_unknown_name_in_a_rule_is_refused_with_a_suggestion():
    e = one_error(CE.replace("(d_L / T)", "(d_X / T)"))
    assert e.message == "unknown name d_X" and e.hint == "did you mean d_L?"
    assert e.pos.line == 10


def test_a_missing_gradient_is_named_at_the_backward_line():
    bad = QUANT[: QUANT.index("  5 d_b")]
    e = one_error(bad)
    assert e.message == "the backward rule gives no gradient of b"
    assert e.hint == "add `d_b ← …`, or `d_b ← 0` if no gradient flows to b"
    assert e.pos.line == [i for i, x in enumerate(bad.splitlines(), 1) if x.lstrip().startswith("backward")][0]


def test_a_stated_zero_gradient_covers_its_variable():
    card = loads(QUANT.replace("d_b ← Σ_{t=0}^{T − 1} d_Y[t]", "d_b ← 0"))
    mod = card.compile()
    cfg = mod.Config(T=3, D=4, K=5)
    params = mod.init_params(cfg, np.random.default_rng(0), np.float64)
    y, cache = mod.forward(cfg, params, np.ones((2, 3, 4)))
    grads, _ = mod.backward(cfg, params, cache, np.ones_like(y))
    assert np.all(grads.b == 0) and grads.b.shape == (5,)


def test_a_rule_may_not_change_the_forward_s_values_nor_give_integers_a_gradient():
    e = one_error(QUANT.replace("  5 d_b", "  5 Ŵ ← d_Y\n  6 d_b"))
    assert e.message == "Ŵ is a value of the forward pass: the backward rule cannot change it"
    errs = errors_of(CE + "  4 d_y ← y\n")
    assert [e.message for e in errs] == [
        "y has no gradient ({0..V−1}^T: not real numbers), so the rule cannot give d_y"]


def test_check_and_the_cli_report_a_wrong_rule_at_file_line_col(tmp_path):
    path = tmp_path / "bad.card"
    path.write_text(CE.replace("(d_L / T)", "(d_X / T)"), "utf-8")
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 1
    assert f"{path}:10:" in r.output and "unknown name d_X" in r.output and "hint: did you mean d_L?" in r.output


# ------------------------------------------------------------- round trip
@pytest.mark.parametrize("text", [CE, QUANT], ids=["cross_entropy", "QuantLinear"])
def test_a_rule_round_trips_through_card_text_and_pseudocode(text):
    card = parse(text, "c.card")
    assert card.rule is not None
    assert parse(card_text(card), "c.card") == card
    shown = pseudocode(card)
    assert "Backward:" in shown
    assert parse(shown, "c.card") == card
    flipped = parse(text.replace("\n  backward straight-through", "\n  backward").replace(
        "\n  backward", "\n  backward straight-through") if not card.rule.straight_through else
        text.replace("\n  backward straight-through", "\n  backward"), "c.card")
    assert flipped.rule.straight_through != card.rule.straight_through and flipped != card


def test_the_straight_through_mark_is_shown():
    shown = pseudocode(parse(QUANT, "q.card"))
    assert "Backward: straight-through — round has derivative zero" in shown


# ---------------------------------------------------------- the backward
def random_case(seed=0, batch=3, T=7, V=11, scale=30.0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((batch, T, V))  # large logits: the fused rule stays finite
    y = rng.integers(0, V, size=(batch, T))
    return logits, y


def test_the_fused_cross_entropy_gradient_equals_the_derived_one():
    fused, derived = loads(CE).compile(), loads(derived_only(CE)).compile()
    for seed in range(3):
        logits, y = random_case(seed)
        d_out = np.random.default_rng(seed).standard_normal(logits.shape[0])
        got = [m.backward(m.Config(), m.Params(), m.forward(m.Config(), m.Params(), logits, y)[1], d_out)[1]["P"]
               for m in (fused, derived)]
        assert np.all(np.isfinite(got[0]))
        assert np.max(np.abs(got[0] - got[1])) <= 1e-12 * np.max(np.abs(got[1]))


def test_the_generated_cross_entropy_backward_is_the_rule():
    src = (ROOT / "generated" / "cross_entropy.py").read_text("utf-8")
    backward = src[src.index("def backward"):src.index("def _check_input")]
    assert "# 3 ∀t, v: d_P[t, v] ← (exp(z[t, v]) − [[v = y[t]]]) · (d_L / T)" in backward
    assert "_put_along" not in backward and "np.sum" not in backward  # no derived scatter and no row sums


def test_gpt2_training_gradients_are_unchanged():
    """The trainer's step (GPT2 forward, cross_entropy, GPT2 backward) with the card's fused rule and
    with the derived one: every parameter gradient equal to 1e-12."""
    from cardgen.train.trainer import Trainer
    gpt2 = cardgen.load(CARDS / "GPT2.card").compile()
    cfg = gpt2.Config(V=13, D=8, H=2, D_f=16, N=2, ctx=9)
    params = gpt2.init_params(cfg, np.random.default_rng(0), np.float64)
    tokens = np.random.default_rng(1).integers(0, 13, size=(3, 9))
    out = []
    for text in (CE, derived_only(CE)):
        trainer = Trainer(gpt2, loads(text).compile(), None, cfg)
        out.append(trainer.loss_and_grads(params, tokens))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-14)
    for f in gpt2.Params.__dataclass_fields__:
        a, b = getattr(out[0][1], f), getattr(out[1][1], f)
        assert np.max(np.abs(a - b)) <= 1e-12 * max(np.max(np.abs(b)), 1e-300), f


CALLER = """algorithm Z ← QuantTanh(X | W, b)
  "A caller: the quantized linear layer, then tanh."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Z ∈ ℝ^{T×K}
  hyper  T, D, K ∈ ℕ
  param  W ∈ ℝ^{D×K}
  param  b ∈ ℝ^K
  1 Y ← QuantLinear(X | W, b)
  2 return Z = tanh(Y)
"""


def test_a_caller_s_backward_calls_the_callee_s_rule():
    mod = loads(CALLER).compile()
    cfg = mod.Config(T=3, D=4, K=5)
    rng = np.random.default_rng(0)
    params = mod.init_params(cfg, rng, np.float64)
    params = mod.Params(W=rng.standard_normal((4, 5)), b=rng.standard_normal(5))
    x = rng.standard_normal((2, 3, 4))
    z, cache = mod.forward(cfg, params, x)
    d_z = rng.standard_normal(z.shape)
    grads, d_in = mod.backward(cfg, params, cache, d_z)
    d_y = d_z * (1 - z ** 2)
    w_hat = 0.0625 * np.round(params.W / 0.0625)
    assert np.allclose(grads.W, np.einsum("btd,btk->dk", x, d_y), rtol=1e-12)  # straight through round
    assert np.allclose(d_in["X"], d_y @ w_hat.T, rtol=1e-12)
    assert np.allclose(grads.b, d_y.sum(axis=(0, 1)), rtol=1e-12)


# -------------------------------------------------------------- gradcheck
def checked_of(text: str, name: str):
    card = loads(text, name)
    return card.checked, card.library


def test_gradcheck_passes_a_correct_rule():
    res = gradcheck(*checked_of(CE, "ce.card"), {"T": 4, "V": 6})
    assert res.status() == "ok" and res.rules == ("cross_entropy",) and res.worst < 1e-8


def test_gradcheck_fails_a_wrong_rule_not_marked_straight_through():
    wrong = CE.replace("(d_L / T)", "d_L")  # forgets the mean's 1/T
    res = gradcheck(*checked_of(wrong, "ce.card"), {"T": 4, "V": 6})
    assert res.status() == "FAIL" and res.errors["P"] > 0.5 and not res.passed


def test_gradcheck_fails_a_caller_of_a_wrong_rule(tmp_path):
    (tmp_path / "cross_entropy.card").write_text(CE.replace("(d_L / T)", "d_L"), "utf-8")
    caller = """algorithm L ← scaled_loss(P, y | a)
  convention rows, 0-based
  input  P ∈ ℝ^{T×V}
  input  y ∈ {0..V−1}^T
  output L ∈ ℝ
  param  a ∈ ℝ^V
  1 return L = cross_entropy(P ⊙ a, y)
"""
    card = cardgen.loads(caller, path=[tmp_path, CARDS])
    res = card.gradcheck({"T": 4, "V": 6})
    assert res.status() == "FAIL" and res.rules == ("cross_entropy",)
    (tmp_path / "cross_entropy.card").write_text(CE, "utf-8")
    assert cardgen.loads(caller, path=[tmp_path, CARDS]).gradcheck({"T": 4, "V": 6}).status() == "ok"


def test_gradcheck_reports_a_straight_through_estimator():
    res = gradcheck(*checked_of(QUANT, "q.card"))
    assert res.straight_through == ("QuantLinear",)
    assert res.status("W") == "straight-through" and res.passed
    assert res.status("X") == "ok" and res.status("b") == "ok"
    caller = gradcheck(*checked_of(CALLER, "c.card"))
    assert caller.straight_through == ("QuantLinear",) and caller.status("W") == "straight-through"


def test_the_cli_reports_a_straight_through_estimator_and_fails_a_wrong_rule(tmp_path):
    r = CliRunner().invoke(main, ["gradcheck", str(CARDS / "QuantLinear.card")])
    assert r.exit_code == 0, r.output
    assert "QuantLinear              STE " in r.output
    assert "straight-through estimator of QuantLinear, not the true gradient by design (not failed)" in r.output
    bad = tmp_path / "cross_entropy.card"
    bad.write_text(CE.replace("(d_L / T)", "d_L"), "utf-8")
    r = CliRunner().invoke(main, ["gradcheck", str(bad)])
    assert r.exit_code == 1 and "cross_entropy            FAIL" in r.output


SHIFT = """algorithm y ← Shift(x | c)
  "Adds an offset; its rule hands the arriving gradient on as it is."
  convention rows, 0-based
  input  x ∈ ℝ^K
  output y ∈ ℝ^K
  hyper  K ∈ ℕ
  param  c ∈ ℝ^K
  1 return y = x + c
  backward
  2 d_x ← d_y
  3 d_c ← d_y
"""
TWICE = """algorithm y ← Twice(x)
  "Doubles a vector; its rule (not marked straight-through) forgets the factor 2."
  convention rows, 0-based
  input  x ∈ ℝ^K
  output y ∈ ℝ^K
  hyper  K ∈ ℕ
  1 return y = 2 · x
  backward
  2 d_x ← d_y
"""
# The quantized product, a bias added after it and an input on a path of its own, both through Twice.
BESIDE = """algorithm Z ← QBeside(X, u | W, b, c)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  u ∈ ℝ^K
  output Z ∈ ℝ^{T×K}
  hyper  T, D, K ∈ ℕ
  param  W ∈ ℝ^{D×K}
  param  b ∈ ℝ^K
  param  c ∈ ℝ^K
  1 Y ← QuantLinear(X | W, b)
  2 return Z = tanh(Y) + Twice(c) + Twice(u)
"""


def test_a_rule_whose_gradient_is_the_arriving_one_runs():
    """``d_x ← d_y``: the rule's gradient is the placeholder for the gradient that arrives (the
    generated backward named an undefined ``seed_y``, in the card and in a caller)."""
    lib = Library(cards={"Shift": parse(SHIFT, "Shift.card")})
    res = gradcheck(check_all(parse(SHIFT, "Shift.card"), lib), lib)
    assert res.status() == "ok" and res.rules == ("Shift",) and set(res.errors) == {"x", "c"}
    caller = parse(SHIFT.replace("Shift(x | c)", "Twin(x | c)").split("  1 return")[0]
                   + "  1 return y = Shift(x | c) ⊙ Shift(x | c)\n", "Twin.card")
    res = gradcheck(check_all(caller, lib), lib)
    assert res.status() == "ok" and res.rules == ("Shift",), res.errors


def beside(tmp_path, twice: str = TWICE):
    (tmp_path / "Twice.card").write_text(twice, "utf-8")
    (tmp_path / "QBeside.card").write_text(BESIDE, "utf-8")
    return cardgen.loads(BESIDE, path=[tmp_path, CARDS], name="QBeside.card")


def test_an_estimator_excuses_only_the_tensors_whose_gradient_flows_through_it(tmp_path):
    res = beside(tmp_path).gradcheck()
    assert res.straight_through == ("QuantLinear",) and res.rules == ("QuantLinear", "Twice")
    assert res.through == {"W": ("QuantLinear",), "b": ("QuantLinear",), "X": ("QuantLinear",)}
    assert res.status("W") == "straight-through"
    assert res.status("X") == "ok" and res.status("b") == "ok"
    # the bias after the product and the input beside it: Twice's wrong rule, not excused
    assert res.errors["c"] > 0.4 and res.status("c") == "FAIL"
    assert res.errors["u"] > 0.4 and res.status("u") == "FAIL"
    assert res.status() == "FAIL" and not res.passed
    right = beside(tmp_path, TWICE.replace("d_x ← d_y", "d_x ← 2 · d_y")).gradcheck()
    assert right.status("c") == right.status("u") == "ok"
    assert right.status() == "straight-through" and right.passed


def test_the_cli_fails_a_wrong_gradient_beside_an_estimator_and_names_it(tmp_path):
    beside(tmp_path)
    r = CliRunner().invoke(main, ["gradcheck", str(tmp_path / "QBeside.card")])
    assert r.exit_code == 1, r.output
    lines = {line.split()[0]: line for line in r.output.splitlines()}
    assert lines["QBeside"].startswith("QBeside                  FAIL  max relative error 1.0e+00")
    assert "straight-through estimator of QuantLinear, not the true gradient by design (not failed)" in lines["W"]
    for name in ("c", "u"):
        assert lines[name].endswith("> tolerance: FAIL, its gradient does not flow through the "
                                    "straight-through estimator of QuantLinear"), lines[name]
    assert "tolerance" not in lines["X"] and "tolerance" not in lines["b"]
    assert "1 card(s) exceed the tolerance" in r.output


def test_the_pytest_plugin_passes_the_estimator_and_fails_the_wrong_gradient_beside_it(tmp_path):
    """``pytest --cardgen``'s gradcheck item judges each tensor as ``cardgen gradcheck`` does."""
    import subprocess
    import sys
    models = tmp_path / "models"
    models.mkdir()
    (models / "QuantLinear.card").write_text(QUANT, "utf-8")
    beside(models)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cardgen", "models",
                        "-k", "gradcheck"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "2 failed, 1 passed" in r.stdout, r.stdout
    assert "FAILED models/QBeside.card::gradcheck" in r.stdout and "FAILED models/Twice.card::gradcheck" in r.stdout
    failures = r.stdout.split("short test summary info")[0]  # with CI set, pytest repeats each message there
    rows = [line for line in failures.splitlines() if "> tolerance: FAIL" in line]
    assert [row.split()[0] for row in rows] == ["c", "u"], r.stdout
    assert "Traceback" not in r.stdout


def test_the_estimator_s_reach_follows_the_dataflow_round_loops():
    """X reaches QuantLinear only as the value a loop carries; W and b per layer, sliced; c is
    added after the loop and g reaches the call only through a comparison (no gradient)."""
    from cardgen.compile.gradcheck import estimators_on_the_way
    from cardgen.compile.lower import lower
    text = STACK.replace("input  X ∈ ℝ^{T×D}\n", "input  X ∈ ℝ^{T×D}\n  input  g ∈ ℝ^{T×D}\n").replace(
        "  param  b_ℓ ∈ ℝ^D for ℓ ∈ [N]\n", "  param  b_ℓ ∈ ℝ^D for ℓ ∈ [N]\n  param  c ∈ ℝ^D\n").replace(
        "QuantLinear(Y | W_ℓ, b_ℓ)", "QuantLinear(Y ⊙ [[g > 0]] | W_ℓ, b_ℓ)").replace(
        "return Y\n", "return Y + c\n").replace("QStack(X | θ)", "QStack(X, g | θ)")
    checked, lib = checked_of(text, "s.card")
    assert checked.errors == []
    assert estimators_on_the_way(lower(checked, lib)) == {"W": ("QuantLinear",), "b": ("QuantLinear",),
                                                          "X": ("QuantLinear",)}
    plain = derived_only(QUANT).replace("QuantLinear", "Plain")  # no rule: nothing excused
    assert estimators_on_the_way(lower(*checked_of(plain, "p.card"))) == {}


# ----------------------------------------------------------- differential
def test_the_estimator_s_exact_gradients_agree_with_the_interpreter():
    """The interpreter has no backward: against its differences the rule's X and b gradients agree,
    W's (the estimator) does not, and the report says the card is a straight-through estimator."""
    checked, lib = checked_of(QUANT, "q.card")
    report = compare(checked, lib, seed=2, per_tensor=True)
    assert report.straight_through == ("QuantLinear",)
    assert report.grads["X"] <= GRAD_TOL and report.grads["b"] <= GRAD_TOL
    assert report.grads["W"] > GRAD_TOL
    assert report.problems() == []


def test_the_differential_check_excuses_only_the_estimator_s_tensors(tmp_path):
    card = beside(tmp_path)
    report = compare(card.checked, card.library, seed=2, per_tensor=True)
    assert report.excused == {"W", "b", "X"} and report.grads["W"] > GRAD_TOL
    assert [p.split(" differs")[0] for p in report.problems()] == ["QBeside: gradient of c", "QBeside: gradient of u"]


# ------------------------------------------------------ documentation forms
def test_markdown_and_latex_show_the_rule_numbered_on():
    card = loads(QUANT, "q.card")
    md = card.render("md")
    assert "**Backward:** straight-through — round has derivative zero" in md
    assert r"5 & d_{b} \leftarrow \sum_{t=0}^{T - 1} d_{Y}[t]" in md
    tex = card.render("tex")
    assert r"\Statex \textbf{Backward:} straight-through --- round" in tex
    assert tex.index("Backward:") < tex.index(r"\State $d_{X} \leftarrow")


def test_render_backward_names_the_rule():
    r = CliRunner().invoke(main, ["render", "--backward", str(CARDS / "cross_entropy.card")])
    assert r.exit_code == 0
    assert "/* Through cross_entropy: its own backward rule, not derived: */\n" \
           "   3 ∀t, v: d_P[t, v] ← (exp(z[t, v]) − [[v = y[t]]]) · (d_L / T)" in r.output
    assert "d_P ← " in r.output


STACK = """algorithm Y ← QStack(X | θ)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  hyper  T, D, N ∈ ℕ
  param  W_ℓ ∈ ℝ^{D×D} for ℓ ∈ [N]
  param  b_ℓ ∈ ℝ^D for ℓ ∈ [N]
  1 Y ← X
  2 for ℓ = 0, 1, …, N − 1 do
  3   Y ← tanh(QuantLinear(Y | W_ℓ, b_ℓ))
  4 end
  5 return Y
"""


def test_a_rule_inside_a_loop_over_layers_runs_once_per_layer():
    res = gradcheck(*checked_of(STACK, "s.card"))
    assert res.rules == ("QuantLinear",) and res.status("W") == "straight-through"
    assert res.errors["b"] < 1e-8 and res.errors["X"] < 1e-6


def test_a_rule_card_mapped_over_an_index_is_refused_at_the_call():
    vec = """algorithm y ← QVec(x | w)
  convention rows, 0-based
  input  x ∈ ℝ^{D}
  output y ∈ ℝ^{D}
  param  w ∈ ℝ^D
  1 return y = x ⊙ w
  backward
  2 d_x ← d_y ⊙ w
  3 d_w ← d_y ⊙ x
"""
    caller = """algorithm Y ← QMap(X | w)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  param  w ∈ ℝ^D
  1 return Y = QVec(X | w)
"""
    from cardgen.compile.verify import buildable
    lib = Library(cards={"QVec": parse(vec, "QVec.card")})
    checked = check_all(parse(caller, "QMap.card"), lib)
    assert checked.errors == []
    with pytest.raises(CardError) as err:
        buildable(checked, lib)
    e = err.value
    assert "QVec states its own backward rule, and this call maps it over an index" in e.message
    assert (e.pos.line, e.pos.col) == (6, 16) and "call the card on the whole array" in e.hint


def test_a_training_card_has_no_rule_of_its_own():
    text = (CARDS / "DTraining.card").read_text("utf-8") + "  backward\n  10 d_x ← 0\n"
    errs = errors_of(text)
    assert [e.message for e in errs] == ["DTraining trains (∇) or samples (∼): such a card has no backward of its own"]
    assert errs[0].pos.line == len(text.splitlines()) - 1


def test_a_caller_computing_what_the_callee_computed_keeps_its_own_gradient():
    """The caller's log softmax(P) is the callee's z, op for op: neither lowering's reuse nor CSE may
    merge them, since the rule stands for the callee's and the derived backward skips it."""
    caller = """algorithm L ← CEplus(P, y)
  convention rows, 0-based
  input  P ∈ ℝ^{T×V}
  input  y ∈ {0..V−1}^T
  output L ∈ ℝ
  1 a ← cross_entropy(P, y)
  2 return L = a + Σ_{t=0}^{T − 1} log softmax(P)[t, 0]
"""
    res = gradcheck(*checked_of(caller, "c.card"), {"T": 4, "V": 6})
    assert res.rules == ("cross_entropy",) and res.status() == "ok", res.errors
