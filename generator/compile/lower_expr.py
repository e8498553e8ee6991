"""The expression rules of lowering: one ``x_<op>`` method per card-IR op.

``ExprLowering.expr`` dispatches an ``Expr`` to ``x_<op>`` by its op name, so a
card op's lowering sits in one method: arithmetic and matmul, ``Σ`` (a
reduction over a mapped axis), indexing and slicing (an index that is a mapped
variable reads the axis as mapped; a slice that moves with one splits the axis),
lists that join a family, and calls (built-in functions here; sub-algorithms
in ``inline.py``).  Names are looked up here too, since a name's subscripts
may select a family member along a mapped axis.

``ExprLowering`` is mixed into ``lower.Lowerer``: it reads the lowerer's ``ch``,
``lib``, ``env``, ``scope``, ``seq``, ``firsts``, ``extents``, ``funcs``,
``base``, ``rows``, ``block``, ``names`` and ``step_no``, builds its ops with
``layout.Layout`` and calls ``inline`` (inline.py) and ``err``.
"""

from __future__ import annotations

from dataclasses import replace

from ..lang.check import BUILTINS, join_name, split_name
from ..lang.errors import CardError
from ..lang.ir import Expr
from ..lang.names import list_family, rename_indices
from ..lang.render import expr_text
from ..lang.shapes import ATOMS, Poly, poly_text
from ..lang.types import INTEGRAL
from .core import Op, matmul_attr
from .layout import AV, ONE, Mapped, Members, ParamGroup, common_ones, const
from .npcode import py_dim

# Built-in functions -> core primitives: element-wise, reductions, and max/min of two arguments.
UNARY = {"exp": "exp", "log": "log", "tanh": "tanh", "GELU": "gelu", "ReLU": "relu", "SiLU": "silu",
         "σ": "sigmoid", "sigmoid": "sigmoid", "sqrt": "sqrt", "abs": "abs", "sin": "sin", "cos": "cos", "erf": "erf",
         "round": "round"}
REDUCE = {"max": "max", "min": "min", "mean": "mean"}
BINARY = {"max": "maximum", "min": "minimum"}


def single(a: AV) -> bool:
    """One matrix for every example: no batch axes, no mapped axes, two axes of its own."""
    return a.const is None and not a.batched and not a.mapped and len(a.dims) == 2


