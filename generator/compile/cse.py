"""Common subexpressions of the core IR: an op that computes what an earlier op already computed
(the same primitive on the same arguments with the same attributes; the causal mask's two
``arange(T)``, a size computed in two callees) is dropped, and its readers read the earlier value.
Every core op is a pure function of its arguments, so this changes no number. Only values the
compiler named (``_34``) go; a value the card names stays, so the code keeps the card's words.
"""

from __future__ import annotations

import re

from .core import Loop

TEMP = re.compile(r"_\d+")


def cse(body: list, keep: set[str], frozen: set[str] = frozenset(), renamed: dict | None = None) -> list:
    """``body`` without repeated computations; ``keep``: names read after it (the outputs).
    ``frozen``: ops that neither go nor stand for another (the forward a card's own backward rule
    replaces: it reads them by name, and the derived backward skips them); ``renamed`` collects
    every replacement, for the rules' ops (custom.rename)."""
    return _block(body, {}, {}, keep, frozen, {} if renamed is None else renamed)


def _block(body: list, seen: dict, renames: dict[str, str], keep: set[str], frozen, renamed) -> list:
    out = []
    for item in body:
        if isinstance(item, Loop):
            item.carried = [(renames.get(o, o), i, r) for o, i, r in item.carried]
            inner = dict(renames)
            item.body = _block(item.body, dict(seen), inner, keep | bookkeeping(item), frozen, renamed)
            out.append(item)
            continue
        item.args = tuple(renames.get(a, a) for a in item.args)
        if item.out in frozen:
            out.append(item)
            continue
        key = (item.prim, item.args, repr(item.attr), repr(item.shape), item.batched, item.kind)
        earlier = seen.get(key)
        if earlier is not None and TEMP.fullmatch(item.out) and item.out not in keep:
            renames[item.out] = renamed[item.out] = earlier
            continue
        seen.setdefault(key, item.out)
        out.append(item)
    return out


def bookkeeping(loop: Loop) -> set[str]:
    """The body's names a loop reads after each pass: what it carries, returns and stacks."""
    return {r for _, _, r in loop.carried} | {r for _, r in loop.outs} | {v for _, v, *_ in loop.stacks}
