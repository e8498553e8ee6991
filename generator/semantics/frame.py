"""A frame: one run of one card.  Its entry binds the card's inputs, parameters and
hyperparameters and reads its sizes from their shapes; its step rules (``s_<kind>``) run the
steps in order; names resolve as the checker resolves them (a script naming a bound index variable
selects a family member).  Expressions and calls are the mixins of exprs.py and calls.py."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..lang.check import Checked, Library
from ..lang.ir import Expr, Group, Step
from ..lang.names import join_name, split_name
from ..lang.render import expr_text
from .calls import CallRules
from .dims import DimError, solve
from .exprs import ExprRules
from .values import (
    PENDING,
    Func,
    GroupVal,
    InterpretError,
    MembersDecl,
    MembersVal,
    ReturnSignal,
    as_family,
    constraints,
    decl_key,
    stack_family,
    whole_number,
    with_dims,
)

MAX_WHILE = 100_000  # a while loop that has not ended by then is reported, not waited for


class Frame(ExprRules, CallRules):
    """One run of one card: its names, sizes and bound index variables."""

    def __init__(self, checked: Checked, lib: Library, rng):
        self.ch, self.card, self.lib, self.rng = checked, checked.card, lib, rng
        self.base = self.card.convention.base
        self.rows = self.card.convention.axes == "rows"
        self.env: dict[str, object] = {}
        self.idx: dict[str, int] = {}
        self.dims: dict[str, int] = {}
        self.ranges: dict[str, int] = {}  # a bound index variable's extent
        self.calls: dict = {}  # function calls of the current step (calls.py)
        self.stop_at_gradient = False  # end at the first ∇f(θ), with f(θ) (interpret(…, at_gradient=True))

    # ---------------------------------------------------------------- entry
    @classmethod
    def enter(cls, checked: Checked, lib: Library, inputs: dict, values: dict, seed: dict, rng) -> Frame:
        """A frame for ``checked`` given its inputs (by declared name), its parameters and
        hyperparameters (by env key) and sizes ``seed`` already known; every other size is
        read from the shapes, then checked against every declaration."""
        f = cls(checked, lib, rng)
        card = checked.card
        try:
            f.bind_all(inputs, values, seed)
        except DimError as e:
            hint = "each size is read from the arrays given (and hypers): their shapes must fit the declarations"
            raise InterpretError(str(e), card.pos, hint).located(card.path, card.source) from None
        return f

    def bind_all(self, inputs: dict, values: dict, seed: dict):
        card, env = self.card, self.env
        for d in card.decls:
            for n in d.names:
                key = decl_key(n, d)
                if d.role == "input" and isinstance(d.set, Group):
                    if key in values:
                        env[key] = values[key]
                elif d.role == "input":
                    if n in inputs:
                        env[key] = as_family(inputs[n], self.ch.env[key], self.base)
                elif d.role == "param" and isinstance(d.set, Group) and d.set.card is None:
                    env[key] = MembersDecl(d.set.members, tuple(v for v, _ in d.over))
                elif key in values:
                    env[key] = values[key]
        for n in card.bar:  # θ standing for all of the card's parameters
            if self.ch.env.get(n) is not None and self.ch.env[n].role == "group" and n not in env:
                env[n] = GroupVal(card.name, {k: v for k, v in env.items()
                                              if self.ch.env.get(k) is not None
                                              and self.ch.env[k].role == "param"})
        for d in card.decls:  # Z = X: an input left out is the one its default names
            if d.role == "input" and not isinstance(d.set, Group):
                for n in d.names:
                    if decl_key(n, d) not in env:
                        if d.default is None or d.default.op != "name" or d.default.attr not in env:
                            self.err(f"input {n} is missing", d, hint=f"give it: inputs={{'{n}': …}}")
                        env[decl_key(n, d)] = env[d.default.attr]
        known = {k: int(v) for k, v in seed.items()}
        for d in card.decls:
            if d.role == "hyper" and not isinstance(d.set, Group) and not d.set.shape:
                for n in d.names:
                    if n in env and self.ch.env[n].type.value is not None:
                        known[n] = whole_number(env[n], n)
        found: list = []
        for key, v in env.items():
            b = self.ch.env.get(key)
            if b is None or b.role not in ("input", "param", "hyper"):
                continue
            found += constraints(key, b, v, self.lib, {})
        self.dims = solve(found, known)
        for key, v in list(env.items()):  # a card group learns the sizes its declaration binds
            b = self.ch.env.get(key)
            if b is not None and b.type.kind == "group" and isinstance(b.type.group, tuple) \
                    and len(b.type.group) == 2 and isinstance(b.type.group[1], tuple) and b.type.group[1]:
                dims = {k: whole_number(p.evaluate(self.dims), k) for k, p in b.type.group[1]
                        if p.evaluate(self.dims) is not None}
                env[key] = with_dims(v, dims)
        for d in card.decls:
            if d.role != "hyper":
                continue
            for n in d.names:
                b = self.ch.env[n]
                if env.get(n) is PENDING:
                    continue
                if n in env:
                    if b.type.shape and np.ndim(env[n]) == 0:  # Mask = 1: a scalar fills the array
                        env[n] = np.full(self.shape_of(b.type.shape, d), env[n])
                    continue
                if d.default is not None:
                    env[n] = self.value(d.default)
                    if b.type.shape and np.ndim(env[n]) == 0:
                        env[n] = np.full(self.shape_of(b.type.shape, d), env[n])
                elif n in self.dims:
                    env[n] = self.dims[n]
                else:
                    self.err(f"hyperparameter {n} has no value", d,
                             hint=f"give it: hypers={{'{n}': …}} (or the module's Config), or a default in the card")
        for d in card.decls:
            if d.role == "param" and not isinstance(d.set, Group) or \
                    d.role == "param" and d.set.card is not None:
                for n in d.names:
                    if decl_key(n, d) not in env:
                        self.err(f"parameter {n} is missing", d, hint=f"give it: params={{'{n}': …}}")
        for n, v in self.dims.items():
            if not n.startswith("?"):
                env.setdefault(n, v)

    def shape_of(self, shape, node) -> tuple[int, ...]:
        vals = {**self.dims, **{k: v for k, v in self.env.items() if isinstance(v, (int, np.integer))
                                and not isinstance(v, bool)}}
        out = []
        for p in shape:
            v = p.evaluate(vals)
            if v is None:
                self.err(f"cannot tell the length {p} here", node)
            out.append(whole_number(v, str(p)))
        return tuple(out)

    def run(self) -> dict:
        try:
            self.steps(self.card.steps)
        except ReturnSignal:
            pass
        out = {}
        for n in self.card.outputs:
            if n not in self.env:
                self.err(f"output {n} was never computed", self.card)
            out[n] = self.env[n]
        return out

    def err(self, msg: str, node=None, hint: str | None = None):
        raise InterpretError(msg, getattr(node, "pos", None), hint).located(self.card.path, self.card.source)

    # ---------------------------------------------------------------- names
    def resolve(self, text: str, node):
        base, scripts = split_name(text)
        if scripts and any(v in self.idx for _, v in scripts):
            key = join_name(base, [(k, "□" if v in self.idx else v) for k, v in scripts])
            if key in self.env:
                at = tuple(self.idx[v] for _, v in scripts if v in self.idx)
                return self.member(self.env[key], at, text, node)
        if text in self.idx:
            return self.idx[text]
        if text in self.env:
            v = self.env[text]
            if isinstance(v, MembersDecl):
                return self.members(v, ())
            if isinstance(v, dict):
                return stack_family(v)
            return v
        if text == "π":
            return math.pi
        self.err(f"{text} has no value here", node)

    def member(self, fam, at: tuple, text: str, node):
        if isinstance(fam, MembersDecl):
            return self.members(fam, at)
        if not isinstance(fam, dict):
            self.err(f"{text} is not a family", node)
        if at not in fam:
            shown = ", ".join(map(str, at))
            self.err(f"{text}: the family has no member {shown} (it has {len(fam)})", node)
        return fam[at]

    def members(self, g: MembersDecl, at: tuple[int, ...]) -> MembersVal:
        """The members of ``𝓦^h_ℓ = {W^h_q_ℓ, …} for h, ℓ`` at (h, ℓ) = ``at``: its indices bound
        to those values while its members' names are read."""
        saved = dict(self.idx)
        if g.vars and len(at) == len(g.vars):
            self.idx.update(zip(g.vars, at, strict=True))
        try:
            return MembersVal(tuple(self.resolve(m, None) for m in g.members))
        finally:
            self.idx = saved

    # ---------------------------------------------------------------- steps
    def steps(self, steps):
        for st in steps:
            self.calls.clear()
            getattr(self, "s_" + st.kind)(st)

    def s_remark(self, st: Step):
        pass

    def s_assign(self, st: Step):
        t = st.target
        if t.op == "call":
            self.env[t.attr[0]] = Func(tuple(a.attr for a in t.args), st.value, _scripts(st.value))
            return
        grad = _grad_in(st.value) if self.stop_at_gradient else None
        if grad is not None:  # θ ← θ − η · ∇loss(θ): the loss at θ is what a training card computes
            raise GradientReached(grad.args[0].attr[0], self.value(grad.args[0]))
        v = self.value(st.value)
        if t.op == "name":
            self.assign_name(t.attr, v)
        else:
            self.assign_index(t, v, st)

    def assign_name(self, text: str, v):
        base, scripts = split_name(text)
        if scripts and any(s in self.idx for _, s in scripts):
            key = join_name(base, [(k, "□" if s in self.idx else s) for k, s in scripts])
            at = tuple(self.idx[s] for _, s in scripts if s in self.idx)
            fam = self.env.get(key)
            fam = dict(fam) if isinstance(fam, dict) else {}
            fam[at] = v
            self.env[key] = fam
        else:
            self.env[text] = v

    def assign_index(self, target: Expr, v, st: Step):
        base_e, *idx = target.args
        name = base_e.attr
        try:
            cur = self.resolve(name, base_e)
            arr = np.array(cur, dtype=np.result_type(np.asarray(cur), np.asarray(v)))
        except InterpretError:  # not computed yet: a declared output, or X̃[:, t] ← … building X̃
            b = self.ch.env.get(name)
            shape = self.shape_of(b.type.shape, target) if b is not None and b.role == "output" \
                else self.new_shape(idx, v, target)
            arr = np.full(shape, np.nan)
        arr[self.target_index(arr, idx)] = v
        self.assign_name(name, arr)

    def new_shape(self, idx, v, node) -> tuple[int, ...]:
        """``X̃[:, t] ← …`` before X̃ exists: ``:`` takes the value's next axis, an index
        variable its range."""
        vals, shape = list(np.shape(v)), []
        for ix in idx:
            if ix.op == "slice" and ix.args[0].op == "none" and ix.args[1].op == "none":
                shape.append(vals.pop(0))
            elif ix.op == "name" and ix.attr in self.idx:
                shape.append(self.ranges[ix.attr])
            else:
                self.err("a new array is built with : and loop indices", ix)
        return tuple(shape)

    def target_index(self, arr, idx) -> tuple:
        out = []
        for i, ix in enumerate(idx):
            n = arr.shape[i]
            if ix.op == "slice":
                out.append(self.slice_of(ix, n))
            else:
                k = self.value(ix)
                if np.ndim(k):
                    self.err("an assignment target takes one position per index", ix)
                out.append(self.position(k, n, ix))
        return tuple(out)

    def s_if(self, st: Step):
        if self.truth(self.value(st.cond), st.cond):
            self.steps(st.body)

    def s_return(self, st: Step):
        v = self.value(st.value)
        if st.target is not None:
            name = st.target.attr
        elif st.value.op == "name" and st.value.attr in self.card.outputs:
            name = st.value.attr
        else:
            name = self.card.outputs[0]
        self.env[name] = v
        raise ReturnSignal

    def s_for(self, st: Step):
        if len(st.domain) == 2:
            lo, hi = [self.whole(self.value(x), x) for x in st.domain]
        else:
            lo = self.base
            hi = self.base + self.whole(self.value(st.domain[0]), st.domain[0]) - 1
        for i in range(lo, hi + 1):
            with self.bound({st.var: (i, hi - lo + 1)}):
                self.steps(st.body)

    def s_forall(self, st: Step):
        extents = [self.extent(v, step_exprs(st.body[0]), st) for v in st.vars]
        for point in itertools.product(*(range(self.base, self.base + n) for n in extents)):
            with self.bound({v: (i, n) for v, i, n in zip(st.vars, point, extents, strict=True)}):
                self.steps(st.body)

    def s_while(self, st: Step):
        for _ in range(MAX_WHILE):
            if not self.truth(self.value(st.cond), st.cond):
                return
            self.steps(st.body)
        self.err(f"this loop ran {MAX_WHILE:,} times without ending", st)

    def s_sample(self, st: Step):
        w = np.asarray(self.value(st.value), dtype=float)
        if self.rng is None:
            self.err("sampling needs a random generator: interpret(…, rng=np.random.default_rng(0))", st)
        q = w / w.sum()
        if st.dist:
            self.env[st.dist] = q
        self.assign_name(st.target.attr, int(self.rng.choice(len(q), p=q)) + self.base)

    def bound(self, binding: dict[str, tuple[int, int]]):
        return _Bound(self, binding)

    def extent(self, var: str, body: Expr, node) -> int:
        """How far a ∀ or Σ index runs, from how the body uses it: a family script (``k_u``)
        counts the family's members, an array index (``S[t, u]``) is that axis's length."""
        found: list[int] = []

        def walk(x: Expr):
            if x.op == "name":
                base, scripts = split_name(x.attr)
                if any(v == var for _, v in scripts):
                    # the other scripts: indices bound already, or (∀g, j: … Y^g_j) one bound later
                    for slot in (lambda v: v == var or v in self.idx,
                                 lambda v: v == var or v in self.idx or v not in self.env and v.isidentifier()):
                        key = join_name(base, [(k, "□" if slot(v) else v) for k, v in scripts])
                        fam = self.env.get(key)
                        pos = [v for _, v in scripts if slot(v)].index(var)
                        if isinstance(fam, dict) and fam:
                            found.append(len({k[pos] for k in fam}))
                            break
                        if isinstance(fam, MembersDecl) and self.ch.env[key].over:
                            found.append(self.shape_of(self.ch.env[key].over, x)[pos])
                            break
            if x.op == "index":
                for i, a in enumerate(x.args[1:]):
                    if a == Expr("name", (), var):
                        try:
                            with self.bound({var: (self.base, 1)}):
                                arr = self.value(x.args[0])
                        except InterpretError:
                            continue
                        if i < np.ndim(arr):
                            found.append(np.shape(arr)[i])
            for a in x.args:
                walk(a)
        walk(body)
        if not found:
            self.err(f"cannot tell how far {var} runs", node)
        return found[0]

    # ---------------------------------------------------------------- helpers
    def whole(self, v, node) -> int:
        if isinstance(v, (bool, np.bool_)) or np.ndim(v):
            self.err(f"{expr_text(node)} must be one whole number", node)
        if float(v) != int(v):
            self.err(f"{expr_text(node)} = {v} is not a whole number", node)
        return int(v)

    def truth(self, v, node) -> bool:
        if np.ndim(v):
            self.err(f"{expr_text(node)} must be one true/false value here", node)
        return bool(v)


