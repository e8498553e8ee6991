"""Calls: to builtin functions (the ``BUILTINS`` table), to functions a card
defines (``P(θ) ← …``) and to other cards, inputs before ``|``, parameters
after.  A call of a card renames the callee's dimensions to fresh unknowns
(``_Instance``) that its arguments then determine, so a card is checked once
and called at many shapes.

``CallRules`` is mixed into ``check.Checker``: it reads the checker's
``env``, ``lib`` and ``base`` and calls its ``expr``, ``broadcast``,
``scope``, ``unify``, ``res``, ``rtype``, ``fresh``, ``near``, ``show`` and
``err``.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import TYPE_CHECKING

from . import ir
from .errors import CardError
from .ir import Card, Expr, Group, Step
from .render import expr_text
from .shapes import Poly, poly_brief
from .types import BROADCAST, INTEGRAL, NAT, Type, numeric_join

if TYPE_CHECKING:  # annotations only: check.py imports this module to build Checker
    from .check import Checked, Checker


ELEMENTWISE = ("exp", "log", "tanh", "GELU", "ReLU", "SiLU", "σ", "sigmoid", "sqrt", "abs", "sin", "cos", "erf",
               "round")
ASCII_SPELLING = {"σ": "sigmoid"}  # a built-in's ASCII name, where its card name is not ASCII
# A reduction takes a vector to a number and a matrix to one number per column
# (per row in the row convention), as softmax normalises; max and min of two
# arguments are element-wise.
BUILTINS = {**{f: "elementwise" for f in ELEMENTWISE}, "max": "extreme", "min": "extreme", "mean": "reduce",
            "softmax": "softmax", "length": "length"}
# What each rule does to its argument's shape, in words (for `cardgen primitives`).
SHAPE_RULES = {
    "elementwise": "element-wise: the argument's shape",
    "reduce": "a vector to ℝ, a matrix to one value per column (per row in the row convention)",
    "extreme": "of one argument, as mean; of two, element-wise with broadcasting",
    "softmax": "the argument's shape, normalised per column (per row in the row convention)",
    "length": "a sequence to ℕ, its length",
}


class CallRules:
    """The ``x_call`` rule and the three kinds of call it dispatches to."""

    def x_call(self, e):
        fname, n_in = e.attr
        if fname in self.env:
            self.known(self.env[fname])
        if fname in self.env and self.env[fname].role == "func":
            return self.call_func(fname, e)
        if fname in BUILTINS and fname not in self.env:
            if len(e.args) != n_in:
                self.err(f"{fname} takes no parameters after |", e)
            return self.call_builtin(fname, list(e.args), e)
        callee = self.callee(fname, e)
        if callee is None:
            pool = list(BUILTINS) + self.lib.names() + [n for n, b in self.env.items() if b.role == "func"]
            self.err(f"unknown algorithm or function {fname}", e,
                     hint=self.near(fname, pool) or "cards are looked up as <name>.card beside this one")
        return self.call_card(callee, e)

    def callee(self, name: str, node) -> Checked | None:
        try:
            return self.lib.checked(name)
        except CardError as err:
            if "cycle" in err.message:
                self.err(err.message, node)
            root = getattr(err, "root", None) or f"{err.path}:{err.line}:{err.col}: {err.message}"
            try:
                self.err(f"{name} has errors of its own: {root}", node,
                         hint=f"run `cardgen check` on {name}.card")
            except CardError as wrapped:
                wrapped.root = root
                raise

    def call_builtin(self, fname: str, args: list[Expr], e) -> Type:
        rule = BUILTINS[fname]
        if rule == "extreme" and len(args) == 2:
            a, b = [self.expr(x) for x in args]
            return Type(numeric_join(a, b), self.broadcast(a, b, e, "compare").shape)
        if len(args) != 1:
            self.err(f"{fname} takes one argument, not {len(args)}", e)
        t = self.expr(args[0])
        if t.kind in ("group", "func"):
            self.err(f"{fname} needs an array, not {self.show(t)}", args[0])
        if rule == "length":
            if t.rank != 1:
                self.err(f"length needs a sequence, not {self.show(t)}", args[0])
            return replace(NAT, value=t.shape[0])
        if rule in ("reduce", "extreme"):
            if not t.shape or t.rank > 2:
                self.err(f"{fname} needs a vector or a matrix, not {self.show(t)}", args[0])
            if t.rank == 1:
                return Type("real", ())
            return Type("real", t.shape[:-1] if self.rows else t.shape[1:])
        if rule == "softmax" and not t.shape:
            self.err("softmax needs a vector or a matrix", args[0])
        return Type("real", t.shape)

    def call_func(self, fname: str, e) -> Type:
        b = self.env[fname]
        params = b.args
        if len(e.args) != len(params):
            self.err(f"{fname} takes {len(params)} argument(s)", e)
        for a, p in zip(e.args, params, strict=True):
            at = self.expr(a)
            if at.kind == "group" and p.kind == "group" and at.group != p.group:
                self.err(f"{expr_text(a)} holds different parameters than {fname} expects", a)
        return b.type.result

    def call_card(self, callee: Checked, e) -> Type:
        fname, n_in = e.attr
        cc = callee.card
        ins, bars = list(e.args[:n_in]), list(e.args[n_in:])
        rename = {s: self.fresh(s) for s in _symbols_of(callee)}
        inst = _Instance(self, callee, rename)
        in_decls = [callee.env[n] for n in cc.inputs if n in callee.env]
        # Bar arguments first bind dimensions through groups (θ_ℓ = GPT2Block).
        bar_names = list(cc.bar)
        positional = [b for b in bars if b.op != "kwarg"]
        if len(positional) > len(bar_names):
            self.err(f"{fname} takes {len(bar_names)} argument(s) after |"
                     f"{': ' + ', '.join(bar_names) if bar_names else ''}", e)
        if len(ins) > len(in_decls):
            self.err(f"{fname} takes {len(in_decls)} input(s): {', '.join(cc.inputs)}", e)
        for name, arg in zip(bar_names, positional, strict=False):
            inst.bar_arg(name, arg, e)
        extra: tuple[Poly, ...] | None = None
        actual: dict[str, Type] = {}
        for i, decl_b in enumerate(in_decls):
            in_name = cc.inputs[i]
            if i < len(ins):
                at = self.expr(ins[i])
                node = ins[i]
            else:
                default = decl_b.decl.default if decl_b.decl else None
                if default is None or default.op != "name" or default.attr not in actual:
                    self.err(f"{fname} needs input {in_name}", e,
                             hint=f"{fname}({', '.join(cc.inputs)} | …)")
                at, node = actual[default.attr], e
            actual[in_name] = at
            want = inst.type(decl_b.type)
            ext = inst.match_input(in_name, want, at, node, cc.convention.axes == "rows")
            if ext:
                if extra is not None and extra != ext and len(extra) != len(ext):
                    self.err("inputs are mapped over different extra axes", node)
                extra = ext
        for arg in bars:
            if arg.op == "kwarg":
                inst.kwarg(arg, e)
        missing = [n for n in bar_names[len(positional):]
                   if not any(a.op == "kwarg" and a.attr[0] == n for a in bars)]
        if missing:
            self.err(f"{fname} also needs {', '.join(missing)} after |", e,
                     hint=f"{signature_hint(cc, None)}")
        if len(cc.outputs) != 1:
            self.err(f"{fname} returns {len(cc.outputs)} values; a call can use only one", e)
        out = inst.type(callee.env[cc.outputs[0]].type)
        if extra:
            rows = cc.convention.axes == "rows"
            out = out.with_shape((*extra, *out.shape) if rows else (*out.shape, *extra))
        return out


class _Instance:
    """One call of a card: its dimension names renamed to fresh unknowns
    that the call's arguments then determine."""

    def __init__(self, ch: Checker, callee: Checked, rename: dict[str, Poly]):
        self.ch, self.callee, self.rename = ch, callee, rename

    def type(self, t: Type) -> Type:
        sub = lambda p: p.subst(self.rename)  # noqa: E731
        return self.ch.rtype(replace(t, shape=tuple(d if d == BROADCAST else sub(d) for d in t.shape),
                                     bounds=tuple(sub(b) for b in t.bounds),
                                     value=sub(t.value) if t.value is not None else None))

    def dims_of_group(self, gtype: Type, node):
        g = gtype.group
        if isinstance(g, tuple) and len(g) == 2 and isinstance(g[1], tuple) and g[0] == self.callee.card.name:
            for k, v in g[1]:
                if k in self.rename and not self.ch.unify(self.rename[k], v):
                    self.ch.err(f"{k} of {g[0]} is bound to {poly_brief(v)} but the call needs "
                                f"{poly_brief(self.ch.res(self.rename[k]))}", node)

    def bar_arg(self, name: str, arg: Expr, call):
        cc = self.callee
        at = self.ch.expr(arg)
        b = cc.env.get(name)
        fname = cc.card.name
        if b is None:
            return
        if b.type.kind == "group":
            if at.kind != "group":
                self.ch.err(f"{fname} expects the parameter group {name} here, not {self.ch.show(at)}", arg)
            g = b.type.group
            if isinstance(g, tuple) and g and isinstance(g[0], str) and g[0] == fname:  # all parameters
                ag = at.group
                if not (isinstance(ag, tuple) and ag and ag[0] == fname):
                    self.ch.err(f"{expr_text(arg)} does not hold the parameters of {fname}", arg,
                                hint=f"declare it as `param {expr_text(arg)} = {fname}`")
                self.dims_of_group(at, arg)
                return
            members = g if isinstance(g, tuple) else ()
            mine = at.group if isinstance(at.group, tuple) and all(isinstance(m, str) for m in at.group) \
                else None
            if mine is None or len(mine) != len(members):
                self.ch.err(f"{fname} expects the group {name} of {len(members)} parameters "
                            f"({', '.join(members)})", arg)
            for theirs, ours in zip(members, self.ch.members_here(arg, mine), strict=True):
                t_ours = self.member_type(ours, arg)
                self.match(f"{name}: {theirs}", self.type(cc.env[theirs].type), t_ours, arg)
            return
        self.match(name, self.type(b.type), at, arg)

    def member_type(self, name: str, node) -> Type:
        node2 = ir.name(name, node.pos)
        return self.ch.expr(node2)

    def match(self, what: str, want: Type, got: Type, node):
        ch = self.ch
        if got.kind == "group":
            ch.err(f"{what} is {ch.show(want)}, not a parameter group", node)
        if want.shape and got.rank == 0 and got.kind != "group":
            return  # a scalar fills the whole array: Mask = 1
        if want.rank != got.rank or not all(ch.unify(a, b) for a, b in zip(want.shape, got.shape,
                                                                          strict=True)):
            ch.err(f"{self.callee.card.name} expects {what} ∈ {ch.show(want)}, "
                   f"but {expr_text(node)} ∈ {ch.show(got)}", node)

    def match_input(self, name: str, want: Type, got: Type, node, rows: bool):
        ch = self.ch
        k = got.rank - want.rank
        if k < 0:
            ch.err(f"{self.callee.card.name} expects {name} ∈ {ch.show(want)}, "
                   f"but {expr_text(node) if isinstance(node, Expr) else name} ∈ {ch.show(got)}", node)
        core = got.shape[k:] if rows else got.shape[: got.rank - k]
        extra = got.shape[:k] if rows else got.shape[got.rank - k:]
        if not all(ch.unify(a, b) for a, b in zip(want.shape, core, strict=True)):
            ch.err(f"{self.callee.card.name} expects {name} ∈ {ch.show(want)}, "
                   f"but {expr_text(node) if isinstance(node, Expr) else name} ∈ {ch.show(got)}", node)
        if (want.kind in INTEGRAL) != (got.kind in INTEGRAL) and got.kind != "boolean":
            ch.err(f"{self.callee.card.name} expects {name} ∈ {ch.show(want)}", node)
        return tuple(extra)

    def kwarg(self, arg: Expr, call):
        ch = self.ch
        name, idx = arg.attr
        b = self.callee.env.get(name)
        if b is None or b.role not in ("hyper",):
            hypers = [n for n, x in self.callee.env.items() if x.role == "hyper" and x.type.shape]
            ch.err(f"{self.callee.card.name} has no hyperparameter {name}", arg,
                   hint=self_near(name, hypers))
        want = self.type(b.type)
        if idx:
            if len(idx) != want.rank:
                ch.err(f"{name} has {want.rank} axes but {len(idx)} indices", arg)
            ranges = {v: (Poly.const(ch.base), d) for v, d in zip(idx, want.shape, strict=True)}
            with ch.scope(ranges):
                t = ch.expr(arg.args[0])
            if t.shape:
                ch.err(f"{name}[{', '.join(idx)}] must be one value per index", arg.args[0])
        else:
            t = ch.expr(arg.args[0])
            if t.shape:
                self.match(name, want, t, arg.args[0])


