"""Calls: built-in functions (``builtins.py``, softmax and max here), functions a card defines
(``P(θ) ← …``) and other cards, each run in a frame of its own with its own parameters and the
sizes its arguments have.  ``CallRules`` is mixed into ``frame.Frame``."""

from __future__ import annotations

import numpy as np

from ..lang.check import Checked
from ..lang.ir import Expr
from .builtins import ELEMENTWISE
from .values import PENDING, Func, GroupVal, MembersVal, decl_key, number, whole_number


class CallRules:
    """``x_call`` and the three kinds of call it dispatches to."""

    def x_call(self, e):
        fname, n_in = e.attr
        f = self.env.get(fname)
        if isinstance(f, Func):
            args = [self.value(a) for a in e.args]
            # A function is pure and the names it reads stay put during one step, so
            # −Σ_t log P(θ)[x[t+1], t] runs the model once, not once per t.
            key = (fname, *map(id, args), *((v, self.idx[v]) for v in f.indices if v in self.idx))
            if key in self.calls:
                return self.calls[key][1]
            saved = {p: self.env.get(p) for p in f.params}
            self.env.update(zip(f.params, args, strict=True))
            try:
                out = self.value(f.body)
                self.calls[key] = (args, out)  # args kept alive, so that their ids stay theirs
                return out
            finally:
                for p, v in saved.items():
                    if v is None:
                        self.env.pop(p, None)
                    else:
                        self.env[p] = v
        if fname in ELEMENTWISE or fname in ("softmax", "max", "length"):
            return self.builtin(fname, list(e.args), e)
        return self.call_card(e)

    def builtin(self, fname: str, args: list[Expr], e):
        vals = [self.value(a) for a in args]
        if fname == "length":
            return int(np.shape(vals[0])[0])
        if fname == "max":
            return np.maximum(*map(number, vals)) if len(vals) == 2 else float(np.max(vals[0]))
        x = number(vals[0])
        if fname == "softmax":
            return self.softmax(np.asarray(x, dtype=float), e)
        return ELEMENTWISE[fname](x)

    def softmax(self, x: np.ndarray, e) -> np.ndarray:
        """exp(x_i) / Σ_j exp(x_j) down each column (columns convention) or along each row (rows)."""
        if not self.rows and x.ndim > 2:
            self.err("softmax of an array with more than two axes: which axis is the column?", e)
        axis = -1 if self.rows else 0
        shift = np.max(x, axis=axis, keepdims=True)  # exp(x − m) / Σ exp(x − m): the same quotient
        z = ELEMENTWISE["exp"](x - shift)
        return z / np.sum(z, axis=axis, keepdims=True)

    def call_card(self, e):
        fname, n_in = e.attr
        callee = self.lib.checked(fname)
        cc = callee.card
        in_decls = [(n, cc.decl_of(n)) for n in cc.inputs]
        ins = {}
        for (n, _), a in zip(in_decls, e.args[:n_in], strict=False):
            ins[n] = self.value(a)
        values, seed = {}, {}
        positional = [a for a in e.args[n_in:] if a.op != "kwarg"]
        for name, arg in zip(cc.bar, positional, strict=False):
            b = callee.env.get(name)
            v = self.value(arg)
            if isinstance(v, GroupVal):
                seed.update(v.dims)
                if b is not None and b.role == "group":  # θ: all of the callee's parameters
                    values.update(v.values)
                values[name] = v
            elif isinstance(v, MembersVal):
                members = b.type.group if b is not None else ()
                for m, mv in zip(members, v.values, strict=True):
                    values[m] = mv
            else:
                values[name] = v
        later = []
        for arg in e.args[n_in:]:
            if arg.op != "kwarg":
                continue
            name, idx = arg.attr
            if idx:
                later.append(arg)
            else:
                values[name] = self.value(arg.args[0])
                if callee.env[name].type.value is not None:
                    seed[name] = whole_number(values[name], name)
        ranks = {n: len(callee.env[decl_key(n, d)].over) + callee.env[decl_key(n, d)].type.rank for n, d in in_decls}
        extra = None
        for n, v in ins.items():
            k = np.ndim(v) - ranks[n]
            if k > 0:
                extra = np.shape(v)[:k] if cc.convention.axes == "rows" else np.shape(v)[np.ndim(v) - k:]
        if extra is None:
            return self.run_callee(callee, ins, values, seed, later)
        rows = cc.convention.axes == "rows"
        results = {}
        for ix in np.ndindex(*extra):
            one = {}
            for n, v in ins.items():
                k = np.ndim(v) - ranks[n]
                one[n] = v if k == 0 else (np.asarray(v)[ix] if rows else np.asarray(v)[(Ellipsis, *ix)])
            results[ix] = np.asarray(self.run_callee(callee, one, values, seed, later))
        first = results[next(iter(results))]
        out = np.empty(extra + first.shape if rows else first.shape + extra, dtype=first.dtype)
        for ix, r in results.items():
            out[ix if rows else (Ellipsis, *ix)] = r
        return out

    def run_callee(self, callee: Checked, ins: dict, values: dict, seed: dict, later: list):
        values = dict(values)
        if later:  # Mask[t, t′] = [[t ≤ t′]]: one value per index, at the callee's sizes
            pending = {**values, **{a.attr[0]: PENDING for a in later}}
            probe = type(self).enter(callee, self.lib, ins, pending, seed, self.rng)
            for arg in later:
                name, idx = arg.attr
                shape = probe.shape_of(callee.env[name].type.shape, arg)
                arr = np.zeros(shape, dtype=bool if callee.env[name].type.kind == "boolean" else float)
                for point in np.ndindex(*shape):
                    with self.bound({v: (self.base + i, n) for v, i, n in zip(idx, point, shape, strict=True)}):
                        arr[point] = self.value(arg.args[0])
                values[name] = arr
        frame = type(self).enter(callee, self.lib, ins, values, seed, self.rng)
        out = frame.run()
        return out[callee.card.outputs[0]]
