"""The generated paper models against PyTorch references written from the definitions.

DTransformer (Alg. 10), ETransformer (Alg. 9), EDTransformer (Alg. 8) and
MHAttention (Alg. 5 with Alg. 4) are re-implemented below in PyTorch straight
from Phuong & Hutter, "Formal Algorithms for Transformers" (arXiv:2207.09238),
in the paper's own convention: column vectors (X ∈ ℝ^{d_e×ℓ}), 1-based token
ids in [N_V], per-head W^h_q, W^h_k, W^h_v as in eq. (4), layer_norm per column
without ε (Alg. 6, biased variance), softmax over keys in attention (eq. (2):
per column of S ∈ ℝ^{ℓ_z×ℓ_x}) and over the vocabulary in the output, causal
Mask[t_z, t_x] = [[t_z ≤ t_x]] (eq. (3)), exact GELU (eq. (5)) in D/ETransformer,
ReLU in EDTransformer, pre-LN in DTransformer and post-LN in E/EDTransformer.
LLaMABlock is checked against the standard LLaMA-3 block (row convention:
pre-RMSNorm with ε = 1e-6, causal grouped-query attention without biases, rotate-half
rotary embeddings from given cos/sin, SwiGLU MLP), using torch's own
scaled_dot_product_attention with its enable_gqa (tests/test_oracle_llama.py checks
it against transformers' LlamaDecoderLayer as well).

Both sides get the same random weights (not the generated init_params: its
0.02-scale weights and unit gains would leave attention nearly uniform and the
layer norms nearly trivial). The checks: the output, the scalar loss, and the
gradient of the loss with respect to every parameter and every real-valued
input, each within max|Δ| / max|reference| ≤ 1e-9 (float64) or 1e-4 (float32)
per tensor. Two losses: Σ P ⊙ G for a fixed random G, and the training
algorithms' negative log-likelihood (Alg. 11–13).

The sizes make every dimension differ from every other one (except LLaMA's D×D
projections, and EDTransformer, which keeps the cards' default d_attn = d_mid = d_e/H;
the paper leaves d_attn and d_mid free in (4), and the cards take them as
hyperparameters), so a
transposed or swapped axis cannot go unnoticed; the batches hold several
sequences, the sequences are shorter than ℓ_max (so W_p has columns with zero
gradient) and the token ids include both 1 and N_V.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as fn

from .conftest import load_generated


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: torch's thread pool only adds overhead (seconds on a loaded 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


DTYPES = [pytest.param(np.float64, torch.float64, 1e-9, id="float64"),
          pytest.param(np.float32, torch.float32, 1e-4, id="float32")]
LOSSES = ["linear", "nll"]

# DTransformer / ETransformer: L, H, d_attn, d_mid, B, ℓ, ℓ_max, N_V, d_f, d_e, d_mlp all differ (d_e/H = 5).
L, H, B, ELL, ELL_MAX, N_V, D_F, D_E, D_MLP, D_ATTN, D_MID = 2, 4, 3, 7, 11, 13, 17, 20, 23, 6, 9
# EDTransformer: L_enc, L_dec, H, d_attn, B, ℓ_x, ℓ_z, ℓ_max, N_V, d_e, d_mlp all differ.
L_ENC, L_DEC, ED_B, ELL_X, ELL_Z = 2, 3, 6, 7, 9


# ------------------------------------------------------------------ the paper, in PyTorch (columns, 1-based)

def embed(W_e, W_p, x):
    """Alg. 1, 2 and eq. (1): column t of X is W_e[:, x[t]] + W_p[:, t]; x ∈ [N_V]^ℓ (1-based), batched (B, ℓ)."""
    ell = x.shape[-1]
    cols = [W_e[:, x[:, t] - 1] + W_p[:, t][:, None] for t in range(ell)]  # each (d_e, B)
    return torch.stack(cols, dim=-1).permute(1, 0, 2)                       # (B, d_e, ℓ)


def layer_norm(X, gamma, beta):
    """Alg. 6 on every column of X (B, d_e, ℓ): no ε, variance divided by d_e."""
    m = X.mean(dim=-2, keepdim=True)
    v = ((X - m) ** 2).mean(dim=-2, keepdim=True)
    return (X - m) / torch.sqrt(v) * gamma[:, None] + beta[:, None]


def attention(X, Z, W_q, b_q, W_k, b_k, W_v, b_v, mask):
    """Alg. 4. X (B, d_x, ℓ_x), Z (B, d_z, ℓ_z), mask (ℓ_z, ℓ_x) with mask[t_z, t_x] = may t_x see t_z."""
    Q = W_q @ X + b_q[:, None]                         # (B, d_attn, ℓ_x)
    K = W_k @ Z + b_k[:, None]                         # (B, d_attn, ℓ_z)
    V = W_v @ Z + b_v[:, None]                         # (B, d_out, ℓ_z)
    S = K.transpose(-1, -2) @ Q                        # (B, ℓ_z, ℓ_x)
    S = S.masked_fill(~mask, -math.inf)
    A = torch.softmax(S / math.sqrt(W_q.shape[0]), dim=-2)   # eq. (2): each column is a distribution over t_z
    return V @ A                                       # (B, d_out, ℓ_x)


def mh_attention(X, Z, p, mask):
    """Alg. 5 with the parameters of eq. (4): p["W_q"][h] is W^h_q etc.; heads stacked vertically."""
    Y = torch.cat([attention(X, Z, p["W_q"][h], p["b_q"][h], p["W_k"][h], p["b_k"][h], p["W_v"][h], p["b_v"][h],
                             mask) for h in range(p["W_q"].shape[0])], dim=-2)   # (B, H·d_mid, ℓ_x)
    return p["W_o"] @ Y + p["b_o"][:, None]


def layer(p, l, suffix=""):
    """The attention parameters 𝓦_l (eq. (4)) of layer l from the stacked tensors."""
    return {k: p[k + suffix][l] for k in ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")}


def mlp(X, W1, b1, W2, b2, act):
    return W2 @ act(W1 @ X + b1[:, None]) + b2[:, None]


def gelu(x):
    """Eq. (5): x · Φ(x), the exact (erf) GELU."""
    return fn.gelu(x, approximate="none")


def causal(ell):
    """Eq. (3), unidirectional: Mask[t_z, t_x] = [[t_z ≤ t_x]]."""
    t = torch.arange(ell)
    return t[:, None] <= t[None, :]


def full(ell_z, ell_x):
    """Eq. (3), bidirectional: Mask ≡ 1."""
    return torch.ones(ell_z, ell_x, dtype=torch.bool)


def ref_dtransformer(p, x):
    """Alg. 10: GPT, pre-LN, causal, GELU."""
    ell = x.shape[-1]
    X = embed(p["W_e"], p["W_p"], x)
    for l in range(p["W_q"].shape[0]):
        Xt = layer_norm(X, p["gamma1"][l], p["beta1"][l])
        X = X + mh_attention(Xt, Xt, layer(p, l), causal(ell))
        Xt = layer_norm(X, p["gamma2"][l], p["beta2"][l])
        X = X + mlp(Xt, p["W_mlp1"][l], p["b_mlp1"][l], p["W_mlp2"][l], p["b_mlp2"][l], gelu)
    X = layer_norm(X, p["gamma"], p["beta"])
    return torch.softmax(p["W_u"] @ X, dim=-2)


def ref_etransformer(p, x):
    """Alg. 9: BERT, post-LN, bidirectional, GELU, final projection W_f to d_f."""
    ell = x.shape[-1]
    X = embed(p["W_e"], p["W_p"], x)
    for l in range(p["W_q"].shape[0]):
        X = X + mh_attention(X, X, layer(p, l), full(ell, ell))
        X = layer_norm(X, p["gamma1"][l], p["beta1"][l])
        X = X + mlp(X, p["W_mlp1"][l], p["b_mlp1"][l], p["W_mlp2"][l], p["b_mlp2"][l], gelu)
        X = layer_norm(X, p["gamma2"][l], p["beta2"][l])
    X = gelu(p["W_f"] @ X + p["b_f"][:, None])
    X = layer_norm(X, p["gamma"], p["beta"])
    return torch.softmax(p["W_u"] @ X, dim=-2)


def ref_edtransformer(p, z, x):
    """Alg. 8: encoder-decoder, post-LN, ReLU; decoder self-attention causal, cross-attention to Z unmasked."""
    ell_z, ell_x = z.shape[-1], x.shape[-1]
    Z = embed(p["W_e"], p["W_p"], z)
    for l in range(p["W_q"].shape[0]):
        Z = Z + mh_attention(Z, Z, layer(p, l), full(ell_z, ell_z))
        Z = layer_norm(Z, p["gamma1"][l], p["beta1"][l])
        Z = Z + mlp(Z, p["W_mlp1"][l], p["b_mlp1"][l], p["W_mlp2"][l], p["b_mlp2"][l], torch.relu)
        Z = layer_norm(Z, p["gamma2"][l], p["beta2"][l])
    X = embed(p["W_e"], p["W_p"], x)
    for l in range(p["W_q_2"].shape[0]):
        X = X + mh_attention(X, X, layer(p, l, "_2"), causal(ell_x))
        X = layer_norm(X, p["gamma3"][l], p["beta3"][l])
        X = X + mh_attention(X, Z, layer(p, l, "_3"), full(ell_z, ell_x))
        X = layer_norm(X, p["gamma4"][l], p["beta4"][l])
        X = X + mlp(X, p["W_mlp3"][l], p["b_mlp3"][l], p["W_mlp4"][l], p["b_mlp4"][l], torch.relu)
        X = layer_norm(X, p["gamma5"][l], p["beta5"][l])
    return torch.softmax(p["W_u"] @ X, dim=-2)


# ------------------------------------------------------------------ the standard LLaMA block, in PyTorch (rows)

def rms_norm(x, g, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * g


def ref_llama_block(p, e, cos, sin, n_heads, n_kv):
    """h = e + Attn(RMSNorm(e)); out = h + SwiGLU(RMSNorm(h)); no biases; RoPE on queries and keys;
    query head i attends with key/value head i // (n_heads / n_kv)."""
    b, t, d = e.shape
    w = d // n_heads

    def heads(y, n):                                   # (B, T, n·w) -> (B, n, T, w), heads side by side
        return y.view(b, t, n, w).transpose(1, 2)

    def rope(y):                                       # rotate-half, cos and sin (B, T, w)
        return y * cos[:, None] + torch.cat([-y[..., w // 2:], y[..., :w // 2]], -1) * sin[:, None]

    x = rms_norm(e, p["g_1"])
    q, k = rope(heads(x @ p["W_q"], n_heads)), rope(heads(x @ p["W_k"], n_kv))
    y = fn.scaled_dot_product_attention(q, k, heads(x @ p["W_v"], n_kv), is_causal=True, enable_gqa=True)
    h = e + y.transpose(1, 2).reshape(b, t, d) @ p["W_o"]
    x = rms_norm(h, p["g_2"])
    return h + (fn.silu(x @ p["W_1"]) * (x @ p["W_3"])) @ p["W_2"]


# ------------------------------------------------------------------ parameters (shapes as the paper declares them)

def mha_shapes(n_layers, suffix="", d_attn=D_ATTN, d_mid=D_MID):
    """Eq. (4) per layer: W^h_q ∈ ℝ^{d_attn×d_e}, …, W_o ∈ ℝ^{d_e×H·d_mid}, stacked over l ∈ [n_layers], h ∈ [H]."""
    return {f"W_q{suffix}": (n_layers, H, d_attn, D_E), f"b_q{suffix}": (n_layers, H, d_attn),
            f"W_k{suffix}": (n_layers, H, d_attn, D_E), f"b_k{suffix}": (n_layers, H, d_attn),
            f"W_v{suffix}": (n_layers, H, d_mid, D_E), f"b_v{suffix}": (n_layers, H, d_mid),
            f"W_o{suffix}": (n_layers, D_E, H * d_mid), f"b_o{suffix}": (n_layers, D_E)}


def ln_shapes(n_layers, *indices):
    return {f"{k}{i}": (n_layers, D_E) for i in indices for k in ("gamma", "beta")}


def mlp_shapes(n_layers, i, j):
    return {f"W_mlp{i}": (n_layers, D_MLP, D_E), f"b_mlp{i}": (n_layers, D_MLP),
            f"W_mlp{j}": (n_layers, D_E, D_MLP), f"b_mlp{j}": (n_layers, D_E)}


EMBED = {"W_e": (D_E, N_V), "W_p": (D_E, ELL_MAX)}
D_SHAPES = {**EMBED, **mha_shapes(L), **ln_shapes(L, 1, 2), **mlp_shapes(L, 1, 2),
            "gamma": (D_E,), "beta": (D_E,), "W_u": (N_V, D_E)}
E_SHAPES = {**EMBED, **mha_shapes(L), **ln_shapes(L, 1, 2), **mlp_shapes(L, 1, 2),
            "W_f": (D_F, D_E), "b_f": (D_F,), "gamma": (D_F,), "beta": (D_F,), "W_u": (N_V, D_F)}
DEFAULT = dict(d_attn=D_E // H, d_mid=D_E // H)  # the cards' default, which EDTransformer's test keeps
ED_SHAPES = {**EMBED, **mha_shapes(L_ENC, **DEFAULT), **ln_shapes(L_ENC, 1, 2), **mlp_shapes(L_ENC, 1, 2),
             **mha_shapes(L_DEC, "_2", **DEFAULT), **mha_shapes(L_DEC, "_3", **DEFAULT), **ln_shapes(L_DEC, 3, 4, 5),
             **mlp_shapes(L_DEC, 3, 4), "W_u": (N_V, D_E)}


def draw_params(shapes, rng, fan_in_axis=-1):
    """Weights N(0, 1/fan_in) (the embeddings N(0, 1)), gains 1 + N(0, 0.1²), offsets and biases N(0, 0.1²)."""
    out = {}
    for name, shape in shapes.items():
        if name.startswith(("gamma", "g_")):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.startswith(("beta", "b_")):
            a = 0.1 * rng.standard_normal(shape)
        elif name in ("W_e", "W_p"):
            a = rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) / math.sqrt(shape[fan_in_axis])
        out[name] = a
    return out


# ------------------------------------------------------------------ comparison

def rel(a, ref, scale=None):
    """max|a − ref| / max|ref| (or / scale when given)."""
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert a.shape == ref.shape, (a.shape, ref.shape)
    if scale is None:
        scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(a - ref))) / (scale if scale > 0 else 1.0)


def zero_gradient_partner(name):
    """The key bias b^h_k has an exactly zero gradient: it adds (b^h_k)ᵀ Q[:, t_x] to the whole column t_x of S,
    and the softmax over t_z ignores that. Both sides give only round-off there, so it is measured against the
    scale of the W^h_k gradient of the same attention layer instead of its own."""
    return "W_k" + name[3:] if name.startswith("b_k") else None


def check(mod, cfg, theta, gen_inputs, ref_fn, ref_inputs, np_dtype, torch_dtype, tol, loss, nll=None,
          real_inputs=()):
    """Run the generated forward/backward and the PyTorch reference on the same weights and compare.

    loss "linear": Σ out ⊙ G. loss "nll": −Σ log P[y, t] over the (b, y − 1, t) index triples in `nll`.
    real_inputs: when the inputs are real-valued, their names, in the order of ref_inputs (which require grad).
    """
    params = mod.Params(**{k: v.astype(np_dtype) for k, v in theta.items()})
    out, cache = mod.forward(cfg, params, *gen_inputs)
    assert out.dtype == np_dtype

    tp = {k: torch.tensor(v, dtype=torch_dtype, requires_grad=True) for k, v in theta.items()}
    ref_out = ref_fn(tp, *ref_inputs)
    assert rel(out, ref_out.detach().numpy()) <= tol

    if loss == "linear":
        G = np.random.default_rng(7).standard_normal(out.shape)
        value, d_out = float(np.sum(out * G.astype(np_dtype))), G.astype(np_dtype)
        ref_loss = torch.sum(ref_out * torch.tensor(G, dtype=torch_dtype))
        loss_scale = float(np.sum(np.abs(out * G)))          # the sum may cancel: compare against its terms
    else:
        b, v, t = nll
        d_out = np.zeros_like(out)
        d_out[b, v, t] = -1.0 / out[b, v, t]
        value = float(-np.sum(np.log(out[b, v, t])))
        ref_loss = -torch.sum(torch.log(ref_out[b, v, t]))
        loss_scale = abs(ref_loss.item())
    assert abs(value - ref_loss.item()) <= tol * loss_scale

    ref_loss.backward()
    grads, input_grads = mod.backward(cfg, params, cache, d_out)
    errors = {}
    for name, ref_param in tp.items():
        g = getattr(grads, name)
        assert g.dtype == np_dtype, name
        partner = zero_gradient_partner(name)
        scale = None if partner is None else float(np.max(np.abs(tp[partner].grad.numpy())))
        errors[name] = rel(g, ref_param.grad.numpy(), scale)
        if partner is not None:
            errors[f"{name} (exactly 0)"] = rel(g, np.zeros_like(g), scale)
    assert sorted(input_grads) == sorted(real_inputs)
    for name, tensor in zip(real_inputs, ref_inputs if real_inputs else (), strict=True):
        assert input_grads[name].dtype == np_dtype, name
        errors[f"input {name}"] = rel(input_grads[name], tensor.grad.numpy())
    bad = {k: e for k, e in errors.items() if not e <= tol}
    assert not bad, f"gradients off (tol {tol}): {bad}"


def tokens(rng, shape):
    """Token ids in [N_V] = {1, …, N_V}, both ends included."""
    x = rng.integers(1, N_V + 1, size=shape)
    x.flat[0], x.flat[-1] = 1, N_V
    return x


def next_token_nll(x):
    """Alg. 11/13: −Σ_{t=1}^{ℓ−1} log P[x[t+1], t] per sequence, as (b, row, column) index triples (0-based)."""
    b, t = np.meshgrid(np.arange(x.shape[0]), np.arange(x.shape[1] - 1), indexing="ij")
    return b.ravel(), x[:, 1:].ravel() - 1, t.ravel()


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("np_dtype, torch_dtype, tol", DTYPES)
def test_dtransformer_matches_paper(np_dtype, torch_dtype, tol, loss):
    mod = load_generated("DTransformer")
    rng = np.random.default_rng(10)
    cfg = mod.Config(N_V=N_V, ell_max=ELL_MAX, L=L, H=H, d_e=D_E, d_mlp=D_MLP, d_attn=D_ATTN, d_mid=D_MID)
    x = tokens(rng, (B, ELL))
    theta = draw_params(D_SHAPES, rng)
    check(mod, cfg, theta, (x,), ref_dtransformer, (torch.from_numpy(x),), np_dtype, torch_dtype, tol, loss,
          nll=next_token_nll(x))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("np_dtype, torch_dtype, tol", DTYPES)
def test_etransformer_matches_paper(np_dtype, torch_dtype, tol, loss):
    mod = load_generated("ETransformer")
    rng = np.random.default_rng(11)
    cfg = mod.Config(N_V=N_V, ell_max=ELL_MAX, L=L, H=H, d_e=D_E, d_mlp=D_MLP, d_f=D_F, d_attn=D_ATTN, d_mid=D_MID)
    x = tokens(rng, (B, ELL))
    # Alg. 12: replace some tokens by mask_token = N_V − 2, score the reconstruction of x at those positions.
    masked = rng.random((B, ELL)) < 0.4
    masked[:, 2] = True
    x_tilde = np.where(masked, N_V - 2, x)
    b, t = np.nonzero(masked)
    theta = draw_params(E_SHAPES, rng)
    check(mod, cfg, theta, (x_tilde,), ref_etransformer, (torch.from_numpy(x_tilde),), np_dtype, torch_dtype,
          tol, loss, nll=(b, x[b, t] - 1, t))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("np_dtype, torch_dtype, tol", DTYPES)
def test_edtransformer_matches_paper(np_dtype, torch_dtype, tol, loss):
    mod = load_generated("EDTransformer")
    rng = np.random.default_rng(12)
    cfg = mod.Config(N_V=N_V, ell_max=ELL_MAX, L_enc=L_ENC, L_dec=L_DEC, H=H, d_e=D_E, d_mlp=D_MLP)
    z, x = tokens(rng, (ED_B, ELL_Z)), tokens(rng, (ED_B, ELL_X))
    theta = draw_params(ED_SHAPES, rng)
    check(mod, cfg, theta, (z, x), ref_edtransformer, (torch.from_numpy(z), torch.from_numpy(x)),
          np_dtype, torch_dtype, tol, loss, nll=next_token_nll(x))


@pytest.mark.parametrize("np_dtype, torch_dtype, tol", DTYPES)
def test_mhattention_cross_attention_matches_paper(np_dtype, torch_dtype, tol):
    """Alg. 5 alone: cross-attention (ℓ_z ≠ ℓ_x, d_z ≠ d_x) under an irregular mask, with input gradients."""
    mod = load_generated("MHAttention")
    n_b, n_h, d_attn, d_mid, d_out, ell_x, ell_z, d_x, d_z = 2, 3, 4, 5, 6, 7, 8, 9, 10
    rng = np.random.default_rng(13)
    cfg = mod.Config(d_z=d_z, d_x=d_x, H=n_h, d_attn=d_attn, d_mid=d_mid, d_out=d_out)
    shapes = {"W_q": (n_h, d_attn, d_x), "b_q": (n_h, d_attn), "W_k": (n_h, d_attn, d_z), "b_k": (n_h, d_attn),
              "W_v": (n_h, d_mid, d_z), "b_v": (n_h, d_mid), "W_o": (d_out, n_h * d_mid), "b_o": (d_out,)}
    theta = draw_params(shapes, rng)
    mask = rng.random((ell_z, ell_x)) < 0.6
    mask[np.arange(ell_x) % ell_z, np.arange(ell_x)] = True          # every query sees at least one key
    X = rng.standard_normal((n_b, d_x, ell_x))
    Z = rng.standard_normal((n_b, d_z, ell_z))
    tX = torch.tensor(X, dtype=torch_dtype, requires_grad=True)
    tZ = torch.tensor(Z, dtype=torch_dtype, requires_grad=True)
    tmask = torch.from_numpy(mask)
    check(mod, cfg, theta, (X.astype(np_dtype), Z.astype(np_dtype), mask),
          lambda p, X_, Z_: mh_attention(X_, Z_, p, tmask), (tX, tZ), np_dtype, torch_dtype, tol, "linear",
          real_inputs=("X", "Z"))


@pytest.mark.parametrize("np_dtype, torch_dtype, tol", DTYPES)
def test_llama_block_matches_reference(np_dtype, torch_dtype, tol):
    mod = load_generated("LLaMABlock")
    n_b, n_h, n_kv, t, d, d_f = 5, 6, 2, 7, 24, 20                     # D/H = 4, three query heads a group
    rng = np.random.default_rng(14)
    cfg = mod.Config(D=d, H=n_h, H_kv=n_kv, D_f=d_f)
    w = d // n_h
    shapes = {"g_1": (d,), "W_q": (d, d), "W_o": (d, d), "W_k": (d, n_kv * w), "W_v": (d, n_kv * w),
              "g_2": (d,), "W_1": (d, d_f), "W_3": (d, d_f), "W_2": (d_f, d)}
    theta = draw_params(shapes, rng, fan_in_axis=0)                    # rows: x @ W, fan-in is W's first axis
    e = rng.standard_normal((n_b, t, d))
    angle = np.arange(t)[:, None] * 10000.0 ** (-np.arange(0, w, 2) / w)
    angle = np.broadcast_to(np.concatenate([angle, angle], -1), (n_b, t, w))
    cos, sin = np.cos(angle), np.sin(angle)
    te, tc, ts = (torch.tensor(a, dtype=torch_dtype, requires_grad=True) for a in (e, cos, sin))
    check(mod, cfg, theta, tuple(a.astype(np_dtype) for a in (e, cos, sin)),
          lambda p, e_, c_, s_: ref_llama_block(p, e_, c_, s_, n_h, n_kv), (te, tc, ts),
          np_dtype, torch_dtype, tol, "linear", real_inputs=("e", "C", "S"))
