"""Reverse-mode differentiation of the core IR.

``VJP`` holds one rule per primitive: given the op, its output ``y`` and the
output's gradient ``g``, the gradient for each argument, built as core ops (so
the backward pass is IR, printed and emitted like the forward).  The driver
does the rest once for all rules: it sums a contribution back to its
operand's shape when the operand was broadcast, adds the contributions of a
value used twice (GPT-2's tied ``W_e``), and runs loops over layers backwards
over the per-layer values the forward saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..lang.errors import CardError
from ..lang.shapes import Poly, poly_text
from . import custom
from .core import Loop, Op, Program, Value, matmul_attr, walk
from .naming import ascii_name, grad_name
from .remat import rematerialize

ONE = Poly.const(1)
NO_GRAD_PRIMS = {"iota", "const", "draw", "le", "lt", "ge", "gt", "eq", "ne", "not", "floordiv", "mod"}


def swap(b, x):
    return b.transpose(x)


def _broadcast_lead(a: tuple, b: tuple) -> tuple:
    """The batch axes of a matrix product, NumPy's rule: right-aligned, a size-1 axis takes the other's
    ((1, T, D)ᵀ times (H, T, w): H, not 1)."""
    n = max(len(a), len(b))
    a, b = (None,) * (n - len(a)) + a, (None,) * (n - len(b)) + b
    return tuple(y if x is None or x == ONE and y is not None else x for x, y in zip(a, b, strict=True))


def mm_vjp(b, op, g, x, y):
    # A weight shared by every example gets its gradient summed over the batch inside one
    # matrix product (wgrad), never as a matrix per example summed afterwards.
    mode = op.attr[0]
    scaled = b.defs.get(g)
    if mode == "mm" and scaled is not None and scaled.prim == "div" and b.lay(x).batched and b.lay(y).batched \
            and b.is_scalar(scaled.args[1]) and TEMP_GRAD.fullmatch(g):
        # Attention's d_S / √d: divide the two (T×d) products instead of the (T×T) gradient (when the
        # card did not name the quotient: a gradient it names stays a step of its own)
        g0, s = scaled.args
        return tuple(b.div(d, s) for d in mm_vjp(b, op, g0, x, y))
    if mode == "mm":
        dy = b.wgrad(x, g, y) if b.is_weight(y, x) else b.matmul(swap(b, x), g, "mm")
        # W X (the paper's columns): d_W = Σ g X^⊤, the rows of g^⊤ against the rows of X^⊤
        dx = b.wgrad(swap(b, g), swap(b, y), x) if b.is_weight(x, y) and b.lay(g).batched \
            else b.matmul(g, swap(b, y), "mm")
        return dx, dy
    if mode == "mv":  # W x: d_W = Σ g x^⊤
        dx = b.wgrad(g, y, x) if b.rows_weight(x, y, g) else b.outer(g, y)
        return dx, b.matmul(g, x, "vm") if b.single(x) else b.matmul(swap(b, x), g, "mv")
    if mode == "vm":  # x W: d_W = Σ x g^⊤
        return b.matmul(y, g, "mv"), b.wgrad(x, g, y) if b.rows_weight(y, x, g) else b.outer(x, g)
    return b.mul(g, y, expand=True), b.mul(g, x, expand=True)


# One rule per primitive: (builder, op, g, *args) -> a gradient per argument (None: none).
VJP = {
    "add": lambda b, op, g, x, y: (g, g),
    "sub": lambda b, op, g, x, y: (g, b.neg(g)),
    "mul": lambda b, op, g, x, y: (b.mul(g, y), b.mul(g, x)),
    "div": lambda b, op, g, x, y: (b.div(g, y), b.neg(b.div(b.mul(g, op.out), y))),
    "neg": lambda b, op, g, x: (b.neg(g),),
    "exp": lambda b, op, g, x: (b.mul(g, op.out),),
    "log": lambda b, op, g, x: (b.div(g, x),),
    "tanh": lambda b, op, g, x: (b.mul(g, b.one_minus(b.square(op.out))),),
    "sqrt": lambda b, op, g, x: (b.div(g, b.scale(op.out, 2.0)),),
    "square": lambda b, op, g, x: (b.mul(g, b.scale(x, 2.0)),),
    "pow": lambda b, op, g, x: (b.mul(g, b.scale(b.pow(x, op.attr[0] - 1), op.attr[0])),),
    "relu": lambda b, op, g, x: (b.mul(g, b.positive(x)),),
    "sigmoid": lambda b, op, g, x: (b.mul(g, b.mul(op.out, b.one_minus(op.out))),),
    "silu": lambda b, op, g, x: (b.mul(g, b.unary("silu_grad", x)),),
    "gelu": lambda b, op, g, x: (b.new("gelu_grad", (g, x, op.out), like=g),),  # Φ(x) = y / x: no second erf
    "sin": lambda b, op, g, x: (b.mul(g, b.unary("cos", x)),),
    "cos": lambda b, op, g, x: (b.neg(b.mul(g, b.unary("sin", x))),),
    "softmax": lambda b, op, g, x: (b.fused("softmax_grad", g, op.out, op.attr),),
    "log_softmax": lambda b, op, g, x: (b.fused("log_softmax_grad", g, op.out, op.attr),),
    "sum": lambda b, op, g, x: (b.unsum(g, x, op.attr[0]),),
    "matmul": mm_vjp,
    "transpose": lambda b, op, g, x: (b.transpose(g, inverse(op.attr[0])),),
    "expand": lambda b, op, g, x: (b.squeeze(g, x, op.attr[0]),),
    "reshape": lambda b, op, g, x: (b.reshape_like(g, x),),
    "slice": lambda b, op, g, x: (b.unslice(g, x, op.attr),),
    "take": lambda b, op, g, t, j: (b.scatter(g, j, t, op.attr[0]), None),
    "take_along": lambda b, op, g, x, j: (b.put_along(g, j, x, op.attr), None),
    "pick": lambda b, op, g, x: (b.unpick(g, x, op.attr),),
    "where": lambda b, op, g, c, x, y: where_vjp(b, op, g, c, x, y),
    "copy": lambda b, op, g, x: (g,),
    "batch": lambda b, op, g, x: (g,),  # the driver sums the batch axes away
    "index": lambda b, op, g, x: (None,),  # a layer's slice: the loop gathers it into d_W[l]
    "broadcast": lambda b, op, g, x: (g,),
    "maximum": lambda b, op, g, x, y: (b.mul(g, b.cmp("ge", x, y)), b.mul(g, b.cmp("lt", x, y))),
    "minimum": lambda b, op, g, x, y: (b.mul(g, b.cmp("le", x, y)), b.mul(g, b.cmp("gt", x, y))),
    "abs": lambda b, op, g, x: (b.mul(g, b.unary("sign", x)),),
    "erf": lambda b, op, g, x: (b.mul(g, b.unary("erf_grad", x)),),
    "round": lambda b, op, g, x: (None,),  # a step function: zero wherever it has a derivative
    # max and min: the gradient goes to the extreme entries, shared equally among ties
    "max": lambda b, op, g, x: (b.new("extreme_grad", (g, x, op.out), op.attr, like=x),),
    "min": lambda b, op, g, x: (b.new("extreme_grad", (g, x, op.out), op.attr, like=x),),
    "mean": lambda b, op, g, x: (b.new("unmean", (g, b.shape(x)), op.attr, like=x),),
    "concat": lambda b, op, g, *xs: tuple(b.concat_part(g, xs, i, op.attr[0]) for i in range(len(xs))),
    # a^p with an array exponent: p·a^(p−1) and a^p·log a
    "powv": lambda b, op, g, x, p: (b.mul(g, b.broadcast("powv_da", x, p)),
                                    b.mul(g, b.broadcast("powv_dp", op.out, x))),
}


def where_vjp(b, op, g, c, x, y):
    """``where(c, x, y)``: g to x where c holds, to y elsewhere; where one side is −∞ before a
    softmax (an attention mask), g is already zero there (the softmax gave 0): no pass to zero it."""
    if number(x) == float("-inf") and zero_at_mask(b, g, op.out):
        return None, None, g
    if number(y) == float("-inf") and zero_at_mask(b, g, op.out):
        return None, g, None
    return None, b.select(c, g, True), b.select(c, g, False)


def zero_at_mask(b, g, masked) -> bool:
    """Whether ``g`` is (a scalar's multiple of) the softmax gradient ``y ⊙ (…)`` of ``y =
    softmax(masked / s …)``, s > 0: zero wherever ``masked`` is −∞, since y is zero there."""
    src = b.defs.get(g)
    while src is not None and src.prim == "div" and b.is_scalar(src.args[1]):
        src = b.defs.get(src.args[0])
    soft = b.defs.get(src.args[1]) if src is not None and src.prim == "softmax_grad" else None
    if soft is None or soft.prim != "softmax":
        return False
    a = soft.args[0]
    while a != masked and a in b.defs and b.defs[a].prim == "div" and b.is_positive(b.defs[a].args[1]):
        a = b.defs[a].args[0]
    return a == masked


class NoDerivativeError(CardError):
    """An operation the backward pass cannot go through; ``step`` is ``Card:line``."""

    def __init__(self, prim: str, step: str | None):
        super().__init__(f"cardgen has no derivative rule for `{prim}`, which this step uses",
                         hint="a card that is differentiated may use only operations with a rule "
                              "(see README: primitives)")
        self.prim, self.step = prim, step


def inverse(perm):
    n = len(perm)
    inv = [0] * n
    for i, p in enumerate(perm):
        inv[p + n] = i - n
    return tuple(inv)


@dataclass
class Backward:
    """The derived backward pass: ops, what the forward must save, and where
    each gradient ends up."""

    body: list
    saved: list[str]  # forward values the backward reads
    saved_in_loops: dict[str, list[str]]  # loop var -> per-layer values the backward reads
    shapes: list[tuple[str, str]]  # (name, forward value) whose shape the backward needs
    param_grads: dict[str, str]
    input_grads: dict[str, str]
    output_grads: list[str]
    values: dict[str, Value] = field(default_factory=dict)


class Builder:
    """Makes backward ops; every new value's layout follows its model."""

    def __init__(self, layout: dict[str, Value], names, defs: dict[str, Op] | None = None):
        self.layout = layout
        self.names = names
        self.defs = dict(defs or {})  # the op that made each value, forward and backward
        self.block: list = []
        self.step = None
        self.shape_of: dict[str, str] = {}
        self.renamed: dict[str, str] = {}  # numbered gradient -> the card's name for it (name_after)
        self.rules: dict[int, object] = {}  # a custom rule's region, by its last forward item (custom.py)
        self.replaced: set[str] = set()  # the forward ops custom rules stand for: not differentiated

    def lay(self, x) -> Value:
        """A value's layout; names the forward never defined are scalars (D, ε, 2.0)."""
        return self.layout.get(x) or Value(x, (), False)

    def new(self, prim, args, attr=(), like=None, shape=None, batched=None, kind="real"):
        ref = self.lay(like) if like else None
        out = self.names.temp().replace("_", "g", 1)
        shape = ref.shape if shape is None else shape
        batched = ref.batched if batched is None else batched
        self.layout[out] = Value(out, shape, batched, kind)
        self.block.append(Op(out, prim, tuple(args), attr, shape, batched, kind, self.step))
        self.defs[out] = self.block[-1]
        return out

    # element-wise (the result has g's layout, the larger one)
    def broadcast(self, prim, a, b, kind="real"):
        """An element-wise op; its layout is the two operands' broadcast, as NumPy makes it."""
        la, lb = self.lay(a), self.lay(b)
        n = max(len(la.shape), len(lb.shape))
        pa = (ONE,) * (n - len(la.shape)) + tuple(la.shape)
        pb = (ONE,) * (n - len(lb.shape)) + tuple(lb.shape)
        shape = tuple(y if x == ONE else x for x, y in zip(pa, pb, strict=True))
        return self.new(prim, (a, b), shape=shape, batched=la.batched or lb.batched, kind=kind)

    def mul(self, a, b, expand=False):
        if expand:
            a = self.new("expand", (a,), ((-1,),), like=a, shape=self.lay(a).shape + (ONE,))
        return self.broadcast("mul", a, b)

    def div(self, a, b):
        return self.broadcast("div", a, b)

    def add(self, a, b):
        return self.broadcast("add", a, b)

    def neg(self, a):
        return self.new("neg", (a,), like=a)

    def square(self, a):
        return self.new("square", (a,), like=a)

    def scale(self, a, c):
        return self.new("scale", (a,), (c,), like=a)

    def pow(self, a, c):
        return self.new("pow", (a,), (c,), like=a)

    def one_minus(self, a):
        return self.new("one_minus", (a,), like=a)

    def positive(self, a):
        return self.new("positive", (a,), like=a)

    def unary(self, prim, a):
        return self.new(prim, (a,), like=a)

    def cmp(self, prim, a, b):
        return self.broadcast(prim, a, b, kind="bool")

    def fused(self, prim, g, y, attr):
        return self.new(prim, (g, y), attr, like=g)

    def transpose(self, a, perm=None):
        v = self.lay(a)
        n = len(v.shape)
        swap_last = tuple(range(-n, -2)) + (-1, -2)
        perm = swap_last if perm is None else tuple(perm)
        # Transposes fold away rather than cost a view (or a copy) each: (Aᵀ)ᵀ = A, (A B)ᵀ = Bᵀ Aᵀ,
        # (Σ Xᵀ G)ᵀ = Σ Gᵀ X; what a matrix product then reads transposed, BLAS reads in place.
        src = self.defs.get(a)
        if src is not None and src.prim == "transpose" and inverse(src.attr[0]) == perm:
            return src.args[0]
        if src is not None and perm == swap_last and src.prim == "matmul" and src.attr[0] == "mm":
            return self.matmul(self.transpose(src.args[1]), self.transpose(src.args[0]), "mm")
        if src is not None and src.prim == "div" and self.is_scalar(src.args[1]) and TEMP_GRAD.fullmatch(a):
            # (A / s)ᵀ = Aᵀ / s, for a quotient the card does not name
            return self.div(self.transpose(src.args[0], perm), src.args[1])
        if src is not None and perm == swap_last and src.prim == "wgrad":
            return self.new("wgrad", src.args[::-1], shape=v.shape[:-2] + v.shape[:-3:-1], batched=v.batched)
        shape = tuple(v.shape[p + n] for p in perm)
        return self.new("transpose", (a,), (perm,), like=a, shape=shape)

    def matmul(self, a, b, mode):
        la, lb = self.lay(a), self.lay(b)
        sa, sb = la.shape, lb.shape
        lead_a = sa[: len(sa) - (1 if mode[0] == "v" else 2)]
        lead_b = sb[: len(sb) - (1 if mode[1] == "v" else 2)]
        lead = _broadcast_lead(tuple(lead_a), tuple(lead_b))
        shape = tuple(lead) + ((sa[-2],) if mode[0] == "m" else ()) + ((sb[-1],) if mode[1] == "m" else ())
        return self.new("matmul", (a, b), matmul_attr(mode, self.single(a), self.single(b)), shape=shape,
                        batched=la.batched or lb.batched)

    def single(self, w) -> bool:
        """One matrix for every example: no batch axes, no axes but its own two."""
        lw = self.lay(w)
        return not lw.batched and len(lw.shape) == 2

    def is_scalar(self, x) -> bool:
        return not self.lay(x).shape and not self.lay(x).batched

    def is_positive(self, x) -> bool:
        """A scalar known to be positive: a positive literal or a square root (√d_attn)."""
        src = self.defs.get(x)
        return self.is_scalar(x) and ((number(x) or 0) > 0 or (src is not None and src.prim == "sqrt"))

    def is_weight(self, w, x) -> bool:
        return self.single(w) and self.lay(x).batched

    def rows_weight(self, w, v, g) -> bool:
        """W in W v or v W, v batched: its gradient sums g ⊗ v over rows that line up one to one."""
        lv, lg = self.lay(v), self.lay(g)
        return self.is_weight(w, v) and lg.batched and lv.shape[:-1] == lg.shape[:-1]

    def wgrad(self, x, g, w):
        """x^⊤ g summed over every leading axis, as one matrix product."""
        return self.new("wgrad", (x, g), like=w)

    def outer(self, a, b):
        la, lb = self.lay(a), self.lay(b)
        return self.new("outer", (a, b), shape=la.shape + lb.shape[-1:], batched=la.batched or lb.batched)

    def shape(self, x):
        if x not in self.shape_of:
            self.shape_of[x] = f"{x.lstrip('_')}_shape" if not x.startswith("_") else f"shape{x}"
        return self.shape_of[x]

    def concat_part(self, g, xs, i, axis):
        """Part i of a join's gradient: its slice along the joined axis."""
        lg = self.lay(g)
        shape = list(lg.shape)
        shape[axis] = self.lay(xs[i]).shape[axis]
        return self.new("concat_part", (g, *[self.shape(x) for x in xs]), (axis, i), shape=tuple(shape),
                        batched=lg.batched)

    def unsum(self, g, x, axes):
        return self.new("unsum", (g, self.shape(x)), (axes,), like=x)

    def squeeze(self, g, x, axes):
        return self.new("squeeze", (g,), (axes,), like=x)

    def reshape_like(self, g, x):
        return self.new("reshape_to", (g, self.shape(x)), like=x)

    def unslice(self, g, x, attr):
        src = self.defs.get(g)
        if src is not None and src.prim == "reshape_to" and TEMP_GRAD.fullmatch(g):
            # a head-split gradient (reshape of a transpose) goes straight into its slice of d_A,
            # through a view, not first into a copy of its own: the slice has the reshape's size
            g = src.args[0]
        return self.new("unslice", (g, self.shape(x)), attr, like=x)

    def scatter(self, g, j, table, off):
        return self.new("scatter", (g, j, table), (off,), like=table)

    def put_along(self, g, j, x, attr):
        return self.new("put_along", (g, j, self.shape(x)), attr, like=x)

    def unpick(self, g, x, attr):
        return self.new("unpick", (g, self.shape(x)), attr, like=x)

    def select(self, c, g, keep_where_true):
        return self.new("select_grad", (c, g), (keep_where_true,), like=g)

    def sum_to(self, g, x):
        """Sum a contribution over the axes along which x was broadcast."""
        lg, lx = self.lay(g), self.lay(x)
        axes = []
        if len(lg.shape) == len(lx.shape):
            axes = [i - len(lx.shape) for i, (dx, dg) in enumerate(zip(lx.shape, lg.shape, strict=True))
                    if dx == ONE and dg != ONE]
        if lg.batched == lx.batched and len(lg.shape) == len(lx.shape) and not axes:
            return g
        ndim = None if lx.batched else len(lx.shape)
        if lx.batched and not lg.batched:
            return self.new("broadcast_like", (g, self.shape(x)), like=x)
        return self.new("sum_to", (g,), (ndim, tuple(axes)), like=x)


def differentiate(prog: Program, names, out_grads) -> Backward:
    """The backward pass of ``prog``: gradients of every parameter and real input."""
    layout: dict[str, Value] = {}
    for v in prog.inputs + prog.params:
        layout[v.name] = v
    for op in walk(prog.body):
        layout[op.out] = Value(op.out, op.shape, op.batched, op.kind)
    register_loops(prog.body, layout)
    needs = needs_grad(prog)
    composites = Builder(layout, names)
    custom.register(prog, composites)
    name_composites(prog.body, composites, needs, {o.name for o in prog.outputs})
    b = Builder(layout, names, {op.out: op for op in walk(prog.body)})
    custom.register(prog, b)
    grads: dict[str, str] = {}
    out_grads = [out_grads] if isinstance(out_grads, str) else list(out_grads)
    names.taken |= set(out_grads)  # the backward's arguments (d_P): no gradient may take their names
    for out, g0 in zip(prog.outputs, out_grads, strict=True):
        layout[g0] = Value(g0, out.shape, out.batched)
        grads[out.name] = g0
    loops_saved: dict[str, list[str]] = {}
    backprop(prog.body, grads, b, needs, loops_saved, {o.name for o in prog.outputs})
    param_grads = {p.name: grads.get(p.name) for p in prog.params}
    input_grads = {v.name: grads[v.name] for v in prog.inputs if v.kind == "real" and v.name in grads}
    roots = {g for g in list(param_grads.values()) + list(input_grads.values()) if g}
    b.block = rematerialize(dce(b.block, roots), prog.body, layout, BLoop)
    for item in b.block:  # what each layer must save, now that dead ops are gone
        if isinstance(item, BLoop):
            item.saved = reads(item.body, item.fwd_inner)
            loops_saved[item.loop.var] = item.saved
    forward_names = {v.name for v in prog.inputs + prog.params} | {op.out for op in walk(prog.body)}
    forward_names |= {new for x in prog.body if isinstance(x, Loop) for new, _ in x.outs}
    forward_names |= {whole for x in prog.body if isinstance(x, Loop) for whole, *_ in x.stacks}
    forward_names |= {s for x, s in b.shape_of.items() if x in forward_names}
    in_loops = {n for names_ in loops_saved.values() for n in names_}
    read = reads(b.block, forward_names - in_loops)
    shapes = [(s, x) for x, s in b.shape_of.items()]
    return Backward(b.block, read, loops_saved, shapes, param_grads, input_grads, out_grads, layout)


def dce(block: list, roots: set[str]) -> list:
    """Drop the ops whose results no gradient needs (a rule computes every
    argument's share; the driver keeps only the shares that are used)."""
    used = set(roots)
    kept = []
    for item in reversed(block):
        if isinstance(item, BLoop):
            epilogue = set(item.sliced) | set(item.closure) | {inner for _, inner, _ in item.loop.carried}
            inner_roots = {item.body_grads[x] for x in epilogue if x in item.body_grads}
            item.body = dce(item.body, inner_roots)
            used |= {g for _, g in item.seeds}
            for op in walk_all(item.body):
                used |= set(op.args)
            kept.append(item)
        elif item.out in used:
            used |= set(item.args)
            kept.append(item)
    return kept[::-1]


def register_loops(body, layout):
    """Carried values and loop results have the layout of what they stand for."""
    for x in body:
        if isinstance(x, Loop):
            for outer, inner, _ in x.carried:
                layout[inner] = layout[outer]
            register_loops(x.body, layout)
            for new, res in x.outs:
                layout[new] = layout[res]
            for whole, v, _axis, dims in x.stacks:
                layout[whole] = Value(whole, dims, layout[v].batched, layout[v].kind)


def walk_all(body):
    """Backward ops, looking inside backward loops."""
    for x in body:
        if isinstance(x, BLoop):
            yield from walk_all(x.body)
        elif isinstance(x, Loop):
            yield from walk(x.body)
        else:
            yield x


def gradient_edges(body) -> list[tuple[str, str]]:
    """(src, dst) for every step a value's dependence on a tensor takes forward, which its gradient
    takes back: a real op's arguments to its result (not a comparison or a draw), into a loop, round
    it (a value carried to the next pass), out of it, and into a loop's stacked results; in program
    order, so that a pass over the list in order settles all but what loops carry round."""
    edges: list[tuple[str, str]] = []
    for x in body:
        if isinstance(x, Loop):
            edges += [(stacked, per_iteration) for stacked, per_iteration in x.sliced]
            edges += [(outer, inner) for outer, inner, _ in x.carried]
            edges += gradient_edges(x.body)
            edges += [(res, inner) for _, inner, res in x.carried]
            edges += [(res, outer) for outer, res in x.outs]
            edges += [(v, whole) for whole, v, *_ in x.stacks]
        elif x.prim not in NO_GRAD_PRIMS and x.kind == "real":
            edges += [(a, x.out) for a in x.args]
    return edges


def needs_grad(prog: Program) -> set[str]:
    """Values that depend on a parameter or a real-valued input."""
    need = {v.name for v in prog.params} | {v.name for v in prog.inputs if v.kind == "real"}
    edges = gradient_edges(prog.body)
    # Passes over the edges until nothing changes: few passes (a dependency carried round a loop
    # takes one more).
    size = -1
    while size != len(need):
        size = len(need)
        for src, dst in edges:
            if src in need:
                need.add(dst)
    return need


def accumulate(grads, b: Builder, x, contrib):
    contrib = b.sum_to(contrib, x)
    if x in grads:
        last = b.block[-1] if b.block and getattr(b.block[-1], "out", None) == contrib else None
        prev = next((op for op in reversed(b.block) if isinstance(op, Op) and op.out == grads[x]), None)
        if last is not None and last is b.block[-1] and last.prim == "unslice" \
                and prev is not None and prev.prim in ("unslice", "slice_add"):
            # Slices of one array (Q, K, V of A): write each piece into one gradient, no zeros and adds
            b.block.pop()
            grads[x] = b.new("slice_add", (grads[x], last.args[0]), last.attr, like=grads[x])
        else:
            grads[x] = b.add(grads[x], contrib)
    else:
        grads[x] = contrib
    grads[x] = name_after(grads, b, x, grads[x])


TEMP_GRAD = re.compile(r"g\d+")
RENAME_WINDOW = 8  # a rule makes a few ops; looking further back would make naming quadratic


def name_after(grads, b: Builder, x: str, g: str) -> str:
    """Call the gradient of a value the card names after it (``d_m``, ``d_e_hat``, ``d_W_fc``),
    not ``g10023``, when one of the last few ops of this block defines it: it is renamed there and
    in the ops after it, and so are the gradients that share it (``v + ε`` has ``v``'s). Values the
    compiler made up (``_17``) keep their numbered gradients."""
    if x.startswith("_") or not TEMP_GRAD.fullmatch(g):
        return g
    recent = b.block[-RENAME_WINDOW:]
    at = next((i for i in range(len(recent) - 1, -1, -1) if getattr(recent[i], "out", None) == g), None)
    if at is None or not all(isinstance(op, Op) for op in recent[at:]):
        return g
    name = b.names.fresh(grad_name(x))
    recent[at].out = name
    b.defs[name] = b.defs.pop(g, recent[at])
    for op in recent[at + 1:]:
        op.args = tuple(name if a == g else a for a in op.args)
    v = b.layout.pop(g)
    b.layout[name] = Value(name, v.shape, v.batched, v.kind)
    for k, held in grads.items():
        if held == g:
            grads[k] = name
    b.renamed[g] = name  # a rule's other shares may still hold the old name
    return name


# ------------------------------------------------------------ composite ops in closed form
# A composite the card spells out step by step (layer norm: mean, centre, variance, √, divide) has
# a textbook derivative that is shorter than the chain rule through its steps, in passes over the
# data and in what the forward must save. Each entry finds the composite ending at an op and gives
# (the input it differentiates to, the fused backward op's prim, its arguments, its attributes).
def layer_norm_at(op: Op, defs: dict, uses, needs, b: Builder):
    """``x̂ = (e − m) / √(v + ε)`` with ``m`` the mean of ``e`` and ``v`` the mean of ``(e − m)²`` over
    one axis (ε optional): ``d_e = (d_x̂ − mean d_x̂ − x̂ ⊙ mean(d_x̂ ⊙ x̂)) / √(v + ε)``. Only when
    every value in between is used by the composite alone, so nothing else needs its gradient."""
    def d(name, *prims):
        o = defs.get(name)
        return o if o is not None and o.prim in prims else None

    def mean_of(name, axis):
        """``Σ_axis x / N`` with N the axis' length: the summed ``x``, or None."""
        div = d(name, "div")
        total = d(div.args[0], "sum") if div else None
        if total is None or total.attr[0] != (axis,) or div.args[1] in needs:
            return None
        x = total.args[0]
        size = b.lay(x).shape[axis] if len(b.lay(x).shape) >= -axis else None
        if size is None or ascii_name(poly_text(size)) != div.args[1]:
            return None
        return x, (div.out, total.out)

    if op.prim != "div":
        return None
    centred, s_exp = op.args
    spread = d(s_exp, "expand")
    sq = d(spread.args[0], "sqrt") if spread and len(spread.attr[0]) == 1 else None
    if sq is None:
        return None
    axis = spread.attr[0][0]
    inner, chain = sq.args[0], [spread.out, sq.out]
    plus = d(inner, "add")
    if plus is not None:
        eps = plus.args[1]
        if eps in needs or b.lay(eps).shape or b.lay(eps).batched:
            return None
        inner, chain = plus.args[0], chain + [plus.out]
    var = mean_of(inner, axis)
    sub = d(centred, "sub")
    if var is None or sub is None:
        return None
    sq_op = d(var[0], "square", "mul")
    if sq_op is None or any(a != centred for a in sq_op.args):
        return None
    m_exp = d(sub.args[1], "expand")
    mean = mean_of(m_exp.args[0], axis) if m_exp and m_exp.attr[0] == (axis,) else None
    e = sub.args[0]
    if mean is None or mean[0] != e:
        return None
    inside = chain + [inner, sq_op.out, *var[1], m_exp.out, *mean[1]]
    counts = {centred: 1 + len(sq_op.args)}  # the centred values feed the square and the division
    if any(uses.get(n, 0) != counts.get(n, 1) for n in [centred, *inside]):
        return None
    return e, "layer_norm_grad", (op.out, s_exp), (axis,)


def number(name: str) -> float | None:
    """The value of a literal constant operand (``0.5``, ``-np.inf``), or None for a named value."""
    if name in ("np.inf", "-np.inf"):
        return float(name.replace("np.", ""))
    try:
        return float(name)
    except ValueError:
        return None


def gelu_tanh_at(op: Op, defs: dict, uses, needs, b: Builder):
    """``y = a x ⊙ (1 + tanh(c (x + k x³)))`` (GPT-2's GELU: a = ½, c = √(2/π), k = 0.044715), any
    literal a, c, k: ``d_x = d_y ⊙ a ((1 + t) + c x (1 + 3k x²)(1 − t²))`` with ``t`` the tanh, one
    fused pass over what the chain rule takes a dozen for, reading only ``x`` and ``t``."""
    def d(name, *prims):
        o = defs.get(name)
        return o if o is not None and o.prim in prims else None

    def scaled(name):
        """``s ⊙ v`` with s a literal: (s, v), or None."""
        o = d(name, "mul")
        if o is None:
            return None
        for s, v in (o.args, o.args[::-1]):
            if number(s) is not None and number(v) is None:
                return number(s), v
        return None

    def one_plus(name):
        o = d(name, "add")
        if o is None:
            return None
        return next((v for s, v in (o.args, o.args[::-1]) if number(s) == 1.0 and number(v) is None), None)

    def cube_of(name):
        o = d(name, "pow", "mul")
        if o is not None and o.prim == "pow" and o.attr[0] == 3:
            return o.args[0], [o.out]
        if o is not None and o.prim == "mul":
            for sq, x in (o.args, o.args[::-1]):
                inner = d(sq, "mul", "square")
                if inner is not None and all(a == x for a in inner.args):
                    return x, [o.out, inner.out]
        return None

    if op.prim != "mul":
        return None
    for half, plus in (op.args, op.args[::-1]):
        ax, t = scaled(half), one_plus(plus)
        th = d(t, "tanh") if t else None
        inner = scaled(th.args[0]) if th else None
        arg = d(inner[1], "add") if inner else None
        if ax is None or arg is None:
            continue
        x = ax[1]
        for lin, cubic in (arg.args, arg.args[::-1]):
            kc = scaled(cubic)
            cube = cube_of(kc[1]) if kc else None
            if lin != x or cube is None or cube[0] != x:
                continue
            inside = [half, plus, t, th.args[0], inner[1], cubic, *cube[1]]
            if any(uses.get(n, 0) != 1 for n in inside):  # nothing else needs their gradients
                return None
            return x, "gelu_tanh_grad", (x, t), (ax[0], inner[0], kc[0])
    return None


def softmax_at(op: Op, defs: dict, uses, needs, b: Builder):
    """``softmax(x)``: ``d_x = y ⊙ (d_y − Σ d_y ⊙ y)``, the rule ``VJP`` has too; here for the name
    of ``y`` (softmax_S), which the backward reads."""
    if op.prim != "softmax":
        return None
    return op.args[0], "softmax_grad", (op.out,), op.attr


COMPOSITES = [layer_norm_at, gelu_tanh_at, softmax_at]


# The values a closed-form rule reads get the textbook's names, in the forward and the backward
# (x_hat, sigma: what `render --memory` lists as saved), when the compiler made them up (_11).
# A name with {0} is completed from the value the rule differentiates to (softmax_S for softmax(S)).
COMPOSITE_NAMES = {"layer_norm_grad": ("x_hat", "sigma"), "gelu_tanh_grad": ("u", "tanh_{0}"),
                   "softmax_grad": ("softmax_{0}",)}
FORWARD_TEMP = re.compile(r"_\d+")


def name_composites(body, b: Builder, needs: set[str], escapes) -> None:
    defs = {x.out: x for x in body if isinstance(x, Op)}
    uses = body_uses(body)
    for n in escapes:
        uses[n] = uses.get(n, 0) + 1
    renames: dict[str, str] = {}
    for item in body:
        if isinstance(item, Loop):
            name_composites(item.body, b, needs,
                            {res for _, _, res in item.carried} | {res for _, res in item.outs})
            continue
        if item.out in b.replaced:  # a custom rule reads these values by their names
            continue
        found = next((f for f in (rule(item, defs, uses, needs, b) for rule in COMPOSITES) if f), None)
        if found is None or found[1] not in COMPOSITE_NAMES:
            continue
        for old, word in zip(found[2], COMPOSITE_NAMES[found[1]], strict=False):
            if FORWARD_TEMP.fullmatch(old) and old not in renames and old not in escapes:
                target = renames.get(found[0], found[0])  # named by an earlier word of this rule (u)
                while FORWARD_TEMP.fullmatch(target) and target in defs and defs[target].prim in ("where", "div"):
                    src = defs[target]  # S, of S masked or S / √d
                    target = src.args[0] if src.prim == "div" else next(
                        (a for a in src.args[1:] if number(a) is None), src.args[2])
                renames[old] = b.names.fresh(word.format("" if FORWARD_TEMP.fullmatch(target) else target)
                                             .rstrip("_"))
    if not renames:
        return
    for op in walk(body):
        op.out = renames.get(op.out, op.out)
        op.args = tuple(renames.get(a, a) for a in op.args)
    for region in b.rules.values():  # a rule may read a renamed value (the x̂ a caller passed it)
        custom.rename(region, renames)
    for x in body:
        if isinstance(x, Loop):
            x.carried = [(renames.get(o, o), i, r) for o, i, r in x.carried]
    for old, new in renames.items():
        v = b.layout.pop(old)
        b.layout[new] = Value(new, v.shape, v.batched, v.kind)
        if old in needs:
            needs.add(new)


def body_uses(body) -> dict[str, int]:
    """How many times each name is read in ``body`` (loops included)."""
    counts: dict[str, int] = {}
    for op in walk(body):
        for a in op.args:
            counts[a] = counts.get(a, 0) + 1
    for x in body:
        if isinstance(x, Loop):
            for outer, _, _ in x.carried:
                counts[outer] = counts.get(outer, 0) + 1
    return counts


def backprop(body, grads, b: Builder, needs, loops_saved, escapes=frozenset()):
    """``escapes``: names read after ``body`` (outputs, a loop's carried values): never fused away."""
    defs = {x.out: x for x in body if isinstance(x, Op)}
    uses = body_uses(body)
    for n in escapes:
        uses[n] = uses.get(n, 0) + 1
    for item in reversed(body):
        if id(item) in b.rules:  # a card's own backward rule, in place of the derived one
            custom.apply_rule(b.rules[id(item)], grads, b, needs, accumulate)
        if b.replaced and custom.covered(item, b.replaced):
            continue
        if isinstance(item, Loop):
            backprop_loop(item, grads, b, needs, loops_saved)
            continue
        op = item
        if op.out not in grads or op.prim in NO_GRAD_PRIMS:
            continue
        fused = next((f for f in (rule(op, defs, uses, needs, b) for rule in COMPOSITES) if f), None)
        if fused is not None and fused[0] in needs:
            target, prim, args, attr = fused
            b.step = op.step
            contrib = b.new(prim, (grads[op.out], *args), attr, like=op.out)
            accumulate(grads, b, target, contrib)
            continue
        rule = VJP.get(op.prim)
        if rule is None:
            raise NoDerivativeError(op.prim, op.step)
        b.step = op.step
        contribs = rule(b, op, grads[op.out], *op.args)
        for x, c in zip(op.args, contribs, strict=True):
            if c is not None and x in needs:
                accumulate(grads, b, x, b.renamed.get(c, c))


def backprop_loop(loop: Loop, grads, b: Builder, needs, loops_saved):
    """Run the loop backwards: the body's backward once per layer, reading
    the values that layer saved; sliced parameters gather into d_W[l]."""
    outer_block = b.block
    body_grads: dict[str, str] = {}
    seeds = []
    for (res_outer, res) in loop.outs:
        if res_outer in grads:
            seeds.append((res, grads[res_outer]))
    stacked = [(grads[whole], v, axis) for whole, v, axis, _ in loop.stacks if whole in grads]
    if not seeds and not stacked:
        return
    carry, zeros = {}, {}
    for res_outer, res in loop.outs:  # the gradient each step hands to the step before it
        if res_outer not in grads and res not in needs:
            continue
        name = b.names.temp().replace("_", "g", 1)
        b.layout[name] = b.layout[res]
        carry[res] = name
        body_grads[res] = name
        if res_outer not in grads:  # only the steps' own writes have a gradient: start at zero
            zeros[res] = b.shape(res_outer)
    b.block = []
    for g, v, axis in stacked:  # Y[t] ← h: row t of d_Y flows into that step's h
        accumulate(body_grads, b, v, b.new("index", (g,), (loop.var, axis), like=v))
    # Values read in the body but defined outside it accumulate across layers.
    defined = defined_in(loop.body)
    escapes = {res for _, _, res in loop.carried} | {res for _, res in loop.outs}
    backprop(loop.body, body_grads, b, needs, loops_saved, escapes)
    inner_block = b.block
    b.block = outer_block
    fwd_inner = defined | {inner for _, inner, _ in loop.carried}
    fwd_inner |= {s for x, s in b.shape_of.items() if x in fwd_inner}
    read = []
    for op in walk_all(inner_block):
        for a in op.args:
            if a in fwd_inner and a not in read:
                read.append(a)
    loops_saved[loop.var] = read
    sliced, slice_axes = {}, {}
    for op in walk(loop.body):
        if op.prim == "index" and op.out in body_grads:
            sliced[op.out] = op.args[0]
            slice_axes[op.out] = op.attr[1]
    closure = {x: g for x, g in body_grads.items() if x not in fwd_inner and x not in carry}
    carried_grads = {}
    for outer, inner, res in loop.carried:
        if inner in body_grads:
            carried_grads[res] = (carry.get(res), body_grads[inner], outer)
        elif res in carry:  # the step does not read the value it carries: the step before gets zero
            zeros[res] = b.shape(next(o for o, r in loop.outs if r == res))
    bl = BLoop(loop, seeds, carry, inner_block, carried_grads, sliced, body_grads, closure, read,
               fwd_inner=fwd_inner, zeros=zeros, slice_axes=slice_axes)
    b.block.append(bl)
    # What the loop's gradients add to: a value used before or after the loop as well keeps both.
    for outer, inner, res in loop.carried:
        if inner in body_grads and res in carry:
            accumulate(grads, b, outer, carry[res])
    for _per_layer, whole in sliced.items():
        if whole in bl.stacked_grads:
            continue
        name = b.names.fresh("d_" + whole)
        b.layout[name] = b.layout[whole]
        bl.stacked_grads[whole] = name
        bl.stacked_shapes[whole] = b.shape(whole)
        accumulate(grads, b, whole, name)
    for x, g in closure.items():  # what the steps add up: d_W_h_2 = Σ_t d_W_h, named after W_h where it can be
        name = b.names.temp().replace("_", "g", 1) if x.startswith("_") else b.names.fresh(grad_name(x))
        b.layout[name] = b.layout[x]
        closure[x] = (g, name)
        accumulate(grads, b, x, name)


def defined_in(body) -> set[str]:
    """Every value a loop body defines: its ops' results, and the results and carried values of
    the loops inside it (an inner loop's result read later in the body is saved per layer too)."""
    out = set()
    for x in body:
        if isinstance(x, Loop):
            out |= defined_in(x.body) | {r for r, _ in x.outs} | {i for _, i, _ in x.carried}
        else:
            out.add(x.out)
    return out


@dataclass
class BLoop:
    """A loop of the backward pass: layers in reverse."""

    loop: Loop
    seeds: list
    carry: dict  # body result -> gradient variable carried between layers
    body: list
    carried_grads: dict
    sliced: dict  # per-layer parameter value -> stacked parameter
    body_grads: dict
    closure: dict
    saved: list
    stacked_grads: dict = field(default_factory=dict)  # stacked parameter -> its gradient variable
    fwd_inner: set = field(default_factory=set)  # forward values defined inside the loop body
    zeros: dict = field(default_factory=dict)  # body result -> the shape its carried gradient starts at
    slice_axes: dict = field(default_factory=dict)  # per-layer value -> the axis it was taken along
    stacked_shapes: dict = field(default_factory=dict)  # stacked array -> the name of its shape


def reads(body, among) -> list[str]:
    """The names of ``among`` the body reads before (or without) making them itself."""
    out, made = [], set()
    for op in walk_all(body):
        for a in op.args:
            if a in among and a not in out and a not in made:
                out.append(a)
        made.add(op.out)
    return out
