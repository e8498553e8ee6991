"""Miscompiles found by cards written from the README alone (issue 10), each with
its card verbatim and an oracle nobody here wrote: PyTorch in float64.

- a ∀ update of a family member inside a head loop (S_h[t, u] ← …) was dropped;
- a recurrence (a loop over time carrying h and writing Y[t] ← h) read X[t] before
  the loop defined t, dropped the write, returned the last h and had a zero backward.
"""

from __future__ import annotations

import numpy as np
import pytest

from cardgen.compile.gradcheck import TOL, gradcheck, load_module
from cardgen.lang.check import Library
from cardgen.lang.load import load

from .conftest import ROOT

torch = pytest.importorskip("torch")

FAMILY_UPDATE = """\
algorithm Y ← FamilyUpdate(X | θ)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  hyper  D ∈ ℕ
  hyper  H ∈ ℕ
  param  W ∈ ℝ^{D×D}
  1 for h ∈ [H] do
  2   X_h ← X[:, h · D / H : (h + 1) · D / H]
  3   S_h ← X_h X_h^⊤
  4   ∀t, u: S_h[t, u] ← S_h[t, u] − (t − u)
  5   Y_h ← softmax(S_h) X_h
  6 end
  7 return Y = [Y_0, Y_1, …, Y_{H−1}] W
"""

ELMAN = """\
algorithm Y ← Elman(X, h_0 | θ)
  "An Elman RNN: rows, 0-based."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  h_0 ∈ ℝ^{M}
  output Y ∈ ℝ^{T×M}
  hyper  D, M ∈ ℕ
  param  W_x ∈ ℝ^{D×M}
  param  W_h ∈ ℝ^{M×M}
  param  b ∈ ℝ^{M}
  1 h ← h_0
  2 for t ∈ [T] do
  3   h ← tanh(X[t] W_x + h W_h + b)
  4   Y[t] ← h
  5 end
  6 return Y
"""

# A family member per step (y_t), joined after the loop.
ELMAN_FAMILY = """\
algorithm Y ← ElmanFamily(X, h_0 | W_x, W_h, b)
  "An Elman RNN: a family y_t."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  h_0 ∈ ℝ^{M}
  output Y ∈ ℝ^{T×M}
  hyper  D, M ∈ ℕ
  param  W_x ∈ ℝ^{D×M}
  param  W_h ∈ ℝ^{M×M}
  param  b ∈ ℝ^{M}
  1 h ← h_0
  2 for t ∈ [T] do
  3   h ← tanh(X[t] W_x + h W_h + b)
  4   y_t ← h
  5 end
  6 return Y = [y_0, y_1, …, y_{T−1}]^⊤
"""

B, T, D, M, H = 3, 7, 6, 4, 2


def compiled(tmp_path, text: str):
    name = text.split("←", 1)[1].split("(", 1)[0].strip()
    path = tmp_path / f"{name}.card"
    path.write_text(text, "utf-8")
    lib = Library(folders=[str(tmp_path), str(ROOT / "cards")])
    _card, checked = load(str(path), lib)
    return checked, lib, load_module(checked, lib)


def rel(a, b) -> float:
    b = np.asarray(b)
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