def self_near(name, pool):
    close = difflib.get_close_matches(name, pool, n=1)
    return f"did you mean {close[0]}?" if close else None


def _symbols_of(c: Checked) -> list[str]:
    return [n for n, b in c.env.items() if b.role in ("hyper", "dim") and b.type.value is not None
            and b.type.value == Poly.sym(n)]


def signature_hint(card: Card, extra: str | None) -> str:
    ins = list(card.inputs) + ([extra] if extra else [])
    bar = " | " + ", ".join(card.bar) if card.bar else ""
    return f"algorithm {', '.join(card.outputs)} ← {card.name}({', '.join(ins)}{bar})"


def callees(card: Card) -> list[str]:
    """Names of the cards ``card`` calls or groups, in first-use order."""
    out: list[str] = []

    def add(name):
        if name not in out:
            out.append(name)

    def walk(e: Expr | None):
        if e is None:
            return
        if e.op == "call":
            add(e.attr[0])
        for a in e.args:
            walk(a)

    def walk_steps(steps: tuple[Step, ...]):
        for st in steps:
            for e in (st.target, st.value, st.cond):
                walk(e)
            walk_steps(st.body)

    for d in card.decls:
        if isinstance(d.set, Group) and d.set.card:
            add(d.set.card)
    walk_steps(card.steps)
    if card.rule is not None:  # a backward rule may call cards too
        walk_steps(card.rule.steps)
    return out
