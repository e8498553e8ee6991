"""Built-in functions: every one the checker accepts compiles and differentiates,
each against PyTorch (float64, forward and gradient); the vectorized erf is
within 2 ulp of math.erf; masks take booleans or 0/1 integers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cardgen import parse
from cardgen.compile.ad import VJP
from cardgen.compile.gradcheck import load_module
from cardgen.compile.lower_expr import BINARY, REDUCE, UNARY
from cardgen.compile.npcode import PRINT
from cardgen.lang.check import Library, check
from cardgen.lang.check_call import BUILTINS

from .conftest import load_generated

torch = pytest.importorskip("torch")


def module_for(expr: str, out_set: str, convention: str = "rows, 0-based", x_set: str = "ℝ^{T×D}"):
    src = (f"algorithm y ← F(X, Z)\n  convention {convention}\n  input  X ∈ {x_set}\n  input  Z ∈ {x_set}\n"
           f"  output y ∈ {out_set}\n  1 return y = {expr}\n")
    card = parse(src)
    lib = Library(cards={"F": card})
    return load_module(check(card, lib), lib)


def run(mod, x, z, dy):
    cfg = mod.Config(**{f: s for f, s in zip(("T", "D"), x.shape, strict=False) if f in mod.Config.__annotations__})
    y, cache = mod.forward(cfg, mod.Params(), x, z)
    _, dx = mod.backward(cfg, mod.Params(), cache, dy)
    return y, dx


# card expression, output set, the same in torch (x, z: float64 tensors; rows are the last axis)
CASES = [
    ("erf(X)", "ℝ^{T×D}", lambda x, z: torch.erf(x)),
    ("abs(X)", "ℝ^{T×D}", lambda x, z: torch.abs(x)),
    ("GELU(X)", "ℝ^{T×D}", lambda x, z: torch.nn.functional.gelu(x)),
    ("sqrt(abs(X) + 1)", "ℝ^{T×D}", lambda x, z: torch.sqrt(torch.abs(x) + 1)),
    ("exp(X) + log(abs(X) + 1) + tanh(X)", "ℝ^{T×D}",
     lambda x, z: torch.exp(x) + torch.log(torch.abs(x) + 1) + torch.tanh(x)),
    ("sin(X) + cos(X) + σ(X) + SiLU(X) + ReLU(X)", "ℝ^{T×D}",
     lambda x, z: torch.sin(x) + torch.cos(x) + torch.sigmoid(x) + torch.nn.functional.silu(x) + torch.relu(x)),
    ("softmax(X)", "ℝ^{T×D}", lambda x, z: torch.softmax(x, -1)),
    ("max(X)", "ℝ^T", lambda x, z: torch.amax(x, -1)),
    ("min(X)", "ℝ^T", lambda x, z: torch.amin(x, -1)),
    ("mean(X)", "ℝ^T", lambda x, z: torch.mean(x, -1)),
    ("max(X, Z) + min(X, Z)", "ℝ^{T×D}", lambda x, z: torch.maximum(x, z) + torch.minimum(x, z)),
    ("(abs(X) + 1)^{Z[0, 0]}", "ℝ^{T×D}", lambda x, z: (torch.abs(x) + 1) ** z[0, 0]),
]


@pytest.mark.parametrize("expr, out_set, ref", CASES, ids=[c[0] for c in CASES])
def test_builtin_matches_torch_forward_and_gradient(expr, out_set, ref):
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((2, 5, 7))
    x[1, :3] = x[1, 3]  # ties for max and min: torch shares the gradient equally among them, as cardgen does
    mod = module_for(expr, out_set)
    ty = ref(torch.tensor(x, requires_grad=True), torch.tensor(z))
    dy = rng.standard_normal(ty.shape)
    y, dx = run(mod, x, z, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx, torch.tensor(z))
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx["X"], tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_reductions_follow_the_column_convention():
    """In the paper's convention a matrix is one column per token: max/min/mean per column."""
    rng = np.random.default_rng(1)
    x, z = rng.standard_normal((2, 4, 6))
    mod = module_for("max(X) + min(X) + mean(X)", "ℝ^D", "columns, 1-based", "ℝ^{T×D}")
    dy = rng.standard_normal(6)
    y, dx = run(mod, x, z, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.amax(tx, 0) + torch.amin(tx, 0) + torch.mean(tx, 0)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(dx["X"], tx.grad.numpy(), rtol=1e-12)


def test_every_builtin_has_a_lowering_a_printer_and_a_derivative():
    for name, rule in BUILTINS.items():
        if rule == "length":
            continue  # a natural number: nothing to differentiate
        prims = [p for p in (UNARY.get(name), REDUCE.get(name), BINARY.get(name)) if p]
        if rule == "softmax":
            prims = ["softmax"]
        assert prims, f"{name} has no lowering"
        for prim in prims:
            assert prim in PRINT, f"{name}: {prim} has no NumPy printer"
            assert prim in VJP, f"{name}: {prim} has no derivative rule"


def test_reduction_of_a_scalar_is_an_error():
    from cardgen import CardError
    src = "algorithm y ← F(x)\n  input  x ∈ ℝ\n  output y ∈ ℝ\n  1 return y = mean(x)\n"
    with pytest.raises(CardError, match="mean needs a vector or a matrix"):
        check(parse(src), Library())


# -------------------------------------------------------------------- erf
def erf_of_generated_code():
    return module_for("erf(X)", "ℝ^{T×D}")._erf


def million_points() -> np.ndarray:
    rng = np.random.default_rng(2026)
    return np.concatenate([
        rng.standard_normal(300_000), rng.uniform(-7, 7, 250_000),          # the bulk and both tails
        rng.uniform(-1e-3, 1e-3, 100_000), np.ldexp(1.0, rng.integers(-1074, -10, 50_000)),  # tiny, subnormal
        np.linspace(-6.5, 6.5, 175_000), rng.uniform(0.8, 0.9, 25_000),     # across the split at 0.85
        rng.uniform(5.8, 6.2, 25_000) * rng.choice([-1, 1], 25_000), rng.uniform(6, 1e300, 25_000),
        -np.ldexp(1.0, rng.integers(-1074, -10, 25_000)), rng.standard_normal(25_000) * 3,
    ])


def test_erf_is_within_two_ulp_of_math_erf_on_a_million_points():
    erf = erf_of_generated_code()
    x = million_points()
    assert x.size == 1_000_000
    ref = np.array([math.erf(v) for v in x.tolist()])
    got = erf(x)
    ulps = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert ulps.max() <= 2, (x[ulps.argmax()], got[ulps.argmax()], ref[ulps.argmax()])


def test_erf_special_values_and_float32():
    erf = erf_of_generated_code()
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6.0, -6.0, 0.85, -0.85])
    got = erf(special)
    assert np.signbit(got[1]) and got[0] == 0
    assert list(got[2:4]) == [1.0, -1.0] and np.isnan(got[4])
    assert got[5] == math.erf(6.0) and got[7] == pytest.approx(math.erf(0.85), rel=3e-16)
    x = np.linspace(-7, 7, 10_001, dtype=np.float32)
    y = erf(x)
    assert y.dtype == np.float32
    ref = np.array([math.erf(v) for v in x.astype(np.float64).tolist()], np.float32)
    assert np.max(np.abs(y - ref) / np.spacing(np.abs(ref))) <= 2


