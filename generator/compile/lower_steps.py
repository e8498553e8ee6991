"""The step rules of lowering: one ``s_<kind>`` method per card step kind.

Assignments bind names (a family member ``Y^h`` is stored with its index axis
first), masked assignments become a ``where`` over the whole array, and loops
are read two ways: ``∀`` and loops whose iterations are independent
(``For h ∈ [H]: Y^h ← …``) become mapped axes; a loop that carries values from
one iteration to the next (layers: ``X ← X + …``) stays a core ``Loop``.

``StepLowering`` is mixed into ``lower.Lowerer``: it reads the lowerer's ``ch``,
``card``, ``env``, ``scope``, ``seq``, ``funcs``, ``returned``, ``memo``,
``transposed``, ``names``, ``block``, ``base`` and ``step_no``, keeps ``cond``
(the mask of an ``if``) and ``sliced`` on it, and calls ``value``
(lower_expr.py), ``op``, ``align``, ``permute``, ``unmap`` and ``dim``
(layout.py) and ``err``.
"""

from __future__ import annotations

from dataclasses import replace

from ..lang.check import join_name, split_name
from ..lang.ir import Expr, Step
from ..lang.shapes import Poly
from .core import Loop
from .layout import AV, ONE, Mapped, common_ones


class StepLowering:
    """Card steps -> ops appended to the block, one rule per step kind."""

    # ---------------------------------------------------------------- steps
    def body(self, steps) -> AV | None:
        result = None
        for st in steps:
            r = self.step(st)
            if r is not None:
                result = r
        return result

    def step(self, st: Step):
        if st.pos is not None:
            self.step_no = f"{self.card.name}:{st.pos.line}"
        return getattr(self, "s_" + st.kind)(st)

    def s_remark(self, st):
        return None

    def s_return(self, st: Step):
        v = self.value(st.value)
        out = st.target.attr if st.target is not None else self.card.outputs[0]
        v = self.named(v, out)
        self.returned[out] = v
        return v

    def s_assign(self, st: Step):
        t = st.target
        if t.op == "call":  # P(θ) ← …: lowered where it is called
            self.funcs[t.attr[0]] = ([a.attr for a in t.args], st.value)
            return None
        v = self.value(st.value)
        if t.op == "name":
            self.assign_name(t.attr, v, st)
        else:
            self.assign_index(t, v, st)
        return None

    def assign_name(self, text: str, v: AV, st):
        base, scripts = split_name(text)
        idx = [x for _, x in scripts if x in self.scope]
        if idx:
            (var,) = idx
            key = join_name(base, [(k, "□" if x in self.scope else x) for k, x in scripts])
            self.env[key] = self.named(self.unmap(v, [var]), key)
        else:
            self.env[text] = self.named(v, text)

    def named(self, v: AV, card_name: str) -> AV:
        """Give the array a step just computed the card's name for it (Q, S_h, ê)."""
        if not v.name.startswith("_") or not self.block or getattr(self.block[-1], "out", None) != v.name:
            return v
        if any(getattr(x, "name", None) == v.name for x in self.env.values()):
            return v  # Z ← V: the array is already V's, and renaming it would leave V unbound
        new = self.names.fresh(card_name.replace("□", ""))
        old = v.name
        self.block[-1].out = new
        for memo in self.memo.values():
            for k, val in memo.items():
                if val.name == old:
                    memo[k] = replace(val, name=new)
        if old in self.transposed:
            self.transposed[new] = self.transposed.pop(old)
        return replace(v, name=new)

    def assign_index(self, target: Expr, v: AV, st: Step):
        base_e, *idx = target.args
        name = base_e.attr
        cond = getattr(self, "cond", None)
        vars_ = [ix.attr for ix in idx if ix.op == "name" and ix.attr in self.scope]
        base, scripts = split_name(name)
        fam = [x for _, x in scripts if x in self.scope]
        key = join_name(base, [(k, "□" if x in self.scope else x) for k, x in scripts]) if fam else name
        if cond is not None:  # if ¬Mask[…] then S[…] ← v: a select over the whole array
            cur = self.value(target)
            new = self.select(cond, v, cur)
            self.env[key] = self.unmap(new, fam + vars_)  # a family (S_h) keeps its index axis first
            return
        # X̃[:, t] ← v: the t axis goes where the index is
        u = self.unmap(v, vars_)
        order = [i for i, ix in enumerate(idx) if ix.op == "name" and ix.attr in self.scope]
        free = [i for i, ix in enumerate(idx) if i not in order]
        perm_target = order + free  # u's axes are (vars…, rest…); put each where its index is
        perm = [perm_target.index(i) for i in range(len(idx))] + list(range(len(idx), len(u.dims)))
        self.env[name] = self.permute(u, u.mapped, perm) if perm != list(range(len(u.dims))) else u

    def select(self, cond: AV, a: AV, b: AV) -> AV:
        if cond.const is not None:
            return a if cond.const else b
        (c2, a2, b2), mapped, dims = self.align(cond, a, b)
        return self.op("where", (c2, a2, b2), (), b2, mapped=mapped, dims=dims, kind="real",
                       batched=a.batched or b.batched or cond.batched, ones=common_ones(mapped, c2, a2, b2))

    def s_if(self, st: Step):
        c = self.value(st.cond)
        prev = getattr(self, "cond", None)
        self.cond = c
        try:
            self.step(st.body[0]) if c.const is None or c.const else None
        finally:
            self.cond = prev
        return None

    def s_forall(self, st: Step):
        ranges = [(v, Poly.const(self.base), None) for v in st.vars]
        return self.mapped_loop(ranges, st.body, st)

    def s_for(self, st: Step):
        first, count = self.loop_range(st)
        if st.inline or self.independent(st):
            return self.mapped_loop([(st.var, first, count)], st.body, st)
        return self.sequential(st, first, count)

    def loop_range(self, st: Step):
        if len(st.domain) == 2:
            lo, hi = (self.ch.types[id(x)].value for x in st.domain)
            return self.dim(lo), self.dim(hi - lo + ONE)
        return Poly.const(self.base), self.dim(self.ch.types[id(st.domain[0])].value)

    def independent(self, st: Step) -> bool:
        """A loop is a map when its body only defines values indexed by the
        loop variable (``Y^h ← …``) and its own temporaries."""
        before = set(self.env)
        for s in _assigns(st.body):
            base, scripts = split_name(s)
            if any(v == st.var for _, v in scripts):
                continue
            if s in before:
                return False
        return True

    def mapped_loop(self, ranges, body, st):
        managers = [Mapped(self, v, f, c, _body_expr(body)) for v, f, c in ranges]
        for m in managers:
            m.__enter__()
        try:
            for s in body:
                self.step(s)
        finally:
            for m in reversed(managers):
                m.__exit__()
        return None

    def sequential(self, st: Step, first: Poly, count: Poly):
        """A loop over layers: carried values in, the same values out."""
        carried = [n for n in dict.fromkeys(_assigns(st.body)) if n in self.env and isinstance(self.env[n], AV)]
        loop_var = self.names.fresh(st.var)
        outer = {n: self.env[n] for n in carried}
        body: list = []
        saved_block = self.block
        self.block = body
        inner_in = {}
        for n in carried:
            a = outer[n]
            inner = AV(self.names.fresh(n), a.mapped, a.dims, a.kind, a.batched)
            inner_in[n] = inner
            self.env[n] = inner
        self.seq[st.var] = loop_var
        self.sliced: list = getattr(self, "sliced", [])
        try:
            for s in st.body:
                self.step(s)
        finally:
            del self.seq[st.var]
            self.block = saved_block
        outs = []
        for n in carried:
            res = self.env[n]
            if res.name == inner_in[n].name:
                res = self.op("copy", (res,), (), res)  # unchanged in the body
            outs.append((outer[n].name, inner_in[n].name, res.name))
        results = []
        for n, (_o, _i, r) in zip(carried, outs, strict=True):
            a = outer[n]
            new = AV(self.names.fresh(n), a.mapped, a.dims, a.kind, a.batched)
            results.append((new.name, r))
            self.env[n] = new
        first_off = first - Poly.const(self.base)
        if first_off != Poly.const(0):
            self.err("a layer loop must start at the first layer", st)
        self.block.append(Loop(loop_var, count, outs, [], body, self.step_no, results))
        return None


def _assigns(steps) -> list[str]:
    out = []
    for s in steps:
        if s.kind == "assign" and s.target is not None:
            t = s.target
            out.append(t.attr if t.op == "name" else t.args[0].attr if t.op == "index" else t.attr[0])
        out += _assigns(s.body)
    return out


def _body_expr(body) -> Expr | None:
    from ..lang.check import _step_exprs
    if body is None:
        return None
    if isinstance(body, Expr):
        return body
    return Expr("list", tuple(_step_exprs(s) for s in body), ",")
