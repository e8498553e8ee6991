"""Loops that carry a value from layer to layer, differentiated: a value carried in that the body
also reads (``y ← x`` then ``y ← f(y) + x``), and one read again after the loop.  Found while
bounding the nesting depth (issue 11; the differential fuzzer found them too): the gradient of
such a value dropped one of its paths (relative error 0.5–0.8)."""

import numpy as np
import pytest

from cardgen import parse
from cardgen.compile.gradcheck import TOL, gradcheck, load_module
from cardgen.lang.check import Library, check

HEAD = "algorithm y ← a(x | W)\n  input  x ∈ ℝ^{D}\n  output y ∈ ℝ^{D}\n  hyper  D, K ∈ ℕ\n  param  W ∈ ℝ^{D×D}\n"
CARDS = {
    "carried in and read in the body": """  1 y ← x
  2 for i = 1, …, K do
  3   y ← tanh(W y) + x
  4 end
  5 return y
""",
    "read again after the loop": """  1 h ← W x
  2 for i = 1, …, K do
  3   h ← tanh(W h) ⊙ x
  4 end
  5 return y = h + x ⊙ (W x)
""",
}


def compiled(steps: str):
    card = parse(HEAD + steps, "a.card")
    lib = Library(cards={card.name: card})
    return check(card, lib), lib


@pytest.mark.parametrize("steps", CARDS.values(), ids=list(CARDS))
def test_gradients_through_carried_values(steps):
    checked, lib = compiled(steps)
    assert gradcheck(checked, lib).worst <= TOL


def test_a_value_carried_in_and_added_each_layer_counts_every_path():
    """y = x + K·x after the loop: dy/dx = K + 1 (it was K)."""
    checked, lib = compiled("  1 y ← x\n  2 for i = 1, …, K do\n  3   y ← y + x\n  4 end\n  5 return y\n")
    mod = load_module(checked, lib)
    for k in (1, 2, 5):
        cfg = mod.Config(D=3, K=k)
        p = mod.Params(W=np.zeros((3, 3)))
        y, cache = mod.forward(cfg, p, np.arange(3.0))
        _, d = mod.backward(cfg, p, cache, np.ones(3))
        np.testing.assert_array_equal(y, (k + 1) * np.arange(3.0))
        np.testing.assert_array_equal(d["x"], np.full(3, k + 1.0))