def test_exact_gelu_and_its_gradient_in_both_dtypes():
    """float64: x·Φ(x) from the 2-ulp erf; float32: Φ from one rational function, within 2.5·10⁻⁷
    (4 float32 steps of 1) of the true Φ.  The backward reads Φ(x) = y/x from the forward's y, and ½
    at (and near) x = 0."""
    mod = module_for("GELU(X)", "ℝ^{T×D}")
    x = np.concatenate([np.linspace(-9, 9, 20_001), [0.0, -0.0, 1e-30, -1e-30, 1e-20, -1e-20, 40.0]])
    x = x.astype(np.float32).astype(np.float64)  # points both dtypes hold exactly
    phi = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x.tolist()])
    dphi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    y64 = mod._gelu(x)
    assert np.max(np.abs(y64 - x * phi) / np.maximum(np.abs(x), 1.0)) <= 1e-15
    y32 = mod._gelu(x.astype(np.float32))
    assert y32.dtype == np.float32
    assert np.max(np.abs(y32 - x * phi) / np.maximum(np.abs(x), 1.0)) <= 2.5e-7
    for dtype, tol in ((np.float64, 1e-14), (np.float32, 5e-7)):
        xs = x.astype(dtype)
        g = np.full_like(xs, 2.0)
        got = mod._gelu_grad(g, xs, mod._gelu(xs))
        assert got.dtype == dtype and np.all(np.isfinite(got))
        assert np.max(np.abs(got - 2.0 * (phi + x * dphi)) / np.maximum(np.abs(x), 1.0)) <= tol, dtype
    tiny = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300])  # x Φ(x) underflows or loses digits: Φ = ½
    assert np.array_equal(mod._gelu_grad(np.ones(5), tiny, mod._gelu(tiny)), np.full(5, 0.5))


