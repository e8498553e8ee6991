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

# The paper's convention: one column per step, 1-based.
ELMAN_COLUMNS = """\
algorithm Y ← ElmanColumns(X, h_0 | W_x, W_h, b)
  "An Elman RNN: columns, 1-based."
  input  X ∈ ℝ^{D×T}
  input  h_0 ∈ ℝ^{M}
  output Y ∈ ℝ^{M×T}
  hyper  D, M ∈ ℕ
  param  W_x ∈ ℝ^{M×D}
  param  W_h ∈ ℝ^{M×M}
  param  b ∈ ℝ^{M}
  1 h ← h_0
  2 for t ∈ [T] do
  3   h ← tanh(W_x X[:, t] + W_h h + b)
  4   Y[:, t] ← h
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

# Two carried values, PyTorch's gate order.
LSTM = """\
algorithm Y ← LSTM(X, h_0, c_0 | θ)
  "An LSTM layer (gates: input, forget, cell, output)."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  h_0, c_0 ∈ ℝ^{M}
  output Y ∈ ℝ^{T×M}
  hyper  D, M ∈ ℕ
  param  W_x ∈ ℝ^{D×4·M}
  param  W_h ∈ ℝ^{M×4·M}
  param  b ∈ ℝ^{4·M}
  1 h ← h_0
  2 c ← c_0
  3 for t ∈ [T] do
  4   A ← X[t] W_x + h W_h + b
  5   i ← σ(A[0 : M])
  6   f ← σ(A[M : 2·M])
  7   g ← tanh(A[2·M : 3·M])
  8   o ← σ(A[3·M : 4·M])
  9   c ← f ⊙ c + i ⊙ g
 10   h ← o ⊙ tanh(c)
 11   Y[t] ← h
 12 end
 13 return Y
"""

# PyTorch's GRU equations, the reset gate inside the candidate's product.
GRU = """\
algorithm Y ← GRU(X, h_0 | θ)
  "A GRU layer (gates r, z, candidate n)."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  h_0 ∈ ℝ^{M}
  output Y ∈ ℝ^{T×M}
  hyper  D, M ∈ ℕ
  param  W_x ∈ ℝ^{D×3·M}
  param  W_h ∈ ℝ^{M×3·M}
  param  b_x, b_h ∈ ℝ^{3·M}
  1 h ← h_0
  2 for t ∈ [T] do
  3   A ← X[t] W_x + b_x
  4   C ← h W_h + b_h
  5   r ← σ(A[0 : M] + C[0 : M])
  6   z ← σ(A[M : 2·M] + C[M : 2·M])
  7   n ← tanh(A[2·M : 3·M] + r ⊙ C[2·M : 3·M])
  8   h ← (1 − z) ⊙ n + z ⊙ h
  9   Y[t] ← h
 10 end
 11 return Y
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


def torch_rnn(params, columns=False):
    rnn = torch.nn.RNN(D, M, batch_first=True, dtype=torch.float64)
    W_x, W_h = (params.W_x, params.W_h) if columns else (params.W_x.T, params.W_h.T)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(W_x))
        rnn.weight_hh_l0.copy_(torch.tensor(W_h))
        rnn.bias_ih_l0.copy_(torch.tensor(params.b))
        rnn.bias_hh_l0.zero_()
    return rnn


@pytest.mark.parametrize("text", [ELMAN, ELMAN_COLUMNS, ELMAN_FAMILY], ids=["rows", "columns", "family"])
def test_elman_rnn_matches_torch_rnn(tmp_path, text):
    """Forward over time, backward through time: outputs and every gradient against torch.nn.RNN."""
    columns = text is ELMAN_COLUMNS
    checked, lib, mod = compiled(tmp_path, text)
    rng = np.random.default_rng(2)
    cfg = mod.Config(D=D, M=M)
    shapes = {"W_x": (M, D) if columns else (D, M), "W_h": (M, M), "b": (M,)}
    params = mod.Params(**{k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()})
    X = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((B, M))
    Y, cache = mod.forward(cfg, params, np.swapaxes(X, -1, -2) if columns else X, h0)
    Y = np.swapaxes(Y, -1, -2) if columns else Y
    dY = rng.standard_normal((B, T, M))
    grads, input_grads = mod.backward(cfg, params, cache, np.swapaxes(dY, -1, -2) if columns else dY)

    rnn = torch_rnn(params, columns)
    Xt, h0t = t64(X), t64(h0[None])
    Yt, _ = rnn(Xt, h0t)
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    flip = (lambda a: a) if columns else (lambda a: a.T)
    assert rel(grads.W_x, flip(rnn.weight_ih_l0.grad.numpy())) <= 1e-9
    assert rel(grads.W_h, flip(rnn.weight_hh_l0.grad.numpy())) <= 1e-9
    assert rel(grads.b, rnn.bias_ih_l0.grad) <= 1e-9
    dX = np.swapaxes(input_grads["X"], -1, -2) if columns else input_grads["X"]
    assert rel(dX, Xt.grad) <= 1e-9
    assert rel(input_grads["h_0"], h0t.grad[0]) <= 1e-9
    assert gradcheck(checked, lib).worst <= TOL


