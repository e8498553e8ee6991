"""What `cardgen render` prints about a checked card beyond its text: the
parameter count, the sub-algorithms it calls, and the output formats."""

from __future__ import annotations

import math

from ..lang.check import Checked, Library
from ..lang.configs import number
from ..lang.ir import Configuration, Group, Set
from ..lang.names import join_name, split_name
from ..lang.render import pseudocode
from ..lang.shapes import Poly
from .latex import markdown


def values_for(checked: Checked, given: dict[str, float]) -> dict[str, float]:
    """Hyperparameter values: those given, then the card's own defaults."""
    vals = dict(given)
    for d in checked.card.decls:
        if d.role == "hyper" and d.default is not None and isinstance(d.set, Set) and not d.set.shape:
            t = checked.types.get(id(d.default))
            if t is not None and t.value is not None:
                v = t.value.evaluate(vals)
                for n in d.names:
                    if v is not None and n not in vals:
                        vals[n] = v
    return vals


def param_count(checked: Checked, lib: Library, given: dict[str, float]) -> tuple[int | None, list[str]]:
    """Total number of learned numbers (tied weights once), or the names
    whose values are missing."""
    vals = values_for(checked, given)
    total, missing = 0, []
    for d in checked.card.decls:
        if d.role != "param":
            continue
        reps = 1
        if d.over:
            counts = [n.evaluate(vals) for n in checked.env[_key(checked, d)].over]
            if None in counts:
                for n in checked.env[_key(checked, d)].over:
                    missing += _missing(n, vals)
                continue
            reps = math.prod(int(r) for r in counts)
        if isinstance(d.set, Group):
            if d.set.card is None:
                continue  # members are counted where they are declared
            sub = lib.checked(d.set.card)
            g = checked.env[_key(checked, d)].type.group
            sub_vals = {k: v.evaluate(vals) for k, v in g[1]}
            sub_vals = {k: v for k, v in sub_vals.items() if v is not None}
            n, miss = param_count(sub, lib, sub_vals)
            if n is None:
                missing += miss
                continue
            total += reps * n * len(d.names)
            continue
        size = 1
        t = checked.env[_key(checked, d)].type
        for dim in t.shape:
            v = dim.evaluate(vals)
            if v is None:
                missing += _missing(dim, vals)
                size = None
                break
            size *= int(v)
        if size is not None:
            total += reps * size * len(d.names)
    missing = list(dict.fromkeys(missing))
    return (None, missing) if missing else (total, [])


def _missing(p: Poly, vals) -> list[str]:
    return [s for s in p.symbols() if s not in vals]


def _key(checked: Checked, d) -> str:
    name = d.names[0]
    if not d.over:
        return name
    base, scripts = split_name(name)
    return join_name(base, [(k, "□" if v in dict(d.over) else v) for k, v in scripts])


def param_count_line(checked: Checked, lib: Library, given: dict[str, float],
                     config: str | None = None) -> str | None:
    """``Parameter count: 124,439,808 at V=50257, …``; ``config`` names the
    configuration the values come from."""
    if not any(d.role == "param" for d in checked.card.decls):
        return None
    n, missing = param_count(checked, lib, given)
    if n is None:
        if not given:
            return None
        return f"Parameter count: needs values for {', '.join(missing)} (--set NAME=VALUE)"
    vals = values_for(checked, given)
    used = ", ".join(f"{k}={_num(v)}" for k, v in vals.items() if k in checked.env)
    source = f"configuration {config}; " if config else ""
    return f"Parameter count: {n:,} at {used} ({source}tied weights counted once)"


def config_counts(checked: Checked, lib: Library) -> list[tuple[Configuration, int | None]]:
    """Each named configuration of the card with its parameter count."""
    return [(c, param_count(checked, lib, {k: number(v) for k, v in c.values})[0]) for c in checked.card.configs]


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def render_card(checked: Checked, fmt: str, count_line: str | None) -> str:
    if fmt == "md":
        return markdown(checked, count_line)
    if fmt == "tex":
        from .texbox import box
        return box(checked, count_line)
    return pseudocode(checked.card, checked.claims, count_line)
