"""The compiler against the reference interpreter (``cardgen.semantics``), card by card: every
model card in cards/ and in tests/differential_cases/, on random parameters and inputs, forward
outputs equal to 1e-12 (relative, float64) and the generated gradients equal to central
differences of the *interpreter* (tests/differential.py says how)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardgen.api import interpret
from cardgen.compile.gradcheck import load_module
from cardgen.compile.lower import wrapper_kind
from cardgen.lang.check import Library, check
from cardgen.lang.errors import CardError
from cardgen.lang.load import load
from cardgen.lang.parse import parse

from .conftest import CARDS, ROOT
from .differential import compare, relative
from .randomcards import DrawChooser, random_card

CASES = sorted((ROOT / "tests" / "differential_cases").glob("*.card"))
# A training card compiles to its loss, which the interpreter reaches at the card's first ∇; an
# inference card compiles to its model call and a sampler, and is compared through that model card.
MODEL_CARDS = [p for p in CARDS + CASES if wrapper_kind(parse(p.read_text("utf-8"), str(p))) != "inference"]
BUILT = [p for p in MODEL_CARDS if p.parent.name != "cards" or (ROOT / "generated" / f"{p.stem}.py").exists()]


def lib_for(path) -> Library:
    return Library(folders=[str(path.parent), str(ROOT / "cards")])


def test_no_card_is_left_out_unseen():
    """Every model and training card is built and compared (ETraining too, its masks drawn from the
    same seed on both sides), so a card that stops building cannot slip out of the comparison."""
    assert {p.stem for p in MODEL_CARDS} - {p.stem for p in BUILT} == set()
    assert len(BUILT) >= 30


@pytest.mark.parametrize("path", BUILT, ids=[p.stem for p in BUILT])
def test_generated_code_computes_what_the_interpreter_does(path):
    lib = lib_for(path)
    _, checked = load(str(path), lib)
    report = compare(checked, lib, seed=1)
    assert report.forward and report.grads
    assert report.problems() == []


INFERENCE_SIZES = dict(N_V=5, ell_max=40, H=2, d_e=8, d_mlp=12, L=1, L_enc=1, L_dec=1, ell_gen=6)


@pytest.mark.parametrize("name, given", [("DInference", {"x": np.array([3, 1, 4, 1, 5])}),
                                         ("EDInference", {"z": np.array([2, 5, 1, 4])})])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_inference_cards_sample_what_the_interpreter_samples(name, given, tau):
    """An inference card's generate() (its loop: a for loop of ℓ_gen tokens, or a while loop until
    eos_token) against the interpreter running the card's own loop, on one seed each: the same tokens."""
    path = ROOT / "cards" / f"{name}.card"
    lib = lib_for(path)
    _, checked = load(str(path), lib)
    mod = load_module(checked, lib)
    cfg = mod.Config(**{k: v for k, v in INFERENCE_SIZES.items() if k in mod.Config.__dataclass_fields__}, tau=tau)
    rng = np.random.default_rng(1)
    template = mod.init_params(cfg, rng, np.float64)
    params = mod.Params(**{k: v + 0.5 * rng.standard_normal(v.shape) for k, v in vars(template).items()})
    lengths = set()
    for seed in range(3):
        got = mod.generate(cfg, params, *given.values(), rng=np.random.default_rng(seed))
        ref = interpret(checked, given, params, cfg, lib=lib, rng=np.random.default_rng(seed))
        assert got.tolist() == np.asarray(ref[checked.card.outputs[0]]).tolist()
        lengths.add(len(got))
    assert name == "DInference" or len(lengths) > 1  # a while loop ends when the card says, not at a count


def test_the_interpreter_reads_the_card_not_the_compiler():
    """A number worked out by hand: LayerNorm of one row, then a causal head over two tokens."""
    lib = lib_for(ROOT / "cards" / "LayerNorm.card")
    e = np.array([1.0, 2.0, 3.0, 6.0])
    out = interpret("cards/LayerNorm.card", {"e": e}, {"γ": np.ones(4), "β": np.zeros(4)}, {}, lib=lib)
    m, v = 3.0, (4 + 1 + 0 + 9) / 4
    assert relative(out["ê"], (e - m) / np.sqrt(v + 1e-5)) < 1e-15
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    eye = np.eye(2)
    y = interpret("cards/Head.card", {"X": X}, {"W_k": eye, "W_q": eye, "W_v": eye}, {}, lib=lib)["Y"]
    # Row 0 sees only itself; row 1 weighs rows 0 and 1 by softmax([0, 4] / √2).
    w = np.exp(np.array([0.0, 4.0]) / np.sqrt(2))
    w /= w.sum()
    assert relative(y, np.array([[1.0, 0.0], [w[0], 2 * w[1]]])) < 1e-15


