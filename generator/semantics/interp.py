"""The reference interpreter: a checked card run step by step, as the paper reads it.

- A value is a float64 (or integer, or boolean) NumPy array in the card's own layout: a
  columns card's ``X ∈ ℝ^{d×ℓ}`` is a ``(d, ℓ)`` array, a rows card's ``X ∈ ℝ^{T×D}`` a
  ``(T, D)`` one.  Indices are the card's: 1-based or 0-based, slices inclusive or half-open.
- A family (``k_t``, ``Y_h``, ``W^h_q``, ``θ_ℓ``) is a dict from index tuples to values; read
  without its index it is its members stacked on a new first axis.
- ``for`` and ``while`` are Python loops; ``∀`` runs its step once per index value, ``Σ`` adds
  its body once per index value.
- A call of another card runs that card in a frame of its own, with its own parameters and the
  sizes its arguments have; a card declared on a vector and called with a matrix runs once per
  row (rows convention) or column (columns convention).

Nothing here is fast, and nothing is shared with ``compile/``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from ..lang.check import Checked, Library
from ..lang.errors import CardError
from ..lang.ir import Expr, Group, Step
from ..lang.names import join_name, split_name
from ..lang.render import expr_text
from ..lang.shapes import Poly
from ..lang.types import INTEGRAL
from .builtins import ELEMENTWISE
from .dims import DimError, solve

MAX_WHILE = 100_000  # a while loop that has not ended by then is reported, not waited for


class InterpretError(CardError):
    """A card the interpreter cannot run with these values (a shape that does not fit, an index
    out of range, a construct it has no meaning for), at the card's line and column."""


@dataclass(frozen=True)
class GroupVal:
    """All the parameters of one card (``θ_attn = CausalSelfAttention``): values by the
    callee's names (families as dicts), and the callee sizes the declaration binds."""

    card: str
    values: dict
    dims: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MembersVal:
    """A group of named parameters, ``{W_q, b_q, …}``, evaluated: their values in order."""

    values: tuple


@dataclass(frozen=True)
class MembersDecl:
    """A members group as declared; ``var`` is its repetition index, if any."""

    members: tuple[str, ...]
    var: str | None


@dataclass(frozen=True)
class Func:
    """``P(θ) ← …``: a function of its parameters, evaluated at each call."""

    params: tuple[str, ...]
    body: Expr


class ReturnSignal(Exception):  # noqa: N818 - control flow, not an error
    """A return step ends the card."""


PENDING = object()  # a hyperparameter a call gives per index (Mask[t, t′] = …), filled in later


CMP = {"<": np.less, "≤": np.less_equal, ">": np.greater, "≥": np.greater_equal,
       "=": np.equal, "≠": np.not_equal}


def interpret_checked(checked: Checked, lib: Library, inputs: dict, params: dict, hypers: dict,
                      rng: np.random.Generator | None = None) -> dict:
    """Run ``checked`` on values in card terms; returns its outputs by card name.

    ``inputs``: each input by its declared name (a family ``x_n`` stacked on a first axis, or a
    dict by index), with any leading batch axes, shared by every batched input; each example
    runs on its own.  ``params``: each parameter by its declared name; a repeated one (``W^h_q
    for h ∈ [H]``) stacked on a first axis or a dict by index; a card group (``θ_ℓ = GPT2Block
    for ℓ ∈ [N]``) a dict of the callee's parameters, stacked the same way.  ``hypers``:
    hyperparameters by name (sizes, ``ε``, a ``Mask`` array); a missing one takes its default
    or is read from the shapes of the arrays.
    """
    card = checked.card
    batch, per_example = _split_batch(checked, inputs)
    given = _top_values(checked, lib, params, hypers)
    if batch is None:
        return Frame.enter(checked, lib, per_example(()), given, {}, rng).run()
    results: dict[tuple, dict] = {}
    for ix in np.ndindex(*batch):
        results[ix] = Frame.enter(checked, lib, per_example(ix), given, {}, rng).run()
    out = {}
    for name in card.outputs:
        first = np.asarray(results[next(iter(results))][name])
        arr = np.empty(batch + first.shape, dtype=first.dtype)
        for ix, res in results.items():
            arr[ix] = res[name]
        out[name] = arr
    return out