class _Bound:
    """Index variables bound for a loop, ∀ or Σ body: (value, extent) each."""

    def __init__(self, frame: Frame, binding: dict[str, tuple[int, int]]):
        self.f, self.binding = frame, binding

    def __enter__(self):
        f = self.f
        self.saved = (dict(f.idx), dict(f.ranges))
        ranges = dict(f.ranges)
        for v, (i, n) in self.binding.items():
            f.idx[v] = i
            ranges[v] = n
        f.ranges = ranges
        return self

    def __exit__(self, *exc):
        self.f.idx, self.f.ranges = self.saved
        return False


def step_exprs(st: Step) -> Expr:
    parts = [x for x in (st.target, st.value, st.cond) if x is not None]
    for b in st.body:
        parts.append(step_exprs(b))
    return Expr("list", tuple(parts), ",")


class GradientReached(Exception):  # noqa: N818 - control flow, not an error
    """A training card reached its first ∇f(θ): ``name`` is f, ``value`` f(θ)."""

    def __init__(self, name: str, value):
        super().__init__(name)
        self.name, self.value = name, value


def _grad_in(e: Expr) -> Expr | None:
    if e.op == "grad":
        return e
    return next((g for g in map(_grad_in, e.args) if g is not None), None)


def _scripts(e: Expr) -> tuple[str, ...]:
    """Every name and script a body mentions: the index variables among them decide its value."""
    found: list[str] = []
    if e.op == "name":
        base, scripts = split_name(e.attr)
        found += [e.attr, *(v for _, v in scripts)]
    for a in e.args:
        found += [x for x in _scripts(a) if x not in found]
    return tuple(dict.fromkeys(found))
