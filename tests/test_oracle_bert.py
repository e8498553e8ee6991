"""The BERT cards (cards/BERTClassifier.card, calling BERTLayer, BERTSelfAttention and LayerNorm)
against Hugging Face's BertForSequenceClassification, built from a small BertConfig with random
weights (no download), eval mode, no dropout, float64: the logits and the gradient of every
parameter within max|Δ| / max|reference| ≤ 1e-9, tensor by tensor, under both of transformers'
attention implementations (its own eager code and torch's scaled_dot_product_attention).

Where transformers could leave float64: the padding mask, which it builds as an additive bias of
torch.finfo(dtype).min in the model's dtype (float64 here, so a padded key's weight is exp(−1.8e308)
= 0, as the card's −∞ gives), and the activation, ACT2FN["gelu"], torch's exact erf GELU in the
input's dtype. Nothing is computed in float32, which the logits show: they agree to ~1e-15, where
a float32 step anywhere would leave ~1e-7.

Every size differs from every other (V, D, H, D/H, D_f, L, P, N_s, C, T, B), so a transposed or
swapped axis cannot go unnoticed; the sequences have different lengths (padding at the end, one of
them unpadded), the token types are mixed, and every weight is drawn afresh at a scale that keeps
attention far from uniform and the layer norms far from trivial (HF's own 0.02-scale init would not).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from .conftest import load_generated

V, D, H, D_F, L, P, N_S, C, T, B = 29, 20, 5, 23, 2, 13, 3, 6, 11, 7
LENGTHS = (11, 9, 1, 6, 10, 3, 11)  # real tokens per sequence; the rest is padding
TOL = 1e-9

# Card parameter -> HF tensor (under bert.), and whether HF stores it transposed (nn.Linear: out × in).
MODEL_TENSORS = {"W_e": ("embeddings.word_embeddings.weight", False),
                 "W_p": ("embeddings.position_embeddings.weight", False),
                 "W_s": ("embeddings.token_type_embeddings.weight", False),
                 "gamma_e": ("embeddings.LayerNorm.weight", False), "beta_e": ("embeddings.LayerNorm.bias", False),
                 "W_pool": ("pooler.dense.weight", True), "b_pool": ("pooler.dense.bias", False)}
HEAD_TENSORS = {"W_c": ("classifier.weight", True), "b_c": ("classifier.bias", False)}
# Per encoder layer (under bert.encoder.layer.<ℓ>.): stacked on a leading axis in the card's Params.
LAYER_TENSORS = {"W_q": ("attention.self.query.weight", True), "b_q": ("attention.self.query.bias", False),
                 "W_k": ("attention.self.key.weight", True), "b_k": ("attention.self.key.bias", False),
                 "W_v": ("attention.self.value.weight", True), "b_v": ("attention.self.value.bias", False),
                 "W_o": ("attention.output.dense.weight", True), "b_o": ("attention.output.dense.bias", False),
                 "gamma_1": ("attention.output.LayerNorm.weight", False),
                 "beta_1": ("attention.output.LayerNorm.bias", False),
                 "W_1": ("intermediate.dense.weight", True), "b_1": ("intermediate.dense.bias", False),
                 "W_2": ("output.dense.weight", True), "b_2": ("output.dense.bias", False),
                 "gamma_2": ("output.LayerNorm.weight", False), "beta_2": ("output.LayerNorm.bias", False)}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: torch's thread pool only adds overhead on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hf_model(attn_implementation: str):
    cfg = BertConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=D_F,
                     hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     max_position_embeddings=P, type_vocab_size=N_S, layer_norm_eps=1e-12, num_labels=C,
                     attn_implementation=attn_implementation)
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).to(torch.float64).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "LayerNorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * noise)
            elif "embeddings" in name:
                p.copy_(noise)
            else:
                p.copy_(noise / np.sqrt(p.shape[-1]) if p.ndim == 2 else 0.2 * noise)
    assert model.config._attn_implementation == attn_implementation
    return model


def hf_arrays(model, read):
    """Every card parameter as an array, each HF tensor turned into one by `read`."""
    named = dict(model.named_parameters())

    def one(hf, transposed):
        a = read(named[hf])
        return a.T if transposed else a

    arrays = {card: one(f"bert.{hf}", tr) for card, (hf, tr) in MODEL_TENSORS.items()}
    arrays.update({card: one(hf, tr) for card, (hf, tr) in HEAD_TENSORS.items()})
    arrays.update({card: np.stack([one(f"bert.encoder.layer.{i}.{hf}", tr) for i in range(L)])
                   for card, (hf, tr) in LAYER_TENSORS.items()})
    return arrays


def inputs():
    rng = np.random.default_rng(2)
    x = rng.integers(0, V, size=(B, T))
    s = rng.integers(0, N_S, size=(B, T))
    m = (np.arange(T)[None, :] < np.array(LENGTHS)[:, None]).astype(np.int64)
    return x, s, m


def rel(a, b) -> float:
    b = np.asarray(b)
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_bert_classifier_matches_transformers(attn_implementation):
    bert = load_generated("BERTClassifier")
    model = hf_model(attn_implementation)
    x, s, m = inputs()
    cfg = bert.Config(V=V, D=D, H=H, D_f=D_F, L=L, P=P, N_s=N_S, C=C)
    params = bert.Params(**hf_arrays(model, lambda p: p.detach().numpy().copy()))

    z, cache = bert.forward(cfg, params, x, s, m)
    G = np.random.default_rng(3).standard_normal((B, C))
    grads, input_grads = bert.backward(cfg, params, cache, G)
    assert input_grads == {}  # token ids, token types and the mask have no gradient

    out = model(input_ids=torch.from_numpy(x), token_type_ids=torch.from_numpy(s),
                attention_mask=torch.from_numpy(m))
    (out.logits * torch.from_numpy(G)).sum().backward()
    assert out.logits.dtype == torch.float64
    assert rel(z, out.logits.detach()) <= 1e-12  # no float32 step anywhere (it would leave ~1e-7)
    reference = hf_arrays(model, lambda p: p.grad.numpy())
    # The key bias adds one number to all of a query's scores, which softmax ignores: its gradient is
    # zero, and both sides give rounding noise, checked as such against the key weights' gradient.
    noise = {"b_k"}
    for name, ref in reference.items():
        if name not in noise:
            assert rel(getattr(grads, name), ref) <= TOL, name
    scale = np.abs(reference["W_k"]).max()
    assert np.abs(grads.b_k).max() <= 1e-12 * scale and np.abs(reference["b_k"]).max() <= 1e-12 * scale
    # The gradient reaches everything it should: the rows of W_p past the longest sequence stay zero
    # (T < P), and so do the W_e rows of tokens absent from x.
    assert not grads.W_p[T:].any() and grads.W_p[:T].any()
    absent = sorted(set(range(V)) - set(x.ravel().tolist()))
    assert not grads.W_e[absent].any()


def test_padding_changes_nothing_of_the_real_tokens():
    """A sequence's logits do not depend on what stands in its padding, nor on how much there is."""
    bert = load_generated("BERTClassifier")
    model = hf_model("eager")
    cfg = bert.Config(V=V, D=D, H=H, D_f=D_F, L=L, P=P, N_s=N_S, C=C)
    params = bert.Params(**hf_arrays(model, lambda p: p.detach().numpy().copy()))
    x, s, m = inputs()
    z, _ = bert.forward(cfg, params, x, s, m)
    n = LENGTHS[1]
    z_short, _ = bert.forward(cfg, params, x[1, :n], s[1, :n], np.ones(n, np.int64))
    rng = np.random.default_rng(4)
    x_other = np.where(m[1] == 1, x[1], rng.integers(0, V, T))
    z_other, _ = bert.forward(cfg, params, x_other, s[1], m[1])
    assert rel(z_short, z[1]) <= 1e-12 and rel(z_other, z[1]) <= 1e-12