def _split_batch(checked: Checked, inputs: dict):
    """The batch shape the inputs share (None without one) and a function giving one example."""
    card = checked.card
    values, ranks = {}, {}
    for d in card.decls:
        if d.role != "input" or isinstance(d.set, Group):
            continue
        for n in d.names:
            key = decl_key(n, d)
            if n not in inputs and key not in inputs:
                if d.default is not None:
                    continue
                raise InterpretError(f"input {n} is missing", d.pos).located(card.path, card.source)
            v = inputs[n] if n in inputs else inputs[key]
            b = checked.env[key]
            if isinstance(v, dict):
                v = _stack_family(v)
            values[n] = np.asarray(v)
            ranks[n] = len(b.over) + b.type.rank
    batch = None
    for n, v in values.items():
        extra = v.ndim - ranks[n]
        if extra < 0:
            raise InterpretError(f"input {n} has {v.ndim} axes but the card declares {ranks[n]}",
                                 card.decl_of(n).pos).located(card.path, card.source)
        if extra:
            if batch is not None and batch != v.shape[:extra]:
                raise InterpretError(f"input {n} has batch axes {v.shape[:extra]}, others {batch}",
                                     card.decl_of(n).pos).located(card.path, card.source)
            batch = v.shape[:extra]

    def example(ix: tuple) -> dict:
        out = {}
        for n, v in values.items():
            extra = v.ndim - ranks[n]
            out[n] = v[ix] if extra else v
        return out
    return batch, example


def _stack_family(fam: dict) -> np.ndarray:
    return np.stack([np.asarray(fam[k]) for k in sorted(fam)])


def decl_key(name: str, d) -> str:
    """A declared name's key in the checker's env: ``W^h_q for h`` is ``W^□_q``."""
    if d.over is None:
        return name
    base, scripts = split_name(name)
    return join_name(base, [(k, "□" if v == d.over[0] else v) for k, v in scripts])


def _top_values(checked: Checked, lib: Library, params: dict, hypers: dict) -> dict:
    """The top card's parameters and hyperparameters by env key, families as dicts."""
    card = checked.card
    out = {}
    for d in card.decls:
        for n in d.names:
            key = decl_key(n, d)
            if d.role == "hyper" and (n in hypers or key in hypers):
                out[key] = hypers[n] if n in hypers else hypers[key]
            elif d.role == "param" and not (isinstance(d.set, Group) and d.set.card is None):
                if n not in params and key not in params:
                    raise InterpretError(f"parameter {n} is missing", d.pos).located(card.path, card.source)
                out[key] = _param_value(checked, lib, d, key, params[n] if n in params else params[key])
    return out


def _param_value(checked: Checked, lib: Library, d, key: str, given, member: bool = False):
    """One declared parameter in the interpreter's form: arrays as float64, a family as a dict
    by index tuple, a card group as a GroupVal (its own families and groups converted too)."""
    base = checked.card.convention.base
    if checked.env[key].over and not member:
        if isinstance(given, (list, tuple)):
            members = {(base + i,): g for i, g in enumerate(given)}
        elif isinstance(given, dict) and all(isinstance(k, (int, tuple)) for k in given):
            members = {k if isinstance(k, tuple) else (k,): g for k, g in given.items()}
        else:
            members = {(base + i,): _slice_tree(given, i) for i in range(_leading(given))}
        return {k: _param_value(checked, lib, d, key, g, member=True) for k, g in members.items()}
    if isinstance(d.set, Group):
        callee = lib.checked(d.set.card)
        values = {}
        for cd in callee.card.decls:
            if cd.role != "param" or isinstance(cd.set, Group) and cd.set.card is None:
                continue
            for cn in cd.names:
                ck = decl_key(cn, cd)
                if cn not in given and ck not in given:
                    raise InterpretError(f"group {d.names[0]} has no parameter {cn}", d.pos)
                values[ck] = _param_value(callee, lib, cd, ck, given[cn] if cn in given else given[ck])
        return GroupVal(d.set.card, values)
    return np.asarray(given, dtype=float)


def _leading(tree) -> int:
    if isinstance(tree, dict):
        return _leading(next(iter(tree.values())))
    return np.shape(tree)[0]


def _slice_tree(tree, i: int):
    if isinstance(tree, dict):
        return {k: _slice_tree(v, i) for k, v in tree.items()}
    return np.asarray(tree)[i]