def test_constructs_the_compiler_refuses_still_have_a_meaning():
    """A join of two matrices and a family with two indices (build refuses both today)."""
    card = parse("""algorithm Y ← Halves(X)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  hyper  D, H ∈ ℕ
  1 ∀i, t: P^i_t ← X[t, i]²
  2 s ← Σ_{i=0}^{D − 1} (Σ_{t=0}^{T − 1} P^i_t)
  3 return Y = [X[:, D / H : D], X[:, 0 : D / H]] / s
""", "Halves.card")
    X = np.arange(12.0).reshape(3, 4)
    y = interpret(card, {"X": X}, {}, {"H": 2}, lib=Library())["Y"]
    assert relative(y, np.concatenate([X[:, 2:], X[:, :2]], axis=1) / np.sum(X * X)) < 1e-15


def test_cardgen_interpret_is_the_api_s_and_a_card_s():
    import cardgen
    assert cardgen.interpret is interpret
    card = cardgen.load("Head")  # a name on the search path
    mod = card.compile()
    rng = np.random.default_rng(0)
    cfg = mod.Config(D=4, d_h=2)
    params = mod.Params(**{n: rng.standard_normal((4, 2)) for n in ("W_k", "W_q", "W_v")})
    X = rng.standard_normal((3, 4))
    assert relative(mod.forward(cfg, params, X)[0], card.interpret({"X": X}, params, cfg)["Y"]) < 1e-12


def test_batches_run_example_by_example():
    lib = lib_for(ROOT / "cards" / "Head.card")
    rng = np.random.default_rng(0)
    p = {n: rng.standard_normal((4, 3)) for n in ("W_k", "W_q", "W_v")}
    X = rng.standard_normal((2, 5, 3, 4))
    whole = interpret("cards/Head.card", {"X": X}, p, {}, lib=lib)["Y"]
    assert whole.shape == (2, 5, 3, 3)
    one = interpret("cards/Head.card", {"X": X[1, 2]}, p, {}, lib=lib)["Y"]
    assert np.array_equal(whole[1, 2], one)


@pytest.mark.parametrize("out, step, message", [
    ("ℝ", "x[T]", "the index T = 3 is outside 0…2"),
    ("ℝ^{T+1}", "x[0 : T + 1]", "the slice 0 : T + 1 runs 0…3, outside 0…2"),
])
def test_an_index_out_of_range_is_an_error_at_its_place(out, step, message):
    card = parse(f"algorithm y ← Pick(x)\n  convention rows, 0-based\n  input x ∈ ℝ^T\n  output y ∈ {out}\n"
                 f"  1 return y = {step}\n", "Pick.card")
    with pytest.raises(CardError) as err:
        interpret(card, {"x": np.arange(3.0)}, {}, {}, lib=Library())
    assert message in str(err.value) and "Pick.card:5:" in str(err.value)


def test_shapes_that_do_not_fit_the_card_are_named():
    lib = lib_for(ROOT / "cards" / "Head.card")
    p = {n: np.zeros((4, 3)) for n in ("W_k", "W_q")} | {"W_v": np.zeros((5, 3))}
    with pytest.raises(CardError, match="W_v has length 5 but the card says D = 4"):
        interpret("cards/Head.card", {"X": np.zeros((3, 4))}, p, {}, lib=lib)


@st.composite
def cards(draw):
    return random_card(DrawChooser(draw, st), name="Random")


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cards())
def test_random_cards_compile_to_what_the_interpreter_computes(text):
    """Random well-formed cards (tests/randomcards.py: steps, head and layer loops, ∀ updates,
    masks, families, slices, sums, calls to corpus cards), the constructs with open bugs left
    out: each checks, builds, and agrees with the interpreter."""
    lib = Library(folders=[str(ROOT / "cards")])
    card = parse(text, "Random.card")
    lib.cards[card.name] = card
    checked = check(card, lib)
    report = compare(checked, lib, seed=0)
    assert report.problems() == [], text
