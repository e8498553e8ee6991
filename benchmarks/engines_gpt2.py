"""The GPT-2 step of gpt2_step.py on other engines: the array-API modules of the
GPT2 and cross_entropy cards (`cardgen build --target array-api`, compiled here
in memory), run on PyTorch CPU tensors (eager) and on JAX arrays under
`jax.jit` (forward, loss and backward as one compiled function).  Each step
returns (loss, gradients as float32 NumPy arrays) like the others, so
gpt2_step.py checks their agreement before it times them (`--engines`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def array_api_modules():
    from cardgen.compile.gradcheck import load_module
    from cardgen.lang.load import library_for, load
    mods = []
    for name in ("GPT2", "cross_entropy"):
        path = str(ROOT / "cards" / f"{name}.card")
        lib = library_for(path)
        _, checked = load(path, lib)
        mods.append(load_module(checked, lib, f"cards/{name}.card", target="array-api"))
    return mods


def loss_and_grads(gpt2, ce, cfg, params, x, xp):
    """The step of gpt2_step.generated_step, written once for any namespace xp."""
    logits, cache = gpt2.forward(cfg, params, x, 0)
    loss_seq, ce_cache = ce.forward(ce.Config(), ce.Params(), logits[:, :-1], x[:, 1:])
    batch = x.shape[0]
    _, d = ce.backward(ce.Config(), ce.Params(), ce_cache, xp.full((batch,), 1.0 / batch, dtype=logits.dtype))
    last = xp.zeros((batch, 1, logits.shape[-1]), dtype=logits.dtype)  # no next token after the last
    grads, _ = gpt2.backward(cfg, params, cache, xp.concat([d["P"], last], axis=1))
    return xp.mean(loss_seq), vars(grads)


def torch_step(cfg, params, x):
    """Eager PyTorch on CPU tensors (torch's own thread count)."""
    import array_api_compat.torch as xp
    import torch
    gpt2, ce = array_api_modules()
    p = gpt2.Params(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in vars(params).items()})
    tokens = torch.from_numpy(x)

    def step():
        with torch.no_grad():
            loss, grads = loss_and_grads(gpt2, ce, cfg, p, tokens, xp)
        return float(loss), {k: v.numpy() for k, v in grads.items()}
    return step


def jax_step(cfg, params, x):
    """jax.jit of forward, loss and backward (traced once, then compiled code on every call)."""
    import jax
    import jax.numpy as jnp
    gpt2, ce = array_api_modules()

    @jax.jit
    def run(p, tokens):
        return loss_and_grads(gpt2, ce, cfg, gpt2.Params(**p), tokens, jnp)
    p = {k: jnp.asarray(v) for k, v in vars(params).items()}
    tokens = jnp.asarray(x)

    def step():
        loss, grads = run(p, tokens)
        return float(loss), {k: np.asarray(v) for k, v in grads.items()}  # float() waits for the result
    return step