@pytest.mark.parametrize("name, sizes", [("bert-base", {}),
                                         ("bert-large", dict(hidden_size=1024, num_hidden_layers=24,
                                                             num_attention_heads=16, intermediate_size=4096))])
def test_named_configurations_have_the_released_parameter_counts(name, sizes):
    """The card's configurations against BertForSequenceClassification of the same sizes (on the
    meta device: no memory), two classes, as BertConfig's defaults otherwise are."""
    from click.testing import CliRunner

    from cardgen.cli import main
    with torch.device("meta"):
        expected = BertForSequenceClassification(BertConfig(num_labels=2, **sizes)).num_parameters()
    r = CliRunner().invoke(main, ["render", "cards/BERTClassifier.card", "--config", name])
    assert r.exit_code == 0, r.output
    assert f"Parameter count: {expected:,} at V=30522" in r.output, r.output


def test_bert_layer_alone_matches_transformers_bert_layer():
    """cards/BERTLayer.card on its own (the unit a benchmark runs) against transformers' BertLayer,
    given the additive padding mask BertModel builds for it: outputs, input and parameter gradients."""
    from transformers.models.bert.modeling_bert import BertLayer
    layer_mod = load_generated("BERTLayer")
    model = hf_model("eager")
    hf_layer = model.bert.encoder.layer[0]
    assert isinstance(hf_layer, BertLayer)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((B, T, D))
    _, _, m = inputs()
    params = layer_mod.Params(**{k: v[0] for k, v in hf_arrays(model, lambda p: p.detach().numpy().copy()).items()
                                 if k in LAYER_TENSORS})
    Y, cache = layer_mod.forward(layer_mod.Config(D=D, H=H, D_f=D_F), params, X, m)
    dY = rng.standard_normal(Y.shape)
    grads, input_grads = layer_mod.backward(layer_mod.Config(D=D, H=H, D_f=D_F), params, cache, dY)

    Xt = torch.tensor(X, requires_grad=True)
    bias = torch.zeros((B, 1, 1, T), dtype=torch.float64)
    bias[torch.from_numpy(m == 0)[:, None, None, :]] = torch.finfo(torch.float64).min
    Yt = hf_layer(Xt, attention_mask=bias)
    (Yt * torch.from_numpy(dY)).sum().backward()
    assert rel(Y, Yt.detach()) <= 1e-12
    assert rel(input_grads["X"], Xt.grad) <= TOL
    named = dict(hf_layer.named_parameters())
    for card, (hf, transposed) in LAYER_TENSORS.items():
        if card != "b_k":
            ref = named[hf].grad.numpy()
            assert rel(getattr(grads, card), ref.T if transposed else ref) <= TOL, card