class ExprLowering:
    """Card expressions -> AVs, one rule per op."""

    # ------------------------------------------------------------ names
    def lookup(self, text: str, node) -> AV | ParamGroup:
        base, scripts = split_name(text)
        bound = [v for _, v in scripts if v in self.scope or v in self.seq]
        if bound:
            key = join_name(base, [(k, "□" if v in self.scope or v in self.seq else v) for k, v in scripts])
            if key in self.env:
                fam = self.env[key]
                if isinstance(fam, Members):
                    return self.members(fam, bound, node)
                return self.member(fam, bound, node)
        if text in self.env:
            return self.env[text]
        if text in self.scope:
            return self.iota(text)
        if text in self.seq:  # the loop counts from 0; the card's index from its first value
            at = AV(self.seq[text], kind="int", const=None)
            return at if self.base == 0 else self.binary("add", at, const(self.base))
        if text == "π":
            return AV("np.pi", kind="real", const=3.141592653589793)
        b = self.ch.env.get(text)
        if b is not None and b.type.value is not None and not b.type.shape:
            return self.dim_value(self.dim(b.type.value))  # a dimension used as a number: d_e, T
        self.err(f"cannot lower {text}", node)

    def members(self, group: Members, idx: list[str], node) -> ParamGroup:
        """The members of ``𝓦^j_m`` (declared ``𝓦^h_ℓ = {W^h_q_ℓ, …} for h, ℓ``): ``W^j_q_m``, …"""
        if len(idx) != len(group.vars):
            self.err(f"{expr_text(node)} selects {len(idx)} indices of a group repeated over {len(group.vars)}", node)
        to = dict(zip(group.vars, idx, strict=True))
        return ParamGroup("", {m: self.lookup(rename_indices(m, to), node) for m in group.names})

    def member(self, fam, idx: list[str], node):
        """Element of a family: the family axis is read as the index's axis."""
        if isinstance(fam, ParamGroup):
            return ParamGroup(fam.card, {k: self.member(v, idx, node) for k, v in fam.leaves.items()})
        if isinstance(fam, Members):
            return fam  # its members are looked up by name, where it is used
        if len(set(idx)) < len(idx):
            self.err(f"{expr_text(node)} names one index twice; cardgen reads a family member by distinct "
                     "indices", node)
        if len(idx) > 1:  # P^i_t, W^h_ℓ: the family's leading axes, one per index in script order
            mapped = []
            for var in idx:
                at = len(mapped)  # the own axis this index's slot is now
                if var in self.seq:  # the layer loop's step: that member, a view
                    fam = self.op("index", (fam,), (self.seq[var], at - len(fam.dims)), fam,
                                  dims=fam.dims[:at] + fam.dims[at + 1:])
                else:
                    mapped.append(var)
            a = replace(fam, mapped=fam.mapped + tuple(mapped), dims=fam.dims[len(mapped):])
            return self.permute(a, self.canon_order(a.mapped))
        (var,) = idx
        if var in self.seq:
            return self.op("index", (fam,), (self.seq[var], -len(fam.dims)), fam, dims=fam.dims[1:],
                           name=self.names.fresh(f"{fam.name}_{self.seq[var]}"))
        labels = [("□" if i == 0 else None) for i in range(len(fam.dims))]
        assert labels
        # the family axis is the first own axis: make it mapped, then put it in scope order
        a = replace(fam, mapped=fam.mapped + (var,), dims=fam.dims[1:])
        return self.permute(a, self.canon_order(a.mapped))

    def iota(self, var: str) -> AV:
        n = self.extents[var]
        a = AV(self.names.temp(), (var,), (), "int", False)
        self.block.append(Op(a.name, "iota", (), (self.firsts.get(var, Poly.const(self.base)),), (n,), False,
                             "int", self.step_no))
        return a

    # --------------------------------------------------------- expressions
    def expr(self, e: Expr) -> AV:
        rule = getattr(self, "x_" + e.op, None)
        if rule is None:
            self.err(f"cardgen cannot compile {e.op} ({expr_text(e)}) yet", e)
        return rule(e)

    def value(self, e: Expr) -> AV:
        v = self.expr(e)
        if isinstance(v, ParamGroup):
            self.err(f"{expr_text(e)} is a parameter group, not a value", e)
        return v

    def x_name(self, e):
        return self.lookup(e.attr, e)

    def x_num(self, e):
        text = e.attr
        v = int(text) if text.isdigit() else float(text)
        return const(v)

    def x_inf(self, e):
        return const(float("inf"))

    def x_add(self, e):
        return self.plus("add", self.numbers(e.args))

    def x_sub(self, e):
        return self.plus("sub", self.numbers(e.args))

    def plus(self, prim, vals: list[AV]) -> AV:
        """+ or − of a real array and true/false values (``exp(z) − [[v = y]]``): NumPy counts a
        boolean as 0 or 1 in the real operand's dtype; the op's ``attr`` names the boolean operand
        for targets whose arithmetic refuses booleans (the array API's)."""
        flags = tuple(i for i, v in enumerate(vals) if v.kind == "bool" and v.const is None)
        return self.binary(prim, *vals, attr=(flags,) if flags else ())

    def numbers(self, args) -> list[AV]:
        """Operands of + and −: true/false values (an Iverson bracket [[t ≤ u]]) count as 1 and 0,
        as NumPy's booleans do not (True + True is True; − refuses them)."""
        vals = [self.value(a) for a in args]
        if all(v.kind == "bool" for v in vals):
            vals = [self.number(v) for v in vals]
        return vals

    def number(self, v: AV) -> AV:
        if v.kind != "bool":
            return v
        if v.const is not None:
            return const(int(v.const))
        return self.op("where", (v, const(1), const(0)), (), v, kind="int")

    def x_mul(self, e):
        return self.binary("mul", *map(self.value, e.args))

    def x_div(self, e):
        return self.binary("div", *map(self.value, e.args))

    def x_floordiv(self, e):
        return self.whole(e, "floordiv")

    def x_mod(self, e):
        return self.whole(e, "mod")

    def whole(self, e, prim: str) -> AV:
        """⌊a / b⌋, a mod b of whole numbers: sizes alone fold into one dimension expression."""
        t = self.ch.types.get(id(e))
        if t is not None and t.value is not None and not (set(t.value.symbols()) & set(self.scope)):
            return self.dim_value(self.dim(t.value))
        a, b = [self.number(self.value(x)) for x in e.args]
        return self.binary(prim, a, b, kind="int")

    def x_neg(self, e):
        a = self.number(self.value(e.args[0]))
        if a.const is not None:
            return const(-a.const)
        return self.op("neg", (a,), (), a)

    def x_not(self, e):
        a = self.value(e.args[0])
        if a.const is not None:
            return const(not a.const)
        return self.op("not", (a,), (), a, kind="bool")

    def unary(self, prim: str, a: AV) -> AV:
        if a.const is not None:
            a = self.materialize(a)
        return self.op(prim, (a,), (), a, kind="real")

    def x_sqrt(self, e):
        a = self.value(e.args[0])
        if a.const is not None:
            return const(float(a.const) ** 0.5)
        return self.unary("sqrt", a)

    def x_square(self, e):
        return self.unary("square", self.value(e.args[0]))

    def x_pow(self, e):
        a, p = self.value(e.args[0]), self.value(e.args[1])
        if p.const is not None and float(p.const) == 2:
            return self.unary("square", a)
        if p.const is not None:
            return self.op("pow", (self.materialize(a),), (p.const,), a, kind="real")
        return self.binary("powv", a, p)

    def x_transpose(self, e):
        a = self.value(e.args[0])
        if len(a.dims) < 2:
            return a
        perm = list(range(len(a.dims)))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return self.permute(a, a.mapped, perm)

    def x_juxt(self, e):
        left, right = e.args
        if left.op == "name" and left.attr in BUILTINS and left.attr not in self.env:
            if left.attr == "log":
                fused = self.log_of(right)
                if fused is not None:
                    return fused
            return self.builtin(left.attr, self.value(right), e)
        if right.op == "transpose" and right.args[0] == Expr("num", (), "1"):
            a = self.value(left)  # b 1^⊤: b as a column, broadcast along the positions
            return self.op("expand", (a,), ((-1,),), a, dims=a.dims + (ONE,))
        if left == Expr("num", (), "1") and right.op == "transpose":
            b = self.value(right.args[0])
            return self.op("expand", (b,), ((-len(b.dims) - 1,),), b, dims=(ONE,) + b.dims)
        return self.matmul(self.value(left), self.value(right), e)

    def x_matmul(self, e):
        return self.matmul(*map(self.value, e.args), e)

    def matmul(self, a: AV, b: AV, e) -> AV:
        if not a.dims or not b.dims or a.const is not None or b.const is not None:
            return self.binary("mul", a, b)
        mode = ("v" if len(a.dims) == 1 else "m") + ("v" if len(b.dims) == 1 else "m")
        mapped = self.canon_order(set(a.mapped) | set(b.mapped))
        batch_a, batch_b = len(a.dims) - (1 if mode[0] == "v" else 2), len(b.dims) - (1 if mode[1] == "v" else 2)
        nb = max(batch_a, batch_b)
        a2 = self.expand(a, mapped, len(a.dims) + nb - batch_a)
        b2 = self.expand(b, mapped, len(b.dims) + nb - batch_b)
        lead = tuple(x if x != ONE else y for x, y in zip(a2.dims[:nb], b2.dims[:nb], strict=True))
        dims = lead + ((a.dims[-2],) if mode[0] == "m" else ()) + ((b.dims[-1],) if mode[1] == "m" else ())
        attr = matmul_attr(mode, single(a) and a2.name == a.name, single(b) and b2.name == b.name)
        return self.op("matmul", (a2, b2), attr, a2, mapped=mapped, dims=dims,
                       batched=a.batched or b.batched, ones=common_ones(mapped, a2, b2))

    def x_cmp(self, e):
        a, b = map(self.value, e.args)
        prim = {"≤": "le", "<": "lt", "≥": "ge", ">": "gt", "=": "eq", "≠": "ne"}[e.attr]
        return self.binary(prim, a, b, kind="bool")

    def x_iverson(self, e):
        return self.value(e.args[0])

    def x_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        if form == "span":
            t_lo = self.ch.types.get(id(bounds[0]))
            t_hi = self.ch.types.get(id(bounds[1]))
            lo, hi = self.dim(t_lo.value), self.dim(t_hi.value)
            moving = [(b, p) for b, p in zip(bounds, (lo, hi), strict=True) if set(p.symbols()) & set(self.scope)]
            if moving:
                return self.ragged_sum(e, lo, hi, moving)
            first, count = lo, hi - lo + ONE
        elif form == "implicit":
            first, count = Poly.const(self.base), None
        else:  # Σ_{t∈T̃}: over the positions of [n] the set holds, a sum with the others masked out
            members = self.value(bounds[0])
            if members.kind != "bool" or not members.dims:
                self.err(f"cardgen sums over a set built as {{t ∈ [n] : …}}; {expr_text(bounds[0])} is not one",
                         bounds[0])
            first, count = Poly.const(self.base), members.dims[-1]
        with Mapped(self, var, first, count, body):
            v = self.value(body)
            if form == "in":
                inside = self.index_axis(members, len(members.dims) - 1, Expr("name", (), var), e)
                v = self.select(inside, v, const(0))
            if var not in v.mapped:
                n = self.extents[var]
                return self.binary("mul", v, self.dim_value(n))
            v = self.permute(v, tuple(x for x in v.mapped if x != var) + (var,))
            return self.op("sum", (v,), ((-len(v.dims) - 1,),), v, mapped=v.mapped[:-1])

    def ragged_sum(self, e, lo: Poly, hi: Poly, moving) -> AV:
        """Σ_{u=0}^{t} under an index t: the sum over the widest range t reaches, terms outside
        u's own range masked to 0 (a triangle of a square, as a causal mask is)."""
        var, _ = e.attr
        body = e.args[0]
        ends = {v: (self.firsts.get(v, Poly.const(self.base)), self.extents[v]) for v in self.scope}
        widest = []
        for p, low in ((lo, True), (hi, False)):
            syms = [v for v in p.symbols() if v in ends]
            if len(syms) > 1 or syms and not _grows_with(p, syms[0]):
                self.err("cardgen compiles a Σ whose range moves with an index (Σ_{u=0}^{t}) when each bound "
                         "grows with at most one index", e)
            if not syms:
                widest.append(p)
                continue
            first, count = ends[syms[0]]
            widest.append(p.subst({syms[0]: first if low else first + count - ONE}))
        first, count = widest[0], widest[1] - widest[0] + ONE
        with Mapped(self, var, first, count, body):
            v = self.value(body)
            u = self.lookup(var, e)
            for node, _p in moving:
                edge = self.value(node)
                keep = self.binary("ge" if node is e.args[1] else "le", u, edge, kind="bool")
                v = self.select(keep, self.materialize(v) if v.const is not None else v, const(0.0))
            v = self.permute(v, tuple(x for x in v.mapped if x != var) + (var,))
            return self.op("sum", (v,), ((-len(v.dims) - 1,),), v, mapped=v.mapped[:-1])

    # -------------------------------------------------------------- chance
    def x_choose(self, e):
        """``a with probability p else b``: one uniform draw per element of every example and of
        every index in scope (each iteration of a loop draws anew), from forward's ``rng``, as one
        array laid out [examples…, loop indices outermost first, axes…]: for a card with one such
        draw, the order in which the interpreter draws, example by example."""
        a, p, b = map(self.value, e.args)
        if p.rank or p.batched:
            self.err("a probability must be one number", e.args[1])
        (a2, b2), _, dims = self.align(a, b)
        mapped = self.canon_order(self.scope)
        u = self.names.fresh("u")  # its own name in attr: two draws are never one memoised op
        draw = self.op("draw", (), (u,), AV("", (), ()), mapped=mapped, dims=dims, kind="real", batched=True,
                       ones=(), name=u)
        pick = self.binary("lt", draw, p, kind="bool")
        (c3, a3, b3), mapped, dims = self.align(pick, a, b)
        kind = a.kind if a.kind == b.kind else "real"
        return self.op("where", (c3, a3, b3), (), c3, mapped=mapped, dims=dims, kind=kind, batched=True, ones=())

    def x_set_builder(self, e):
        """``{t ∈ [n] : cond}`` as a true/false array over [n] (the checker's ``subset``)."""
        rng, cond = e.args
        n = self.dim(self.ch.types[id(rng)].value)
        with Mapped(self, e.attr, Poly.const(self.base), n, cond):
            c = self.value(cond)
            if e.attr not in c.mapped:  # a test that does not read t: every position, or none
                every = self.binary("ge", self.iota(e.attr), const(self.base), kind="bool")
                c = self.op("where", tuple(self.align(c, every, const(False))[0]), (), every,
                            mapped=(e.attr,), dims=(), kind="bool", batched=c.batched)
            return self.unmap(c, [e.attr])

    # --------------------------------------------------------------- index
    def x_index(self, e):
        base, *idx = e.args
        out = self.value(base)
        if out.const is not None or (out.rank == 0 and not out.batched):
            return out  # a scalar standing for a whole array (Mask = 1): every element is it
        shift = 0  # axes removed (or added) by the indices already applied
        for i, ix in enumerate(idx):
            before = len(out.dims)
            out = self.index_axis(out, i + shift, ix, e)
            shift += len(out.dims) - before
        return out

    def index_axis(self, a: AV, i: int, ix: Expr, e) -> AV:
        if ix.op == "slice":
            lo, hi = ix.args
            if lo.op == "none" and hi.op == "none":
                return a
            return self.slice_axis(a, i, lo, hi, e)
        if ix.op == "name" and ix.attr in self.scope and ix.attr not in a.mapped and self.axis_is_full(a, i, ix.attr):
            var = ix.attr  # X[:, t] with t mapped: axis i is t's axis (P[x[t], t], where a has t already: a pick)
            perm = [i] + [k for k in range(len(a.dims)) if k != i]
            moved = self.permute(a, a.mapped, perm) if i != 0 else a
            b = replace(moved, mapped=moved.mapped + (var,), dims=moved.dims[1:])
            return self.permute(b, self.canon_order(b.mapped))
        if ix.op == "name" and ix.attr in self.seq and ix.attr not in self.env:
            # X[t] in a loop over t: that step's row, a view (its gradient goes to row t of d_X)
            return self.op("index", (a,), (self.seq[ix.attr], i - len(a.dims)), a,
                           dims=a.dims[:i] + a.dims[i + 1:])
        j = self.value(ix)
        if j.kind not in ("int",) and j.kind not in INTEGRAL:
            self.err(f"an index must be whole numbers: {expr_text(ix)}", ix)
        if not a.batched and not a.mapped and j.const is None:
            return self.take(a, i, j)
        return self.take_along(a, i, j, ix)

    def axis_is_full(self, a: AV, i: int, var: str) -> bool:
        return self.firsts.get(var, Poly.const(self.base)) == Poly.const(self.base) and \
            self.extents[var] == a.dims[i]

    def take(self, table: AV, i: int, j: AV) -> AV:
        """Rows (or columns) of an unbatched table picked by index arrays."""
        if i != 0:
            perm = [i] + [k for k in range(len(table.dims)) if k != i]
            table = self.permute(table, (), perm)
        off = self.base
        dims = j.dims + table.dims[1:]
        out = self.op("take", (table, j), (off,), j, mapped=j.mapped, dims=dims, kind=table.kind,
                      batched=j.batched)
        if i != 0 and j.dims:  # the card puts the index axes where axis i was
            n = len(j.dims)
            perm = list(range(n, n + i)) + list(range(n)) + list(range(n + i, len(dims)))
            out = self.permute(out, out.mapped, perm)
        return out

    def take_along(self, a: AV, i: int, j: AV, ix) -> AV:
        """One element along axis i per position: P[t, y[t]]."""
        if j.dims:
            self.err(f"cardgen cannot compile an index array here: {expr_text(ix)}", ix)
        if j.const is not None:
            off = int(j.const) - self.base
            return self.op("pick", (a,), (i - len(a.dims), off), a, dims=a.dims[:i] + a.dims[i + 1:])
        (a2, j2), mapped, _ = self.align(a, self.op("expand", (j,), (tuple(range(-len(a.dims), 0)),), j,
                                                   dims=(ONE,) * len(a.dims)))
        return self.op("take_along", (a2, j2), (i - len(a.dims), self.base), a2, mapped=mapped,
                       dims=a.dims[:i] + a.dims[i + 1:], batched=a.batched or j.batched,
                       ones=common_ones(mapped, a2, j2))

    def slice_axis(self, a: AV, i: int, lo_e: Expr, hi_e: Expr, e) -> AV:
        lo_t, hi_t = self.ch.types.get(id(lo_e)), self.ch.types.get(id(hi_e))
        lo = self.dim(lo_t.value) if lo_t is not None and lo_t.value is not None else None
        hi = self.dim(hi_t.value) if hi_t is not None and hi_t.value is not None else None
        if lo_e.op == "none":
            lo = Poly.const(self.base)
        if hi_e.op == "none":
            hi = a.dims[i] + Poly.const(self.base - 1 if self.base else 0)
        if lo is None or hi is None:
            self.err("cardgen cannot compile this slice", e)
        width = hi - lo + Poly.const(1 if self.base == 1 else 0)
        if any(_moves(x, self.scope) for x in lo.atoms()):
            return self.slice_by_block(a, i, lo_t.value, width, lo_e, e)
        mapped_in = [v for v in self.scope if v in lo.symbols()]
        if mapped_in:  # A[:, h·w : (h+1)·w] with h mapped: split the axis into (h, w)
            firsts = {v: self.firsts.get(v, Poly.const(self.base)) for v in mapped_in}
            start = lo.subst(firsts)  # where the first indices' slice starts; then a step per index
            steps = {v: lo.subst({**firsts, v: firsts[v] + ONE}) - start for v in mapped_in}
            moved_lo = start
            for v in mapped_in:
                moved_lo = moved_lo + (Poly.sym(v) - firsts[v]) * steps[v]
            order = _nesting(steps, width, self.extents)
            if moved_lo != lo or order is None or any(v in width.symbols() for v in mapped_in):
                self.err("a slice that moves with an index must step by its own width", e,
                         hint="with several indices, the inner one steps by the width and each outer one by "
                              "the inner ones' whole span: A[:, (g·J + j)·w : (g·J + j + 1)·w]"
                         if len(mapped_in) > 1 else None)
            counts = tuple(self.extents[v] for v in order)
            span = width
            for n in counts:
                span = span * n
            whole = self.slice_plain(a, i, start, start + span)
            split = self.op("reshape", (whole,), (i - len(whole.dims), (*counts, width)), whole,
                            dims=whole.dims[:i] + counts + (width,) + whole.dims[i + 1:])
            k = len(order)
            perm = list(range(i, i + k)) + [x for x in range(len(split.dims)) if not i <= x < i + k]
            moved = self.permute(split, split.mapped, perm)
            b = replace(moved, mapped=moved.mapped + tuple(order), dims=moved.dims[k:])
            return self.permute(b, self.canon_order(b.mapped))
        return self.slice_plain(a, i, lo, hi + Poly.const(1 if self.base == 1 else 0))

    def slice_by_block(self, a: AV, i: int, lo_raw: Poly, width: Poly, lo_e: Expr, e) -> AV:
        """K[:, ⌊h·G/H⌋·w : (⌊h·G/H⌋ + 1)·w] with h mapped: the axis split into blocks of w, and
        each h reads block ⌊h·G/H⌋ (a gather along the block axis; no block is computed twice)."""
        found = [x for x in lo_raw.atoms() if _moves(x, self.scope)]
        if len(found) != 1:
            self.err("cardgen compiles a slice that moves with ⌊…⌋ or mod of a loop index as "
                     "A[:, g·w : (g + 1)·w], one such g", e)
        (atom,) = found
        per = Poly(tuple((tuple((s, p) for s, p in m if s != atom), c) for m, c in lo_raw.terms
                         if (atom, 1) in m))
        rest = lo_raw - per * Poly.sym(atom)
        step, start = self.dim(per), self.dim(rest) - Poly.const(self.base)
        if step != width or any(v in self.scope for v in start.symbols() + step.symbols()):
            self.err("a slice that moves with an index must step by its own width: "
                     "A[:, g·w : (g + 1)·w]", e)
        offset = start.divide(width)
        n = a.dims[i].divide(width)
        if offset is None or offset.constant is None or offset.constant.denominator != 1 or n is None \
                or any(c.denominator != 1 or any(p < 0 for _, p in m) for m, c in n.terms):
            self.err(f"cardgen splits this axis ({poly_text(a.dims[i])}) into whole slices of "
                     f"{poly_text(width)}, starting on a slice's edge", e)
        node = next((x for x in _walk(lo_e) if x.op in ("floordiv", "mod")
                     and getattr(self.ch.types.get(id(x)), "value", None) == Poly.sym(atom)), None)
        if node is None:
            self.err("cardgen cannot compile this slice", e)
        block = self.number(self.value(node))
        if offset.constant:
            block = self.binary("add", block, const(int(offset.constant)))
        split = self.op("reshape", (a,), (i - len(a.dims), (n, width)), a,
                        dims=a.dims[:i] + (n, width) + a.dims[i + 1:])
        return self.take_along(split, i, block, node) if block.const is None else \
            self.op("pick", (split,), (i - len(split.dims), int(block.const)), split,
                    dims=a.dims[:i] + (width,) + a.dims[i + 1:])

    def slice_plain(self, a: AV, i: int, lo: Poly, stop: Poly) -> AV:
        b = Poly.const(self.base)
        return self.op("slice", (a,), (i - len(a.dims), py_dim(lo - b), py_dim(stop - b)), a,
                       dims=a.dims[:i] + (stop - lo,) + a.dims[i + 1:])

    # ---------------------------------------------------------------- lists
    def x_list(self, e):
        items = [x for x in e.args if x.op != "ellipsis"]
        if len(items) == len(e.args):
            return self.join(e)
        key, fixed = list_family(items[0].attr, lambda v: v in self.scope, self.env)  # [Y^g_0, …] under g
        fam = self.env[key]
        for v in fixed:  # the fixed indices' axes come first: a bound one is read as its axis, a number picks
            if v.isdigit():
                fam = self.op("pick", (fam,), (-len(fam.dims), int(v) - self.base), fam, dims=fam.dims[1:])
            else:
                fam = replace(fam, mapped=fam.mapped + (v,), dims=fam.dims[1:])
        fam = self.permute(fam, self.canon_order(fam.mapped))
        m = fam.dims[1:]
        n = fam.dims[0]
        if len(m) == 1 and e.attr == ",":  # vectors as columns: (d, n)
            return self.permute(fam, fam.mapped, [1, 0])
        if len(m) == 1 or (len(m) == 0):
            return fam
        if e.attr == ",":  # side by side: (…, n·w)
            perm = list(range(1, len(m))) + [0, len(m)]
            moved = self.permute(fam, fam.mapped, perm)
            dims = m[:-1] + (n * m[-1],)
            return self.op("reshape", (moved,), (-2, (n * m[-1],)), moved, dims=dims)
        return self.op("reshape", (fam,), (-len(fam.dims), (n * m[0],)), fam, dims=(n * m[0],) + m[1:])

    def join(self, e) -> AV:
        """[A, B, …] side by side (along the last axis) and [A; B; …] stacked (along the
        first own axis) of arrays of one rank; vectors become columns or rows."""
        vals = [self.materialize(self.value(x)) for x in e.args]
        ranks = {len(v.dims) for v in vals}
        if 0 in ranks or len(ranks) != 1:
            self.err("cardgen compiles joins of arrays of one rank ([A, B], [u; v]); not numbers or [x, y] "
                     "on a sequence", e)
        k = ranks.pop()
        if k == 1:  # vectors: [u, v] are columns, [u; v] rows
            at = -1 if e.attr == "," else -2
            vals = [self.op("expand", (v,), ((at,),), v,
                            dims=v.dims + (ONE,) if at == -1 else (ONE,) + v.dims) for v in vals]
            k = 2
        axis = -1 if e.attr == "," else -k
        aligned, mapped, dims = self.align(*vals)
        total = vals[0].dims[axis]
        for v in vals[1:]:
            total = total + v.dims[axis]
        dims = list(dims)
        dims[axis] = total
        kind = "real" if any(v.kind == "real" for v in vals) else vals[0].kind
        return self.op("concat", tuple(aligned), (axis,), aligned[0], mapped=mapped, dims=tuple(dims), kind=kind,
                       batched=any(v.batched for v in vals), ones=common_ones(mapped, *aligned))

    # ---------------------------------------------------------------- calls
    def x_call(self, e):
        fname, n_in = e.attr
        if fname in self.funcs:  # loss(θ): its body, with its parameters bound to the arguments
            params, body = self.funcs[fname]
            saved = {p: self.env.get(p) for p in params}
            for p, a in zip(params, e.args, strict=True):
                if not (a.op == "name" and a.attr == p):
                    self.env[p] = self.expr(a)
            try:
                return self.expr(body)
            finally:
                for p, v in saved.items():
                    if v is not None:
                        self.env[p] = v
        if fname in BUILTINS and fname not in self.env:
            if fname == "log" and len(e.args) == 1:
                fused = self.log_of(e.args[0])
                if fused is not None:
                    return fused
            args = [self.value(a) for a in e.args]
            return self.builtin(fname, args[0], e) if len(args) == 1 else self.binary(BINARY[fname], *args)
        callee = self.lib.checked(fname)
        if callee is None:
            self.err(f"cannot compile a call to {fname}", e)
        return self.inline(callee, e)

    def log_of(self, arg: Expr) -> AV | None:
        """log softmax(X)[…] is read as log_softmax(X)[…]: stable, and cheaper."""
        inner = arg
        while inner.op == "index":
            inner = inner.args[0]
        if not (inner.op == "call" and inner.attr[0] == "softmax" and "softmax" not in self.env):
            return None
        x = self.materialize(self.value(inner.args[0]))
        axis = -1 if self.rows or len(x.dims) < 2 else -2
        ls = self.op("log_softmax", (x,), (axis,), x)
        saved = self.env.get("§log_softmax")
        self.env["§log_softmax"] = ls
        try:
            return self.value(_replace_inner(arg, Expr("name", (), "§log_softmax")))
        finally:
            if saved is None:
                self.env.pop("§log_softmax", None)

    def builtin(self, fname: str, a: AV, e) -> AV:
        if fname == "length":
            return self.dim_value(a.dims[-1])
        if fname == "softmax":
            axis = -1 if self.rows or len(a.dims) < 2 else -2
            return self.op("softmax", (self.materialize(a),), (axis,), a)
        if fname == "log" and self.block and self.block[-1].out == a.name and self.block[-1].prim == "softmax":
            sm = self.block.pop()  # log softmax(P): one stable log-softmax
            return self.op("log_softmax", sm.args, sm.attr, a)
        if fname in REDUCE:  # the last axis of a vector; a matrix's columns, or rows in the row convention
            axis = -1 if self.rows or len(a.dims) < 2 else -2
            dims = a.dims[:-1] if axis == -1 else a.dims[:-2] + a.dims[-1:]
            return self.op(REDUCE[fname], (self.materialize(a),), ((axis,),), a, dims=dims)
        return self.unary(UNARY[fname], a)

    # -------------------------------------------------------------- extents
    def infer_extent(self, var: str, body: Expr) -> Poly:
        """The extent of ∀/Σ index ``var``: the axis it indexes in the body."""
        found: list[Poly] = []

        def walk(x: Expr):
            if x.op == "name":
                base, scripts = split_name(x.attr)
                if any(v == var for _, v in scripts):
                    # the other scripts: indices in scope, or (∀g, j: … Y^g_j) one put in scope later
                    for slot in (lambda v: v == var or v in self.scope,
                                 lambda v: v == var or v in self.scope or v not in self.env and v.isidentifier()):
                        key = join_name(base, [(k, "□" if slot(v) else v) for k, v in scripts])
                        fam = self.env.get(key)
                        pos = [v for _, v in scripts if slot(v)].index(var)
                        if isinstance(fam, AV) and fam.dims:
                            found.append(fam.dims[pos])
                            break
                        b = self.ch.env.get(key)
                        if isinstance(fam, Members) and b is not None and len(b.over) > pos:
                            found.append(self.dim(b.over[pos]))  # ∀ℓ, h: … f(X | 𝓦^h_ℓ): the group's extents
                            break
            if x.op == "index":
                for i, a in enumerate(x.args[1:]):
                    if a == Expr("name", (), var):
                        try:
                            bt = self.value(x.args[0])
                        except CardError:
                            continue
                        if i < len(bt.dims):
                            found.append(bt.dims[i])
            for a in x.args:
                walk(a)
        mark = len(self.block)
        walk(body)
        del self.block[mark:]  # the probes' ops are not part of the program
        if not found:
            self.err(f"cannot tell what {var} ranges over", body)
        return found[0]


