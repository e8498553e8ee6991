"""cards/BARTDecoderLayer.card (calling BARTAttention and LayerNorm) against Hugging Face's
BartDecoderLayer, built from a small BartConfig with random weights (no download), eval mode, no
dropout, float64: the output, the gradients of both inputs (the decoder's rows and the encoder's
output) and of every parameter within max|Δ| / max|reference| ≤ 1e-9, tensor by tensor, under both of
transformers' attention implementations.

BART scales the queries by 1/√(D/H) before the product with the keys, the card divides the scores
after it: the same number up to rounding. The causal mask goes in as the additive bias BartDecoder
builds (torch.finfo(float64).min above the diagonal), so a masked key's weight is exp(−1.8e308) = 0,
as the card's −∞ gives. Every size differs from every other (D, H, D/H, D_f, T, T_z, B), so a swapped
axis cannot go unnoticed, and the weights are drawn at a scale that keeps attention far from uniform.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BartConfig
from transformers.models.bart.modeling_bart import BartDecoderLayer

from .conftest import load_generated

D, H, D_F, T, T_Z, B = 18, 3, 22, 7, 5, 4
TOL = 1e-9

# Card parameter -> HF tensor of the layer, and whether HF stores it transposed (nn.Linear: out × in).
ATTENTION = {"W_q": "q_proj.weight", "b_q": "q_proj.bias", "W_k": "k_proj.weight", "b_k": "k_proj.bias",
             "W_v": "v_proj.weight", "b_v": "v_proj.bias", "W_o": "out_proj.weight", "b_o": "out_proj.bias"}
TENSORS = {**{card: f"self_attn.{hf}" for card, hf in ATTENTION.items()},
           **{f"{card}_2": f"encoder_attn.{hf}" for card, hf in ATTENTION.items()},
           "gamma_1": "self_attn_layer_norm.weight", "beta_1": "self_attn_layer_norm.bias",
           "gamma_2": "encoder_attn_layer_norm.weight", "beta_2": "encoder_attn_layer_norm.bias",
           "W_1": "fc1.weight", "b_1": "fc1.bias", "W_2": "fc2.weight", "b_2": "fc2.bias",
           "gamma_3": "final_layer_norm.weight", "beta_3": "final_layer_norm.bias"}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: torch's thread pool only adds overhead on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hf_layer(attn_implementation: str) -> BartDecoderLayer:
    cfg = BartConfig(d_model=D, decoder_attention_heads=H, decoder_ffn_dim=D_F, activation_function="gelu",
                     dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                     attn_implementation=attn_implementation)
    torch.manual_seed(0)
    layer = BartDecoderLayer(cfg, layer_idx=0).to(torch.float64).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "layer_norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
            else:
                p.copy_(noise / np.sqrt(p.shape[-1]) if p.ndim == 2 else 0.2 * noise)
    return layer


def card_params(layer, mod):
    named = dict(layer.named_parameters())
    arrays = {card: named[hf].detach().numpy().copy() for card, hf in TENSORS.items()}
    return mod.Params(**{k: a.T if a.ndim == 2 else a for k, a in arrays.items()})


def causal_bias():
    bias = torch.zeros((T, T), dtype=torch.float64)
    bias[torch.ones(T, T, dtype=torch.bool).triu(1)] = torch.finfo(torch.float64).min
    return bias[None, None].expand(B, 1, T, T)


def rel(a, b) -> float:
    b = np.asarray(b)
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_bart_decoder_layer_matches_transformers(attn_implementation):
    mod = load_generated("BARTDecoderLayer")
    layer = hf_layer(attn_implementation)
    params = card_params(layer, mod)
    config = mod.Config(D=D, H=H, D_f=D_F)
    rng = np.random.default_rng(5)
    X, Z = rng.standard_normal((B, T, D)), rng.standard_normal((B, T_Z, D))
    Y, cache = mod.forward(config, params, X, Z)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = mod.backward(config, params, cache, dY)

    Xt, Zt = torch.tensor(X, requires_grad=True), torch.tensor(Z, requires_grad=True)
    Yt = layer(Xt, attention_mask=causal_bias(), encoder_hidden_states=Zt, use_cache=False)
    Yt = Yt[0] if isinstance(Yt, tuple) else Yt
    (Yt * torch.from_numpy(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(input_grads["X"], Xt.grad) <= TOL
    assert rel(input_grads["Z"], Zt.grad) <= TOL
    named = dict(layer.named_parameters())
    for card, hf in TENSORS.items():
        if card in ("b_k", "b_k_2"):  # a key bias shifts every score of a query alike: softmax drops it
            assert np.abs(getattr(grads, card)).max() <= 1e-12 * max(1.0, np.abs(named[hf].detach().numpy()).max())
            continue
        ref = named[hf].grad.numpy()
        assert rel(getattr(grads, card), ref.T if ref.ndim == 2 else ref) <= TOL, card


def test_causal_self_attention_sees_no_later_token():
    """Changing the last decoder token changes no earlier row of the output."""
    mod = load_generated("BARTDecoderLayer")
    params = card_params(hf_layer("eager"), mod)
    config = mod.Config(D=D, H=H, D_f=D_F)
    rng = np.random.default_rng(6)
    X, Z = rng.standard_normal((1, T, D)), rng.standard_normal((1, T_Z, D))
    Y, _ = mod.forward(config, params, X, Z)
    X2 = X.copy()
    X2[0, -1] += 1.0
    Y2, _ = mod.forward(config, params, X2, Z)
    np.testing.assert_array_equal(Y[0, :-1], Y2[0, :-1])
    assert not np.allclose(Y[0, -1], Y2[0, -1])
