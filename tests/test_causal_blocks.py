"""Causal attention in row blocks (compile/causal.py): the numpy target computes a causally masked
score matrix's products and softmax passes over the key blocks each row block sees. Held against the
array-API module of the same card, which computes the whole T×T square, at lengths that make one
block, several, and a short last one; and the plan must leave alone what it cannot prove."""

from __future__ import annotations

import numpy as np
import pytest

import cardgen
from cardgen.compile import causal
from cardgen.compile.core import Op

CARDS = ["CausalSelfAttention", "Head", "LLaMAAttention"]


def _inputs(mod, cfg, rng, batch, t):
    """X (B, T, D); LLaMA's rotary cos and sin (T, D/H), the same for every example."""
    angles = rng.uniform(0, 2 * np.pi, (t, 1)) * np.ones((1, cfg.D // getattr(cfg, "H", 1)))
    given = {"X": rng.standard_normal((batch, t, cfg.D)), "C": np.cos(angles), "S": np.sin(angles)}
    return [given[name] for name in mod.INPUT_RANKS]


def _config(mod):
    fields = set(mod.Config.__dataclass_fields__)
    sizes = {"D": 16, "H": 4, "H_kv": 2, "d_h": 8}
    return mod.Config(**{k: v for k, v in sizes.items() if k in fields})


@pytest.mark.parametrize("t", [1, 64, 255, 256, 257, 300, 520])
@pytest.mark.parametrize("name", CARDS)
def test_blocked_module_equals_the_whole_square(name, t):
    card = cardgen.load(f"cards/{name}.card")
    blocked, whole = card.compile(), card.compile(target="array-api")
    assert "_causal_lower(" in card.module_text(), f"{name}: the causal plan found nothing"
    cfg = _config(blocked)
    rng = np.random.default_rng(t)
    params = blocked.init_params(cfg, rng, np.float64)
    xs = _inputs(blocked, cfg, rng, 2, t)
    workspace = {}
    for _ in range(2):  # a workspace's second call reuses arrays that hold the first call's numbers
        y, cache = blocked.forward(cfg, params, *xs, workspace=workspace)
        y_ref, cache_ref = whole.forward(cfg, whole.Params(**vars(params)), *xs)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        g_y = rng.standard_normal(y.shape)
        grads, d_in = blocked.backward(cfg, params, cache, g_y, workspace=workspace)
        grads_ref, d_in_ref = whole.backward(cfg, whole.Params(**vars(params)), cache_ref, g_y)
        for k in vars(grads):
            np.testing.assert_allclose(getattr(grads, k), getattr(grads_ref, k), rtol=1e-10, atol=1e-12, err_msg=k)
        for k in d_in:
            np.testing.assert_allclose(d_in[k], d_in_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_gpt2_is_planned_in_every_product_of_its_attention():
    text = cardgen.load("cards/GPT2.card").module_text()
    calls = {h: text.count(f"= _causal_{h}(") for h in ("lower", "left_lower", "left_upper", "softmax",
                                                        "softmax_grad")}
    # forward: Q K^T, softmax, P V; backward: P^T d_Y, d_Y V^T, softmax grad, d_S K, d_S^T Q
    assert calls == {"lower": 2, "left_lower": 2, "left_upper": 2, "softmax": 1, "softmax_grad": 1}


def _mask_ops(where_args=("M", "-np.inf", "S"), cmp="gt"):
    from cardgen.lang.shapes import Poly
    t = Poly.sym("T")
    return [
        Op("u", "iota", (), (Poly.const(0),), (t,), False),
        Op("t", "expand", ("u",), ((-1,),), (t, Poly.const(1)), False),
        Op("M", cmp, ("u", "t"), (), (t, t), False, "bool"),
        Op("S", "matmul", ("Q", "Kt"), ("mm",), (t, t)),
        Op("W", "where", where_args, (), (t, t)),
        Op("P", "softmax", ("W",), (-1,), (t, t)),
        Op("Y", "matmul", ("P", "V"), ("mm",), (t, Poly.sym("d"))),
    ]


def test_the_plan_finds_the_causal_pattern():
    ops = _mask_ops()
    kinds = {op.out: causal.plan(ops, [], set()).get(id(op)) for op in ops}
    assert kinds == {"u": None, "t": None, "M": None, "S": "lower", "W": None, "P": "softmax", "Y": "left_lower"}


@pytest.mark.parametrize("change", ["lt", "mask below", "scores saved", "scores read twice", "not -inf"])
def test_the_plan_leaves_alone_what_it_cannot_prove(change):
    ops = _mask_ops(where_args=("M", "0.0", "S") if change == "not -inf" else ("M", "-np.inf", "S"),
                    cmp="lt" if change == "lt" else "gt")
    if change == "mask below":  # M[t, u] = t > u: the lower triangle is masked, not the upper
        ops[2] = Op("M", "gt", ("t", "u"), (), ops[2].shape, False, "bool")
    escaping = {"S"} if change == "scores saved" else set()
    if change == "scores read twice":
        ops.append(Op("S2", "exp", ("S",), (), ops[3].shape))
    plan = causal.plan(ops, [], escaping)
    if change in ("scores saved", "scores read twice"):  # the softmax is still triangular; its input whole
        assert id(ops[3]) not in plan and plan.get(id(ops[5])) == "softmax"
    else:
        assert plan == {}
