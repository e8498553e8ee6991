"""Recompute in the backward what is cheap to recompute, instead of saving it.

The forward keeps every value the backward reads, for every layer. A value the forward made
from other kept values by a few element-wise steps (a layer norm's output ``x̂ ⊙ γ + β`` from
``x̂``; GELU's ``½x ⊙ (1 + t)`` from ``x`` and ``t``) costs a batch-sized array per layer to keep
and one or two passes to make again: the backward makes it again, at the top of its block, and the
forward keeps only what it was made from. Only arithmetic and views qualify (no ``tanh``, ``exp``
or matrix product), and only values with the batch axes, so nothing the backward adds to the saved
set is per-example: what is saved only shrinks.
"""

from __future__ import annotations

from dataclasses import replace

from .core import Loop, Op, Value

CHEAP = {"add", "sub", "mul", "div", "neg", "square", "scale", "one_minus", "expand", "transpose", "copy"}
MAX_CHAIN = 6  # ops recomputed for one value, at most


def rematerialize(block: list, fwd_body: list, layout: dict[str, Value], bloop_type) -> list:
    """``block`` (the backward) with cheap saved values recomputed at the top of each of its blocks
    (the top level, and each layer loop's body) rather than read from what the forward saved."""
    block = _block(block, fwd_body, layout)
    for item in block:
        if isinstance(item, bloop_type):
            item.body = _block(item.body, item.loop.body, layout)
    return block


def _block(bwd: list, fwd: list, layout: dict[str, Value]) -> list:
    defs = {op.out: op for op in fwd if isinstance(op, Op)}
    read = []
    for op in _ops(bwd):
        read += [a for a in op.args if a in defs and a not in read]
    order = {op.out: i for i, op in enumerate(fwd) if isinstance(op, Op)}
    batched = sorted((n for n in read if layout[n].batched and defs[n].prim in CHEAP), key=order.get)
    kept = set(read) - set(batched)
    plans = {}
    for n in batched:  # in forward order: a value's plan reads only values decided before it
        plan = _plan(n, defs, kept, layout, read)
        if plan is None:
            kept.add(n)
        else:
            plans[n] = plan
    ops: dict[str, Op] = {}
    for plan in plans.values():
        for op in plan:
            ops.setdefault(op.out, op)
    if not ops:
        return bwd
    pending = {n: replace(op) for n, op in ops.items()}
    out: list = []

    def make(n: str):  # a recomputed value, after the recomputed values it is made from
        op = pending.pop(n, None)
        if op is not None:
            for a in op.args:
                make(a)
            out.append(op)
    for item in bwd:  # each just before its first reader: not alive (in memory) any longer than needed
        for op in _ops([item]):
            for a in op.args:
                make(a)
        out.append(item)
    return out


def _plan(name: str, defs: dict, kept: set, layout: dict, read: list) -> list[Op] | None:
    """The forward ops that remake ``name`` from kept values, parameters and numbers; None when
    it would take a batched value nothing saves yet, or more than a few steps."""
    ops: list[Op] = []

    def visit(n: str) -> bool:
        if n in kept or any(op.out == n for op in ops):
            return True
        v = layout.get(n)
        if v is None or not v.batched:  # a number, a parameter (a layer's slice), a mask: no batch axes
            return True
        if n not in defs:  # an input or a value from outside the block
            return n in read
        op = defs[n]
        if op.prim not in CHEAP or len(ops) >= MAX_CHAIN or not all(visit(a) for a in op.args):
            return False
        ops.append(op)
        return True

    return ops if visit(name) else None


def _ops(body):
    for x in body:
        if isinstance(x, Op):
            yield x
        elif isinstance(x, Loop):
            yield from _ops(x.body)
        else:
            yield from _ops(x.body)
