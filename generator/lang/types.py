"""Types of checked values: a kind (real, nat, integer, boolean, token ids in a
span, a parameter group, a function) and a symbolic shape."""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import ir
from .render import SET_BASE
from .shapes import Poly, poly_brief, poly_text

NUMERIC = ("real", "nat", "integer", "boolean", "span", "upto", "interval")
INTEGRAL = ("nat", "integer", "span", "upto")


@dataclass(frozen=True)
class Type:
    """``kind`` as in ``ir.Set`` plus ``group`` and ``func``.  ``shape`` holds
    Polys; the ``BROADCAST`` dim (from ``b 1^⊤``) matches any length.
    ``bounds`` keeps a span's ``{lo..hi}``; ``group`` names the card (or the
    members) a parameter group holds; ``value`` is a natural's symbolic value
    when known (``ℓ ← length(x)``)."""

    kind: str
    shape: tuple[Poly, ...] = ()
    bounds: tuple[Poly, ...] = ()
    group: object = None
    value: Poly | None = None
    result: Type | None = None  # a function's result type

    @property
    def rank(self) -> int:
        return len(self.shape)

    def with_shape(self, shape) -> Type:
        return replace(self, shape=tuple(shape), value=None if shape else self.value)

    def scalar(self) -> Type:
        return replace(self, shape=())


BROADCAST = Poly.sym("⋆")
REAL = Type("real")
NAT = Type("nat")
BOOL = Type("boolean")


def numeric_join(a: Type, b: Type) -> str:
    """The kind of ``a op b`` for arithmetic: integers stay integers."""
    if a.kind in INTEGRAL and b.kind in INTEGRAL:
        return "nat" if a.kind == b.kind == "nat" else "integer"
    return "real"


def shape_text(shape) -> str:
    return "×".join(poly_text(d) if d != BROADCAST else "*" for d in shape)


def type_text(t: Type) -> str:
    """A value's type in card notation, for a message: what ``set_text(to_set(t))``
    prints, but straight from the Polys, so that any shape can be shown (a
    broadcast ⋆, a negative length, a long dimension cut short) and the text
    is never parsed back."""
    if t.kind == "subset":
        return f"a set of positions ⊆ [{_dim_text(t.shape[0])}]"
    kind = t.kind if t.kind in NUMERIC else "real"
    if kind == "interval":
        kind = "real"
    if kind in ("span", "upto") and not t.bounds:
        kind = "nat"
    if kind in SET_BASE:
        base = SET_BASE[kind]
    elif kind == "span":
        base = "{" + _dim_text(t.bounds[0]) + ".." + _dim_text(t.bounds[1]) + "}"
    else:
        base = "[" + _dim_text(t.bounds[0]) + "]"
    dims = [_dim_text(d) for d in t.shape]
    if not dims:
        return base
    if len(dims) == 1 and len(dims[0]) == 1:
        return f"{base}^{dims[0]}"
    return base + "^{" + "×".join(dims) + "}"


def _dim_text(p: Poly) -> str:
    return "*" if p == BROADCAST else poly_brief(p).replace(" − ", "−").replace(" + ", "+")


def dim_expr(p: Poly) -> ir.Expr:
    """A Poly back as a dimension expression (for claims and rendering)."""
    from .parse import parse_dim
    return parse_dim(poly_text(p))


def to_set(t: Type) -> ir.Set:
    if t.kind == "subset":  # a set of positions: the [n] it is a subset of (the claim says ⊆)
        return ir.Set("upto", (dim_expr(t.shape[0]),))
    bounds = tuple(dim_expr(b) for b in t.bounds)
    kind = t.kind if t.kind in NUMERIC else "real"
    if kind == "interval":
        kind, bounds = "real", ()
    if kind in ("span", "upto") and not bounds:
        kind = "nat"
    return ir.Set(kind, bounds, tuple(dim_expr(d) for d in t.shape))
