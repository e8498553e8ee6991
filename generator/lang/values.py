"""Values given for a card's hyperparameters and sizes (``--set NAME=VALUE``), checked in the
card's terms before anything uses them: a name the card has, a finite number, a whole one where
the card says ℕ or ℤ, a size of at least 1, and every size the card computes from them (``D/H``,
``3·D``) a whole number of at least 1.  A wrong value is a CardError at the declaration it breaks,
never a negative parameter count or a ZeroDivisionError."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from .check import Checked, Library
from .errors import CardError
from .ir import Expr, Group, Set
from .names import join_name, split_name
from .shapes import Poly, poly_text

WHOLE = {"nat": "a natural number (ℕ)", "integer": "an integer (ℤ)", "span": "an integer"}


def check_values(checked: Checked, values: dict[str, float], extra: tuple[str, ...] = (),
                 lib: Library | None = None) -> None:
    """Raise a CardError for the first value that does not fit the card; ``extra`` names
    values a command takes besides the card's (``B``, ``dtype``), which it checks itself.
    With ``lib``, the sizes of the cards it holds as parameter groups are checked too."""
    card = checked.card
    hypers = {n: d for d in card.decls if d.role == "hyper" for n in d.names}
    known = list(dict.fromkeys([*hypers, *checked.symbols]))
    for name, v in values.items():
        if name in extra:
            continue
        if name not in known:
            raise CardError(f"{card.name} has no hyperparameter or size named {name}",
                            hint=f"it has {', '.join(known) or 'none'}" + _close(name, known))
        where = _located(hypers.get(name), checked)
        if not isinstance(v, (int, float, Fraction)) or not math.isfinite(v):
            raise CardError(f"{name} = {v} is not a finite number", **where)
        binding = checked.env.get(name)
        kind = binding.type.kind if binding is not None else "nat"
        if kind in WHOLE and v != int(v):
            raise CardError(f"{name} = {v}, but the card says {name} is {WHOLE[kind]}", **where)
        if name in checked.symbols and v < 1:
            raise CardError(f"{name} = {_num(v)}, but {name} is a size: it must be at least 1", **where)
        if kind == "nat" and v < 0:
            raise CardError(f"{name} = {_num(v)}, but the card says {name} ∈ ℕ", **where)
    _check_sizes(checked, {k: v for k, v in values.items() if k in known}, lib)


def _check_sizes(checked: Checked, values: dict[str, float], lib: Library | None, seen=()) -> None:
    """Every shape the card declares, with the values given: whole and at least 1; then the same
    for each card it holds as a parameter group (θ_ℓ = GPT2Block), in that card's names."""
    for d in checked.card.decls:
        binding = checked.env.get(_key(d))
        if isinstance(d.set, Group) and d.set.card and lib is not None and d.set.card not in seen:
            sub = lib.checked(d.set.card)
            group = binding.type.group if binding is not None else None
            if sub is not None and isinstance(group, tuple) and len(group) > 1:
                sub_values = {}
                for k, p in group[1]:
                    try:
                        v = p.evaluate(values)
                    except ZeroDivisionError:
                        v = None
                    if v is not None:
                        sub_values[k] = v
                _check_sizes(sub, sub_values, lib, (*seen, d.set.card))
            continue
        if isinstance(d.set, Set) and binding is not None:
            _check_shape(binding.type.shape, values, d.names[0], checked, d)
    for e in _exprs(checked.card.steps):  # sizes only the steps compute: D/H in Q_h ∈ ℝ^{T×D/H}
        t = checked.types.get(id(e))
        if t is not None:
            _check_shape(t.shape, values, "a value of this step", checked, e)


def _check_shape(shape, values, what: str, checked: Checked, at) -> None:
    for dim in shape:
        if not isinstance(dim, Poly) or not dim.symbols() or not set(dim.symbols()) <= set(values):
            continue
        given = ", ".join(f"{s} = {_num(values[s])}" for s in dim.symbols())
        try:
            v = dim.evaluate(values)
        except ZeroDivisionError:
            v = None
        if v is None or v != int(v) or v < 1:
            shown = "undefined" if v is None else _num(v)
            raise CardError(f"{what} has the size {poly_text(dim)} = {shown} (with {given}); "
                            "sizes must be whole numbers of at least 1",
                            hint=_divides(dim) or "choose values that make every size positive",
                            **_located(at, checked))


def _exprs(x):
    """Every expression in a card's steps, outermost first."""
    if isinstance(x, Expr):
        yield x
        for a in x.args:
            yield from _exprs(a)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _exprs(v)
    elif dataclasses.is_dataclass(x) and not isinstance(x, type):
        for f in dataclasses.fields(x):
            yield from _exprs(getattr(x, f.name))


def _key(d) -> str:
    """The binding of a declaration: θ_ℓ for ℓ ∈ [N] is bound as θ_□."""
    if not d.over:
        return d.names[0]
    base, scripts = split_name(d.names[0])
    return join_name(base, [(k, "□" if v in dict(d.over) else v) for k, v in scripts])


def _divides(dim: Poly) -> str | None:
    """``D/H`` -> "H must divide D"."""
    for m, _ in dim.terms:
        den = [s for s, e in m if e < 0]
        num = [s for s, e in m if e > 0]
        if den and num:
            return f"{'·'.join(den)} must divide {'·'.join(num)}"
    return None


def _located(node, checked: Checked) -> dict:
    """Where a value's error points: the declaration or expression in the card, when known."""
    if node is None or getattr(node, "pos", None) is None:
        return {}
    return {"pos": node.pos, "path": checked.card.path, "source": checked.card.source}


def _close(name: str, known: list[str]) -> str:
    import difflib
    near = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {near[0]}?" if near else ""


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(float(v))
