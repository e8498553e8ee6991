"""The step rules of lowering: one ``s_<kind>`` method per card step kind.

Assignments bind names (a family member ``Y^h`` is stored with its index axis
first), masked assignments become a ``where`` over the whole array, and loops
are read two ways: ``∀`` and loops whose iterations are independent
(``For h ∈ [H]: Y^h ← …``) become mapped axes; a loop that carries values from
one iteration to the next (layers: ``X ← X + …``, time: ``h ← tanh(X[t] W_x + h W_h)``)
stays a core ``Loop``, and a recurrence's per-step writes (``Y[t] ← h``, ``y_t ← h``)
fill an array along the loop's axis (``Loop.stacks``).

``StepLowering`` is mixed into ``lower.Lowerer``: it reads the lowerer's ``ch``,
``card``, ``env``, ``scope``, ``seq``, ``funcs``, ``returned``, ``memo``,
``transposed``, ``names``, ``block``, ``base``, ``step_no``, ``current``, ``stacking``,
``loop_counts`` and ``in_loop``, keeps ``cond``
(the mask of an ``if``) on it, and calls ``value``
(lower_expr.py), ``op``, ``align``, ``permute``, ``unmap`` and ``dim``
(layout.py) and ``err``.
"""

from __future__ import annotations

from dataclasses import replace

