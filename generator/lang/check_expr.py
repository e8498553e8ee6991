"""The expression rules: one method ``x_<op>`` per IR op, each giving the
kind and symbolic shape of its result or a CardError at the node, with the
shape logic they share (broadcasting, matrix products, slices, lists, the
range of a Σ or ∀ index).  ``expr`` dispatches on the op, so a new op is one
method here.  Calls (``x_call``) are in check_call.py.

``ExprRules`` is mixed into ``check.Checker``: it reads the checker's
``env``, ``ranges``, ``types``, ``base`` and ``rows`` and calls its
``resolve``, ``scope``, ``dim``, ``unify``, ``unify_shapes``, ``res``,
``rtype``, ``fresh``, ``show``, ``sizes_at`` and ``err`` (and
``call_builtin`` from check_call.py).
"""

from __future__ import annotations

import re
from dataclasses import replace

from . import ir
from .check_call import BUILTINS
from .errors import CardError
from .ir import Expr
from .names import join_name, list_family, split_name
from .render import INFIX, expr_text
from .shapes import Poly, poly_brief
from .types import BROADCAST, INTEGRAL, NAT, REAL, Type, numeric_join

# Ops with two operands: a Σ that ends the left one does not reach into the right one.
BINARY_OPS = ("add", "sub", "mul", "div", "matmul", "juxt", "mod", "cmp")


def _trailing_sums(e: Expr):
    """The Σs whose bodies end where ``e`` ends (``x + Σ_i Σ_j a``: Σ_i, Σ_j)."""
    while True:
        if e.op == "sum":
            yield e
            e = e.args[0]
        elif e.op in BINARY_OPS or e.op == "neg":
            e = e.args[-1] if e.op != "neg" else e.args[0]
        else:
            return


def _free_use(e: Expr, var: str, defined) -> Expr | None:
    """The first place ``e`` reads the index ``var`` (``i``, ``b_i``, ``X[i]``) not bound by a Σ of its own;
    a name the card defines as it is (a parameter ``W_i``) is no use of ``i``."""
    if e.op == "sum" and e.attr[0] == var:
        return next((u for b in e.args[1:] if (u := _free_use(b, var, defined)) is not None), None)
    if e.op == "name" and not defined(e.attr) and (e.attr == var or any(v == var for _, v in split_name(e.attr)[1])):
        return e
    if e.op == "index" and any(_free_use(a, var, defined) is not None for a in e.args[1:]):
        return e
    for a in e.args:
        u = _free_use(a, var, defined)
        if u is not None:
            return u
    return None