# ------------------------------------------------------------------- masks
def test_masks_take_booleans_or_zero_one_integers():
    mod = load_generated("MHAttention")
    rng = np.random.default_rng(3)
    d_x, ell, H = 8, 5, 2
    cfg = mod.Config(**{f: v for f, v in dict(d_x=d_x, d_z=d_x, d_attn=4, d_mid=4, d_out=d_x, H=H).items()
                        if f in mod.Config.__annotations__})
    params = mod.init_params(cfg, rng, np.float64)
    x = rng.standard_normal((d_x, ell))
    causal = np.tril(np.ones((ell, ell), dtype=bool)).T
    y_bool, _ = mod.forward(cfg, params, x, x, causal)
    y_int, _ = mod.forward(cfg, params, x, x, causal.astype(np.int64))
    np.testing.assert_array_equal(y_bool, y_int)
    y_float, _ = mod.forward(cfg, params, x, x, causal.astype(np.float64))
    np.testing.assert_array_equal(y_bool, y_float)
    with pytest.raises(ValueError, match="must be true/false values"):
        mod.forward(cfg, params, x, x, causal * 2)


def test_erf_constants_are_the_ones_the_fit_script_makes():
    """scripts/erf_fit.py reproduces the constants the generated modules carry."""
    pytest.importorskip("mpmath")
    import importlib.util

    from .conftest import ROOT
    spec = importlib.util.spec_from_file_location("erf_fit", ROOT / "scripts" / "erf_fit.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    mod = module_for("erf(X)", "ℝ^{T×D}")
    assert mod._ERF_SPLIT == fit.SPLIT
    assert mod._ERF_SMALL == tuple(float(c) for c in fit.small_coefficients())
    large, mid, half = fit.large_coefficients()
    assert mod._ERF_LARGE == tuple(float(c) for c in large)
    assert (mod._ERF_MID, mod._ERF_HALF) == (float(mid), float(half))


def test_readme_lists_the_primitives_table():
    from cardgen.docs.primitives import primitives_table

    from .conftest import ROOT
    readme = (ROOT / "README.md").read_text("utf-8")
    marker = "<!-- primitives: `cardgen primitives` -->\n"
    start = readme.index(marker) + len(marker)
    assert readme[start:readme.index("<!-- /primitives -->")] == primitives_table(), \
        "README's table of primitives is stale: paste `cardgen primitives` between the markers"


def test_primitives_command_prints_the_table():
    from click.testing import CliRunner

    from cardgen.cli import main
    r = CliRunner().invoke(main, ["primitives"])
    assert r.exit_code == 0, r.output
    assert "| `erf(a)` | `erf(a)` | element-wise: the argument's shape | yes |" in r.output
    assert "| `σ(a)` | `sigmoid(a)` |" in r.output
    assert "| `length(a)` | `length(a)` | a sequence to ℕ, its length | — (a natural number) |" in r.output
