"""The reference interpreter: a checked card run step by step, as the paper reads it.

- A value is a float64 (or integer, or boolean) NumPy array in the card's own layout: a
  columns card's ``X ∈ ℝ^{d×ℓ}`` is a ``(d, ℓ)`` array, a rows card's ``X ∈ ℝ^{T×D}`` a
  ``(T, D)`` one.  Indices are the card's: 1-based or 0-based, slices inclusive or half-open.
- A family (``k_t``, ``Y_h``, ``W^h_q``, ``θ_ℓ``) is a dict from index tuples to values; read
  without its index it is its members stacked on a new first axis.
- ``for`` and ``while`` are Python loops; ``∀`` runs its step once per index value, ``Σ`` adds
  its body once per index value.
- A call of another card runs that card in a frame of its own, with its own parameters and the
  sizes its arguments have; a card declared on a vector and called with a matrix runs once per
  row (rows convention) or column (columns convention).

Nothing here is fast, and nothing is shared with ``compile/``.
"""

from __future__ import annotations

import numpy as np

from ..lang.check import Checked, Library
from ..lang.ir import Group
from .frame import Frame, GradientReached
from .values import GroupVal, InterpretError, decl_key, stack_family


def interpret_checked(checked: Checked, lib: Library, inputs: dict, params: dict, hypers: dict,
                      rng: np.random.Generator | None = None, at_gradient: bool = False) -> dict:
    """Run ``checked`` on values in card terms; returns its outputs by card name.

    ``inputs``: each input by its declared name (a family ``x_n`` stacked on a first axis, or a
    dict by index), with any leading batch axes, shared by every batched input; each example
    runs on its own.  ``params``: each parameter by its declared name; a repeated one (``W^h_q
    for h ∈ [H]``) stacked on a first axis or a dict by index; a card group (``θ_ℓ = GPT2Block
    for ℓ ∈ [N]``) a dict of the callee's parameters, stacked the same way.  ``hypers``:
    hyperparameters by name (sizes, ``ε``, a ``Mask`` array); a missing one takes its default
    or is read from the shapes of the arrays.  ``at_gradient``: a training card ends at its first
    ``∇f(θ)`` and gives ``{f: f(θ)}``, the loss (the interpreter does not differentiate).
    """
    batch, per_example = _split_batch(checked, inputs)
    given = _top_values(checked, lib, params, hypers)

    def run(example: dict) -> dict:
        frame = Frame.enter(checked, lib, example, given, {}, rng)
        frame.stop_at_gradient = at_gradient
        try:
            return frame.run()
        except GradientReached as reached:
            return {reached.name: reached.value}
    if batch is None:
        return run(per_example(()))
    results = {ix: run(per_example(ix)) for ix in np.ndindex(*batch)}
    out = {}
    for name in results[next(iter(results))]:
        first = np.asarray(results[next(iter(results))][name])
        arr = np.empty(batch + first.shape, dtype=first.dtype)
        for ix, res in results.items():
            arr[ix] = res[name]
        out[name] = arr
    return out


def _split_batch(checked: Checked, inputs: dict):
    """The batch shape the inputs share (None without one) and a function giving one example."""
    card = checked.card
    values, ranks = {}, {}
    for d in card.decls:
        if d.role != "input" or isinstance(d.set, Group):
            continue
        for n in d.names:
            key = decl_key(n, d)
            if n not in inputs and key not in inputs:
                if d.default is not None:
                    continue
                raise InterpretError(f"input {n} is missing", d.pos, f"give it: inputs={{'{n}': …}}").located(
                    card.path, card.source)
            v = inputs[n] if n in inputs else inputs[key]
            b = checked.env[key]
            if isinstance(v, dict):
                v = stack_family(v)
            values[n] = np.asarray(v)
            ranks[n] = len(b.over) + b.type.rank
    batch = None
    for n, v in values.items():
        extra = v.ndim - ranks[n]
        if extra < 0:
            raise InterpretError(f"input {n} has {v.ndim} axes but the card declares {ranks[n]}",
                                 card.decl_of(n).pos).located(card.path, card.source)
        if extra:
            if batch is not None and batch != v.shape[:extra]:
                raise InterpretError(f"input {n} has batch axes {v.shape[:extra]}, others {batch}",
                                     card.decl_of(n).pos).located(card.path, card.source)
            batch = v.shape[:extra]

    def example(ix: tuple) -> dict:
        out = {}
        for n, v in values.items():
            extra = v.ndim - ranks[n]
            out[n] = v[ix] if extra else v
        return out
    return batch, example


def _top_values(checked: Checked, lib: Library, params: dict, hypers: dict) -> dict:
    """The top card's parameters and hyperparameters by env key, families as dicts."""
    card = checked.card
    out = {}
    for d in card.decls:
        for n in d.names:
            key = decl_key(n, d)
            if d.role == "hyper" and (n in hypers or key in hypers):
                out[key] = hypers[n] if n in hypers else hypers[key]
            elif d.role == "param" and not (isinstance(d.set, Group) and d.set.card is None) or \
                    d.role == "input" and isinstance(d.set, Group):  # θ = DTransformer, a training card's
                if n not in params and key not in params:
                    raise InterpretError(f"parameter {n} is missing", d.pos, f"give it: params={{'{n}': …}}").located(
                        card.path, card.source)
                out[key] = _param_value(checked, lib, d, key, params[n] if n in params else params[key])
    return out


def _param_value(checked: Checked, lib: Library, d, key: str, given, member: bool = False):
    """One declared parameter in the interpreter's form: arrays as float64, a family as a dict
    by index tuple, a card group as a GroupVal (its own families and groups converted too)."""
    base = checked.card.convention.base
    if checked.env[key].over and not member:
        if isinstance(given, (list, tuple)):
            members = {(base + i,): g for i, g in enumerate(given)}
        elif isinstance(given, dict) and all(isinstance(k, (int, tuple)) for k in given):
            members = {k if isinstance(k, tuple) else (k,): g for k, g in given.items()}
        else:  # an array with a leading axis per index (W^h_ℓ for h ∈ [H], ℓ ∈ [N]: H×N members)
            lead = _leading(given, len(checked.env[key].over))
            members = {tuple(base + j for j in at): _slice_tree(given, at) for at in np.ndindex(*lead)}
        return {k: _param_value(checked, lib, d, key, g, member=True) for k, g in members.items()}
    if isinstance(d.set, Group):
        callee = lib.checked(d.set.card)
        values = {}
        for cd in callee.card.decls:
            if cd.role != "param" or isinstance(cd.set, Group) and cd.set.card is None:
                continue
            for cn in cd.names:
                ck = decl_key(cn, cd)
                if cn not in given and ck not in given:
                    raise InterpretError(f"group {d.names[0]} has no parameter {cn}", d.pos)
                values[ck] = _param_value(callee, lib, cd, ck, given[cn] if cn in given else given[ck])
        return GroupVal(d.set.card, values)
    return np.asarray(given, dtype=float)


def _leading(tree, k: int) -> tuple[int, ...]:
    if isinstance(tree, dict):
        return _leading(next(iter(tree.values())), k)
    return np.shape(tree)[:k]


def _slice_tree(tree, at: tuple[int, ...]):
    if isinstance(tree, dict):
        return {k: _slice_tree(v, at) for k, v in tree.items()}
    return np.asarray(tree)[at]
