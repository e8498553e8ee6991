"""What cardgen derives from a card, shown to people: the backward pass as
pseudocode (`cardgen render --backward`) and the activations the forward saves
for it, with shapes and bytes (`cardgen render --memory`)."""

from __future__ import annotations

import math
import re

from ..compile.ad import BLoop, differentiate, walk_all
from ..compile.core import Op
from ..compile.lower import lower
from ..lang.check import Checked, Library
from ..lang.shapes import Poly, poly_text

# How each core op reads in pseudocode; {0}, {1}, … are its arguments.
MATH = {
    "add": "{0} + {1}", "sub": "{0} − {1}", "mul": "{0} ⊙ {1}", "div": "{0} / {1}", "neg": "−{0}",
    "exp": "exp({0})", "log": "log({0})", "tanh": "tanh({0})", "sqrt": "√{0}", "square": "{0}²",
    "pow": "{0}^{{{a0}}}", "scale": "{a0} {0}", "one_minus": "1 − {0}", "positive": "[[{0} > 0]]",
    "matmul": "{0} · {1}", "wgrad": "Σ_batch {0}^⊤ · {1}", "outer": "{0} {1}^⊤",
    "transpose": "{0}^⊤", "expand": "{0}", "squeeze": "{0}", "sum_to": "Σ_broadcast {0}",
    "unsum": "broadcast({0})", "broadcast_like": "broadcast({0})", "reshape_to": "reshape({0})",
    "softmax_grad": "{1} ⊙ ({0} − Σ({0} ⊙ {1}))",
    "layer_norm_grad": "({0} − mean {0} − {1} ⊙ mean({0} ⊙ {1})) / {2}",
    "gelu_tanh_grad": "{0} ⊙ {a0} ((1 + {2}) + {a1} {1} (1 + 3·{a2} {1}²) (1 − {2}²))",
    "log_softmax_grad": "{0} − exp({1}) ⊙ Σ {0}",
    "gelu_grad": "GELU′({0})", "silu_grad": "SiLU′({0})", "sin": "sin({0})", "round": "round({0})", "cos": "cos({0})",
    "unslice": "pad({0})", "scatter": "scatter_add({0} into rows {1})", "put_along": "scatter({0} at {1})",
    "unpick": "pad({0})",
    "slice_add": "{0} with {1} added into a slice", "select_grad": "{0} ? {1} : 0", "copy": "{0}",
    "ge": "[[{0} ≥ {1}]]",
    "lt": "[[{0} < {1}]]", "sigmoid": "σ({0})",
}


# Constants a card spells as maths, printed as it spells them (GELU's √(2/π)), not as 16 digits.
CONSTANTS = {math.sqrt(2 / math.pi): "√(2/π)"}


FORWARD_TEMP = re.compile(r"_\d+")
SCALAR_MATH = {"add", "sub", "mul", "div", "sqrt", "square", "pow", "neg", "exp", "log"}


