"""Dimension values from array shapes: each card's sizes (``T``, ``D``, ``d_attn``) are read
from the arrays it is given, so a called card runs at whatever shape its caller has."""

from __future__ import annotations

from fractions import Fraction

from ..lang.shapes import Poly


class DimError(Exception):
    """A shape that does not fit the card's declaration: the message says which."""


def solve(constraints: list[tuple[str, Poly, int]], known: dict[str, int]) -> dict[str, int]:
    """Values for the dimension names in ``constraints`` (what, declared dimension, actual
    length), starting from ``known``.  A constraint with one unknown name, linear in it
    (``3·D``, ``H·d_mid``) or its reciprocal (``d_e/H``), determines it; every constraint
    must hold at the end."""
    values = dict(known)
    todo = [c for c in constraints if not _opaque(c[1])]
    progress = True
    while progress:
        progress = False
        for _what, poly, n in todo:
            unknown = [s for s in poly.symbols() if s not in values]
            if len(unknown) != 1:
                continue
            got = _solve_one(poly, unknown[0], n, values)
            if got is not None:
                values[unknown[0]] = got
                progress = True
    for what, poly, n in todo:
        v = poly.evaluate(values)
        if v is None:
            continue
        if v != n:
            raise DimError(f"{what} has length {n} but the card says {poly} = {v}")
    return values


def _opaque(p: Poly) -> bool:
    return any(s.startswith("?") or s == "⋆" for s in p.symbols())


def _solve_one(poly: Poly, s: str, n: int, values: dict) -> int | None:
    rest, coef, inverse = Fraction(0), Fraction(0), None
    for mono, c in poly.terms:
        powers = dict(mono)
        e = powers.pop(s, 0)
        others = Poly(((tuple(sorted(powers.items())), c),)).evaluate(values)
        if e == 0:
            rest += others
        elif e == 1:
            coef += others
        elif e == -1 and len(poly.terms) == 1:
            inverse = others
        else:
            return None
    if inverse is not None:
        if n == 0:
            return None
        val = inverse / n
    elif coef:
        val = (n - rest) / coef
    else:
        return None
    if val.denominator != 1 or val < 0:
        raise DimError(f"no whole length {s} makes {poly} = {n}")
    return int(val)
