"""Named configurations: a card's ``config`` lines checked against its
hyperparameters, and the one place where a command's ``--config NAME`` and
``--set NAME=VALUE`` become hyperparameter values.

    config gpt2: V = 50257, D = 768, H = 12, D_f = 3072, N = 12, ctx = 1024  "GPT-2 as released"
    config small (training): V = 256, D = 64, H = 4, D_f = 256, N = 2, ctx = 64

A configuration gives a value to every hyperparameter that has no default (so
that it sizes every parameter), each a number of the hyperparameter's set; one
configuration at most is marked ``(training)``.
"""

from __future__ import annotations

import difflib
import math
from fractions import Fraction

from .errors import CardError
from .ir import Card, Configuration, Decl, Set

INTEGRAL_SETS = ("nat", "integer", "span", "upto")


def number(text: str) -> int | float:
    """A configuration's value as written (``768``, ``1e-5``, ``-2``)."""
    v = float(text)
    return int(v) if v.is_integer() else v


def scalar_hypers(card: Card) -> dict[str, Decl]:
    """The hyperparameters a configuration may set: those that are one number."""
    return {n: d for d in card.decls if d.role == "hyper" and isinstance(d.set, Set)
            and not d.set.shape and not d.set.seq for n in d.names}


def check_configs(card: Card) -> None:
    """Refuse a configuration that names something other than a hyperparameter,
    gives a value outside its set, or leaves a hyperparameter without a default
    unset."""
    hypers = scalar_hypers(card)
    seen: dict[str, Configuration] = {}
    training = None
    for c in card.configs:
        if c.name in seen:
            raise CardError(f"configuration {c.name} is declared twice", c.pos,
                            f"first declared on line {seen[c.name].pos.line}" if seen[c.name].pos else None)
        seen[c.name] = c
        if c.training:
            if training is not None:
                raise CardError(f"two configurations are marked (training): {training.name} and {c.name}",
                                c.pos, "cardgen train uses one; keep the mark on one of them")
            training = c
        values: dict[str, int | float] = {}
        for i, (k, v) in enumerate(c.values):
            if k in values:
                raise CardError(f"configuration {c.name} gives {k} twice", c.where(i))
            if k not in hypers:
                raise CardError(f"configuration {c.name} sets {k}, which is not a hyperparameter of {card.name}",
                                c.where(i), _near(k, hypers) or _settable(hypers))
            values[k] = number(v)
        missing = [n for n, d in hypers.items() if n not in values and d.default is None]
        if missing:
            raise CardError(f"configuration {c.name} leaves {', '.join(missing)} without a value", c.pos,
                            "a configuration sets every hyperparameter that has no default: add "
                            + ", ".join(f"{n} = …" for n in missing))
        for i, (k, v) in enumerate(values.items()):
            why = outside(hypers[k].set, v, values)
            if why:
                raise CardError(f"configuration {c.name}: {k} = {v} is not in {why}", c.where(i),
                                f"{k} ∈ {why}, as declared on line {hypers[k].pos.line}" if hypers[k].pos else None)


def outside(s: Set, v: int | float, values: dict) -> str | None:
    """The set's text if ``v`` is not in it (bounds that use unset names are not judged)."""
    from .render import set_text
    if not math.isfinite(v):
        return "the finite numbers"
    whole = isinstance(v, int) or float(v).is_integer()
    if s.kind in INTEGRAL_SETS and not whole:
        return set_text(s)
    if s.kind == "nat" and v < 0:
        return set_text(s)
    if s.kind == "boolean" and v not in (0, 1):
        return set_text(s)
    lo = hi = None
    if s.kind in ("span", "interval"):
        lo, hi = [_bound(b, values) for b in s.bounds]
    elif s.kind == "upto":
        lo, hi = Fraction(0), _bound(s.bounds[0], values)  # [N] is 0..N−1 or 1..N: both within 0..N
    closed = s.kind != "interval"
    if lo is not None and (v < lo or (not closed and v == lo)):
        return set_text(s)
    if hi is not None and (v > hi or (not closed and v == hi)):
        return set_text(s)
    return None


def _bound(e, values) -> Fraction | None:
    if e.op == "inf":
        return None
    if e.op == "num":
        return Fraction(e.attr)
    if e.op == "neg":
        b = _bound(e.args[0], values)
        return None if b is None else -b
    if e.op == "name":
        return Fraction(values[e.attr]) if e.attr in values else None
    if e.op in ("add", "sub", "matmul", "juxt", "div"):
        a, b = [_bound(x, values) for x in e.args]
        if a is None or b is None or (e.op == "div" and b == 0):
            return None
        return {"add": a + b, "sub": a - b, "div": a / b}.get(e.op, a * b)
    return None


def _near(name: str, pool) -> str | None:
    same_letters = [p for p in pool if p.casefold() == name.casefold()]
    close = same_letters or difflib.get_close_matches(name, list(pool), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None


def _settable(hypers) -> str:
    return f"its hyperparameters: {', '.join(hypers)}" if hypers else "it has no hyperparameters to set"


# ------------------------------------------------------------ for commands
def config_of(card: Card, name: str) -> Configuration:
    c = card.config(name)
    if c is None:
        have = ", ".join(x.name for x in card.configs)
        raise CardError(f"{card.name} has no configuration {name}",
                        hint=f"its configurations: {have}" if have else
                        f"{card.name} declares none; give values with --set NAME=VALUE")
    return c


def training_config(card: Card) -> Configuration | None:
    return next((c for c in card.configs if c.training), None)


def chosen_values(card: Card, config: str | None, given: dict, known=(), extra=()) -> dict:
    """Hyperparameter values for a command: the named configuration's, then
    ``given`` (``--set``) on top.  A ``--set`` name that is not in ``known``
    (the names of the cards the command reads) nor in ``extra`` (the
    command's own, such as ``B``) is an error, not ignored."""
    unknown = [k for k in given if k not in known and k not in extra]
    if unknown:
        pool = list(dict.fromkeys([*known, *extra]))
        near = _near(unknown[0], pool)
        raise CardError(f"--set {unknown[0]}: {card.name} has no hyperparameter {unknown[0]}",
                        hint=near or (f"it has: {', '.join(pool)}" if pool else None))
    values = {}
    if config is not None:
        values = {k: number(v) for k, v in config_of(card, config).values}
    values.update(given)
    return values


def settable_names(checked, lib=None) -> list[str]:
    """What ``--set`` may name in a checked card: its scalar hyperparameters and
    the lengths its inputs introduce (``T``); with ``lib``, also those of the
    cards it calls (a training card sizes the model it trains)."""
    from .check_call import callees
    names = [n for n, b in checked.env.items() if b.role in ("hyper", "dim") and not b.type.shape]
    for callee in callees(checked.card) if lib is not None else ():
        sub = lib.checked(callee)
        names += [n for n in settable_names(sub, lib) if n not in names] if sub is not None else []
    return names