def _nesting(steps: dict, width: Poly, extents: dict) -> list[str] | None:
    """The indices of a moving slice, outermost first, when they nest: the innermost steps by the
    slice's width and each outer one by the whole span of those inside it (g·J·w + j·w); else None."""
    order, span, left = [], width, dict(steps)
    while left:
        nxt = next((v for v, st in left.items() if st == span), None)
        if nxt is None:
            return None
        order.insert(0, nxt)
        span = span * extents[nxt]
        del left[nxt]
    return order


def _grows_with(p: Poly, var: str) -> bool:
    """``p`` is c·var + (terms without var), c > 0: smallest at var's first value, largest at its last."""
    return all(c > 0 and m == ((var, 1),) for m, c in p.terms if any(x == var for x, _ in m))


def _moves(atom: str, scope) -> bool:
    """Whether an atom (⌊h·G/H⌋) depends on a mapped index."""
    _, a, b = ATOMS[atom]
    return bool(set(a.symbols() + b.symbols()) & set(scope))


def _walk(e: Expr):
    yield e
    for a in e.args:
        yield from _walk(a)


def _replace_inner(e: Expr, new: Expr) -> Expr:
    if e.op != "index":
        return new
    return Expr("index", (_replace_inner(e.args[0], new), *e.args[1:]), e.attr, e.pos)
