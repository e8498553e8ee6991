"""The interpreter's values beside plain arrays (parameter groups, functions), how values in
card terms become them, and what their shapes say about a card's sizes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from ..lang.check import Library
from ..lang.errors import CardError
from ..lang.ir import Expr
from ..lang.names import join_name, split_name
from ..lang.shapes import Poly
from ..lang.types import INTEGRAL
from .dims import DimError


class InterpretError(CardError):
    """A card the interpreter cannot run with these values (a shape that does not fit, an index
    out of range, a construct it has no meaning for), at the card's line and column."""


@dataclass(frozen=True)
class GroupVal:
    """All the parameters of one card (``θ_attn = CausalSelfAttention``): values by the
    callee's names (families as dicts), and the callee sizes the declaration binds."""

    card: str
    values: dict
    dims: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MembersVal:
    """A group of named parameters, ``{W_q, b_q, …}``, evaluated: their values in order."""

    values: tuple


@dataclass(frozen=True)
class MembersDecl:
    """A members group as declared; ``vars`` are the indices it repeats over (``for h ∈ [H],
    ℓ ∈ [N]``), which its members' names use."""

    members: tuple[str, ...]
    vars: tuple[str, ...] = ()


@dataclass(frozen=True)
class Func:
    """``P(θ) ← …``: a function of its parameters, evaluated at each call; ``indices``: the
    names and scripts its body mentions (those that are bound index variables key a call's memo)."""

    params: tuple[str, ...]
    body: Expr
    indices: tuple[str, ...] = ()


class ReturnSignal(Exception):  # noqa: N818 - control flow, not an error
    """A return step ends the card."""


PENDING = object()  # a hyperparameter a call gives per index (Mask[t, t′] = …), filled in later


PENDING = object()  # a hyperparameter a call gives per index (Mask[t, t′] = …), filled in later


def decl_key(name: str, d) -> str:
    """A declared name's key in the checker's env: ``W^h_q for h`` is ``W^□_q``."""
    if not d.over:
        return name
    base, scripts = split_name(name)
    return join_name(base, [(k, "□" if v in dict(d.over) else v) for k, v in scripts])


def stack_family(fam: dict) -> np.ndarray:
    return np.stack([np.asarray(fam[k]) for k in sorted(fam)])


def as_family(v, b, base: int):
    """An input as the interpreter holds it: a declared family as a dict by index."""
    if not b.over or isinstance(v, dict):
        return {k if isinstance(k, tuple) else (k,): x for k, x in v.items()} if isinstance(v, dict) else \
            input_array(v, b)
    arr = np.asarray(v)  # a leading axis per index
    return {tuple(base + j for j in at): input_array(arr[at], b) for at in np.ndindex(*arr.shape[:len(b.over)])}


def input_array(v, b):
    if b.type.kind in INTEGRAL:
        arr = np.asarray(v)
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        return int(arr) if arr.ndim == 0 else arr
    if b.type.kind == "boolean":
        return np.asarray(v, dtype=bool)
    return np.asarray(v, dtype=float)


def constraints(key: str, b, v, lib: Library, sub: dict) -> list:
    """(what, declared length, actual length) for every axis of a value and its family extents;
    a card group's members are declared in the callee's sizes, renamed by ``sub``."""
    out = []
    if isinstance(v, dict):
        for pos, p in enumerate(b.over):
            out.append((f"{key} (members)", p.subst(sub), len({k[pos] for k in v})))
        members = list(v.values())
        inner = replace(b, over=())
        for m in members[:1]:
            out += constraints(key, inner, m, lib, sub)
        return out
    if isinstance(v, GroupVal):
        g = b.type.group
        if not (isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], tuple)):
            return out
        callee = lib.checked(g[0])
        inner_sub = {s: Poly.sym("?" + s) for s in callee.symbols}
        inner_sub.update({k: p.subst(sub) for k, p in g[1]})
        for ck, cv in v.values.items():
            cb = callee.env.get(ck)
            if cb is not None and cb.role == "param":
                out += constraints(f"{key}.{ck}", cb, cv, lib, inner_sub)
        return out
    if v is PENDING or isinstance(v, (MembersDecl, MembersVal, Func)) or b.type.kind in ("group", "func"):
        return out
    shape = np.shape(v)
    if b.role == "hyper" and not shape:  # Mask = 1: a scalar that fills the array
        return out
    if len(shape) != b.type.rank:
        raise DimError(f"{key} has {len(shape)} axes but the card declares {b.type.rank}")
    for i, (p, n) in enumerate(zip(b.type.shape, shape, strict=True)):
        out.append((f"axis {i + 1} of {key}", p.subst(sub), n))
    return out


def with_dims(v, dims: dict):
    if isinstance(v, GroupVal):
        return GroupVal(v.card, v.values, dims)
    if isinstance(v, dict):
        return {k: with_dims(x, dims) for k, x in v.items()}
    return v


def whole_number(v, what: str) -> int:
    if isinstance(v, Fraction) and v.denominator != 1 or isinstance(v, float) and not v.is_integer():
        raise DimError(f"{what} = {v} is not a whole number")
    return int(v)


def number(v):
    """Booleans count as 0 and 1 in arithmetic (the Iverson bracket's value)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, np.ndarray) and v.dtype == bool:
        return v.astype(np.int64)
    if isinstance(v, (GroupVal, MembersVal, Func, dict)):
        raise InterpretError("arithmetic on parameters as a whole (θ − η · ∇…) is for the compiler")
    return v