class Frame:
    """One run of one card: its names, sizes and bound index variables."""

    def __init__(self, checked: Checked, lib: Library, rng):
        self.ch, self.card, self.lib, self.rng = checked, checked.card, lib, rng
        self.base = self.card.convention.base
        self.rows = self.card.convention.axes == "rows"
        self.env: dict[str, object] = {}
        self.idx: dict[str, int] = {}
        self.dims: dict[str, int] = {}
        self.ranges: dict[str, int] = {}  # a bound index variable's extent

    # ---------------------------------------------------------------- entry
    @classmethod
    def enter(cls, checked: Checked, lib: Library, inputs: dict, values: dict, seed: dict, rng,
              caller=None) -> Frame:
        """A frame for ``checked`` given its inputs (by declared name), its parameters and
        hyperparameters (by env key) and sizes ``seed`` already known; every other size is
        read from the shapes, then checked against every declaration."""
        f = cls(checked, lib, rng)
        card = checked.card
        try:
            f.bind_all(inputs, values, seed, caller)
        except DimError as e:
            raise InterpretError(str(e), card.pos).located(card.path, card.source) from None
        return f

    def bind_all(self, inputs: dict, values: dict, seed: dict, caller):
        card, env = self.card, self.env
        for d in card.decls:
            for n in d.names:
                key = decl_key(n, d)
                if d.role == "input" and isinstance(d.set, Group):
                    if key in values:
                        env[key] = values[key]
                elif d.role == "input":
                    if n in inputs:
                        env[key] = _as_family(inputs[n], self.ch.env[key], self.base)
                elif d.role == "param" and isinstance(d.set, Group) and d.set.card is None:
                    env[key] = MembersDecl(d.set.members, d.over[0] if d.over else None)
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
                            self.err(f"input {n} is missing", d)
                        env[decl_key(n, d)] = env[d.default.attr]
        known = {k: int(v) for k, v in seed.items()}
        for d in card.decls:
            if d.role == "hyper" and not isinstance(d.set, Group) and not d.set.shape:
                for n in d.names:
                    if n in env and self.ch.env[n].type.value is not None:
                        known[n] = _whole(env[n], n)
        constraints: list = []
        for key, v in env.items():
            b = self.ch.env.get(key)
            if b is None or b.role not in ("input", "param", "hyper"):
                continue
            constraints += _constraints(key, b, v, self.lib, {})
        self.dims = solve(constraints, known)
        for key, v in list(env.items()):  # a card group learns the sizes its declaration binds
            b = self.ch.env.get(key)
            if b is not None and b.type.kind == "group" and isinstance(b.type.group, tuple) \
                    and len(b.type.group) == 2 and isinstance(b.type.group[1], tuple) and b.type.group[1]:
                dims = {k: _whole(p.evaluate(self.dims), k) for k, p in b.type.group[1]
                        if p.evaluate(self.dims) is not None}
                env[key] = _with_dims(v, dims)
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
                    self.err(f"hyperparameter {n} has no value: give it, or a default in the card", d)
        for d in card.decls:
            if d.role == "param" and not isinstance(d.set, Group) or \
                    d.role == "param" and d.set.card is not None:
                for n in d.names:
                    if decl_key(n, d) not in env:
                        self.err(f"parameter {n} is missing", d)
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
            out.append(_whole(v, str(p)))
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

    def err(self, msg: str, node=None):
        raise InterpretError(msg, getattr(node, "pos", None)).located(self.card.path, self.card.source)

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
                return self.members(v, None)
            if isinstance(v, dict):
                return _stack_family(v)
            return v
        if text == "π":
            return math.pi
        self.err(f"{text} has no value here", node)

    def member(self, fam, at: tuple, text: str, node):
        if isinstance(fam, MembersDecl):
            return self.members(fam, at[0])
        if not isinstance(fam, dict):
            self.err(f"{text} is not a family", node)
        if at not in fam:
            shown = ", ".join(map(str, at))
            self.err(f"{text}: the family has no member {shown} (it has {len(fam)})", node)
        return fam[at]

    def members(self, g: MembersDecl, at: int | None) -> MembersVal:
        saved = dict(self.idx)
        if g.var is not None and at is not None:
            self.idx[g.var] = at
        try:
            return MembersVal(tuple(self.resolve(m, None) for m in g.members))
        finally:
            self.idx = saved

    # ---------------------------------------------------------------- steps
    def steps(self, steps):
        for st in steps:
            getattr(self, "s_" + st.kind)(st)

    def s_remark(self, st: Step):
        pass

    def s_assign(self, st: Step):
        t = st.target
        if t.op == "call":
            self.env[t.attr[0]] = Func(tuple(a.attr for a in t.args), st.value)
            return
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
            lo, hi = (self.whole(self.value(x), x) for x in st.domain)
        else:
            lo = self.base
            hi = self.base + self.whole(self.value(st.domain[0]), st.domain[0]) - 1
        for i in range(lo, hi + 1):
            with self.bound({st.var: (i, hi - lo + 1)}):
                self.steps(st.body)

    def s_forall(self, st: Step):
        extents = [self.extent(v, _step_exprs(st.body[0]), st) for v in st.vars]
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
                    key = join_name(base, [(k, "□" if v == var or v in self.idx else v) for k, v in scripts])
                    fam = self.env.get(key)
                    pos = [v for _, v in scripts if v == var or v in self.idx].index(var)
                    if isinstance(fam, dict) and fam:
                        found.append(len({k[pos] for k in fam}))
                    elif isinstance(fam, MembersDecl) and self.ch.env[key].over:
                        found.append(self.shape_of(self.ch.env[key].over, x)[0])
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

    # ---------------------------------------------------------- expressions
    def value(self, e: Expr):
        return getattr(self, "x_" + e.op)(e)

    def x_name(self, e):
        return self.resolve(e.attr, e)

    def x_num(self, e):
        return int(e.attr) if e.attr.isdigit() else float(e.attr)

    def x_inf(self, e):
        return math.inf

    def x_add(self, e):
        a, b = self.operands(e)
        return a + b

    def x_sub(self, e):
        a, b = self.operands(e)
        return a - b

    def x_mul(self, e):
        a, b = self.operands(e)
        return a * b

    def x_div(self, e):
        a, b = self.operands(e)
        if _is_int(a) and _is_int(b) and b != 0:
            q = Fraction(int(a), int(b))
            return int(q) if q.denominator == 1 else float(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(a, b) if np.ndim(a) or np.ndim(b) else _scalar_div(float(a), float(b))

    def operands(self, e):
        return tuple(_number(self.value(x)) for x in e.args)

    def x_matmul(self, e):
        return self.product(*self.operands(e))

    def product(self, a, b):
        if np.ndim(a) == 0 or np.ndim(b) == 0:
            return a * b
        return np.matmul(a, b)

    def x_juxt(self, e):
        left, right = e.args
        if left.op == "name" and left.attr in ELEMENTWISE | {"softmax": 0, "max": 0, "length": 0} \
                and left.attr not in self.env:
            return self.builtin(left.attr, [right], e)
        if right.op == "transpose" and right.args[0] == Expr("num", (), "1"):
            return np.asarray(_number(self.value(left)))[..., None]  # b 1^⊤: b in every column
        if left == Expr("num", (), "1") and right.op == "transpose":
            return np.asarray(_number(self.value(right)))[None, ...]
        return self.product(*self.operands(e))

    def x_neg(self, e):
        return -_number(self.value(e.args[0]))

    def x_not(self, e):
        return np.logical_not(self.value(e.args[0]))

    def x_sqrt(self, e):
        return ELEMENTWISE["sqrt"](_number(self.value(e.args[0])))

    def x_square(self, e):
        a = _number(self.value(e.args[0]))
        return a * a

    def x_pow(self, e):
        a, p = self.operands(e)
        return np.power(np.asarray(a, dtype=float), float(p)) if np.ndim(a) else float(a) ** float(p)

    def x_transpose(self, e):
        a = self.value(e.args[0])
        return np.transpose(a) if np.ndim(a) == 2 else a

    def x_cmp(self, e):
        a, b = (self.value(x) for x in e.args)
        out = CMP[e.attr](a, b)
        return bool(out) if np.ndim(out) == 0 else out

    def x_iverson(self, e):
        return self.value(e.args[0])

    def x_choose(self, e):
        a, p, b = (self.value(x) for x in e.args)
        if self.rng is None:
            self.err("`with probability` needs a random generator: interpret(…, rng=…)", e)
        pick = self.rng.random(np.shape(np.broadcast(a, b))) < p
        return np.where(pick, a, b)

    def x_set_builder(self, e):
        rng, cond = e.args
        n = self.whole(self.value(rng), rng)
        out = np.zeros(n, dtype=bool)
        for i in range(n):
            with self.bound({e.attr: (self.base + i, n)}):
                out[i] = self.truth(self.value(cond), cond)
        return out

    def x_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        if form == "span":
            lo, hi = (self.whole(self.value(b), b) for b in bounds)
            points = range(lo, hi + 1)
        elif form == "in":
            s = np.asarray(self.value(bounds[0]))
            points = [self.base + i for i in np.flatnonzero(s)]
        else:
            points = range(self.base, self.base + self.extent(var, body, e))
        total = 0
        n = len(points)
        for i in points:
            with self.bound({var: (i, n)}):
                total = total + _number(self.value(body))
        return total

    def x_index(self, e):
        base, *idx = e.args
        arr = self.value(base)
        if np.ndim(arr) < len(idx):
            self.err(f"{expr_text(base)} has {np.ndim(arr)} axes here, not {len(idx)}", e)
        axis = 0
        for ix in idx:
            n = np.shape(arr)[axis]
            if ix.op == "slice":
                arr = np.asarray(arr)[(slice(None),) * axis + (self.slice_of(ix, n),)]
                axis += 1
                continue
            k = np.asarray(self.value(ix))
            if k.dtype == bool:
                self.err("the interpreter indexes with positions, not true/false values", ix)
            arr = np.take(arr, self.position(k, n, ix), axis=axis)
            axis += k.ndim
        return arr

    def slice_of(self, s: Expr, n: int) -> slice:
        lo_e, hi_e = s.args
        lo = 0 if lo_e.op == "none" else self.whole(self.value(lo_e), lo_e) - self.base
        hi = n if hi_e.op == "none" else self.whole(self.value(hi_e), hi_e) + (1 if self.base == 1 else 0) - \
            self.base
        if not 0 <= lo <= hi <= n:
            self.err(f"the slice {expr_text(s)} runs {lo + self.base}…{hi - 1 + self.base}, outside "
                     f"{self.base}…{n - 1 + self.base}", s)
        return slice(lo, hi)

    def position(self, k, n: int, node):
        """A card index (1- or 0-based) as a NumPy position, checked to be inside the axis."""
        k = np.asarray(k)
        if k.dtype.kind == "f":
            if not np.all(k == np.round(k)):
                self.err(f"{expr_text(node)} is not a whole number", node)
            k = k.astype(np.int64)
        pos = k - self.base
        if np.any(pos < 0) or np.any(pos >= n):
            self.err(f"the index {expr_text(node)} = {k.tolist()} is outside {self.base}…{n - 1 + self.base}", node)
        return int(pos) if pos.ndim == 0 else pos

    def x_list(self, e):
        items = [x for x in e.args if x.op != "ellipsis"]
        if len(items) != len(e.args):
            return self.family_list(items, e.attr, e)
        return _join([np.asarray(_number(self.value(x))) for x in items], e.attr)

    def family_list(self, items, sep: str, e):
        base, scripts = split_name(items[0].attr)
        key = join_name(base, scripts[:-1] + [(scripts[-1][0], "□")])
        fam = self.env.get(key)
        if not isinstance(fam, dict):
            self.err(f"no family {key.replace('□', '•')} here", e)
        members = [np.asarray(fam[k]) for k in sorted(fam)]
        if members[0].ndim == 0:
            return np.array(members)
        if members[0].ndim == 1:
            return np.stack(members, axis=-1 if sep == "," else 0)
        return np.concatenate(members, axis=-1 if sep == "," else 0)

    def x_grad(self, e):
        self.err("the interpreter does not differentiate: ∇ is the compiler's (cardgen gradcheck)", e)

    # ---------------------------------------------------------------- calls
    def x_call(self, e):
        fname, n_in = e.attr
        f = self.env.get(fname)
        if isinstance(f, Func):
            args = [self.value(a) for a in e.args]
            saved = {p: self.env.get(p) for p in f.params}
            self.env.update(zip(f.params, args, strict=True))
            try:
                return self.value(f.body)
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
            return np.maximum(*map(_number, vals)) if len(vals) == 2 else float(np.max(vals[0]))
        x = _number(vals[0])
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
                    seed[name] = _whole(values[name], name)
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
            probe = Frame.enter(callee, self.lib, ins, {**values, **{a.attr[0]: PENDING for a in later}}, seed,
                                self.rng, self)
            for arg in later:
                name, idx = arg.attr
                shape = probe.shape_of(callee.env[name].type.shape, arg)
                arr = np.zeros(shape, dtype=bool if callee.env[name].type.kind == "boolean" else float)
                for point in np.ndindex(*shape):
                    with self.bound({v: (self.base + i, n) for v, i, n in zip(idx, point, shape, strict=True)}):
                        arr[point] = self.value(arg.args[0])
                values[name] = arr
        frame = Frame.enter(callee, self.lib, ins, values, seed, self.rng, self)
        out = frame.run()
        return out[callee.card.outputs[0]]

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


def _as_family(v, b, base: int):
    """An input as the interpreter holds it: a declared family as a dict by index."""
    if not b.over or isinstance(v, dict):
        return {k if isinstance(k, tuple) else (k,): x for k, x in v.items()} if isinstance(v, dict) else \
            _input_array(v, b)
    arr = np.asarray(v)
    return {(base + i,): _input_array(arr[i], b) for i in range(arr.shape[0])}


def _input_array(v, b):
    if b.type.kind in INTEGRAL:
        arr = np.asarray(v)
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        return int(arr) if arr.ndim == 0 else arr
    if b.type.kind == "boolean":
        return np.asarray(v, dtype=bool)
    return np.asarray(v, dtype=float)


def _constraints(key: str, b, v, lib: Library, sub: dict) -> list:
    """(what, declared length, actual length) for every axis of a value and its family extents;
    a card group's members are declared in the callee's sizes, renamed by ``sub``."""
    out = []
    if isinstance(v, dict):
        for pos, p in enumerate(b.over):
            out.append((f"{key} (members)", p.subst(sub), len({k[pos] for k in v})))
        members = list(v.values())
        inner = replace(b, over=())
        for m in members[:1]:
            out += _constraints(key, inner, m, lib, sub)
        return out
    if isinstance(v, GroupVal):
        g = b.type.group
        if not (isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], tuple)):
            return out
        callee = lib.checked(g[0])
        inner_sub = {s: Poly.sym("?" + s) for s in callee.symbols}
        inner_sub.update({k: p.subst(sub) for k, p in g[1]})
        for ck, cv in v.values.items():
            cb = callee.env.get(ck)
            if cb is not None and cb.role == "param":
                out += _constraints(f"{key}.{ck}", cb, cv, lib, inner_sub)
        return out
    if v is PENDING or isinstance(v, (MembersDecl, MembersVal, Func)) or b.type.kind in ("group", "func"):
        return out
    shape = np.shape(v)
    if b.role == "hyper" and not shape:  # Mask = 1: a scalar that fills the array
        return out
    if len(shape) != b.type.rank:
        raise DimError(f"{key} has {len(shape)} axes but the card declares {b.type.rank}")
    for i, (p, n) in enumerate(zip(b.type.shape, shape, strict=True)):
        out.append((f"axis {i + 1} of {key}", p.subst(sub), n))
    return out


