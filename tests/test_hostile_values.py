"""Bounded work and checked values: deep nesting builds fast or is refused at a documented depth,
--set and flag values are checked in the card's terms, generated modules refuse parameters of a
dtype they cannot compute in."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from cardgen import parse
from cardgen.cli import main
from cardgen.compile.emit import module_source
from cardgen.compile.gradcheck import load_module
from cardgen.lang.check import Library, check


def nested_loops_card(depth: int) -> str:
    lines = ["algorithm y ← deep(x)", "  input  x ∈ ℝ^{D}", "  output y ∈ ℝ^{D}", "  hyper  D, K ∈ ℕ", "  1 y ← x"]
    for i in range(depth):
        lines.append("  " * (i + 1) + f"{i + 2} for i{i} = 1, …, K do")
    lines.append("  " * (depth + 1) + f"{depth + 2} y ← y + x")
    lines += ["  " * (i + 1) + f"{2 * depth + 2 - i} end" for i in reversed(range(depth))]
    return "\n".join(lines + [f"  {2 * depth + 3} return y"]) + "\n"


def test_the_issues_thirty_nested_loops_are_refused_fast_and_many_loops_build_fast(tmp_path):
    """The issue's card (30 nested loops) took time that doubled with each level, in the gradient
    analysis (two visits of each loop body per level). Loops that carry a value nest no deeper than
    one now (issue 10), so it is refused at the second loop; the analysis is a fixed point of
    passes, so 30 such loops one after another build fast too."""
    import time
    (tmp_path / "deep30.card").write_text(nested_loops_card(30), "utf-8")
    for cmd in ("check", "build"):
        start = time.perf_counter()
        out = ["-o", str(tmp_path / "out")] if cmd == "build" else []
        r = CliRunner().invoke(main, [cmd, str(tmp_path / "deep30.card"), *out])
        assert time.perf_counter() - start < 5.0
        assert r.exit_code == 1 and "deep30.card:7:" in r.output and "not nested in one" in r.output, r.output
    assert not (tmp_path / "out").exists()
    steps = "".join(f"  {2 * i + 2} for i{i} = 1, …, K do\n  {2 * i + 3}   y ← y + x\n  end\n" for i in range(30))
    text = ("algorithm y ← many(x)\n  input  x ∈ ℝ^{D}\n  output y ∈ ℝ^{D}\n  hyper  D, K ∈ ℕ\n  1 y ← x\n"
            + steps + "  99 return y\n")
    start = time.process_time()
    card = parse(text, "many.card")
    lib = Library(cards={"many": card})
    checked = check(card, lib)
    compile(module_source(checked, lib, "many.card"), "many.py", "exec")
    assert time.process_time() - start < 5.0
    mod = load_module(checked, lib)
    x = np.arange(3.0)
    y, cache = mod.forward(mod.Config(D=3, K=2), mod.Params(), x)
    np.testing.assert_array_equal(y, 61 * x)
    _, d_in = mod.backward(mod.Config(D=3, K=2), mod.Params(), cache, np.ones(3))
    np.testing.assert_array_equal(d_in["x"], np.full(3, 61.0))


# ------------------------------------------------------- values of the command line
@pytest.mark.parametrize("args, where, says", [
    (["--set", "D=-5"], "GPT2.card:8:3", "D = -5, but D is a size: it must be at least 1"),
    (["--set", "D=0"], "GPT2.card:8:3", "D = 0, but D is a size"),
    (["--set", "D=1.5"], "GPT2.card:8:3", "the card says D is a natural number"),
    (["--set", "D=768", "--set", "H=5"], "CausalSelfAttention.card:14:", "D/H = 153.6 (with D = 768, H = 5)"),
    (["--set", "H=0", "--set", "D=8"], "GPT2.card:9:3", "H = 0, but H is a size"),
    (["--set", "Dd=3"], "cardgen: error", "GPT2 has no hyperparameter or size named Dd"),
    (["--set", "V=nan"], "cardgen: error", "'nan' is not a finite number"),
    (["--set", "D=1e400"], "cardgen: error", "'1e400' is not a finite number"),
    (["--memory", "--set", "B=-1"], "cardgen: error", "the batch size must be a whole number of at least 1"),
    (["--memory", "--set", "T=-3"], "cardgen: error", "T = -3, but T is a size"),
    (["--memory", "--set", "dtype=int8"], "cardgen: error", "'int8' is not a float type"),
])
def test_set_values_are_checked_in_the_cards_terms(args, where, says):
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", *args])
    assert r.exit_code == 1 and where in r.output and says in r.output, r.output
    assert "internal error" not in r.output and "Traceback" not in r.output


def test_hints_name_the_fix():
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--set", "D=768", "--set", "H=5"])
    assert "hint: H must divide D" in r.output
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--set", "DD=3"])
    assert "did you mean D?" in r.output


def test_gradcheck_takes_the_same_checks():
    r = CliRunner().invoke(main, ["gradcheck", "cards/GPT2.card", "--set", "D=5", "--set", "H=2"])
    assert r.exit_code == 1 and "H must divide D" in r.output, r.output


def test_generated_modules_refuse_float16_complex_and_mixed_parameters():
    from .conftest import load_generated
    g = load_generated("GPT2")
    cfg = g.Config(V=11, D=8, H=2, D_f=16, N=2, ctx=8)
    x = np.arange(5) % 11
    for field, dtype, says in [
            ("W_e", np.float16, "params.W_e is float16: generated modules compute in float32 or float64"),
            ("W_e", np.complex64, "params.W_e is complex64"),
            ("W_p", np.float64, "params.W_p is float64 but params.W_e is float32: the parameters share one dtype")]:
        p = g.init_params(cfg, np.random.default_rng(0), np.float32)
        setattr(p, field, getattr(p, field).astype(dtype))
        with pytest.raises(ValueError, match=re.escape(says)):
            g.forward(cfg, p, x, 0)


def test_flag_values_are_user_errors_not_bugs(tmp_path):
    r = CliRunner().invoke(main, ["gradcheck", "cards/Bigram.card", "--seed", "-1"])
    assert r.exit_code != 0 and "-1 is not in the range" in r.output and "internal error" not in r.output
    for cmd in ("build", "docs"):
        r = CliRunner().invoke(main, [cmd, "cards/Bigram.card", "-o", " "])
        assert r.exit_code == 1 and "the output folder's name is empty" in r.output, r.output
    r = CliRunner().invoke(main, ["gradcheck", "cards/GPT2.card", "--set", "D=10000000", "--set", "V=10000000"])
    assert r.exit_code == 1 and "out of memory" in r.output and "bug" not in r.output, r.output
