"""cardgen.torch: a compiled card inside PyTorch.  Takes a card (its array-API
module, compiled in memory) and gives a ``torch.nn.Module`` whose parameters
are ``nn.Parameter``s and whose backward is the card's derived backward pass,
through ``CardFunction`` (a ``torch.autograd.Function``), so it sits in any
model, trains under any stock optimizer and runs wherever its tensors are.

    attn = CardModule("cards/CausalSelfAttention.card", D=64, H=4)
    y = attn(x)                       # x: (…, T, D) tensor; y.backward(…) runs the card's backward

``ddp.py`` (``cardgen train … --engine torch``) trains a model card data-parallel
on ``torch.distributed``.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..compile.gradcheck import load_module
from ..lang.errors import CardError
from ..lang.load import library_for, load

__all__ = ["CardFunction", "CardModule", "compile_card"]


def compile_card(card_path: str):
    """The array-API module of a model card, compiled in memory (nothing is written)."""
    lib = library_for(card_path)
    _, checked = load(card_path, lib)
    return load_module(checked, lib, card_path, target="array-api")


class CardFunction(torch.autograd.Function):
    """One call of a card: forward runs the module's forward on the tensors as they are (no
    graph of PyTorch ops is recorded), backward runs the card's derived backward on the cache
    it kept.  ``apply(module, config, n_inputs, *inputs, *params)``."""

    @staticmethod
    def forward(ctx, module, config, n_inputs: int, *tensors):
        inputs, values = tensors[:n_inputs], tensors[n_inputs:]
        params = module.Params(*values)
        *outs, cache = module.forward(config, params, *inputs)
        ctx.module, ctx.config, ctx.params, ctx.cache = module, config, params, cache
        ctx.input_names = list(inspect.signature(module.forward).parameters)[2:2 + n_inputs]
        ctx.real = [isinstance(x, torch.Tensor) and x.is_floating_point() for x in inputs]
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    @once_differentiable  # the card's backward is not itself differentiated again
    def backward(ctx, *grad_outs):
        grad_outs = [torch.zeros_like(g) if g is None else g for g in grad_outs]
        grads, input_grads = ctx.module.backward(ctx.config, ctx.params, ctx.cache, *grad_outs)
        d_inputs = [input_grads.get(name) if real else None for name, real in zip(ctx.input_names, ctx.real,
                                                                                  strict=True)]
        return (None, None, None, *d_inputs, *(getattr(grads, f.name) for f in dataclasses.fields(grads)))


class CardModule(torch.nn.Module):
    """A model card as a layer: ``CardModule(card_path, dtype=…, seed=…, **hyperparameters)``.
    Parameters are drawn by the card's ``init_params`` (the NumPy target's numbers for the same
    seed) and registered under the card's field names; ``forward(*inputs)`` takes the card's inputs
    (token ids as integer tensors, offsets such as ``p_start`` as Python ints)."""

    def __init__(self, card: str, *, dtype: torch.dtype = torch.float32, seed: int = 0, module=None, **sizes):
        super().__init__()
        self.card = card
        self.module = module if module is not None else compile_card(card)
        fields = dataclasses.fields(self.module.Config)
        unknown = sorted(set(sizes) - {f.name for f in fields})
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in sizes]
        if unknown or missing:
            raise CardError(f"{card}: " + "; ".join(
                ([f"no hyperparameter {', '.join(unknown)}"] if unknown else [])
                + ([f"give {', '.join(f'{n}=…' for n in missing)} (no default)"] if missing else []))
                + f"; its Config has {', '.join(f.name for f in fields) or 'no fields'}")
        self.config = self.module.Config(**sizes)
        np_dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(dtype)
        if np_dtype is None:
            raise CardError(f"cards compute in float32 or float64, not {dtype}")
        params = self.module.init_params(self.config, np.random.default_rng(seed), np_dtype)
        self.names = [f.name for f in dataclasses.fields(self.module.Params)]
        for name in self.names:
            self.register_parameter(name, torch.nn.Parameter(torch.from_numpy(getattr(params, name))))
        self.n_inputs = len(inspect.signature(self.module.forward).parameters) - 2

    def forward(self, *inputs):
        if len(inputs) != self.n_inputs:
            names = list(inspect.signature(self.module.forward).parameters)[2:]
            raise TypeError(f"{self.module.__name__} takes {self.n_inputs} inputs ({', '.join(names)}), "
                            f"got {len(inputs)}")
        return CardFunction.apply(self.module, self.config, self.n_inputs, *inputs,
                                  *(getattr(self, n) for n in self.names))

    def extra_repr(self) -> str:
        return f"{self.card}, {self.config}"
