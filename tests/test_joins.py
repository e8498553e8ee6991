"""Joins of arrays: [A, B] side by side and [A; B] stacked, forward and backward,
against torch.cat; the rotate-half RoPE card against Hugging Face's LLaMA."""

from __future__ import annotations

import numpy as np
import pytest

from cardgen import CardError, parse
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check

from .conftest import load_generated

torch = pytest.importorskip("torch")


def module(src: str):
    card = parse(src)
    lib = Library(cards={card.name: card})
    return load_module(check(card, lib), lib), check(card, lib), lib


def card(expr: str, out: str, convention="rows, 0-based", a="ℝ^{T×D}", b="ℝ^{T×E}", c="ℝ^{T×D}") -> str:
    return (f"algorithm Y ← J(A, B, C)\n  convention {convention}\n  input  A ∈ {a}\n  input  B ∈ {b}\n"
            f"  input  C ∈ {c}\n  output Y ∈ {out}\n  1 return Y = {expr}\n")


CASES = [  # card expression, output, sets of A B C, the same in torch
    ("[A, B, C]", "ℝ^{T×2·D+E}", ("ℝ^{T×D}", "ℝ^{T×E}", "ℝ^{T×D}"), lambda a, b, c: torch.cat([a, b, c], -1)),
    ("[A; B; C]", "ℝ^{2·T+E×D}", ("ℝ^{T×D}", "ℝ^{E×D}", "ℝ^{T×D}"), lambda a, b, c: torch.cat([a, b, c], 0)),
    ("[A, B ⊙ C]", "ℝ^{T×2}", ("ℝ^T", "ℝ^T", "ℝ^T"), lambda a, b, c: torch.stack([a, b * c], -1)),
    ("[A; −B]", "ℝ^{2×T}", ("ℝ^T", "ℝ^T", "ℝ^T"), lambda a, b, c: torch.stack([a, -b], 0)),
    ("[A, B] ⊙ [C, C]", "ℝ^{T×2·D}", ("ℝ^{T×D}", "ℝ^{T×D}", "ℝ^{T×D}"),
     lambda a, b, c: torch.cat([a, b], -1) * torch.cat([c, c], -1)),
]


@pytest.mark.parametrize("expr, out, sets, ref", CASES, ids=[c[0] for c in CASES])
def test_join_matches_torch_cat(expr, out, sets, ref):
    mod, _, _ = module(card(expr, out, a=sets[0], b=sets[1], c=sets[2]))
    rng = np.random.default_rng(0)
    sizes = {"T": 3, "D": 4, "E": 5}
    shapes = [tuple(sizes[d] for d in s.removeprefix("ℝ^").strip("{}").split("×")) for s in sets]
    arrays = [rng.standard_normal((2,) + s) for s in shapes]  # a batch of two
    fields = mod.Config.__dataclass_fields__
    cfg = mod.Config(**{k: v for k, v in sizes.items() if k in fields})
    y, cache = mod.forward(cfg, mod.Params(), *arrays)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    ty = torch.stack([ref(*(t[i] for t in tensors)) for i in range(2)])
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    _, grads = mod.backward(cfg, mod.Params(), cache, dy)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13)
    for name, t in zip("ABC", tensors, strict=True):
        if t.grad is None:  # an input the expression does not read has no gradient on either side
            assert name not in grads
            continue
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_join_in_the_column_convention_and_gradcheck():
    _, checked, lib = module(card("[A; B] ⊙ [C; C]", "ℝ^{2·D×T}", "columns, 1-based", "ℝ^{D×T}", "ℝ^{D×T}",
                                  "ℝ^{D×T}"))
    assert gradcheck(checked, lib, {}).worst < 1e-8


@pytest.mark.parametrize("expr, words", [
    ("[A, B]", "cannot join ℝ^{T×D} and ℝ^{E×D} side by side: their other axes differ"),
    ("[A; B]", "cannot join ℝ^{T×D} and ℝ^{E×D} stacked"),
])
def test_join_of_mismatched_arrays_is_an_error(expr, words):
    src = card(expr, "ℝ^{T×D}", b="ℝ^{E×D}")
    if expr == "[A; B]":
        src = src.replace("input  B ∈ ℝ^{E×D}", "input  B ∈ ℝ^{E×T}")
        words = "cannot join ℝ^{T×D} and ℝ^{E×T} stacked"
    with pytest.raises(CardError, match=words.replace("^", r"\^").replace("{", r"\{").replace("}", r"\}")):
        check(parse(src), Library())


def test_rope_matches_hugging_face_llama():
    """The card's rotate-half RoPE against transformers' apply_rotary_pos_emb, with the cos/sin of
    LlamaRotaryEmbedding, float64, outputs and the gradient of every input ≤ 1e-12."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    from transformers import LlamaConfig
    n_heads, T, D = 3, 7, 8
    cfg = LlamaConfig(hidden_size=n_heads * D, num_attention_heads=n_heads, max_position_embeddings=32)
    rotary = llama.LlamaRotaryEmbedding(cfg)
    rng = np.random.default_rng(1)
    q = torch.tensor(rng.standard_normal((2, n_heads, T, D)), requires_grad=True)
    pos = torch.arange(T)[None].expand(2, T)
    cos, sin = rotary(q, pos)
    cos = cos.double().detach().requires_grad_()
    sin = sin.double().detach().requires_grad_()
    ref, _ = llama.apply_rotary_pos_emb(q, q, cos, sin)  # (2, H, T, D); cos and sin (2, T, D)
    dy = rng.standard_normal(ref.shape)
    ref.backward(torch.tensor(dy))
    mod = load_generated("RoPE")
    c = cos.detach().numpy()[:, None]
    s = sin.detach().numpy()[:, None]
    y, cache = mod.forward(mod.Config(), mod.Params(), q.detach().numpy(), c, s)
    _, grads = mod.backward(mod.Config(), mod.Params(), cache, dy)
    np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["X"], q.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["C"].sum(1), cos.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads["S"].sum(1), sin.grad.numpy(), rtol=1e-12, atol=1e-13)
