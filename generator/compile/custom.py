"""Custom backward rules: a card's own ``backward`` in place of the derived one.

As ``jax.custom_vjp`` does, the rule stands for the whole card: where the card is compiled, or
inlined into a caller, lowering records a ``Region`` (the forward ops the card became, and its
rule lowered to core ops that read the forward's values and a placeholder for each output's
gradient).  Differentiation (ad.py) skips the region's forward ops and, where it reaches the
region's last one, appends the rule's ops with the placeholders replaced by the gradients that
arrived, then adds each ``d_x`` into the gradient of the card's input or parameter ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..lang.check_rule import differentiable, grad_name, is_zero
from .core import Loop, Op, Value, walk
from .naming import ascii_name


@dataclass
class Region:
    """The forward ops one card became, and the rule that differentiates them."""

    card: str
    straight_through: bool
    forward: set[str]  # the forward ops the rule stands for
    last: object  # the region's last item of its block: where the backward runs the rule
    seeds: list[tuple[str, str]]  # (forward output, the placeholder for its gradient in ``body``)
    grads: list[tuple[str, str | None]]  # (forward input or parameter, its gradient in ``body``; None: zero)
    body: list[Op]


def lower_rule(lw, items: list, outputs: list[tuple[str, object]]) -> Region | None:
    """The rule of ``lw.card`` for the forward ``items`` it lowered, with ``outputs`` (card name,
    AV) the values the forward returned; None when the forward made no op (nothing to replace)."""
    card, rule = lw.card, lw.card.rule
    forward = {op.out for op in walk(items)}
    if not forward:
        return None
    saved = lw.block, lw.step_no
    lw.block = []
    seeds = []
    try:
        for out_name, av in outputs:
            if av.kind != "real":
                continue
            if av.mapped:
                lw.err(f"{card.name} states its own backward, and this call maps it over an index", None,
                       hint="cardgen applies a backward rule to a whole-array call: call the card on the whole "
                            "array, or drop its `backward`")
            seed = lw.names.fresh("seed_" + ascii_name(out_name))  # renamed to the gradient that arrives
            lw.env[grad_name(out_name)] = type(av)(seed, (), av.dims, "real", av.batched)
            seeds.append((av.name, seed))
        for st in rule.steps:
            if not is_zero(st):
                lw.step(st)
        grads = []
        for x in differentiable(card, lw.ch.env):
            av = lw.env[x]
            if av.mapped:
                lw.err(f"{card.name} states its own backward, and this call maps {x} over an index", None,
                       hint="call the card on the whole array, or drop its `backward`")
            zero = any(is_zero(st) and st.target.op == "name" and st.target.attr == grad_name(x)
                       for st in rule.steps)
            if zero:
                grads.append((av.name, None))
                continue
            g = lw.materialize(lw.env[grad_name(x)])
            if g.mapped:
                g = lw.unmap(g, list(g.mapped))
            grads.append((av.name, name_gradient(lw, g.name, x)))
        body = lw.block
    finally:
        lw.block, lw.step_no = saved
    if any(isinstance(x, Loop) for x in body):
        lw.err(f"{card.name}: a backward rule runs no loop over layers or time", rule,
               hint="write the gradients with ∀ and Σ")
    return Region(card.name, rule.straight_through, forward, items[-1], seeds, grads, body)


def name_gradient(lw, g: str, x: str) -> str:
    """Call a gradient the rule computed into a temporary (``_14``) ``d_P``, after its variable."""
    if not g.startswith("_"):
        return g
    at = next((i for i, op in enumerate(lw.block) if isinstance(op, Op) and op.out == g), None)
    if at is None:
        return g
    new = lw.names.fresh(ascii_name(grad_name(x)))
    lw.block[at].out = new
    for op in lw.block[at + 1:]:
        op.args = tuple(new if a == g else a for a in op.args)
    return new


def inline_rule(parent, child, start: int, out) -> None:
    """After ``child`` (the lowerer of a called card with a rule) lowered its body into the shared
    block from ``start``: record the call's region on the program being built."""
    region = lower_rule(child, child.block[start:], [(child.card.outputs[0], out)])
    if region is not None:
        record(parent.regions, region)


def record(regions: list, region: Region) -> None:
    """Add a region; the rules of calls inside it are replaced by its own, so they go."""
    regions[:] = [r for r in regions if not r.forward <= region.forward] + [region]


def covered(item, replaced: set[str]) -> bool:
    """A forward op or loop that a rule stands for: the derived backward skips it.  A loop is the
    rule's when all of it is (a loop inside the card); a loop around the call is not."""
    if isinstance(item, Loop):
        ops = [op.out for op in walk(item.body)]
        return bool(ops) and all(out in replaced for out in ops)
    return item.out in replaced


def rename(region: Region, renames: dict[str, str]) -> None:
    """Forward values renamed after lowering (ad.name_composites), in the rule too."""
    for op in region.body:
        op.args = tuple(renames.get(a, a) for a in op.args)
    region.seeds = [(renames.get(out, out), seed) for out, seed in region.seeds]
    region.grads = [(renames.get(x, x), g) for x, g in region.grads]
    region.forward = {renames.get(n, n) for n in region.forward}


def register(prog, b) -> None:
    """Tell a backward builder (ad.Builder) the program's rules: where each runs, what it replaces."""
    for region in getattr(prog, "rules", ()):
        b.rules[id(region.last)] = region
        b.replaced |= region.forward


def apply_rule(region: Region, grads: dict, b, needs, accumulate) -> None:
    """The rule's ops, on the gradients of the region's outputs, into the backward being built."""
    if not any(out in grads for out, _ in region.seeds):
        return
    given = {}
    for out, seed in region.seeds:  # an output nothing used has a zero gradient
        given[seed] = grads[out] if out in grads else b.scale(out, 0.0)
    for op in region.body:
        new = replace(op, args=tuple(given.get(a, a) for a in op.args))
        b.block.append(new)
        b.layout[new.out] = Value(new.out, new.shape, new.batched, new.kind)
    for x, g in region.grads:  # d_x ← d_y: the gradient is the placeholder itself, replaced too
        if g is not None and x in needs:
            accumulate(grads, b, x, given.get(g, g))


__all__ = ["Region", "lower_rule", "inline_rule", "covered", "register", "rename", "apply_rule"]
