"""GPT-2 training step in JAX (jit on the CPU), for the benchmark: the same model and
parameter layout as generated/GPT2.py (blocks stacked on a leading axis), mean
next-token cross-entropy, and AdamW as torch.optim.AdamW does it."""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = ("gamma_1", "beta_1", "W_qkv", "b_qkv", "W_o", "b_o", "gamma_2", "beta_2", "W_fc", "b_fc", "W_proj", "b_proj")


def layer_norm(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + eps) * g + b


def gelu(x):
    return 0.5 * x * (1 + jnp.tanh(jnp.sqrt(2 / jnp.pi) * (x + 0.044715 * x ** 3)))


def forward(p, x, heads):
    B, T = x.shape
    D = p["W_e"].shape[1]
    e = p["W_e"][x] + p["W_p"][:T]
    mask = jnp.tril(jnp.ones((T, T), bool))

    def block(e, lp):
        a = layer_norm(e, lp["gamma_1"], lp["beta_1"]) @ lp["W_qkv"] + lp["b_qkv"]
        q, k, v = (t.reshape(B, T, heads, D // heads).transpose(0, 2, 1, 3) for t in jnp.split(a, 3, axis=-1))
        s = jnp.where(mask, q @ k.swapaxes(-1, -2) / jnp.sqrt(D // heads), -jnp.inf)
        y = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        e = e + y @ lp["W_o"] + lp["b_o"]
        h = layer_norm(e, lp["gamma_2"], lp["beta_2"])
        return e + gelu(h @ lp["W_fc"] + lp["b_fc"]) @ lp["W_proj"] + lp["b_proj"], None

    e, _ = jax.lax.scan(block, e, {k: p[k] for k in BLOCK})
    return layer_norm(e, p["gamma_f"], p["beta_f"]) @ p["W_e"].T


def loss_fn(p, tokens, heads):
    logits = forward(p, tokens[:, :-1], heads)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))


def make_train_step(heads, lr=1e-4, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
    @jax.jit
    def step(p, m, v, t, tokens):
        loss, g = jax.value_and_grad(loss_fn)(p, tokens, heads)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree_util.tree_map(lambda w, m, v: w * (1 - lr * wd) - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                                   p, m, v)
        return p, m, v, loss
    return step
