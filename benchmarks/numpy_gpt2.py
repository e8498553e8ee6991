"""A hand-written, batched NumPy GPT-2 forward and backward pass in the style of llm.c.

This is the baseline that benchmarks/gpt2_step.py holds the generated code against, so it is written
the way one would write it by hand for speed, while staying plain NumPy:

* activations are (B·T, channels) matrices, so every projection is a single GEMM;
* layernorm saves only its mean and reciprocal standard deviation (rstd) and recomputes the
  normalized input in the backward pass;
* q, k and v come out of one fused matrix product and are used as strided views, without copies;
* attention is materialized as a (B, H, T, T) tensor, with a causal mask of −∞ added before softmax;
* GELU is the tanh approximation (HF's "gelu_new"); its tanh is saved for the backward pass.

Parameters have the names and layout of generated/GPT2.py's ``Params`` (any object with these
attributes will do): ``W_e`` (V, D), tied with the unembedding; ``W_p`` (ctx, D); per-block tensors
stacked on a leading axis of size N, with ``W_qkv`` (N, D, 3·D) holding q, k and v side by side, each
split into H contiguous heads; the final layernorm ``gamma_f``, ``beta_f``. Gradients come back as a
dict with the same names.
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-5  # layernorm epsilon, as GPT-2's
GELU_SCALE = math.sqrt(2.0 / math.pi)
GELU_CUBE = 0.044715

BLOCK_PARAMS = ("gamma_1", "beta_1", "W_qkv", "b_qkv", "W_o", "b_o",
                "gamma_2", "beta_2", "W_fc", "b_fc", "W_proj", "b_proj")


# ----------------------------------------------------------------------------- layers

def layernorm_forward(x, gamma, beta):
    """x: (M, D). Returns the normalized, scaled and shifted x, and the (M, 1) mean and rstd."""
    mean = x.mean(axis=-1, keepdims=True)
    xhat = x - mean
    rstd = 1.0 / np.sqrt(np.mean(xhat * xhat, axis=-1, keepdims=True) + EPS)
    xhat *= rstd
    xhat *= gamma
    xhat += beta
    return xhat, mean, rstd


def layernorm_backward(dout, x, mean, rstd, gamma):
    """Returns dx, dgamma, dbeta; the normalized input is recomputed from the saved mean and rstd."""
    xhat = (x - mean) * rstd
    dgamma = np.sum(dout * xhat, axis=0)
    dbeta = np.sum(dout, axis=0)
    dnorm = dout * gamma
    dx = dnorm - np.mean(dnorm, axis=-1, keepdims=True)
    dx -= xhat * np.mean(dnorm * xhat, axis=-1, keepdims=True)
    dx *= rstd
    return dx, dgamma, dbeta


def gelu_forward(u):
    """tanh-approximated GELU. Returns the output and the tanh, which the backward pass reuses."""
    t = np.tanh(GELU_SCALE * (u + GELU_CUBE * (u * u * u)))
    return 0.5 * u * (1.0 + t), t


def gelu_backward(dout, u, t):
    u2 = u * u
    local = 0.5 * (1.0 + t) + (0.5 * GELU_SCALE) * u * (1.0 - t * t) * (1.0 + 3.0 * GELU_CUBE * u2)
    return dout * local


def split_heads(qkv, B, T, H):
    """(B·T, 3·D) -> q, k, v, each a (B, H, T, D/H) strided view into qkv."""
    D = qkv.shape[-1] // 3
    return qkv.reshape(B, T, 3, H, D // H).transpose(2, 0, 3, 1, 4)


def attention_forward(qkv, B, T, H):
    """Causal multi-head self-attention on the fused (B·T, 3·D) projections.

    Returns y (B·T, D), the heads side by side, and the softmax weights att (B, H, T, T)."""
    q, k, v = split_heads(qkv, B, T, H)
    scale = 1.0 / math.sqrt(q.shape[-1])
    att = q @ k.swapaxes(-1, -2)                      # (B, H, T, T)
    att *= scale
    att += np.triu(np.full((T, T), -np.inf, dtype=att.dtype), k=1)  # token t sees u <= t only
    att -= att.max(axis=-1, keepdims=True)
    np.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)
    y = att @ v                                       # (B, H, T, D/H)
    return y.transpose(0, 2, 1, 3).reshape(B * T, -1), att


def attention_backward(dy, qkv, att, B, T, H):
    """dy: (B·T, D). Returns d_qkv (B·T, 3·D)."""
    q, k, v = split_heads(qkv, B, T, H)
    scale = 1.0 / math.sqrt(q.shape[-1])
    dy = dy.reshape(B, T, H, -1).transpose(0, 2, 1, 3)  # (B, H, T, D/H)
    d_qkv = np.empty((B, T, 3, H, q.shape[-1]), dtype=dy.dtype)
    dq, dk, dv = d_qkv.transpose(2, 0, 3, 1, 4)
    dv[...] = att.swapaxes(-1, -2) @ dy
    datt = dy @ v.swapaxes(-1, -2)                    # (B, H, T, T)
    # softmax backward; masked entries have att = 0 and so get no gradient
    datt -= np.sum(datt * att, axis=-1, keepdims=True)
    datt *= att
    datt *= scale
    dq[...] = datt @ k
    dk[...] = datt.swapaxes(-1, -2) @ q
    return d_qkv.reshape(B * T, -1)


# ----------------------------------------------------------------------------- model

def forward(params, x, H):
    """x: (B, T) token ids. Returns logits (B, T, V) and the cache the backward pass needs."""
    B, T = x.shape
    N = params.W_qkv.shape[0]
    res = (params.W_e[x] + params.W_p[:T]).reshape(B * T, -1)  # (B·T, D)
    layers = []
    for ell in range(N):
        p = {name: getattr(params, name)[ell] for name in BLOCK_PARAMS}
        ln1, ln1_mean, ln1_rstd = layernorm_forward(res, p["gamma_1"], p["beta_1"])
        qkv = ln1 @ p["W_qkv"]
        qkv += p["b_qkv"]
        atty, att = attention_forward(qkv, B, T, H)
        attproj = atty @ p["W_o"]
        attproj += p["b_o"]
        res2 = res + attproj
        ln2, ln2_mean, ln2_rstd = layernorm_forward(res2, p["gamma_2"], p["beta_2"])
        fch = ln2 @ p["W_fc"]
        fch += p["b_fc"]
        fch_gelu, fch_tanh = gelu_forward(fch)
        fcproj = fch_gelu @ p["W_proj"]
        fcproj += p["b_proj"]
        layers.append(dict(res=res, ln1=ln1, ln1_mean=ln1_mean, ln1_rstd=ln1_rstd, qkv=qkv, att=att,
                           atty=atty, res2=res2, ln2=ln2, ln2_mean=ln2_mean, ln2_rstd=ln2_rstd,
                           fch=fch, fch_tanh=fch_tanh, fch_gelu=fch_gelu))
        res = res2 + fcproj
    lnf, lnf_mean, lnf_rstd = layernorm_forward(res, params.gamma_f, params.beta_f)
    logits = lnf @ params.W_e.T                       # (B·T, V), tied unembedding
    cache = dict(x=x, H=H, layers=layers, res=res, lnf=lnf, lnf_mean=lnf_mean, lnf_rstd=lnf_rstd)
    return logits.reshape(B, T, -1), cache


def cross_entropy(logits, x):
    """Mean next-token loss over the B·(T−1) positions that have a target (position t predicts x[t+1]).

    Returns the loss and d_logits (B, T, V); the last position gets no gradient."""
    B, T, V = logits.shape
    targets = x[:, 1:, None]
    probs = logits[:, :-1] - logits[:, :-1].max(axis=-1, keepdims=True)
    np.exp(probs, out=probs)
    probs /= probs.sum(axis=-1, keepdims=True)
    loss = -np.mean(np.log(np.take_along_axis(probs, targets, axis=-1)))
    d_logits = np.zeros_like(logits)
    d_logits[:, :-1] = probs
    np.put_along_axis(d_logits[:, :-1], targets, np.take_along_axis(probs, targets, axis=-1) - 1.0,
                      axis=-1)
    d_logits *= 1.0 / (B * (T - 1))
    return float(loss), d_logits


def backward(params, cache, d_logits):
    """Returns the gradients of every parameter, as a dict keyed like Params."""
    x, H, layers = cache["x"], cache["H"], cache["layers"]
    B, T = x.shape
    d_logits = d_logits.reshape(B * T, -1)
    grads = {name: np.zeros_like(getattr(params, name)) for name in BLOCK_PARAMS}

    grads["W_e"] = d_logits.T @ cache["lnf"]
    d_lnf = d_logits @ params.W_e
    dres, grads["gamma_f"], grads["beta_f"] = layernorm_backward(
        d_lnf, cache["res"], cache["lnf_mean"], cache["lnf_rstd"], params.gamma_f)

    for ell in reversed(range(len(layers))):
        a = layers[ell]
        g = {name: grads[name][ell] for name in BLOCK_PARAMS}  # views: written in place
        W_qkv, W_o = params.W_qkv[ell], params.W_o[ell]
        W_fc, W_proj = params.W_fc[ell], params.W_proj[ell]
        # MLP: res3 = res2 + gelu(ln2 W_fc + b_fc) W_proj + b_proj
        np.matmul(a["fch_gelu"].T, dres, out=g["W_proj"])
        np.sum(dres, axis=0, out=g["b_proj"])
        d_fch = gelu_backward(dres @ W_proj.T, a["fch"], a["fch_tanh"])
        np.matmul(a["ln2"].T, d_fch, out=g["W_fc"])
        np.sum(d_fch, axis=0, out=g["b_fc"])
        d_res2, g["gamma_2"][...], g["beta_2"][...] = layernorm_backward(
            d_fch @ W_fc.T, a["res2"], a["ln2_mean"], a["ln2_rstd"], params.gamma_2[ell])
        d_res2 += dres
        # attention: res2 = res + attention(ln1 W_qkv + b_qkv) W_o + b_o
        np.matmul(a["atty"].T, d_res2, out=g["W_o"])
        np.sum(d_res2, axis=0, out=g["b_o"])
        d_qkv = attention_backward(d_res2 @ W_o.T, a["qkv"], a["att"], B, T, H)
        np.matmul(a["ln1"].T, d_qkv, out=g["W_qkv"])
        np.sum(d_qkv, axis=0, out=g["b_qkv"])
        dres, g["gamma_1"][...], g["beta_1"][...] = layernorm_backward(
            d_qkv @ W_qkv.T, a["res"], a["ln1_mean"], a["ln1_rstd"], params.gamma_1[ell])
        dres += d_res2

    # embeddings: tokens (scattered into the tied W_e) and positions
    np.add.at(grads["W_e"], x.reshape(-1), dres)
    grads["W_p"] = np.zeros_like(params.W_p)
    grads["W_p"][:T] = dres.reshape(B, T, -1).sum(axis=0)
    return grads
