"""Sub-algorithm calls: the callee's body lowered in place (inlined).

A call such as ``layer_norm(X | γ, β)`` gets a child lowerer that shares the
program being built and binds the callee's names to the caller's values:
parameters and groups after ``|``, inputs before it, keyword arguments and
hyperparameter defaults.  Where an input has more axes than the callee
declares (a card on a vector called on a matrix), the extra axes become
mapped axes for the callee's body and own axes again after it.

``Inlining`` is mixed into ``lower.Lowerer``: it reads the lowerer's ``ch``,
``lib``, ``card``, ``env``, ``scope``, ``firsts``, ``extents``, ``subst``,
``memo``, ``transposed``, ``names``, ``block``, ``prefix``, ``base`` and
``step_no`` (and sets ``scope_extra``), calls ``expr``, ``value`` and
``lookup`` (lower_expr.py), ``permute``, ``expand`` and ``unmap`` (layout.py)
and ``err``, and lowers the callee's steps with the child's ``body``
(lower_steps.py).
"""

from __future__ import annotations

from dataclasses import replace

from ..lang.check import Checked
from ..lang.ir import Expr
from ..lang.shapes import Poly
from .custom import inline_rule
from .layout import AV, ONE, Mapped, ParamGroup


class Inlining:
    """Lowering a call to another card by lowering its body here."""

    def inline(self, callee: Checked, e) -> AV:
        fname, n_in = e.attr
        cc = callee.card
        child = type(self)(callee, self.lib, self.names, self.block, self.extents, {}, self.prefix)
        child.step_no = self.step_no
        child.memo, child.transposed = self.memo, self.transposed
        child.regions = self.regions
        if cc.rule is not None:  # the call's ops are replaced by its rule: the caller must not reuse them
            child.memo = {k: dict(v) for k, v in self.memo.items()}
            child.transposed = dict(self.transposed)
        child.scope, child.firsts = list(self.scope), dict(self.firsts)
        child.seq = {}
        child.in_loop = bool(self.seq) or self.in_loop  # a loop in the callee would nest
        ins = list(e.args[:n_in])
        bars = list(e.args[n_in:])
        # Parameters and hyperparameters passed after |.
        positional = [b for b in bars if b.op != "kwarg"]
        for name, arg in zip(cc.bar, positional, strict=False):
            val = self.expr(arg)
            b = callee.env.get(name)
            if b is not None and b.type.kind == "group":
                g = b.type.group
                if isinstance(g, tuple) and g and isinstance(g[0], str) and g[0] == cc.name:
                    child.bind_params(val)
                else:  # a members group: match positionally
                    leaves = self.group_members(arg, val)
                    for theirs, ours in zip(g, leaves, strict=True):
                        child.env[theirs] = ours
                        child.match_dims(callee.env[theirs].type.shape, ours)
            else:
                child.env[name] = val
                if isinstance(val, AV) and b is not None:
                    child.match_dims(b.type.shape, val)
        # Inputs; extra axes (a card on a vector called on a matrix) become mapped.
        extra: list[str] = []
        actual = {}
        for k, name in enumerate(cc.inputs):
            if k < len(ins):
                val = self.value(ins[k])
            else:
                default = callee.env[name].decl.default
                val = actual[default.attr]
            actual[name] = val
            want = callee.env[name].type
            n_extra = len(val.dims) - want.rank
            if n_extra > 0:
                val, extra = self.map_extra(val, n_extra, cc.convention.axes == "rows", extra, child)
            child.env[name] = val
            child.match_dims(want.shape, val)
        for arg in bars:
            if arg.op == "kwarg":
                child.env[arg.attr[0]] = self.kwarg(arg, callee, child)
        for n, b in callee.env.items():  # scalar hyperparameters with defaults
            if b.role == "hyper" and n not in child.env and b.decl is not None and b.decl.default is not None \
                    and not b.type.shape:
                t = b.type
                if t.value is None or t.kind == "real":
                    child.env[n] = child.value(b.decl.default)
        if cc.rule is not None and (extra or any(isinstance(v, AV) and v.mapped for v in child.env.values())):
            self.err(f"{cc.name} states its own backward rule, and this call maps it over an index", e,
                     hint="cardgen applies a backward rule to a whole-array call: call the card on the whole "
                          f"array, or drop the `backward` of {cc.name}")
        start = len(child.block)
        out = child.body(cc.steps)
        if cc.rule is not None:
            inline_rule(self, child, start, out)
        if extra:
            out = self.unmap_extra(out, extra, cc.convention.axes == "rows")
        return out

    def group_members(self, arg: Expr, val) -> list:
        if isinstance(val, ParamGroup):
            return list(val.leaves.values())
        names = self.ch.types.get(id(arg))
        members = names.group if names is not None else ()
        return [self.lookup(m, arg) for m in members]

    def bind_params(self, group):
        if not isinstance(group, ParamGroup):
            self.err("expected the parameters of " + self.card.name)
        for name, leaf in group.leaves.items():
            self.env[name] = leaf
            b = self.ch.env.get(name)
            if isinstance(leaf, AV) and b is not None:
                shape = ((b.over[0],) if b.over else ()) + b.type.shape
                self.match_dims(shape, leaf)

    def match_dims(self, declared, val):
        if not isinstance(val, AV):
            return
        dims = val.dims
        if len(declared) != len(dims):
            return
        for d, actual in zip(declared, dims, strict=True):
            syms = d.symbols()
            if len(syms) == 1 and d == Poly.sym(syms[0]) and syms[0] not in self.subst:
                self.subst[syms[0]] = actual
            elif len(syms) == 1 and syms[0] not in self.subst and len(d.terms) == 1:
                q = actual.divide(d.subst({syms[0]: ONE}))  # H·d_mid = d_e -> d_mid = d_e/H
                if q is not None:
                    self.subst[syms[0]] = q

    def map_extra(self, val: AV, k: int, rows: bool, extra: list, child) -> tuple[AV, list]:
        labels = [f"§{len(self.extents)}_{i}" for i in range(k)]
        dims = val.dims[:k] if rows else val.dims[len(val.dims) - k:]
        for lab, d in zip(labels, dims, strict=True):
            self.extents[lab] = d
        if not extra:
            extra = labels
            child.scope = child.scope + labels
            self.scope_extra = labels
        else:
            labels = extra
        if rows:
            moved = val
        else:
            nd = len(val.dims)
            perm = list(range(nd - k, nd)) + list(range(nd - k))
            moved = self.permute(val, val.mapped, perm)
        own = moved.dims[k:]
        return replace(moved, mapped=moved.mapped + tuple(labels), dims=own), extra

    def unmap_extra(self, out: AV, extra: list, rows: bool) -> AV:
        order = tuple(v for v in out.mapped if v not in extra) + tuple(v for v in extra)
        out = self.permute(out, order) if tuple(out.mapped) != order else out
        missing = [v for v in extra if v not in out.mapped]
        if missing:
            out = self.expand(out, out.mapped + tuple(missing), len(out.dims))
        keep = tuple(v for v in out.mapped if v not in extra)
        dims = tuple(ONE if v in out.ones else self.extents[v] for v in extra) + out.dims
        b = AV(out.name, keep, dims, out.kind, out.batched, ones=tuple(v for v in out.ones if v in keep))
        if not rows:
            k, nd = len(extra), len(dims)
            perm = list(range(k, nd)) + list(range(k))
            b = self.permute(b, b.mapped, perm)
        return b

    def kwarg(self, arg: Expr, callee: Checked, child) -> AV:
        name, idx = arg.attr
        want = callee.env[name].type
        if not idx:
            return self.value(arg.args[0])
        shape = [child.dim(d) for d in want.shape]
        with Mapped(self, idx[0], Poly.const(self.base), shape[0], None), \
                Mapped(self, idx[1], Poly.const(self.base), shape[1], None):
            return self.unmap(self.value(arg.args[0]), list(idx))