def test_bert_classifier_in_float32_matches_transformers_in_float32():
    """The modules' default dtype: the same model in float32 on both sides, to 1e-5 (measured: ~5e-7)."""
    bert = load_generated("BERTClassifier")
    model = hf_model("sdpa").to(torch.float32)
    x, s, m = inputs()
    cfg = bert.Config(V=V, D=D, H=H, D_f=D_F, L=L, P=P, N_s=N_S, C=C)
    params = bert.Params(**hf_arrays(model, lambda p: p.detach().numpy().copy()))
    z, cache = bert.forward(cfg, params, x, s, m)
    G = np.random.default_rng(3).standard_normal((B, C)).astype(np.float32)
    grads, _ = bert.backward(cfg, params, cache, G)
    assert z.dtype == np.float32 and grads.W_q.dtype == np.float32

    out = model(input_ids=torch.from_numpy(x), token_type_ids=torch.from_numpy(s),
                attention_mask=torch.from_numpy(m))
    (out.logits * torch.from_numpy(G)).sum().backward()
    assert rel(z, out.logits.detach()) <= 1e-5
    for name, ref in hf_arrays(model, lambda p: p.grad.numpy()).items():
        if name != "b_k":  # zero but for rounding, as in float64
            assert rel(getattr(grads, name), ref) <= 1e-5, name