def test_lstm_matches_torch_lstm(tmp_path):
    """Two values carried over time (h and c)."""
    checked, lib, mod = compiled(tmp_path, LSTM)
    rng = np.random.default_rng(3)
    cfg = mod.Config(D=D, M=M)
    params = mod.Params(W_x=0.5 * rng.standard_normal((D, 4 * M)), W_h=0.5 * rng.standard_normal((M, 4 * M)),
                        b=rng.standard_normal(4 * M))
    X, h0, c0 = rng.standard_normal((B, T, D)), rng.standard_normal((B, M)), rng.standard_normal((B, M))
    Y, cache = mod.forward(cfg, params, X, h0, c0)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = mod.backward(cfg, params, cache, dY)

    lstm = torch.nn.LSTM(D, M, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor(params.W_x.T))
        lstm.weight_hh_l0.copy_(torch.tensor(params.W_h.T))
        lstm.bias_ih_l0.copy_(torch.tensor(params.b))
        lstm.bias_hh_l0.zero_()
    Xt, h0t, c0t = t64(X), t64(h0[None]), t64(c0[None])
    Yt, _ = lstm(Xt, (h0t, c0t))
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(grads.W_x, lstm.weight_ih_l0.grad.T) <= 1e-9
    assert rel(grads.W_h, lstm.weight_hh_l0.grad.T) <= 1e-9
    assert rel(grads.b, lstm.bias_ih_l0.grad) <= 1e-9
    for name, ref in (("X", Xt.grad), ("h_0", h0t.grad[0]), ("c_0", c0t.grad[0])):
        assert rel(input_grads[name], ref) <= 1e-9, name
    assert gradcheck(checked, lib).worst <= TOL


def test_recurrence_forward_is_a_python_loop_over_time(tmp_path):
    """The generated code reads as the card does: a loop over t, row t of X, row t of Y."""
    from cardgen.compile.emit import module_source
    checked, lib, _mod = compiled(tmp_path, ELMAN)
    src = module_source(checked, lib, "Elman.card")
    forward = src.split("def forward", 1)[1].split("def backward", 1)[0]
    backward = src.split("def backward", 1)[1].split("\ndef ", 1)[0]
    assert "for t in range(T):" in forward
    assert "X[..., t, :]" in forward and "Y[..., t, :] = h" in forward
    assert "return Y, cache" in forward
    assert "for t in reversed(range(T)):" in backward
    assert "d_Y[..., t, :]" in backward and "d_X[..., t, :] +=" in backward


def test_float32_recurrence_stays_float32(tmp_path):
    _checked, _lib, mod = compiled(tmp_path, ELMAN)
    rng = np.random.default_rng(4)
    cfg = mod.Config(D=D, M=M)
    params = mod.init_params(cfg, rng, np.float32)
    X, h0 = rng.standard_normal((B, T, D)).astype(np.float32), np.zeros((B, M), np.float32)
    Y, cache = mod.forward(cfg, params, X, h0)
    grads, input_grads = mod.backward(cfg, params, cache, np.ones_like(Y))
    assert Y.dtype == np.float32 and grads.W_h.dtype == np.float32 and input_grads["X"].dtype == np.float32


def test_workspace_reuse_gives_the_same_numbers(tmp_path):
    """Per-step buffers must not alias: a second call with the same workspace agrees."""
    _checked, _lib, mod = compiled(tmp_path, LSTM)
    rng = np.random.default_rng(5)
    cfg = mod.Config(D=D, M=M)
    params = mod.init_params(cfg, rng, np.float64)
    args = (rng.standard_normal((B, T, D)), rng.standard_normal((B, M)), rng.standard_normal((B, M)))
    Y0, c0 = mod.forward(cfg, params, *args)
    g0, i0 = mod.backward(cfg, params, c0, np.ones_like(Y0))
    ws = {}
    for _ in range(2):
        Y1, c1 = mod.forward(cfg, params, *args, workspace=ws)
        g1, i1 = mod.backward(cfg, params, c1, np.ones_like(Y1), workspace=ws)
        assert np.array_equal(Y0, Y1) and np.array_equal(g0.W_h, g1.W_h) and np.array_equal(i0["X"], i1["X"])


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


def test_gru_matches_torch_gru(tmp_path):
    checked, lib, mod = compiled(tmp_path, GRU)
    rng = np.random.default_rng(7)
    cfg = mod.Config(D=D, M=M)
    params = mod.Params(W_x=0.5 * rng.standard_normal((D, 3 * M)), W_h=0.5 * rng.standard_normal((M, 3 * M)),
                        b_x=rng.standard_normal(3 * M), b_h=rng.standard_normal(3 * M))
    X, h0 = rng.standard_normal((B, T, D)), rng.standard_normal((B, M))
    Y, cache = mod.forward(cfg, params, X, h0)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = mod.backward(cfg, params, cache, dY)

    gru = torch.nn.GRU(D, M, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", params.W_x.T), ("weight_hh_l0", params.W_h.T),
                            ("bias_ih_l0", params.b_x), ("bias_hh_l0", params.b_h)):
            getattr(gru, name).copy_(torch.tensor(value))
    Xt, h0t = t64(X), t64(h0[None])
    Yt, _ = gru(Xt, h0t)
    (Yt * torch.tensor(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(grads.W_x, gru.weight_ih_l0.grad.T) <= 1e-9
    assert rel(grads.W_h, gru.weight_hh_l0.grad.T) <= 1e-9
    assert rel(grads.b_x, gru.bias_ih_l0.grad) <= 1e-9
    assert rel(grads.b_h, gru.bias_hh_l0.grad) <= 1e-9
    assert rel(input_grads["X"], Xt.grad) <= 1e-9 and rel(input_grads["h_0"], h0t.grad[0]) <= 1e-9
    assert gradcheck(checked, lib).worst <= TOL
