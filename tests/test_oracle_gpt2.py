"""The generated GPT-2 against Hugging Face's GPT2LMHeadModel (random weights,
no download): logits, next-token loss, and every parameter gradient."""

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from cardgen.train.hf import BLOCK_TENSORS, MODEL_TENSORS

from .conftest import load_generated

V, D, H, N, CTX, T, B = 50, 32, 4, 3, 16, 11, 3


def hf_model(dtype):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=CTX, bos_token_id=0, eos_token_id=0, n_embd=D, n_layer=N, n_head=H,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                     activation_function="gelu_new")
    model = GPT2LMHeadModel(cfg).to(dtype)
    model.eval()
    return model


def hf_arrays(model, read):
    """Every card parameter, each HF tensor turned into an array by `read`, through the package's
    weight map (cardgen.train.hf: the one `cardgen import-hf` uses)."""
    named = dict(model.transformer.named_parameters())
    arrays = {card: read(named[hf]) for card, hf in MODEL_TENSORS.items()}
    arrays.update({card: np.stack([read(named[f"h.{i}.{hf}"]) for i in range(len(model.transformer.h))])
                   for card, hf in BLOCK_TENSORS.items()})
    return arrays


def to_params(gpt2, model, np_dtype):
    return gpt2.Params(**hf_arrays(model, lambda p: p.detach().numpy().astype(np_dtype)))


def hf_grads(model):
    return hf_arrays(model, lambda p: p.grad.numpy())


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("np_dtype, torch_dtype, tol", [(np.float64, torch.float64, 1e-9),
                                                         (np.float32, torch.float32, 1e-4)])
def test_gpt2_matches_hugging_face(np_dtype, torch_dtype, tol):
    gpt2, ce = load_generated("GPT2"), load_generated("cross_entropy")
    model = hf_model(torch_dtype)
    x = np.random.default_rng(1).integers(0, V, size=(B, T))
    cfg = gpt2.Config(V=V, D=D, H=H, D_f=4 * D, N=N, ctx=CTX)
    params = to_params(gpt2, model, np_dtype)

    # forward: logits and the mean next-token loss (teacher forcing)
    logits, cache = gpt2.forward(cfg, params, x, 0)
    loss_seq, ce_cache = ce.forward(ce.Config(), ce.Params(), logits[:, :-1], x[:, 1:])
    loss = float(np.mean(loss_seq))
    tokens = torch.from_numpy(x)
    ref_logits = model(tokens).logits
    # The loss in the model's own precision (transformers' built-in loss upcasts to float32).
    ref_loss = torch.nn.functional.cross_entropy(ref_logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    assert logits.dtype == np_dtype
    assert rel(logits, ref_logits.detach().numpy()) <= tol
    assert abs(loss - ref_loss.item()) / abs(ref_loss.item()) <= tol

    # backward: every parameter gradient, the tied W_e (lookup + unembedding) included
    ref_loss.backward()
    _, d = ce.backward(ce.Config(), ce.Params(), ce_cache, np.full(B, 1.0 / B, dtype=np_dtype))
    d_logits = np.zeros_like(logits)
    d_logits[:, :-1] = d["P"]
    grads, _ = gpt2.backward(cfg, params, cache, d_logits)
    expected = hf_grads(model)
    errors = {name: rel(getattr(grads, name), ref) for name, ref in expected.items()}
    assert max(errors.values()) <= tol, errors
    assert grads.W_e.dtype == np_dtype