from ..lang.check import join_name, split_name
from ..lang.errors import CardError
from ..lang.ir import Expr, Step
from ..lang.render import expr_text
from ..lang.shapes import Poly, poly_text
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
        outer, self.current = self.current, st
        try:
            return getattr(self, "s_" + st.kind)(st)
        except CardError:
            raise
        except Exception as e:  # a bug in cardgen: remember the innermost step it happened at
            if not hasattr(e, "cardgen_step"):
                e.cardgen_step = (self.card.path, st.pos)
            raise
        finally:
            self.current = outer

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
        steps = [x for _, x in scripts if x in self.seq]
        if steps:  # y_t ← h in a loop over t: one member per step, stacked on the family axis
            key = join_name(base, [(k, "□" if x in steps else x) for k, x in scripts])
            self.stack_write(key, steps, 0, v, st)
            return
        idx = [x for _, x in scripts if x in self.scope]
        if len(set(idx)) < len(idx):
            self.err(f"{text} names one index twice; a family member takes each index once", st.target)
        if idx:  # Y^g_j ← … under g and j: one array, the family's axes first in the order of the scripts
            key = join_name(base, [(k, "□" if x in self.scope else x) for k, x in scripts])
            self.env[key] = self.named(self.unmap(v, idx), key)
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
        steps = [i for i, ix in enumerate(idx) if ix.op == "name" and ix.attr in self.seq]
        if steps:  # Y[t] ← h in a loop over t: row t of Y, for every step
            if cond is not None or len(steps) > 1 or any(
                    i not in steps and not _whole(ix) for i, ix in enumerate(idx)):
                self.err(f"cardgen compiles a write into {name} per step of a loop as {name}[t] ← … "
                         f"(or {name}[:, t] ← …), the loop's index once and `:` for every other axis",
                         target)
            self.stack_write(name, [idx[steps[0]].attr], steps[0], v, st)
            return
        for ix in idx:
            if not (_whole(ix) or ix.op == "name" and ix.attr in self.scope):
                self.err(f"cardgen compiles an indexed update only where each index is `:` or the index of "
                         f"a ∀ or loop that runs over the whole axis; here {expr_text(ix)} picks part of "
                         f"{name}", ix)
        base, scripts = split_name(name)
        fam = [x for _, x in scripts if x in self.scope]
        key = join_name(base, [(k, "□" if x in self.scope else x) for k, x in scripts]) if fam else name
        if cond is not None:  # if ¬Mask[…] then S[…] ← v: a select over the whole array
            cur = self.value(target)
            new = self.select(cond, v, cur)
            self.env[key] = self.unmap(new, fam + vars_)  # a family (S_h) keeps its index axis first
            return
        # X̃[:, t] ← v: the t axis goes where the index is; a family member (S_h[t, u] under
        # `for h`) keeps its family axis first, as assign_name stores it
        u = self.unmap(v, fam + vars_)
        k = len(fam)
        order = [i for i, ix in enumerate(idx) if ix.op == "name" and ix.attr in self.scope]
        free = [i for i, ix in enumerate(idx) if i not in order]
        perm_target = order + free  # u's axes are (fam…, vars…, rest…); put each where its index is
        perm = list(range(k)) + [k + perm_target.index(i) for i in range(len(idx))] \
            + list(range(k + len(idx), len(u.dims)))
        self.env[key] = self.permute(u, u.mapped, perm) if perm != list(range(len(u.dims))) else u

    def stack_write(self, key: str, steps: list[str], axis: int, v: AV, st: Step):
        """Record ``key[t] ← v`` in the loop over ``t``: after the loop, ``key`` is the array of
        every step's ``v``, with the steps along ``axis`` (of the card's axes)."""
        (var,) = steps
        stacks = self.stacking.get(var)
        if stacks is None or self.scope or getattr(self, "cond", None) is not None:
            self.err(f"cardgen compiles a per-step write ({st.target and expr_text(st.target)}) only as a step "
                     f"of the loop over {var} itself, not inside an inner loop, ∀ or if", st)
        v = self.materialize(v)
        if v.mapped:
            self.err("the value written per step still has an index axis", st)
        if v.kind != "real":
            self.err(f"cardgen compiles per-step writes of real values; this step writes {v.kind} values", st)
        count = self.loop_counts[var]
        dims = v.dims[:axis] + (count,) + v.dims[axis:]
        b = self.ch.env.get(key)
        declared = tuple(self.dim(d) for d in b.type.shape) if b is not None and b.role == "output" else None
        if declared is not None and declared != dims:
            self.err(f"the loop over {var} runs {poly_text(count)} steps, so {key} gets shape {_shape_text(dims)}, "
                     f"but the card declares {_shape_text(declared)}", st)
        stacks[key] = (v, axis - len(dims), dims)

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
            lo, hi = [self.ch.types[id(x)].value for x in st.domain]
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
        """A loop over layers or time steps: carried values in, the same values out; a
        recurrence's per-step writes (``Y[t] ← h``) fill an array along the loop's axis."""
        if self.seq or self.in_loop:
            self.err("cardgen compiles a loop that carries values from one step to the next (over layers or "
                     "time) only outside any other such loop, not nested in one", st,
                     hint="write the outer loop out step by step (two layers of a recurrence: two loops, "
                          "one after the other)")
        written = _stacked(st.body, st.var)
        for key in written:
            reader = _reads(st.body, key)
            if reader is not None:
                self.err(f"this loop writes {key} one step at a time, so it cannot read {key} as well; "
                         "carry what the next step needs in a variable of its own (h ← …)", reader)
        head = self.step_no  # the loop's own line, for the comment above it
        carried = [n for n in dict.fromkeys(_assigns(st.body)) if n in self.env and isinstance(self.env[n], AV)
                   and n not in written]
        for n in carried:
            if self.env[n].const is not None:
                self.err(f"{n} is carried round this loop but starts as the number {self.env[n].name}; "
                         f"start it as an array of the shape the loop gives it (an input, or 0 ⋅ an array)",
                         st)
        loop_var = self.names.fresh(st.var)
        outer = {n: self.env[n] for n in carried}
        before = (dict(self.env), set(self.names.taken), self.names.count)
        while True:
            body, inner_in, stacks = self.loop_body(st, count, loop_var, carried, outer)
            # A value that enters without batch axes (a learned h_0) and leaves with them: lower the
            # body again with it broadcast over the batch from the first step, so every step has one layout.
            grow = [n for n in carried if self.env[n].batched and not inner_in[n].batched]
            if not grow:
                break
            self.memo.pop(id(body), None)
            self.env, self.names.taken, self.names.count = dict(before[0]), set(before[1]), before[2]
            self.step_no = head
            for n in grow:
                outer[n] = self.op("batch", (outer[n],), (), outer[n], batched=True)
        for key in written:
            if key not in stacks:  # a write the body skipped at lowering (a constant-false if)
                self.err(f"this loop does not write {key} at every step", written[key])
        outs = []
        for n in carried:
            res = self.env[n]
            if len(res.dims) != len(inner_in[n].dims) or res.mapped != inner_in[n].mapped:
                self.err(f"{n} has {len(inner_in[n].dims)} axes when the loop starts and {len(res.dims)} after a "
                         f"step; a value carried round a loop keeps its shape", st)
            if res.name == inner_in[n].name:
                saved, self.block = self.block, body
                res = self.op("copy", (res,), (), res)  # unchanged in the body
                self.block = saved
            outs.append((outer[n].name, inner_in[n].name, res.name))
        results = []
        for n, (_o, _i, r) in zip(carried, outs, strict=True):
            a = outer[n]
            new = AV(self.names.fresh(n), a.mapped, a.dims, a.kind, a.batched)
            results.append((new.name, r))
            self.env[n] = new
        first_off = first - Poly.const(self.base)
        if first_off != Poly.const(0):
            self.err(f"cardgen compiles a loop that carries values from one step to the next only from its first "
                     f"index ({self.base}); this one starts at {poly_text(first)}", st,
                     hint="start the loop at the first index and handle the first step inside it")
        loop = Loop(loop_var, count, outs, [], body, head, results)
        for key, (v, axis, dims) in stacks.items():
            whole = AV(self.names.fresh(key.replace("□", "")), (), dims, v.kind, v.batched)
            loop.stacks.append((whole.name, v.name, axis, dims))
            self.env[key] = whole
        self.block.append(loop)
        return None


    def loop_body(self, st: Step, count: Poly, loop_var: str, carried: list[str], outer: dict):
        """The body of a sequential loop as a block of its own: carried values enter as fresh
        names (``inner``), the body's steps update them in ``env``; per-step writes are collected."""
        self.stacking[st.var], self.loop_counts[st.var] = {}, count
        body: list = []
        saved_block = self.block
        self.block = body
        inner_in = {}
        for n in carried:
            a = outer[n]
            inner_in[n] = self.env[n] = AV(self.names.fresh(n), a.mapped, a.dims, a.kind, a.batched)
        self.seq[st.var] = loop_var
        try:
            for s in st.body:
                self.step(s)
        finally:
            del self.seq[st.var]
            self.block = saved_block
            stacks = self.stacking.pop(st.var)
        return body, inner_in, stacks


