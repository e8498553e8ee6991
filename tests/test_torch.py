"""cardgen.torch: every model card as a torch.autograd.Function passes
torch.autograd.gradcheck in float64 (the card's derived backward against
PyTorch's finite differences), and a card inside an nn.Module trains under a
stock PyTorch optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # without the `test` extra, conftest.py leaves this file out

from cardgen.lang.errors import CardError
from cardgen.torch import CardFunction, CardModule

from .conftest import ROOT
from .test_engines import MODELS, case


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tensors are small: a second thread only adds synchronisation (40× slower on a loaded
    2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def straight_through_tensors(name: str) -> set[str]:
    """The tensors a straight-through rule of the card gives a gradient that is, by design, not the
    true one (cardgen's own gradcheck says which): torch's gradcheck leaves them constant."""
    from cardgen.compile.gradcheck import gradcheck
    from cardgen.compile.lower import lower
    from cardgen.lang.load import library_for, load
    path = str(ROOT / "cards" / f"{name}.card")
    lib = library_for(path)
    _, checked = load(path, lib)
    if not any(r.straight_through for r in lower(checked, lib).rules):
        return set()
    res = gradcheck(checked, lib)
    return {t for t in res.errors if res.status(t) == "straight-through"}


@pytest.mark.parametrize("name", MODELS)
def test_card_function_passes_torch_gradcheck_in_float64(name):
    c = case(name)
    estimated = straight_through_tensors(name)
    # Every real input and every parameter is a leaf that gradcheck perturbs; token ids and
    # offsets stay as they are.
    leaves, slots = [], []
    for i, a in enumerate(c.args):
        if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating):
            leaves.append(torch.tensor(a, requires_grad=True))
            slots.append(i)
    inputs = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in c.args]
    fields = list(vars(c.params).items())
    params = [torch.tensor(v, requires_grad=True) for k, v in fields if k not in estimated]
    n_real = len(leaves)

    def call(*tensors):
        args = list(inputs)
        for i, t in zip(slots, tensors[:n_real], strict=True):
            args[i] = t
        free = iter(tensors[n_real:])
        every = [torch.tensor(v) if k in estimated else next(free) for k, v in fields]
        return CardFunction.apply(c.xp_mod, c.config, len(args), *args, *every)

    assert torch.autograd.gradcheck(call, (*leaves, *params), fast_mode=True)


def test_card_module_parameters_and_errors():
    attn = CardModule(str(ROOT / "cards/CausalSelfAttention.card"), D=8, H=2, dtype=torch.float64)
    names = [n for n, _ in attn.named_parameters()]
    assert names == ["W_qkv", "b_qkv", "W_o", "b_o"]
    assert all(isinstance(p, torch.nn.Parameter) and p.dtype == torch.float64 for p in attn.parameters())
    assert attn.W_qkv.shape == (8, 24)
    y = attn(torch.randn(3, 5, 8, dtype=torch.float64))
    assert y.shape == (3, 5, 8) and y.requires_grad
    y.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in attn.parameters())
    with pytest.raises(CardError, match=r"give H=… \(no default\)"):
        CardModule(str(ROOT / "cards/CausalSelfAttention.card"), D=8)
    with pytest.raises(CardError, match="no hyperparameter Q"):
        CardModule(str(ROOT / "cards/CausalSelfAttention.card"), D=8, H=2, Q=1)


class TinyLM(torch.nn.Module):
    """Embedding, a card's causal self-attention block, a linear read-out."""

    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.pos = torch.nn.Parameter(0.1 * torch.randn(16, width))
        self.attn = CardModule(str(ROOT / "cards/CausalSelfAttention.card"), D=width, H=2, seed=1)
        self.out = torch.nn.Linear(width, vocab)

    def forward(self, x):
        e = self.embed(x) + self.pos[: x.shape[-1]]
        return self.out(e + self.attn(e))


def test_a_model_with_a_card_block_trains_under_a_stock_optimizer():
    """Copy the token two places back: only attention to earlier positions can do it."""
    torch.manual_seed(0)
    vocab, T = 8, 12
    model = TinyLM(vocab, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    gen = torch.Generator().manual_seed(0)
    before = model.attn.W_qkv.detach().clone()
    losses = []
    for _ in range(120):
        x = torch.randint(0, vocab, (32, T), generator=gen)
        logits = model(x)[:, 2:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), x[:, :-2].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert not torch.equal(before, model.attn.W_qkv.detach()), "the optimizer never moved the card's weights"
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert first > 1.9 and last < 0.5 * first, (first, last)  # from uniform (ln 8 ≈ 2.08) to well below
