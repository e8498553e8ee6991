"""A card's own backward rule (``backward`` after the steps), checked.

The rule reads the forward's values and ``d_y`` for every output ``y`` (the gradient it is
given), and must define ``d_x`` for every real input and parameter ``x`` (the gradients it
gives back), each with the shape of ``x``; ``d_x ← 0`` states that none flows.  It may name
values of its own, but may not change the forward's.  ``grad_name`` is the one spelling of a
gradient's name, shared with the compiler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ir import Card, Step
from .types import Type

if TYPE_CHECKING:
    from .check import Checker


def grad_name(name: str) -> str:
    """``d_P`` for ``P``, ``d_γ`` for ``γ``: the gradient's name in a rule."""
    return "d_" + name


def differentiable(card: Card, env) -> list[str]:
    """The real inputs and parameters, in declaration order: the rule gives each a gradient."""
    out = []
    for d in card.decls:
        if d.role in ("input", "param"):
            out += [n for n in d.names if n in env and env[n].type.kind == "real"]
    return out


def is_zero(st: Step) -> bool:
    """``d_x ← 0``: no gradient flows to x."""
    return st.kind == "assign" and st.value is not None and st.value.op == "num" and float(st.value.attr) == 0


def check_rule(ch: Checker) -> None:
    """Check ``ch.card.rule`` in the checker's environment, after the forward's steps."""
    card, rule = ch.card, ch.card.rule
    if rule is None:
        return
    if _wraps(card.steps):
        with ch.recover():
            ch.err(f"{card.name} trains (∇) or samples (∼): such a card has no backward of its own", rule,
                   hint="state the rule in the model card it trains or samples from")
        return
    for d in card.decls:
        if d.role in ("input", "param") and (d.over or d.set.__class__.__name__ == "Group"):
            with ch.recover():
                ch.err(f"{d.names[0]} is a parameter group or family: a backward rule can give gradients "
                       "only of plain inputs and parameters", d,
                       hint="state the rule in the card that declares the parameters, or drop `backward`")
            return
    forward = dict(ch.env)
    for out in card.outputs:
        b = forward.get(out)
        if b is not None and b.type.kind == "real":
            ch.bind_local(grad_name(out), Type("real", b.type.shape), rule.pos)
    wanted = differentiable(card, forward)
    by_name = {grad_name(x): x for x in wanted}
    given: dict[str, Step] = {}
    for st in rule.steps:
        if st.kind in ("return", "sample", "for", "while"):
            with ch.recover():
                ch.err(f"a backward rule computes gradients: it has no {st.kind} step", st,
                       hint="write each gradient as `d_x ← …` (∀ and Σ for what runs per position)")
            continue
        targets = ch.targets(st)
        for n in targets:
            if n in forward and not n.startswith("d_"):
                with ch.recover():
                    ch.err(f"{n} is a value of the forward pass: the backward rule cannot change it", st,
                           hint=f"give the backward's value a new name, e.g. {n}′")
        zero = is_zero(st) and st.target.op == "name" and st.target.attr in by_name
        if zero:  # d_x ← 0: a zero of x's shape, whatever that is
            x = by_name[st.target.attr]
            ch.bind_local(st.target.attr, forward[x].type, st.pos)
        else:
            with ch.recover(targets):
                ch.step(st)
        for n in targets:
            given.setdefault(n, st)
    for g, st in given.items():
        x = by_name.get(g)
        if x is None:
            base = g[2:] if g.startswith("d_") else None
            b = forward.get(base) if base else None
            if b is not None and b.role in ("input", "param"):
                with ch.recover():
                    ch.err(f"{base} has no gradient ({ch.show(b.type)}: not real numbers), so the rule cannot "
                           f"give {g}", st, hint=f"drop the step that computes {g}")
            continue
        got = ch.env.get(g)
        if got is None or got.role == "unknown":
            continue
        want = forward[x].type
        if got.type.kind != "real" and not is_zero(st):
            with ch.recover():
                ch.err(f"{g} is {ch.show(got.type)}, but the gradient of {x} is real numbers", st.value or st,
                       hint=f"{g} must be {ch.show(want)}")
        elif not ch.unify_shapes(got.type.shape, want.shape):
            with ch.recover():
                ch.err(f"{g} is {ch.show(got.type)}, but {x} ∈ {ch.show(want)}: a gradient has the shape of "
                       "its variable", st.value or st,
                       hint=f"{g} must be {ch.show(want)}" + (" (transpose it?)" if _transposed(got.type, want)
                                                            else ""))
    for x in wanted:
        if grad_name(x) not in given:
            with ch.recover():
                ch.err(f"the backward rule gives no gradient of {x}", rule,
                       hint=f"add `{grad_name(x)} ← …`, or `{grad_name(x)} ← 0` if no gradient flows to {x}")


def _wraps(steps) -> bool:
    """A training (∇) or inference (∼) card's steps."""
    def has_grad(e) -> bool:
        return e is not None and (e.op == "grad" or any(has_grad(a) for a in e.args))
    return any(st.kind == "sample" or has_grad(st.value) or _wraps(st.body) for st in steps)


def _transposed(a: Type, b: Type) -> bool:
    return len(a.shape) == 2 and len(b.shape) == 2 and a.shape == b.shape[::-1]