def t64(a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def test_family_update_in_a_head_loop_is_honoured(tmp_path):
    checked, lib, mod = compiled(tmp_path, FAMILY_UPDATE)
    rng = np.random.default_rng(1)
    cfg = mod.Config(D=D, H=H)
    params = mod.Params(W=rng.standard_normal((D, D)))
    X = rng.standard_normal((B, T, D))
    Y, cache = mod.forward(cfg, params, X)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = mod.backward(cfg, params, cache, dY)

    Xt, Wt = t64(X), t64(params.W)
    Xh = Xt.reshape(B, T, H, D // H).transpose(1, 2)
    pos = torch.arange(T, dtype=torch.float64)
    S = Xh @ Xh.transpose(-1, -2) - (pos[:, None] - pos[None, :])  # step 4, applied
    Yt = (torch.softmax(S, -1) @ Xh).transpose(1, 2).reshape(B, T, D) @ Wt
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(grads.W, Wt.grad) <= 1e-9
    assert rel(input_grads["X"], Xt.grad) <= 1e-9
    assert gradcheck(checked, lib).worst <= TOL


def torch_rnn(params):
    rnn = torch.nn.RNN(D, M, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(params.W_x.T))
        rnn.weight_hh_l0.copy_(torch.tensor(params.W_h.T))
        rnn.bias_ih_l0.copy_(torch.tensor(params.b))
        rnn.bias_hh_l0.zero_()
    return rnn


@pytest.mark.parametrize("text", [ELMAN, ELMAN_FAMILY], ids=["rows", "family"])
def test_elman_rnn_matches_torch_rnn(tmp_path, text):
    """Forward over time, backward through time, in rows (the corpus's cards/RNN.card is the
    paper's columns, tests/test_oracle_rnn.py): outputs and every gradient against torch.nn.RNN."""
    checked, lib, mod = compiled(tmp_path, text)
    rng = np.random.default_rng(2)
    cfg = mod.Config(D=D, M=M)
    shapes = {"W_x": (D, M), "W_h": (M, M), "b": (M,)}
    params = mod.Params(**{k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()})
    X = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((B, M))
    Y, cache = mod.forward(cfg, params, X, h0)
    dY = rng.standard_normal((B, T, M))
    grads, input_grads = mod.backward(cfg, params, cache, dY)

    rnn = torch_rnn(params)
    Xt, h0t = t64(X), t64(h0[None])
    Yt, _ = rnn(Xt, h0t)
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(grads.W_x, rnn.weight_ih_l0.grad.numpy().T) <= 1e-9
    assert rel(grads.W_h, rnn.weight_hh_l0.grad.numpy().T) <= 1e-9
    assert rel(grads.b, rnn.bias_ih_l0.grad) <= 1e-9
    assert rel(input_grads["X"], Xt.grad) <= 1e-9
    assert rel(input_grads["h_0"], h0t.grad[0]) <= 1e-9
    assert gradcheck(checked, lib).worst <= TOL


def test_recurrence_forward_is_a_python_loop_over_time(tmp_path):
    """The generated code reads as the card does: a loop over t, row t of Y; the input projection
    X[t] W_x, which reads nothing the loop carries, is one product X W_x before the loop (row t of
    it read in the loop), and its gradients d_X and d_W_x one product each after the backward loop."""
    from cardgen.compile.emit import module_source
    checked, lib, _mod = compiled(tmp_path, ELMAN)
    src = module_source(checked, lib, "Elman.card")
    forward = src.split("def forward", 1)[1].split("def backward", 1)[0]
    backward = src.split("def backward", 1)[1].split("\ndef ", 1)[0]
    before, loop = forward.split("for t in range(T):", 1)

    def code(text):  # without the card-step comments, which quote the card
        return "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    assert "X_W_x = np.matmul(X, W_x" in before and "X_W_x[..., t, :]" in loop
    assert "W_x" not in code(loop).replace("X_W_x", "")
    assert "Y[..., t, :] = h" in loop and "h @ W_h" in loop  # the carried state's product stays a step's
    assert "return Y, cache" in forward
    steps, after = backward.split("for t in reversed(range(T)):", 1)[1].split("\n    d_W_x", 1)
    assert "d_Y[..., t, :]" in steps and "d_X_W_x[..., t, :] +=" in steps
    assert "W_x" not in code(steps).replace("X_W_x", "")
    assert "np.matmul(d_X_W_x" in after and "_wgrad(X, d_X_W_x" in backward


def test_float32_recurrence_stays_float32(tmp_path):
    _checked, _lib, mod = compiled(tmp_path, ELMAN)
    rng = np.random.default_rng(4)
    cfg = mod.Config(D=D, M=M)
    params = mod.init_params(cfg, rng, np.float32)
    X, h0 = rng.standard_normal((B, T, D)).astype(np.float32), np.zeros((B, M), np.float32)
    Y, cache = mod.forward(cfg, params, X, h0)
    grads, input_grads = mod.backward(cfg, params, cache, np.ones_like(Y))
    assert Y.dtype == np.float32 and grads.W_h.dtype == np.float32 and input_grads["X"].dtype == np.float32


# A learned initial state (a parameter, no batch axes) and an output projection, 1-based columns.
LEARNED_START = """\
algorithm Y ← LearnedStart(X | θ)
  "An RNN with a learned initial state and an output projection."
  input  X ∈ ℝ^{D×T}
  output Y ∈ ℝ^{K×T}
  hyper  D, M, K ∈ ℕ
  param  h_0 ∈ ℝ^{M}
  param  W_x ∈ ℝ^{M×D}
  param  W_h ∈ ℝ^{M×M}
  param  W_o ∈ ℝ^{K×M}
  1 h ← h_0
  2 for t = 1, 2, …, T do
  3   h ← tanh(W_x X[:, t] + W_h h)
  4   Y[:, t] ← W_o h
  5 end
  6 return Y
"""


def test_a_learned_initial_state_gains_the_batch_axes(tmp_path):
    """h starts as a parameter (no batch axes) and leaves the first step with them: the body must be
    differentiated with one layout (it summed a batched gradient as if h had none)."""
    checked, lib, mod = compiled(tmp_path, LEARNED_START)
    K = 3
    rng = np.random.default_rng(6)
    cfg = mod.Config(D=D, M=M, K=K)
    params = mod.Params(h_0=rng.standard_normal(M), W_x=0.5 * rng.standard_normal((M, D)),
                        W_h=0.5 * rng.standard_normal((M, M)), W_o=rng.standard_normal((K, M)))
    X = rng.standard_normal((B, D, T))
    Y, cache = mod.forward(cfg, params, X)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = mod.backward(cfg, params, cache, dY)

    rnn = torch.nn.RNN(D, M, batch_first=True, bias=False, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(params.W_x))
        rnn.weight_hh_l0.copy_(torch.tensor(params.W_h))
    h0, W_o, Xt = t64(params.h_0), t64(params.W_o), t64(np.swapaxes(X, -1, -2))
    H_all, _ = rnn(Xt, h0.expand(1, B, M).contiguous())
    Yt = (H_all @ W_o.T).transpose(1, 2)
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(grads.h_0, h0.grad) <= 1e-9
    assert rel(grads.W_x, rnn.weight_ih_l0.grad) <= 1e-9
    assert rel(grads.W_h, rnn.weight_hh_l0.grad) <= 1e-9
    assert rel(grads.W_o, W_o.grad) <= 1e-9
    assert rel(np.swapaxes(input_grads["X"], -1, -2), Xt.grad) <= 1e-9
    assert gradcheck(checked, lib).worst <= TOL


def test_the_paper_columns_input_projection_is_one_product_too():
    """LSTM (columns, W_x X[:, t]): (W_x X)ᵀ before the loop, one row of it a step, so each step
    reads contiguous memory; the state's product W_h h stays in the loop."""
    src = (ROOT / "generated" / "LSTM.py").read_text("utf-8")
    forward = src.split("def forward", 1)[1].split("def backward", 1)[0]
    before, loop = forward.split("for t in range(ell):", 1)
    assert "W_x_X_T = np.matmul(" in before and "W_x_X_T[..., t, :]" in loop
    assert "@ W_x.T" not in loop and "h @ W_h.T" in loop
