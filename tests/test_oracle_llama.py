"""The LLaMA-3-style block card against code nobody here wrote: transformers' LlamaDecoderLayer.

The layer is built from a LlamaConfig with grouped-query attention (6 query heads sharing 2
key/value heads), random weights (its own initialisation, RMSNorm gains drawn around 1), float64
throughout, and the card's generated module gets the same weights.  Outputs and the gradient of
Σ out ⊙ G with respect to every parameter and every input (e, and the rotary cos and sin) must
agree to 1e-9 relative to the reference's largest entry.

Where transformers computes in float32 inside a float64 model, the comparison uses a float64
reference written from its definition, and a second test shows the float32 is really there:
- LlamaRMSNorm casts its input to float32 (``hidden_states.to(torch.float32)``) and back; the
  float64 test replaces its ``forward`` with the same formula in the input's dtype;
- LlamaRotaryEmbedding computes the angles in float32 (``position_ids.float() * inv_freq``), so
  cos and sin are made here in float64 from its definition (inv_freq = 1/θ^{2i/d}) and passed to the
  layer as its ``position_embeddings``, as LlamaModel passes them;
- the eager attention takes its softmax in float32, so the layer runs with ``attn_implementation="sdpa"``
  (PyTorch's scaled_dot_product_attention, float64 on the CPU; transformers' own repeat_kv grouping).
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import load_generated

torch = pytest.importorskip("torch")
llama = pytest.importorskip("transformers.models.llama.modeling_llama")

B, T, D, H, H_KV, D_F, THETA = 3, 7, 24, 6, 2, 20, 500000.0
TOL = 1e-9


def rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def rms_norm_float64(self, hidden_states):
    """LlamaRMSNorm.forward by its definition, in the input's dtype (transformers casts to float32)."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def layer_and_inputs(rng):
    from transformers import LlamaConfig
    cfg = LlamaConfig(hidden_size=D, num_attention_heads=H, num_key_value_heads=H_KV, intermediate_size=D_F,
                      rms_norm_eps=1e-6, rope_theta=THETA, attention_bias=False, mlp_bias=False,
                      hidden_act="silu", attn_implementation="sdpa")
    torch.manual_seed(int(rng.integers(1 << 30)))
    layer = llama.LlamaDecoderLayer(cfg, layer_idx=0).double().eval()
    with torch.no_grad():
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.copy_(torch.tensor(1.0 + 0.1 * rng.standard_normal(D)))
    assert layer.self_attn.config._attn_implementation == "sdpa"
    assert layer.self_attn.num_key_value_groups == H // H_KV
    w = D // H
    inv_freq = 1.0 / THETA ** (np.arange(0, w, 2) / w)                # the rotary definition, float64
    angle = np.arange(T)[:, None] * inv_freq
    angle = np.broadcast_to(np.concatenate([angle, angle], -1), (B, T, w))
    return cfg, layer, rng.standard_normal((B, T, D)), np.cos(angle), np.sin(angle)


def card_params(mod, layer):
    a, m = layer.self_attn, layer.mlp

    def t(lin):  # nn.Linear computes x Wᵀ; the card's rows compute x W
        return lin.weight.detach().numpy().T.copy()

    return mod.Params(g_1=layer.input_layernorm.weight.detach().numpy().copy(),
                      W_q=t(a.q_proj), W_o=t(a.o_proj), W_k=t(a.k_proj), W_v=t(a.v_proj),
                      g_2=layer.post_attention_layernorm.weight.detach().numpy().copy(),
                      W_1=t(m.gate_proj), W_3=t(m.up_proj), W_2=t(m.down_proj))


def run_hf(layer, e, cos, sin, G):
    te, tc, ts = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (e, cos, sin))
    out = layer(hidden_states=te, attention_mask=None, position_embeddings=(tc, ts))
    out = out[0] if isinstance(out, tuple) else out
    torch.sum(out * torch.tensor(G)).backward()
    return out.detach().numpy(), te, tc, ts


def test_llama_block_matches_transformers_llama_decoder_layer(monkeypatch):
    rng = np.random.default_rng(3)
    cfg, layer, e, cos, sin = layer_and_inputs(rng)
    monkeypatch.setattr(llama.LlamaRMSNorm, "forward", rms_norm_float64)
    mod = load_generated("LLaMABlock")
    config = mod.Config(D=D, H=H, H_kv=H_KV, D_f=D_F)
    params = card_params(mod, layer)
    out, cache = mod.forward(config, params, e, cos, sin)
    G = rng.standard_normal(out.shape)
    ref, te, tc, ts = run_hf(layer, e, cos, sin, G)
    assert rel(out, ref) <= TOL
    grads, input_grads = mod.backward(config, params, cache, G)
    a, m = layer.self_attn, layer.mlp
    pairs = {"g_1": layer.input_layernorm.weight.grad, "g_2": layer.post_attention_layernorm.weight.grad,
             "W_q": a.q_proj.weight.grad.T, "W_k": a.k_proj.weight.grad.T, "W_v": a.v_proj.weight.grad.T,
             "W_o": a.o_proj.weight.grad.T, "W_1": m.gate_proj.weight.grad.T, "W_3": m.up_proj.weight.grad.T,
             "W_2": m.down_proj.weight.grad.T}
    errors = {k: rel(getattr(grads, k), v.numpy()) for k, v in pairs.items()}
    errors |= {f"input {k}": rel(input_grads[k], v.grad.numpy()) for k, v in (("e", te), ("C", tc), ("S", ts))}
    assert max(errors.values()) <= TOL, errors


def test_transformers_computes_rms_norm_and_rotary_angles_in_float32():
    """Why the float64 test patches RMSNorm and makes its own cos/sin: unpatched, the float64 layer
    differs from the card (and from its own float64 definition) at float32's precision."""
    rng = np.random.default_rng(3)
    cfg, layer, e, cos, sin = layer_and_inputs(rng)
    mod = load_generated("LLaMABlock")
    config = mod.Config(D=D, H=H, H_kv=H_KV, D_f=D_F)
    out, _ = mod.forward(config, card_params(mod, layer), e, cos, sin)
    ref, *_ = run_hf(layer, e, cos, sin, np.zeros(out.shape))
    assert 1e-9 < rel(out, ref) < 1e-5                                 # float32 RMSNorm inside
    rotary = llama.LlamaRotaryEmbedding(cfg)
    x = torch.zeros((B, T, D), dtype=torch.float64)
    hf_cos, hf_sin = rotary(x, torch.arange(T)[None].expand(B, T))
    assert hf_cos.dtype == torch.float64                               # returned as float64 ...
    assert 1e-12 < rel(hf_cos.numpy(), cos) < 1e-5                     # ... computed in float32
    assert rel(hf_sin.numpy(), sin) < 1e-5