class ExprRules:
    """A rule per expression op, and ``expr`` that picks one."""

    def expr(self, e: Expr) -> Type:
        rule = getattr(self, "x_" + e.op, None)
        if rule is None:
            self.err(f"{expr_text(e)} cannot be used here", e)
        if e.op in BINARY_OPS:
            self.sum_reach(e)
        with self.sizes_at(e):  # the innermost expression that grew a dimension too large
            t = self.rtype(rule(e))
        self.types[id(e)] = t
        return t

    def sum_reach(self, e: Expr):
        """``Σ_i a_i + b_i``: Σ takes only ``a_i``, so the ``i`` of ``b_i`` is no longer its index.
        Said at ``b_i``, with the parentheses that were likely meant, before it reads as another name."""
        left, right = e.args[0], e.args[-1]
        for s in reversed(list(_trailing_sums(left))):  # the innermost first: its parentheses come first
            var = s.attr[0]
            if var in self.ranges:
                continue  # the same name is bound outside the Σ as well: b_i means that i
            use = _free_use(right, var, lambda n: n in self.env)
            if use is not None:
                op = "a product" if e.op == "juxt" else e.attr if e.op == "cmp" else INFIX[e.op].strip()
                meant = Expr("sum", (Expr(e.op, (s.args[0], right), e.attr), *s.args[1:]), s.attr)
                self.err(f"{expr_text(use)} uses {var}, the index of the Σ before it, but that Σ ends at "
                         f"`{op}`: it sums only {expr_text(s.args[0])}", use,
                         hint=f"Σ binds tighter than {op}; to sum both, add parentheses: {expr_text(meant)}")

    def x_name(self, e):
        b, idx = self.resolve(e.attr, e)
        t = b.type
        if idx and len(idx) != len(b.over):
            self.err(f"{e.attr} selects {len(idx)} indices of a family with {len(b.over)}", e)
        if b.role in ("hyper", "index", "dim") or t.kind in INTEGRAL and b.role == "input" and not t.shape:
            if t.value is None and t.kind in INTEGRAL and not t.shape:
                t = replace(t, value=Poly.sym(e.attr))
        if b.over and not idx:
            t = t.with_shape((*b.over, *t.shape)) if t.kind not in ("group", "func") else t
        return t

    def x_num(self, e):
        text = e.attr
        if re.fullmatch(r"\d+", text):
            return Type("nat", value=Poly.const(int(text)))
        return REAL

    def x_inf(self, e):
        return REAL

    def x_none(self, e):
        return NAT

    def arith(self, e, verb: str) -> Type:
        a, b = [self.expr(x) for x in e.args]
        if a.kind == "group" or b.kind == "group":
            return a if a.kind == "group" else b
        if a.kind == "func" or b.kind == "func":
            self.err("a function must be called before arithmetic", e)
        t = self.broadcast(a, b, e, verb)
        kind = numeric_join(a, b) if e.op != "div" else "real"
        value = None
        if kind in INTEGRAL and a.value is not None and b.value is not None and not t.shape:
            value = {"add": a.value + b.value, "sub": a.value - b.value,
                     "mul": a.value * b.value}.get(e.op)
        if e.op == "div" and a.value is not None and b.value is not None and not t.shape:
            value = a.value.divide(b.value)
            kind = "nat" if value is not None else "real"
        return Type(kind, t.shape, value=value)

    def x_add(self, e):
        return self.arith(e, "add")

    def x_sub(self, e):
        return self.arith(e, "subtract")

    def x_mul(self, e):
        return self.arith(e, "multiply element-wise")

    def x_div(self, e):
        return self.arith(e, "divide")

    def x_floordiv(self, e):
        return self.whole_arith(e, "⌊a / b⌋", Poly.floordiv)

    def x_mod(self, e):
        return self.whole_arith(e, "a mod b", Poly.mod)

    def whole_arith(self, e, what: str, fold) -> Type:
        """⌊a / b⌋ and a mod b: whole numbers in, a whole number out (an index, a slice bound)."""
        a, b = [self.expr(x) for x in e.args]
        for x, t in zip(e.args, (a, b), strict=True):
            if t.kind not in INTEGRAL:
                self.err(f"{what} takes whole numbers; {expr_text(x)} is {self.show(t)}", x,
                         hint="an index, a size or a loop variable; for real numbers write a / b")
        if b.value is not None and b.value.constant == 0:
            self.err(f"{what} divides by zero", e.args[1], hint="the divisor must be a nonzero whole number")
        t = self.broadcast(a, b, e, "divide")
        value = fold(a.value, b.value) if a.value is not None and b.value is not None and not t.shape else None
        return Type(numeric_join(a, b), t.shape, value=value)

    def broadcast(self, a: Type, b: Type, e, verb: str) -> Type:
        sa, sb = list(a.shape), list(b.shape)
        out = []
        for i in range(1, max(len(sa), len(sb)) + 1):
            da = sa[-i] if i <= len(sa) else None
            db = sb[-i] if i <= len(sb) else None
            if da is None or db is None:
                out.append(da if db is None else db)
            elif da == BROADCAST:
                out.append(db)
            elif db == BROADCAST or self.unify(da, db):
                out.append(da)
            elif self.res(da).constant == 1:
                out.append(db)
            elif self.res(db).constant == 1:
                out.append(da)
            else:
                hint = None
                if len(sa) != len(sb) and not self.rows:
                    hint = "to add a vector to every column, write it as b 1^⊤"
                elif len(sa) == len(sb) == 2 and self.unify_shapes(sa[::-1], sb):
                    hint = "the shapes match if one side is transposed (^⊤)"
                self.err(f"cannot {verb} {self.show(a)} and {self.show(b)}: "
                         f"{poly_brief(self.res(da))} ≠ {poly_brief(self.res(db))}", e, hint)
        return Type(a.kind, tuple(reversed(out)))

    def x_matmul(self, e):
        a, b = [self.expr(x) for x in e.args]
        return self.matmul(a, b, e)

    def matmul(self, a: Type, b: Type, e) -> Type:
        if a.kind == "group" or b.kind == "group":
            return a if a.kind == "group" else b
        if not a.shape or not b.shape:
            kind = numeric_join(a, b)
            value = a.value * b.value if kind in INTEGRAL and a.value is not None and b.value is not None \
                and not (a.shape or b.shape) else None
            return Type(kind, a.shape or b.shape, value=value)
        sa, sb = a.shape, b.shape
        inner_a = sa[-1]
        inner_b = sb[0] if len(sb) == 1 else sb[-2]
        if not self.unify(inner_a, inner_b):
            left, right = e.args
            hint = None
            if len(sb) >= 2 and self.unify_shapes([inner_a], [sb[-1]]):
                hint = f"did you mean {expr_text(right)}^⊤?"
            elif len(sa) >= 2 and self.unify_shapes([sa[-2]], [inner_b]):
                hint = f"did you mean {expr_text(left)}^⊤?"
            self.err(f"cannot multiply {self.show(a)} by {self.show(b)}: "
                     f"{poly_brief(self.res(inner_a))} ≠ {poly_brief(self.res(inner_b))}", e, hint)
        out = list(sa[:-1]) + (list(sb[-1:]) if len(sb) >= 2 else [])
        if len(sa) > 2 or len(sb) > 2:
            batch = self.broadcast(Type("real", sa[:-2]), Type("real", sb[:-2]), e, "multiply").shape
            out = list(batch) + ([sa[-2]] if len(sa) >= 2 else []) + ([sb[-1]] if len(sb) >= 2 else [])
        return Type("real", tuple(out))

    def x_juxt(self, e):
        left, right = e.args
        if left.op == "name" and left.attr in BUILTINS and left.attr not in self.env:
            t = self.call_builtin(left.attr, [right], e)
            return t
        if right.op == "transpose" and right.args[0] == ir.num("1"):
            a = self.expr(left)
            self.types[id(right)] = Type("real", (BROADCAST,))
            if a.rank > 1:
                self.err("only a vector can be broadcast over columns with 1^⊤", e)
            return Type(a.kind, (*a.shape, BROADCAST))
        if left == ir.num("1") and right.op == "transpose":
            b = self.expr(right)
            return Type(b.kind, (BROADCAST, *b.shape))
        return self.matmul(self.expr(left), self.expr(right), e)

    def x_neg(self, e):
        t = self.expr(e.args[0])
        kind = "integer" if t.kind in INTEGRAL else t.kind
        return Type(kind, t.shape, value=-t.value if t.value is not None else None) \
            if t.kind != "group" else t

    def x_not(self, e):
        t = self.expr(e.args[0])
        return Type("boolean", t.shape)

    def x_sqrt(self, e):
        return self.call_builtin("sqrt", list(e.args), e)

    def x_square(self, e):
        t = self.expr(e.args[0])
        return Type("real" if t.kind not in INTEGRAL else t.kind, t.shape)

    def x_pow(self, e):
        base, ex = [self.expr(x) for x in e.args]
        if ex.shape:
            self.err("an exponent must be a scalar", e.args[1])
        return Type("real", base.shape)

    def x_transpose(self, e):
        t = self.expr(e.args[0])
        if t.rank > 2:
            self.err(f"^⊤ needs a vector or a matrix, not {self.show(t)}", e)
        return t.with_shape(tuple(reversed(t.shape)))

    def x_grad(self, e):
        (f,) = e.args
        if f.op != "call":
            self.err("∇ takes a function applied to its argument, as in ∇loss(θ)", e)
        result = self.expr(f)
        if result.shape or result.kind not in ("real",):
            self.err(f"∇ needs a scalar function; {expr_text(f)} is {self.show(result)}", e)
        args = f.args
        if len(args) != 1:
            self.err("∇ differentiates with respect to one argument", e)
        return self.types[id(args[0])]

    def x_cmp(self, e):
        a, b = [self.expr(x) for x in e.args]
        return Type("boolean", self.broadcast(a, b, e, "compare").shape)

    def x_iverson(self, e):
        t = self.expr(e.args[0])
        return Type("boolean", t.shape)

    def x_choose(self, e):
        a, p, b = [self.expr(x) for x in e.args]
        if p.shape:
            self.err("a probability must be a scalar", e.args[1])
        t = self.broadcast(a, b, e, "choose between")
        return Type(a.kind, t.shape, a.bounds)

    def x_set_builder(self, e):
        rng, cond = e.args
        n = self.index_value(rng)
        with self.scope({e.attr: (Poly.const(self.base), n)}):
            c = self.expr(cond)
        if c.kind != "boolean" or c.shape:
            self.err("a set's condition must be a true/false test", cond)
        return Type("subset", (n,))  # positions of [n]: one true/false per position

    def index_value(self, e: Expr) -> Poly:
        t = self.expr(e)
        if t.kind not in INTEGRAL or t.shape or t.value is None:
            self.err(f"{expr_text(e)} must be a whole number here", e)
        return t.value

    def x_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        if form == "span":
            lo, hi = [self.index_value(b) for b in bounds]
            rng = (lo, hi - lo + Poly.const(1))
        elif form == "in":
            s = self.expr(bounds[0])
            if s.kind not in ("subset", "boolean") or s.rank != 1:
                self.err(f"Σ over {expr_text(bounds[0])} needs a set of positions", bounds[0])
            rng = (Poly.const(self.base), s.shape[0])
        else:
            rng = (Poly.const(self.base), self.infer_range(var, body, e))
        with self.scope({var: rng}):
            t = self.expr(body)
        return t

    def infer_range(self, var: str, body: Expr, node) -> Poly:
        """The extent of an index variable from how the body uses it: as a
        family script (``k_u``) or as an array index (``S[t, u]``)."""
        found = []

        def walk(x: Expr):
            if x.op == "name":
                base, scripts = split_name(x.attr)
                if any(v == var for _, v in scripts):
                    # the other scripts: indices bound already, or (Σ_g Σ_j V^g_j) one bound later
                    for slot in (lambda v: v == var or v in self.ranges,
                                 lambda v: v == var or v in self.ranges or v not in self.env and v.isidentifier()):
                        key = join_name(base, [(k, "□" if slot(v) else v) for k, v in scripts])
                        b = self.env.get(key)
                        if b is not None and b.over:
                            self.known(b)
                            found.append(b.over[[v for _, v in scripts if slot(v)].index(var)])
                            break
            if x.op == "index":
                base = x.args[0]
                for i, a in enumerate(x.args[1:]):
                    if a == ir.name(var):
                        try:
                            bt = self.expr(base)
                        except CardError:
                            continue
                        if i < bt.rank:
                            found.append(bt.shape[i])
            for a in x.args:
                walk(a)
        with self.scope({var: (Poly.const(self.base), self.fresh("range"))}):
            walk(body)
        if not found:
            self.err(f"cannot tell what {var} ranges over", node,
                     hint=f"write its range: for {var} ∈ [n], or Σ_{{{var}={self.base}}}^{{n}}")
        return found[0]

    def x_index(self, e):
        base, *idx = e.args
        t = self.expr(base)
        if t.kind in ("group", "func"):
            self.err(f"{expr_text(base)} cannot be indexed", e)
        if len(idx) > t.rank:
            self.err(f"{expr_text(base)} has {t.rank} ax{'i' if t.rank == 1 else 'e'}s "
                     f"but is indexed with {len(idx)}", e,
                     hint=f"{expr_text(base)} ∈ {self.show(t)}")
        out: list[Poly] = []
        for i, ix in enumerate(idx):
            axis = t.shape[i]
            if ix.op == "slice":
                out.append(self.slice_len(ix, axis))
                continue
            it = self.expr(ix)
            if it.kind not in INTEGRAL and it.kind != "boolean":
                self.err(f"an index must be a whole number or token ids, not {self.show(it)}", ix)
            out.extend(it.shape)
        out.extend(t.shape[len(idx):])
        return Type(t.kind, tuple(out), t.bounds)

    def slice_len(self, s: Expr, axis: Poly) -> Poly:
        lo_e, hi_e = s.args
        lo = Poly.const(self.base) if lo_e.op == "none" else self.slice_bound(lo_e)
        hi = (axis + Poly.const(self.base - 1 if self.base else 0)) if hi_e.op == "none" \
            else self.slice_bound(hi_e)
        if lo is None or hi is None:
            return self.fresh("slice")
        n = self.res(hi - lo + Poly.const(1 if self.base == 1 else 0))
        if all(c <= 0 for _, c in n.terms):  # ≤ 0 for any sizes and indices, which are ≥ 0: T : 0
            self.err(f"the slice {expr_text(s)} is empty: it ends before it starts", s,
                     hint="a slice a : b runs from a up to b" + (" (b included)" if self.base == 1
                                                                 else " (b excluded)"))
        return n

    def slice_bound(self, e: Expr) -> Poly | None:
        t = self.expr(e)
        if t.kind not in INTEGRAL or t.shape:
            self.err(f"a slice bound must be a whole number, not {self.show(t)}", e)
        return t.value

    def x_list(self, e):
        items = list(e.args)
        if any(x.op == "ellipsis" for x in items):
            return self.family_list(e)
        types = [self.expr(x) for x in items]
        return self.join(types, e.attr, e)

    def join(self, types: list[Type], sep: str, e) -> Type:
        kinds = {t.kind for t in types}
        kind = types[0].kind if len(kinds) == 1 else ("real" if "real" in kinds else "integer")
        bounds = types[0].bounds if len(kinds) == 1 else ()
        ranks = {t.rank for t in types}
        if max(ranks) == 0:
            return Type(kind, (Poly.const(len(types)),), bounds)
        if ranks == {0, 1}:  # appending to a sequence: [x, y]
            n = Poly.const(0)
            for t in types:
                n = n + (t.shape[0] if t.shape else Poly.const(1))
            return Type(kind, (n,), bounds)
        if len(ranks) != 1:
            self.err("a list joins values of the same rank", e)
        first = types[0]
        if first.rank == 1:
            for t in types[1:]:
                if not self.unify(first.shape[0], t.shape[0]):
                    self.err(f"list items differ in length: {self.show(first)} and {self.show(t)}", e)
            n = Poly.const(len(types))
            return Type(kind, (first.shape[0], n) if sep == "," else (n, first.shape[0]), bounds)
        axis = -1 if sep == "," else 0
        total = Poly.const(0)
        for t in types:
            others = [i for i in range(first.rank) if i != axis % first.rank]
            if not all(self.unify(first.shape[i], t.shape[i]) for i in others):
                how = "side by side" if sep == "," else "stacked"
                self.err(f"cannot join {self.show(first)} and {self.show(t)} {how}: their other axes differ", e,
                         hint="[A, B] joins along the last axis, [A; B] along the first")
            total = total + t.shape[axis]
        shape = list(first.shape)
        shape[axis] = total
        return Type(kind, tuple(shape), bounds)

    def family_list(self, e) -> Type:
        items = [x for x in e.args if x.op != "ellipsis"]
        keys, idxs = set(), []
        for x in items:
            if x.op != "name":
                self.err("an ellipsis list holds members of one family, like e_1, …, e_ℓ", x)
            base, scripts = split_name(x.attr)
            if not scripts:
                self.err(f"{x.attr} has no index script", x)
            keys.add(list_family(x.attr, lambda v: v in self.ranges, self.env)[0])
            idxs.append((x, scripts[-1][1]))
        if len(keys) != 1:
            self.err(f"an ellipsis list holds members of one family, not {', '.join(sorted(keys))}", e)
        key = keys.pop()
        b = self.env.get(key)
        if b is not None:
            self.known(b)
        if b is None or not b.over:
            self.err(f"no family {key.replace('□', '•')} is defined", items[0],
                     hint="define it first, e.g. for t ∈ [ℓ] : e_t ← …")
        fixed = list_family(items[0].attr, lambda v: v in self.ranges, self.env)[1]
        if len(fixed) != len(b.over) - 1:
            self.err(f"{key.replace('□', '•')} has {len(b.over)} indices: a list runs over the last one, "
                     "every other one an index bound outside the list or a whole number", items[0])
        for v, n in zip(fixed, b.over, strict=False):
            if v.isdigit() and (self.res(n).constant is not None and int(v) - self.base >= self.res(n).constant
                                or int(v) < self.base):
                self.err(f"{items[0].attr} picks member {v} of an index that runs "
                         f"{self.base}…{poly_brief(self.res(n - Poly.const(1 - self.base)))}", items[0])
        self.check_extent(items[0].attr, b, [v for v in fixed if not v.isdigit()], items[0])
        n = b.over[-1]
        (first, first_s), (last, last_s) = idxs[0], idxs[-1]
        want_first, want_last = Poly.const(self.base), n - Poly.const(1 - self.base)
        from .parse import parse_dim
        for node, s, want in ((first, first_s, want_first), (last, last_s, want_last)):
            try:
                got = self.dim(parse_dim(s), new_dims=False)
            except Exception:
                got = None
            if got is None or not self.unify(got, want):
                self.err(f"the list must run over the whole family: its indices are "
                         f"{poly_brief(self.res(want_first))}…{poly_brief(self.res(want_last))}", node)
        member = b.type
        types = [member] * 2
        t = self.join(types, e.attr, e)
        shape = list(t.shape)
        if member.rank == 0:
            shape = [n]
        elif member.rank == 1:
            shape[1 if e.attr == "," else 0] = n
        else:
            ax = -1 if e.attr == "," else 0
            shape[ax] = member.shape[ax] * n
        return Type(t.kind, tuple(shape), t.bounds)

    def x_slice(self, e):
        self.err("a slice (a : b) can only appear inside [ ]", e)

    def x_kwarg(self, e):
        self.err("a named argument can only appear after | in a call", e)

    def x_ellipsis(self, e):
        self.err("… can only appear in a list", e)