def _assigns(steps) -> list[str]:
    out = []
    for s in steps:
        if s.kind == "assign" and s.target is not None:
            t = s.target
            out.append(t.attr if t.op == "name" else t.args[0].attr if t.op == "index" else t.attr[0])
        out += _assigns(s.body)
    return out


def _shape_text(dims) -> str:
    return " × ".join(f"({t})" if " " in t else t for t in map(poly_text, dims))


def _whole(ix: Expr) -> bool:
    return ix.op == "slice" and all(a.op == "none" for a in ix.args)


def _stacked(steps, var: str) -> dict[str, Step]:
    """The arrays a loop over ``var`` writes one step at a time (``Y[var] ← …``, ``y_var ← …``),
    by env key, with the step that writes each."""
    out: dict[str, Step] = {}
    for s in steps:
        if s.kind == "assign" and s.target is not None:
            t = s.target
            if t.op == "index" and any(ix == Expr("name", (), var) for ix in t.args[1:]):
                out.setdefault(t.args[0].attr, s)
            elif t.op == "name":
                base, scripts = split_name(t.attr)
                if any(x == var for _, x in scripts):
                    out.setdefault(join_name(base, [(k, "□" if x == var else x) for k, x in scripts]), s)
        for k, v in _stacked(s.body, var).items():
            out.setdefault(k, v)
    return out


def _reads(steps, key: str) -> Expr | None:
    """The first place the steps read ``key`` (a name, or a family member ``y_…``)."""
    base, scripts = split_name(key)

    def hit(e: Expr) -> Expr | None:
        if e.op == "name":
            b, sc = split_name(e.attr)
            if e.attr == key or (b == base and len(sc) == len(scripts) and "□" in key
                                 and all(k1 == k2 and (x2 == "□" or x1 == x2)
                                         for (k1, x1), (k2, x2) in zip(sc, scripts, strict=True))):
                return e
        for a in e.args:
            found = hit(a)
            if found is not None:
                return found
        return None
    for s in steps:
        exprs = [x for x in (s.value, s.cond) if x is not None]
        if s.target is not None and s.target.op == "index":
            exprs += list(s.target.args[1:])
        for e in exprs:
            found = hit(e)
            if found is not None:
                return found
        found = _reads(s.body, key)
        if found is not None:
            return found
    return None


def _body_expr(body) -> Expr | None:
    from ..lang.check import _step_exprs
    if body is None:
        return None
    if isinstance(body, Expr):
        return body
    return Expr("list", tuple(_step_exprs(s) for s in body), ",")