def atomic(text: str) -> bool:
    """A name, or one bracketed group (√(D / H)): needs no parentheses around it."""
    if re.fullmatch(r"√?[\w.′]+", text):
        return True
    if not (text.startswith("√(") and text.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(text[1:], 1):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def op_math(op: Op, inline: dict[str, str] | None = None) -> str:
    """The op as maths; ``inline``: names to print as the expression that made them."""
    fmt = MATH.get(op.prim, op.prim + "(" + ", ".join(f"{{{i}}}" for i in range(len(op.args))) + ")")
    attrs = {f"a{i}": CONSTANTS.get(a, a) if isinstance(a, float) else a for i, a in enumerate(op.attr)}
    if op.prim == "select_grad" and not op.attr[0]:
        fmt = "{0} ? 0 : {1}"
    inline = inline or {}
    return fmt.format(*((inline[a] if atomic(inline[a]) else f"({inline[a]})") if a in inline else a
                        for a in op.args), **attrs)


NUMBERED = re.compile(r"g\d+")


def inlinable(bwd) -> set[str]:
    """Numbered values read once, by a later op of the same block: printed inside that
    op's step (``d_γ ← Σ (d_ê ⊙ x̂)``) rather than as a step of their own."""
    reads: dict[str, int] = {}
    for op in walk_all(bwd.body):
        for a in op.args:
            reads[a] = reads.get(a, 0) + 1
    kept = set(bwd.param_grads.values()) | set(bwd.input_grads.values())
    for item in walk_loops(bwd.body):  # a loop's bookkeeping reads names too
        kept |= set(item.body_grads.values()) | set(item.carry.values()) | {g for _, g in item.seeds}
        kept |= {g for pair in item.closure.values() for g in (pair if isinstance(pair, tuple) else (pair,))}
    return {op.out for op in walk_all(bwd.body)
            if (NUMBERED.fullmatch(op.out) or FORWARD_TEMP.fullmatch(op.out))  # or a forward one recomputed
            and reads.get(op.out) == 1 and op.out not in kept}


def walk_loops(body):
    for item in body:
        if isinstance(item, BLoop):
            yield item
            yield from walk_loops(item.body)


def shape_text(shape, batched: bool) -> str:
    dims = (["B"] if batched else []) + [poly_text(d) for d in shape]
    return "ℝ^{" + "×".join(dims) + "}" if dims else "ℝ"


def rule_lines(card) -> list[str]:
    """A card's own backward rule as its pseudocode prints it (numbered on from its steps), indented."""
    from ..lang.render import pseudocode
    shown = pseudocode(card)
    return ["   " + line for line in shown[shown.rindex("\nBackward:") + 1:].splitlines()[1:]]


def backward_text(checked: Checked, lib: Library) -> str:
    """The derived backward pass, step by step, in the card's style."""
    from ..compile.emit import output_names
    prog = lower(checked, lib)
    outs = output_names(prog, checked)  # one gradient per output (AdamW has three)
    bwd = differentiate(prog, prog.names, ["d_" + o for o in outs])
    card = checked.card
    lines = [f"Algorithm: ∇ ← {card.name}.backward({', '.join('d_' + o for o in outs)} | θ)",
             f"/* Reverse-mode derivative of {card.name}, derived by cardgen; B is the batch. */"]
    for name, ste in dict((r.card, r.straight_through) for r in prog.rules).items():
        lines.append(f"/* Through {name}: its own backward rule, not derived"
                     + (" (a straight-through estimator: deliberately not the true gradient)" if ste else "") + ": */")
        lines += rule_lines(checked.card if name == card.name else lib.card(name))
    for o, v in zip(outs, prog.outputs, strict=True):
        lines.append(f"Input: d_{o} ∈ {shape_text(v.shape, v.batched)} — gradient of the loss with respect to {o}")
    for p in prog.params:
        g = bwd.param_grads.get(p.name)
        lines.append(f"Output: d_{p.name} ∈ {shape_text(p.shape, False)} — as {'.'.join(prog.param_paths[p.name])}"
                     + ("" if g else " (zero: the output does not depend on it)"))
    n = [0]
    fold = inlinable(bwd)
    inline: dict[str, str] = {}
    for op in _walk(prog.body):  # scalars of the hyperparameters (√(D / H)) read as their formula
        if not op.shape and not op.batched and op.kind == "real" and FORWARD_TEMP.fullmatch(op.out) \
                and op.prim in SCALAR_MATH:
            inline[op.out] = op_math(op, inline)

    def emit(items, depth):
        for item in items:
            if isinstance(item, BLoop):
                n[0] += 1
                lines.append(f"{n[0]:>3} {'  ' * depth}for {item.loop.var} = {poly_text(item.loop.count)}, …, 1 do"
                             f"  ▷ in reverse, reading what iteration {item.loop.var} saved")  # layers or time steps
                emit(item.body, depth + 1)
                for per_layer, stacked in item.sliced.items():
                    n[0] += 1
                    lines.append(f"{n[0]:>3} {'  ' * (depth + 1)}{item.stacked_grads[stacked]}[{item.loop.var}]"
                                 f" ← {item.body_grads[per_layer]}")
                n[0] += 1
                lines.append(f"{n[0]:>3} {'  ' * depth}end")
            elif item.out in fold:
                inline[item.out] = op_math(item, inline)
            else:
                n[0] += 1
                text = f"{n[0]:>3} {'  ' * depth}{item.out} ← {op_math(item, inline)}"
                lines.append(f"{text:<56}  ▷ {shape_text(item.shape, item.batched)}")
    emit(bwd.body, 0)
    return "\n".join(lines) + "\n"


def saved_activations(checked: Checked, lib: Library):
    """(name, shape, batched, per-layer count, dtype-size) of every value the
    forward keeps for the backward (parameters and inputs excluded)."""
    prog = lower(checked, lib)
    bwd = differentiate(prog, prog.names, [f"d_out{i}" for i in range(len(prog.outputs))])
    own = {v.name for v in prog.inputs + prog.params}
    rows = []
    layout = bwd.values
    for name in bwd.saved:
        if name in own or name not in layout:
            continue
        if not layout[name].shape and not layout[name].batched:  # √(D/H) and the like: no activation
            continue
        v = layout[name]
        rows.append((name, v.shape, v.batched, Poly.const(1), v.kind))
    from ..compile.core import Loop
    counts = {x.var: x.count for x in prog.body if isinstance(x, Loop)}
    for var, names in bwd.saved_in_loops.items():
        for name in names:
            if name in own or name not in layout:
                continue
            v = layout[name]
            rows.append((name, v.shape, v.batched, counts.get(var, Poly.const(1)), v.kind))
    return [r for r in rows if not views_of(prog, own).get(r[0])]


# Ops whose result shares its operand's memory: a value made by them from a parameter or an input
# (a layer's slice of a parameter, W_e^⊤) costs the forward nothing to keep.
VIEW_PRIMS = {"index", "transpose", "expand", "slice", "copy", "squeeze", "broadcast", "reshape"}


def views_of(prog, own: set[str]) -> dict[str, bool]:
    """Value name -> whether it is a view of a parameter or an input (a reshape of a transposed
    one is a copy)."""
    strided: dict[str, bool] = {}  # views of parameters -> whether axes were reordered on the way
    for op in _walk(prog.body):
        if op.prim in VIEW_PRIMS and op.args and (op.args[0] in own or op.args[0] in strided):
            before = strided.get(op.args[0], False)
            if not (op.prim == "reshape" and before):
                strided[op.out] = before or op.prim == "transpose"
    return {name: True for name in strided}


def _walk(body):
    from ..compile.core import walk
    return walk(body)


def memory_rows(checked: Checked, lib: Library, values: dict[str, float], batch: int, itemsize: int):
    """Each saved value as (name, shape text, bytes or None where a size is unknown), the
    total of the known ones, and the dimension names that lack a value."""
    rows = []
    total = 0
    missing = set()
    for name, shape, batched, count, kind in saved_activations(checked, lib):
        dims = (["B"] if batched else []) + [poly_text(d) for d in shape]
        size = 1 if not batched else batch
        known = True
        for d in list(shape) + [count]:
            v = d.evaluate(values)
            if v is None:
                known = False
                missing |= {s for s in d.symbols() if s not in values}
            else:
                size *= int(v)
        nbytes = size * (8 if kind == "int" else 1 if kind == "bool" else itemsize)
        times = "" if count == Poly.const(1) else f" × {poly_text(count)}"
        rows.append((name, "(" + ", ".join(dims) + ")" + times, nbytes if known else None))
        if known:
            total += nbytes
    return rows, total, sorted(missing)


def memory_text(checked: Checked, lib: Library, values: dict[str, float], batch: int, itemsize: int) -> str:
    rows, total, missing = memory_rows(checked, lib, values, batch, itemsize)
    lines = [f"Saved for the backward pass of {checked.card.name}"
             f" (B = {batch}, {itemsize}-byte floats; per-layer values × layers):"]
    width = max((len(r[0]) for r in rows), default=4)
    for name, shape_s, nbytes in rows:
        lines.append(f"  {name:<{width}}  {shape_s:<32} " + (f"{nbytes:>14,} B" if nbytes is not None else "?"))
    if missing:
        lines.append(f"  total: needs values for {', '.join(missing)} (--set NAME=VALUE)")
    else:
        lines.append(f"  total: {total:,} bytes ({total / 2**20:.2f} MiB)")
    return "\n".join(lines) + "\n"