def _with_dims(v, dims: dict):
    if isinstance(v, GroupVal):
        return GroupVal(v.card, v.values, dims)
    if isinstance(v, dict):
        return {k: _with_dims(x, dims) for k, x in v.items()}
    return v


def _whole(v, what: str) -> int:
    if isinstance(v, Fraction) and v.denominator != 1 or isinstance(v, float) and not v.is_integer():
        raise DimError(f"{what} = {v} is not a whole number")
    return int(v)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _number(v):
    """Booleans count as 0 and 1 in arithmetic (the Iverson bracket's value)."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, np.ndarray) and v.dtype == bool:
        return v.astype(np.int64)
    if isinstance(v, (GroupVal, MembersVal, Func, dict)):
        raise InterpretError("arithmetic on parameters as a whole (θ − η · ∇…) is for the compiler")
    return v


def _scalar_div(a: float, b: float) -> float:
    if b == 0:
        return math.copysign(math.inf, a) * math.copysign(1.0, b) if a else math.nan
    return a / b


def _join(items: list[np.ndarray], sep: str) -> np.ndarray:
    """A list literal: numbers make a vector, ``[x, y]`` appends to a sequence, vectors become
    columns (``,``) or rows (``;``), matrices join along the last (``,``) or first (``;``) axis."""
    ranks = {a.ndim for a in items}
    if ranks == {0}:
        return np.array(items)
    if ranks == {1}:
        return np.stack(items, axis=-1 if sep == "," else 0)
    if ranks == {0, 1}:
        return np.concatenate([np.atleast_1d(a) for a in items])
    return np.concatenate(items, axis=-1 if sep == "," else 0)


def _step_exprs(st: Step) -> Expr:
    parts = [x for x in (st.target, st.value, st.cond) if x is not None]
    for b in st.body:
        parts.append(_step_exprs(b))
    return Expr("list", tuple(parts), ",")
