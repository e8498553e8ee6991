"""The reference interpreter from Python: a card run step by step as the paper reads it, with
inputs and parameters given in the card's terms or as a generated module's ``Params``."""

from __future__ import annotations

import dataclasses

from ..lang.check import Checked, Library, check
from ..lang.ir import Card as CardIR
from ..lang.ir import Group
from ..lang.load import library_for, resolve
from ..lang.load import load as load_checked


def interpret(card, inputs: dict, params, hypers=None, *, lib: Library | None = None, rng=None,
              at_gradient: bool = False) -> dict:
    """Run a card with the reference interpreter (``cardgen.semantics``): step by step, as the
    paper reads it, in float64; returns ``{output name: array}``.

    ``card``: a ``Card`` (``cardgen.load``), a path or a name on the search path, or the card IR
    (parsed or checked).  ``inputs``: the card's inputs and
    array hyperparameters (``Mask``), by card name (``X̃``) or by the generated module's
    argument name (``X_tilde``), with any leading batch axes.  ``params``: the generated module's
    ``Params`` (or a dict of its fields), or a dict in card terms (``{"W^h_q": (H, …) array,
    "θ_ℓ": {…}}``).  ``hypers``: the module's ``Config`` or a dict by card name; sizes it leaves
    out are read from the arrays' shapes.  ``rng`` is for cards that sample.  ``at_gradient``: a
    training card (DTraining) stops at its first ``∇loss(θ)`` and gives ``{"loss": loss(θ)}``, what
    its compiled module's ``forward`` computes.
    """
    from ..semantics import interpret_checked
    checked, lib = _checked(card, lib)
    ins, hyp = _route(checked, inputs, hypers)
    return interpret_checked(checked, lib, ins, _card_params(checked, lib, params), hyp, rng, at_gradient)


def _checked(card, lib: Library | None) -> tuple[Checked, Library]:
    if isinstance(getattr(card, "checked", None), Checked):  # a cardgen.Card
        return card.checked, lib or card.library
    if isinstance(card, Checked):
        return card, lib or library_for(card.card.path)
    if isinstance(card, CardIR):
        lib = lib or library_for(card.path if card.path != "<card>" else None)
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
        return check(card, lib), lib
    file = resolve(str(card))  # a path or a name on the search path; the card need not compile
    lib = lib or library_for(file)
    return load_checked(file, lib)[1], lib


def _route(checked: Checked, inputs: dict, hypers) -> tuple[dict, dict]:
    """Inputs and hyperparameters by card name, from card names or module (ASCII) names."""
    from ..compile.naming import ascii_name
    if dataclasses.is_dataclass(hypers):
        hypers = dataclasses.asdict(hypers)
    hypers = dict(hypers or {})
    ins, hyp = {}, {}
    for d in checked.card.decls:
        for n in d.names:
            for source in (inputs, hypers):
                for k in (n, ascii_name(n)):
                    if k in source:
                        (ins if d.role == "input" else hyp)[n] = source[k]
                        break
                else:
                    continue
                break
    return ins, {k: v for k, v in hyp.items() if checked.card.decl_of(k).role == "hyper"}


def _card_params(checked: Checked, lib: Library, params) -> dict:
    """A generated module's ``Params`` as a dict in card terms: each field goes to its card path
    (``theta.theta_attn.W_qkv`` -> ``{"θ_ℓ": {"θ_attn": {"W_qkv": …}}}``), stacking kept."""
    if not dataclasses.is_dataclass(params) and not _module_fields(checked, params):
        return params
    from ..compile.lower import ascii_path, lower
    fields = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)
    prog = lower(checked, lib)
    tree: dict = {}
    for value in prog.params:
        node, here = tree, checked
        path = prog.param_paths[value.name]
        for depth, step in enumerate(path):
            decl, name = _decl_at(here, step, ascii_path)
            if depth == len(path) - 1:
                node[name] = fields[value.name]
            else:
                node = node.setdefault(name, {})
                here = lib.checked(decl.set.card)
    return tree


def _decl_at(checked: Checked, step: str, ascii_path):
    from ..semantics.values import decl_key
    for d in checked.card.decls:
        if d.role == "param" or d.role == "input" and isinstance(d.set, Group):
            for n in d.names:
                if ascii_path(decl_key(n, d)) == step:
                    return d, n
    raise KeyError(f"{checked.card.name} has no parameter {step}")


def _module_fields(checked: Checked, params) -> bool:
    """A dict keyed by the module's field names rather than card names."""
    if not isinstance(params, dict):
        return False
    names = {n for d in checked.card.decls if d.role == "param" for n in d.names}
    return bool(params) and not any(k in names for k in params)
