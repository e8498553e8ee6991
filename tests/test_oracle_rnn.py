"""The recurrence cards (cards/RNN.card, LSTM.card, GRU.card) against PyTorch's own layers,
torch.nn.RNN, torch.nn.LSTM and torch.nn.GRU: the same weights (the cards keep torch's layout,
gates stacked in torch's order, so each tensor is copied as it is), float64, random data over
several sequences; the outputs and the gradient of every parameter and every input within
max|Δ| / max|reference| ≤ 1e-9, tensor by tensor.

The cards take the paper's convention (one column per time step, 1-based); torch takes
(batch, time, features) with ``batch_first``: the sequences are swapped into columns on the way in
and out. Every size differs from every other (d_x, d_h, ℓ, batch), so a transposed or swapped axis
cannot go unnoticed, and the weights are drawn at a scale that keeps the gates away from saturation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import load_generated

D_X, D_H, ELL, B = 5, 4, 7, 3
TOL = 1e-9

# Card name -> (torch layer, gate blocks stacked in the weights, the card's extra state inputs).
LAYERS = {"RNN": (torch.nn.RNN, 1, ()), "LSTM": (torch.nn.LSTM, 4, ("c_0",)), "GRU": (torch.nn.GRU, 3, ())}
# Card parameter -> torch parameter: the same tensor, copied as it is.
TENSORS = {"W_x": "weight_ih_l0", "b_x": "bias_ih_l0", "W_h": "weight_hh_l0", "b_h": "bias_hh_l0"}


def rel(a, b) -> float:
    b = np.asarray(b)
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


def columns(a):
    """(…, ℓ, d) ↔ (…, d, ℓ): torch's batch_first rows and the card's columns."""
    return np.swapaxes(a, -1, -2)


DTYPES = [pytest.param(np.float64, torch.float64, 1e-12, TOL, id="float64"),
          pytest.param(np.float32, torch.float32, 1e-5, 1e-5, id="float32")]


@pytest.mark.parametrize("np_dtype, torch_dtype, out_tol, grad_tol", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_recurrence_card_matches_torch(name, np_dtype, torch_dtype, out_tol, grad_tol):
    """float64 to 1e-9 as the issue asks; float32 (the modules' default dtype) to 1e-5 against torch in float32."""
    module = load_generated(name)
    layer_type, gates, extra_states = LAYERS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    shapes = {"W_x": (gates * D_H, D_X), "b_x": (gates * D_H,), "W_h": (gates * D_H, D_H), "b_h": (gates * D_H,)}
    params = module.Params(**{k: (0.5 * rng.standard_normal(s)).astype(np_dtype) for k, s in shapes.items()})
    X = rng.standard_normal((B, ELL, D_X)).astype(np_dtype)
    states = {s: rng.standard_normal((B, D_H)).astype(np_dtype) for s in ("h_0", *extra_states)}
    cfg = module.Config(d_x=D_X, d_h=D_H)

    Y, cache = module.forward(cfg, params, columns(X), *states.values())
    dY = rng.standard_normal((B, ELL, D_H)).astype(np_dtype)
    grads, input_grads = module.backward(cfg, params, cache, columns(dY))
    assert Y.dtype == np_dtype and grads.W_h.dtype == np_dtype and input_grads["X"].dtype == np_dtype

    layer = layer_type(D_X, D_H, batch_first=True, dtype=torch_dtype)
    with torch.no_grad():
        for card, hf in TENSORS.items():
            getattr(layer, hf).copy_(torch.from_numpy(getattr(params, card)))
    Xt = torch.tensor(X, requires_grad=True)
    st = {s: torch.tensor(v[None], requires_grad=True) for s, v in states.items()}
    Yt, _ = layer(Xt, tuple(st.values()) if extra_states else st["h_0"])
    (Yt * torch.from_numpy(dY)).sum().backward()

    assert Y.shape == (B, D_H, ELL)
    assert rel(columns(Y), Yt.detach()) <= out_tol
    for card, hf in TENSORS.items():
        assert rel(getattr(grads, card), getattr(layer, hf).grad) <= grad_tol, card
    assert rel(columns(input_grads["X"]), Xt.grad) <= grad_tol
    for s, t in st.items():
        assert rel(input_grads[s], t.grad[0]) <= grad_tol, s


def test_the_last_column_is_torch_final_state():
    """The card returns every step; torch also returns the final state h_n: the last column."""
    module = load_generated("LSTM")
    rng = np.random.default_rng(0)
    cfg = module.Config(d_x=D_X, d_h=D_H)
    params = module.init_params(cfg, rng, np.float64)
    X, h0, c0 = rng.standard_normal((ELL, D_X)), rng.standard_normal(D_H), rng.standard_normal(D_H)
    Y, _ = module.forward(cfg, params, X.T, h0, c0)
    layer = torch.nn.LSTM(D_X, D_H, dtype=torch.float64)
    with torch.no_grad():
        for card, hf in TENSORS.items():
            getattr(layer, hf).copy_(torch.from_numpy(getattr(params, card)))
    _, (h_n, _c_n) = layer(torch.from_numpy(X), (torch.from_numpy(h0[None]), torch.from_numpy(c0[None])))
    assert rel(Y[:, -1], h_n[0].detach()) <= 1e-12


def test_the_derived_backward_runs_through_time_in_reverse():
    """`render --backward` of a recurrence: a loop over time steps, not over layers."""
    from click.testing import CliRunner

    from cardgen.cli import main
    r = CliRunner().invoke(main, ["render", "--backward", "cards/LSTM.card"])
    assert r.exit_code == 0, r.output
    assert "for t = ℓ, …, 1 do  ▷ in reverse, reading what iteration t saved" in r.output
    assert "layer" not in r.output
