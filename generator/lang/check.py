"""IR -> typed IR.  Every value gets a kind and a symbolic shape; every
mistake is a CardError at the node that made it.

This module is the driver and the checker's core: ``check()``, the
``Library`` of cards, the result ``Checked``, and ``Checker`` with
unification, declarations, names and the step rules (``s_<kind>``).  The
rule per expression op (``x_<op>``) lives in check_expr.py, calls and the
``BUILTINS`` table in check_call.py; ``Checker`` inherits both.  Names follow
one rule (names.py): a script (``_t``, ``^h``) that names a bound index
variable indexes a family, every other script is part of the name.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from dataclasses import dataclass, field, replace

from . import ir
from .check_call import BUILTINS, CallRules, signature_hint
from .check_expr import ExprRules
from .check_rule import check_rule
from .configs import check_configs
from .errors import CardError
from .ir import Card, Claim, Decl, Expr, Group, Set, Step
from .names import join_name, rename_indices, split_name
from .render import claim_text, expr_text, set_text
from .shapes import Poly, TooLargeError, poly_brief
from .types import BROADCAST, INTEGRAL, NAT, REAL, Type, to_set, type_text

# The public face; lower.py also reads BUILTINS and the name helpers through here.
__all__ = ["BUILTINS", "Binding", "Checked", "Library", "check", "join_name", "split_name"]

CONSTANTS = {"π": REAL, "e": None}


@dataclass
class Binding:
    """What a name stands for.  ``role``: input output hyper param local
    index dim func group.  ``over`` lists a family's index extents."""

    role: str
    type: Type
    decl: Decl | None = None
    over: tuple[Poly, ...] = ()
    pos: ir.Pos | None = None
    args: tuple[Type, ...] = ()  # a function binding's parameter types


@dataclass
class Checked:
    """A checked card: its bindings, the type of every expression (by node
    identity) and the claim each step would carry."""

    card: Card
    env: dict[str, Binding]
    types: dict[int, Type] = field(default_factory=dict)
    claims: dict[int, Claim] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()  # dimension names declared by the card
    errors: list[CardError] = field(default_factory=list)  # every mistake, in source order

    def param_names(self) -> list[str]:
        return [n for d in self.card.decls if d.role == "param" for n in d.names]


class Library:
    """Cards by name, loaded from search folders and checked once each."""

    def __init__(self, cards: dict[str, Card] | None = None, folders=()):
        self.cards = dict(cards or {})
        self.folders = list(folders)
        self.done: dict[str, Checked] = {}  # checked cards, with their errors if they have some
        self.active: list[str] = []
        self.origins: dict[str, str] = {}  # folder -> the search-path entry it came from (lang/load.py)

    def names(self) -> list[str]:
        from pathlib import Path
        found = set(self.cards)
        for f in self.folders:
            found |= {p.stem for p in Path(f).glob("*.card")}
        return sorted(found)

    def card(self, name: str) -> Card | None:
        if name not in self.cards:
            from pathlib import Path

            from .parse import parse_file
            for f in self.folders:
                p = Path(f) / f"{name}.card"
                if p.is_file():
                    self.cards[name] = parse_file(p)
                    break
        return self.cards.get(name)

    def checked(self, name: str) -> Checked | None:
        """The card checked, or its first error raised."""
        ch = self.diagnose(name)
        if ch is not None and ch.errors:
            raise ch.errors[0]
        return ch

    def diagnose(self, name: str) -> Checked | None:
        """The card checked as far as it goes, with all of its errors in ``errors``."""
        if name in self.done:
            return self.done[name]
        card = self.card(name)
        if card is None:
            return None
        if name in self.active:
            chain = " → ".join(self.active[self.active.index(name):] + [name])
            raise CardError(f"algorithms call each other in a cycle: {chain}")
        self.active.append(name)
        try:
            ch = Checker(card, self).run()
        finally:
            self.active.pop()
        ch.errors = [e.located(card.path, card.source) for e in ch.errors]
        self.done[name] = ch
        return ch


def check(card: Card, library: Library | None = None) -> Checked:
    """Type-check ``card``; sub-algorithms come from ``library``. Raises the card's first error."""
    ch = check_all(card, library)
    if ch.errors:
        raise ch.errors[0]
    return ch


def check_all(card: Card, library: Library | None = None) -> Checked:
    """Type-check ``card`` as far as it goes: every error is in ``errors``, none is raised."""
    lib = library or Library()
    lib.cards.setdefault(card.name, card)
    try:
        if lib.cards[card.name] is card:
            return lib.diagnose(card.name)
        ch = Checker(card, lib).run()
    except CardError as e:  # a cycle of calls through this card
        ch = Checked(card, {}, errors=[e])
    ch.errors = [e.located(card.path, card.source) for e in ch.errors]
    return ch


class FollowOnError(CardError):
    """A use of a name whose definition already failed: the error was reported there, once."""

    def __init__(self):
        super().__init__("follows from an earlier error")


UNKNOWN = "unknown"  # the role of a name whose declaration or defining step failed


class Checker(ExprRules, CallRules):
    def __init__(self, card: Card, lib: Library):
        self.card, self.lib = card, lib
        self.env: dict[str, Binding] = {}
        self.ranges: dict[str, tuple[Poly, Poly]] = {}  # index var -> (first, count)
        self.subst: dict[str, Poly] = {}
        self.types: dict[int, Type] = {}
        self.claims: dict[int, Claim] = {}
        self.base = card.convention.base
        self.rows = card.convention.axes == "rows"
        self.fresh_n = 0
        self.stems: dict[str, str] = {}  # a fresh unknown -> the callee's name it stands for
        self.produced: set[str] = set()
        self.pending: dict[str, Decl] = {}  # output dimensions a step must define
        self.errors: list[CardError] = []
        self.deferred: list[CardError] | None = None  # claim mismatches on a loop's first, probing pass

    @contextlib.contextmanager
    def recover(self, names=()):
        """Record an error and go on; ``names`` (those the failed part defines) become unknown, so
        that uses of them are skipped silently instead of reported again."""
        try:
            yield
        except CardError as e:
            if not isinstance(e, FollowOnError):
                self.errors.append(e)
            for n in names:
                self.env[n] = Binding(UNKNOWN, REAL)
                self.produced.add(n)
                self.pending.pop(n, None)

    def known(self, b: Binding) -> Binding:
        if b.role == UNKNOWN:
            raise FollowOnError()
        return b

    # ------------------------------------------------------------ helpers
    def err(self, msg: str, node=None, hint: str | None = None):
        raise CardError(msg, getattr(node, "pos", None), hint)

    @contextlib.contextmanager
    def sizes_at(self, node):
        """Report a dimension past the bounds of shapes.Poly at ``node``."""
        try:
            yield
        except TooLargeError as big:
            self.err(f"this dimension is too large to check: {big}", node,
                     hint="cardgen multiplies dimensions out; name a large one: `hyper K ∈ ℕ`")

    def fresh(self, stem: str = "n") -> Poly:
        self.fresh_n += 1
        self.stems[f"?{stem}{self.fresh_n}"] = stem
        return Poly.sym(f"?{stem}{self.fresh_n}")

    def res(self, p: Poly) -> Poly:
        for _ in range(20):
            q = p.subst(self.subst)
            if q == p:
                return p
            p = q
        return p

    def rtype(self, t: Type) -> Type:
        shape = tuple(d if d == BROADCAST else self.res(d) for d in t.shape)
        bounds = tuple(self.res(b) for b in t.bounds)
        value = self.res(t.value) if t.value is not None else None
        if shape == t.shape and bounds == t.bounds and value == t.value:
            return t  # most types: dataclasses.replace was a fifth of checking
        return replace(t, shape=shape, bounds=bounds, value=value)

    def unify(self, a: Poly, b: Poly) -> bool:
        if a == BROADCAST or b == BROADCAST:
            return True
        a, b = self.res(a), self.res(b)
        if a == b:
            return True
        diff = a - b
        for u in diff.unknowns():
            with_u = [(m, c) for m, c in diff.terms if any(s == u for s, _ in m)]
            if len(with_u) != 1 or dict(with_u[0][0])[u] != 1:
                continue
            m, c = with_u[0]
            rest = diff - Poly(((m, c),))
            coef = Poly(((tuple((s, e) for s, e in m if s != u), c),))
            sol = (-rest).divide(coef)
            if sol is not None and u not in sol.symbols():
                self.subst[u] = sol
                return True
        return False

    def unify_shapes(self, sa, sb) -> bool:
        saved = dict(self.subst)
        ok = len(sa) == len(sb) and all(self.unify(x, y) for x, y in zip(sa, sb, strict=True))
        self.subst = saved
        return ok

    def show(self, t: Type) -> str:
        t = self.rtype(t)
        if t.kind in ("group", "func"):
            return {"group": "a parameter group", "func": "a function"}[t.kind]
        if any(s.startswith(("?", "#")) for d in t.shape for s in d.symbols()):
            # a run-time length shows as …, a callee's dimension not yet bound by its own name
            shown = {s: Poly.sym("…" if s.startswith("#") else self.stems.get(s, "…"))
                     for d in t.shape for s in d.symbols() if s.startswith(("?", "#"))}
            t = Type({"real": "real", "boolean": "boolean"}.get(t.kind, "integer"),
                     tuple(d.subst(shown) for d in t.shape))
        return type_text(t)

    def near(self, name: str, pool) -> str | None:
        close = difflib.get_close_matches(name, list(pool), n=1, cutoff=0.6)
        if close:
            return f"did you mean {close[0]}?"
        base, _ = split_name(name)
        alike = sorted(n for n in pool if split_name(n)[0] == base)
        return f"names with the same base: {', '.join(alike[:5])}" if alike else None

    # -------------------------------------------------------------- entry
    def run(self) -> Checked:
        self.declarations()
        check_configs(self.card)
        self.signature()
        self.steps(self.card.steps)
        for n, d in self.pending.items():
            with self.recover():
                self.err(f"dimension {n} of output {d.names[0]} is never defined", d,
                         hint=f"bind it in a step, e.g. {n} ← length(x)")
        for d in self.card.decls:
            if d.role == "output":
                for n in d.names:
                    if n not in self.produced:
                        with self.recover():
                            self.err(f"output {n} is never computed", d,
                                     hint=f"end with `return {n} = …`")
        check_rule(self)
        with self.recover(), self.sizes_at(self.card):
            for b in self.env.values():  # what unification learned, written into every type
                b.type = self.rtype(b.type)
                b.over = tuple(self.res(o) for o in b.over)
            self.types = {k: self.rtype(t) for k, t in self.types.items()}
        symbols = tuple(n for n, b in self.env.items() if b.role in ("hyper", "dim") and b.type.value)
        return Checked(self.card, self.env, self.types, self.claims, symbols, self.errors)

    # -------------------------------------------------------- declarations
    def declarations(self):
        seen: dict[str, Decl] = {}
        for d in self.card.decls:
            for n in d.names:
                if n in seen:
                    where = None
                    if seen[n].pos and d.pos and seen[n].pos.line != d.pos.line:
                        where = f"first declared on line {seen[n].pos.line}"
                    elif seen[n] is d:
                        where = f"{n} appears twice in this declaration"
                    with self.recover():
                        self.err(f"{n} is declared twice", d, hint=where)
                seen[n] = d
        for d in self.card.decls:  # hyperparameters first: they name dimensions
            if d.role == "hyper" and isinstance(d.set, Set) and not d.set.shape and not d.set.seq:
                for n in d.names:
                    with self.recover([n]):
                        t = self.set_type(d.set, d, new_dims=False)
                        if t.kind in INTEGRAL:
                            t = replace(t, value=Poly.sym(n))
                        self.bind(n, Binding("hyper", t, d, pos=d.pos))
        for d in self.card.decls:
            if d.role == "input":
                self.declare(d, new_dims=True)
        for d in self.card.decls:
            if d.role == "hyper" and not (isinstance(d.set, Set) and not d.set.shape and not d.set.seq):
                self.declare(d, new_dims=False)
        for d in self.card.decls:
            if d.role == "param":
                self.declare(d, new_dims=False)
        for d in self.card.decls:
            if d.role == "output":
                known = set(self.env)
                self.declare(d, new_dims=True)
                for n in set(self.env) - known - set(d.names):
                    self.pending[n] = d
        for d in self.card.decls:
            if d.default is not None:
                with self.recover():
                    self.check_default(d)

    def bind(self, name: str, b: Binding):
        self.env[name] = b

    def bind_local(self, name: str, t: Type, pos):
        self.bind(name, Binding("local", t, pos=pos))

    def targets(self, st: Step) -> list[str]:
        return _targets(st, self.ranges)

    def declare(self, d: Decl, new_dims: bool):
        keys = [_decl_key(n, d) for n in d.names]
        with self.recover(list(dict.fromkeys([*d.names, *keys]))):  # a family's uses read its key (W^□_q)
            self.declare_names(d, new_dims)

    def declare_names(self, d: Decl, new_dims: bool):
        over = ()
        if d.over:
            over = tuple(self.dim(bound, new_dims=False) for _, bound in d.over)
            if len({v for v, _ in d.over}) < len(d.over):
                self.err("a declaration repeats over each index once", d)
            key_names = [self.family_key(n, [v for v, _ in d.over], d) for n in d.names]
        else:
            key_names = list(d.names)
        for n in key_names:  # one type each: every * sequence has its own length
            t = self.group_type(d.set, d) if isinstance(d.set, Group) else self.set_type(d.set, d, new_dims)
            self.bind(n, Binding(d.role, t, d, over, d.pos))

    def family_key(self, name: str, over: list[str], d: Decl) -> str:
        base, scripts = split_name(name)
        for var in over:
            if not any(v == var for _, v in scripts):
                self.err(f"{name} is repeated for {var} ∈ […] but has no script {var}", d,
                         hint=f"name it like {name}_{var} or {name}^{var}")
        if [v for _, v in scripts if v in over] != over:
            self.err(f"{name} is repeated for {', '.join(over)}: its scripts name them in that order, once each",
                     d, hint=f"write the declaration's indices in the order of {name}'s scripts")
        return join_name(base, [(k, "□" if v in over else v) for k, v in scripts])

    def check_default(self, d: Decl):
        with self.sizes_at(d.default):
            self.default_fits(d)

    def default_fits(self, d: Decl):
        t = self.expr(d.default)
        for n in d.names:
            b = self.env[n]
            if b.type.kind in ("real", "interval") and t.kind not in ("real", "nat", "integer", "interval"):
                self.err(f"the default of {n} is not a number", d.default)
            if b.type.kind in INTEGRAL and t.kind == "real":
                self.err(f"{n} is an integer but its default {expr_text(d.default)} is not", d.default)
            if b.role == "input":
                if d.default.op != "name" or self.env.get(d.default.attr, b).role != "input":
                    self.err(f"the default of input {n} must name another input", d.default)
            elif b.type.shape or t.shape:
                self.broadcast(b.type, t, d.default, "give")

    def set_type(self, s: Set, d, new_dims: bool) -> Type:
        with self.sizes_at(s):
            return self.set_type_of(s, new_dims)

    def set_type_of(self, s: Set, new_dims: bool) -> Type:
        bounds: tuple[Poly, ...] = ()
        if s.kind in ("span", "upto"):
            bounds = tuple(self.dim(b, new_dims=False) for b in s.bounds)
            if s.kind == "upto":
                first = Poly.const(self.base)
                bounds = (first, bounds[0] - Poly.const(1) + first)
        elif s.kind == "interval":
            for b in s.bounds:
                if b.op != "inf":
                    self.dim_names(b)
        if s.seq:
            shape = (self.fresh("len"),)
        else:
            shape = tuple(self.dim(x, new_dims) for x in s.shape)
        if s.kind == "simplex":  # Δ(n): a distribution over n outcomes, a vector of n reals
            shape = (self.dim(s.bounds[0], new_dims),) + shape
        kind = {"upto": "span", "interval": "real", "simplex": "real"}.get(s.kind, s.kind)
        return Type(kind, shape, bounds)

    def dim_names(self, e: Expr):
        if e.op == "name" and e.attr not in self.env and e.attr not in CONSTANTS:
            self.err(f"undefined dimension {e.attr}", e, hint=self.dim_hint(e.attr))
        for a in e.args:
            self.dim_names(a)

    def dim_hint(self, name: str) -> str:
        near = self.near(name, [n for n, b in self.env.items() if b.type.value is not None])
        return near or f"declare it: `hyper {name} ∈ ℕ`"

    def dim(self, e: Expr, new_dims: bool) -> Poly:
        """A dimension expression as a Poly; ``new_dims`` lets an input's
        shape introduce run-time lengths."""
        with self.sizes_at(e):
            return self.dim_poly(e, new_dims)

    def dim_poly(self, e: Expr, new_dims: bool) -> Poly:
        op = e.op
        if op == "num":
            try:
                return Poly.const(int(e.attr))
            except ValueError:
                self.err(f"a dimension must be a whole number, not {e.attr}", e)
        if op == "name":
            b = self.env.get(e.attr)
            if b is not None:
                self.known(b)
            if b is None and new_dims:
                self.bind(e.attr, Binding("dim", replace(NAT, value=Poly.sym(e.attr)), pos=e.pos))
                return Poly.sym(e.attr)
            if b is None or b.type.value is None:
                what = "is not a natural number" if b else "is undefined"
                self.err(f"dimension {e.attr} {what}", e, hint=self.dim_hint(e.attr))
            return b.type.value
        if op in ("add", "sub", "matmul", "juxt", "mul"):
            a, c = [self.dim(x, new_dims) for x in e.args]  # a list: 3.12 counts generators as C recursion
            return a + c if op == "add" else a - c if op == "sub" else a * c
        if op == "div":
            a, c = [self.dim(x, new_dims) for x in e.args]  # a list: 3.12 counts generators as C recursion
            q = a.divide(c)
            if q is None:
                self.err("a dimension can only be divided by a product of names", e)
            return q
        if op in ("floordiv", "mod"):
            a, c = [self.dim(x, new_dims) for x in e.args]  # a list: 3.12 counts generators as C recursion
            return a.floordiv(c) if op == "floordiv" else a.mod(c)
        self.err(f"{expr_text(e)} is not a dimension", e)

    def group_type(self, g: Group, d: Decl) -> Type:
        if g.card is None:
            over = {v: self.dim(n, new_dims=False) for v, n in d.over}
            with self.scope({v: (Poly.const(self.base), n) for v, n in over.items()}):
                for m in g.members:
                    self.group_member(m, g, over)
            return Type("group", group=g.members)
        callee = self.callee(g.card, g)
        if callee is None:
            self.err(f"unknown algorithm {g.card}", g, hint=self.near(g.card, self.lib.names()))
        bind = {}
        for k, v in g.bindings:
            if k not in callee.env or callee.env[k].type.value is None:
                self.err(f"{g.card} has no dimension {k}", g,
                         hint=f"its dimensions: {', '.join(callee.symbols)}")
            bind[k] = self.dim(v, new_dims=False)
        for s in callee.symbols:
            if s not in bind and s in self.env and self.env[s].type.value is not None \
                    and callee.env[s].role == "hyper":
                bind[s] = self.env[s].type.value
        return Type("group", group=(g.card, tuple(sorted(bind.items()))))

    def group_member(self, m: str, g: Group, over: dict[str, Poly]):
        """One member of ``𝓦^h_ℓ = {W^h_q_ℓ, …} for h ∈ [H], ℓ ∈ [N]``: a declared parameter whose
        scripts that name the group's indices select a member of its family, over the same extents."""
        base, scripts = split_name(m)
        idx = [v for _, v in scripts if v in over]
        key = join_name(base, [(k, "□" if v in over else v) for k, v in scripts])
        b = self.env.get(key) if idx else None
        if b is None:
            b, idx = self.env.get(m), []
        if b is not None:
            self.known(b)  # a member whose own declaration failed: reported there
        if b is None or b.role != "param":
            self.member_mismatch(m, g, over)
            self.err(f"group member {m} is not a declared parameter", self.member_at(g, m),
                     hint=self.near(m, self.env) or f"declare it: `param {m} ∈ ℝ^{{…}}`")
        for slot, (var, extent) in enumerate(zip(idx, b.over, strict=False)):
            if not self.unify_shapes([extent], [over[var]]):
                d = b.decl
                named = next((n for n in d.names if _decl_key(n, d) == key), d.names[0])
                declared = ", ".join(f"{v} ∈ [{expr_text(n)}]" for v, n in d.over)
                self.err(f"group member {m} reads {var} ∈ [{poly_brief(self.res(over[var]))}] as index "
                         f"{slot + 1} of its family, which runs over [{poly_brief(self.res(extent))}]",
                         self.member_at(g, m),
                         hint=f"{named} is declared for {declared}: name the member's indices in that order, "
                              "over the same ranges")

    def member_at(self, g: Group, m: str):
        """Where member ``m`` is written inside the group's braces (the braces if it cannot be found)."""
        if g.pos is None or g.pos.end_line != g.pos.line:
            return g
        lines = self.card.source.splitlines()
        if g.pos.line > len(lines):
            return g
        text = lines[g.pos.line - 1]
        first = g.pos.col - 1
        for w in re.finditer(r"[^\s{},]+", text[first: g.pos.end_col - 1]):
            if w.group() == m:
                return ir.name(m, ir.Pos(g.pos.line, first + w.start() + 1, g.pos.line, first + w.end() + 1))
        return g

    def member_mismatch(self, m: str, g: Group, over: dict[str, Poly]):
        """A member that names a declared parameter family by other indices than the group's: a
        script the group's `for` lacks (``W^h_q_j`` in a group for h and ℓ), or a group index where
        the family has none (``W^h_q_ℓ`` with ``W^h_q_ℓ`` repeated for h only)."""
        base, scripts = split_name(m)
        for key, b in self.env.items():
            kb, ks = split_name(key)
            if b.role != "param" or "□" not in key or kb != base or len(ks) != len(scripts) or \
                    not all(k == k2 and v2 in (v, "□") for (k, v), (k2, v2) in zip(scripts, ks, strict=True)):
                continue
            stray = [v for (_, v), (_, v2) in zip(scripts, ks, strict=True) if v2 == "□" and v not in over]
            if stray:
                self.err(f"group member {m} is indexed by {', '.join(stray)}, which the group does not repeat over",
                         self.member_at(g, m), hint=f"the group repeats for {', '.join(over) or 'no index'}: add "
                                 f"{', '.join(f'{v} ∈ […]' for v in stray)} to its `for`, or name the member "
                                 "by the group's indices")
            extra = [v for (_, v), (_, v2) in zip(scripts, ks, strict=True) if v2 != "□" and v in over]
            if extra:
                d = b.decl
                self.err(f"group member {m} is indexed by {', '.join(extra)}, but its family is not repeated "
                         f"over {', '.join(extra)}", self.member_at(g, m),
                         hint=f"it is declared for {', '.join(f'{v} ∈ [{expr_text(n)}]' for v, n in d.over)}"
                         if d is not None else None)

    def signature(self):
        c = self.card
        for n in c.outputs:
            if n not in self.env or self.env[n].role not in ("output", UNKNOWN):
                with self.recover():
                    self.err(f"the signature returns {n}, which is not declared as an output", c,
                             hint=f"add `output {n} ∈ …`")
        for n in c.inputs:
            if self.lookup_signature(n) not in ("input", UNKNOWN):
                with self.recover():
                    self.err(f"the signature takes {n}, which is not declared as an input", c,
                             hint=f"add `input {n} ∈ …`")
        undeclared = [n for n in c.bar if self.lookup_signature(n) is None]
        if len(undeclared) > 1:
            with self.recover():
                self.err(f"{', '.join(undeclared)} are not declared", c,
                         hint="one undeclared name after | may stand for all parameters (θ); declare the rest")
        for n in undeclared:
            self.bind(n, Binding("group", Type("group", group=(c.name, ())), pos=c.pos))
        for d in c.decls:
            if d.role == "input" and not any(self.signature_match(s, n) for s in c.inputs for n in d.names):
                with self.recover():
                    self.err(f"input {d.names[0]} is declared but not in the signature", d,
                             hint=f"add it: `{signature_hint(c, d.names[0])}`")

    def lookup_signature(self, n: str) -> str | None:
        if n in self.env:
            return self.env[n].role
        for d in self.card.decls:
            if any(self.signature_match(n, dn) for dn in d.names):
                return d.role
        return None

    def signature_match(self, sig: str, declared: str) -> bool:
        if sig == declared:
            return True
        b1, s1 = split_name(sig)
        b2, s2 = split_name(declared)
        return b1 == b2 and len(s1) == len(s2) and all(
            a == b or (":" in a[1] and a[0] == b[0]) for a, b in zip(s1, s2, strict=True))

    # ---------------------------------------------------------------- names
    def resolve(self, text: str, node) -> tuple[Binding, list[str]]:
        """A name -> its binding, plus the index variables that select an
        element of a family (``k_t`` -> family ``k_□`` at ``t``)."""
        base, scripts = split_name(text)
        if scripts and any(v in self.ranges for _, v in scripts):
            key = join_name(base, [(k, "□" if v in self.ranges else v) for k, v in scripts])
            idx = [v for _, v in scripts if v in self.ranges]
            if key in self.env:
                self.check_extent(text, self.known(self.env[key]), idx, node)
                return self.env[key], idx
        if text in self.env:
            return self.known(self.env[text]), []
        if text in CONSTANTS and CONSTANTS[text] is not None:
            return Binding("const", CONSTANTS[text]), []
        self.partly_bound(text, node)
        pool = [n for n in self.env if "□" not in n] + [n.replace("□", "t") for n in self.env if "□" in n]
        families = [n for n in self.env if "□" in n and split_name(n)[0] == base]
        hint = self.near(text, pool)
        if families and not hint:
            hint = f"{families[0]} is a family: index it with a bound variable"
        self.err(f"unknown name {text}", node, hint=hint or "declare it, or bind it in an earlier step")

    def partly_bound(self, text: str, node):
        """A family with several indices read with only some of them bound (``𝓦^j_ℓ`` under
        ``for j`` but no ``for ℓ``): say which index is loose, not only that the name is unknown."""
        base, scripts = split_name(text)
        if not any(v in self.ranges for _, v in scripts):
            return
        loose = [v for _, v in scripts if v not in self.ranges and v.isidentifier() and v not in self.env]
        key = join_name(base, [(k, "□" if v in self.ranges or v in loose else v) for k, v in scripts])
        b = self.env.get(key)
        if not loose or b is None or b.role == UNKNOWN or len(b.over) != key.count("□"):
            return
        d = b.decl
        if d is not None and d.over:
            shown = next((n for n in d.names if _decl_key(n, d) == key), key)
            what = f"{shown} is repeated for " + ", ".join(f"{v} ∈ [{expr_text(n)}]" for v, n in d.over)
        else:
            shown = key.replace("□", "•")
            what = f"{shown} has a member per index in " + " × ".join(f"[{poly_brief(self.res(o))}]" for o in b.over)
        self.err(f"{text} reads the family {shown}, but no enclosing for, ∀ or Σ binds {', '.join(loose)}", node,
                 hint=f"{what}: read it inside a loop over each of its indices")

    def members_here(self, arg: Expr, members) -> list[str]:
        """The members of the group ``arg`` names, as read where it is used: a group repeated
        ``for h ∈ [H], ℓ ∈ [N]`` and passed as ``𝓦^j_m`` holds ``W^j_q_m`` for its ``W^h_q_ℓ``."""
        if arg.op != "name":
            return list(members)
        b, idx = self.resolve(arg.attr, arg)
        d = b.decl
        if d is None or not d.over or not isinstance(d.set, Group) or len(idx) != len(d.over):
            return list(members)
        to = {v: i for (v, _), i in zip(d.over, idx, strict=True)}
        return [rename_indices(m, to) for m in members]

    def check_extent(self, text: str, b: Binding, idx: list[str], node):
        """A loop index that runs off the end of a family is an error
        (``for ℓ = 1, …, N`` over ``θ_ℓ for ℓ ∈ [N]`` in a 0-based card)."""
        for var, extent in zip(idx, b.over, strict=False):
            first, count = self.ranges[var]
            lo = self.res(first) - Poly.const(self.base)
            hi = self.res(first + count) - Poly.const(self.base) - self.res(extent)
            if (lo.constant or 0) < 0 or (hi.constant or 0) > 0:
                last = poly_brief(self.res(first + count - Poly.const(1)))
                top = poly_brief(self.res(extent - Poly.const(1 - self.base)))
                self.err(f"{var} runs {poly_brief(self.res(first))}…{last} but {text} exists only for "
                         f"{var} = {self.base}…{top}", node,
                         hint=f"loop with `for {var} ∈ [{poly_brief(self.res(extent))}]`")

    # ---------------------------------------------------------------- steps
    def scope(self, ranges: dict[str, tuple[Poly, Poly]]):
        return _Scope(self, ranges)

    def steps(self, steps):
        for st in steps:
            with self.recover(_targets(st, self.ranges)):
                self.step(st)

    def step(self, st: Step):
        with self.sizes_at(st):  # comparing shapes can grow one too (a difference)
            getattr(self, "s_" + st.kind)(st)

    def s_remark(self, st):
        pass

    def s_assign(self, st: Step):
        target = st.target
        if target.op == "call":  # P(θ) ← …: a function of θ
            fname = target.attr[0]
            params = [self.expr(a) for a in target.args]
            t = self.expr(st.value)
            self.bind(fname, Binding("func", Type("func", result=t), pos=st.pos, args=tuple(params)))
            return
        t = self.expr(st.value)
        if t.kind == "func":
            self.err("a function must be called", st.value)
        if target.op == "name":
            self.assign_name(target, t, st)
        else:
            self.assign_index(target, t, st)

    def assign_name(self, target: Expr, t: Type, st: Step):
        text = target.attr
        base, scripts = split_name(text)
        idx = [v for _, v in scripts if v in self.ranges]
        if idx:
            key = join_name(base, [(k, "□" if v in self.ranges else v) for k, v in scripts])
            over = tuple(self.ranges[v][1] for v in idx)
            old = self.env.get(key)
            if old is not None and old.role in ("hyper", "input", "param"):
                self.err(f"{text} is a {old.role}; it cannot be assigned", target)
            self.bind(key, Binding("local", t, over=over, pos=st.pos))
        else:
            old = self.env.get(text)
            if t.kind in INTEGRAL and not t.shape and t.value is not None:
                if text in self.pending:  # ℓ ← length(x) defines the output's ℓ
                    if not self.unify(Poly.sym(text), t.value):
                        self.err(f"{text} is {poly_brief(self.res(t.value))} here", st.value)
                    del self.pending[text]
                    self.claim(st, text, replace(t, value=Poly.sym(text)))
                    return
                if len(t.value.unknowns()) == 1 and t.value == Poly.sym(t.value.unknowns()[0]):
                    self.unify(t.value, Poly.sym(text))  # a run-time length gets its name
                    t = replace(t, value=Poly.sym(text))
                    old = None
            if old is not None and old.role == "hyper":
                self.err(f"{text} is a hyperparameter; it cannot be assigned", target,
                         hint="bind a new name instead")
            if old is not None and old.role == "index":
                self.err(f"{text} is a loop index; it cannot be assigned", target)
            role = "output" if old is not None and old.role == "output" else \
                old.role if old is not None and old.role in ("input", "param") else "local"
            if old is not None and old.role in ("output",):
                self.match_declared(text, old.type, t, st.value, old.decl)
                self.produced.add(text)
            keep = t.value if t.kind in INTEGRAL and not t.shape else None
            self.bind(text, Binding(role, replace(t, value=keep), old.decl if old else None,
                                    old.over if old else (), st.pos))
        self.claim(st, text, t)

    def assign_index(self, target: Expr, t: Type, st: Step):
        base_e, *idx = target.args
        name = base_e.attr
        try:
            self.resolve(name, base_e)
            exists = True
        except CardError:
            exists = False
        if exists:
            cur = self.expr(target)
            self.broadcast(cur, t, st.value, "assign")
            shown = self.expr(base_e)
            self.claim(st, name, shown)
            return
        # A new array built element by element: X̃[:, t] ← …
        shape, vals = [], list(t.shape)
        for ix in idx:
            if ix.op == "slice" and ix.args[0].op == "none" and ix.args[1].op == "none":
                if not vals:
                    self.err(f"cannot tell the shape of {name}", target)
                shape.append(vals.pop(0))
            elif ix.op == "name" and ix.attr in self.ranges:
                shape.append(self.ranges[ix.attr][1])
            else:
                self.err(f"{name} is not defined yet; build it with [:, t] and loop indices", ix)
        if vals:
            self.err(f"{name}[…] receives {self.show(t)}, which has more axes than its indices", target)
        new = Type(t.kind, tuple(shape), t.bounds)
        base, scripts = split_name(name)
        fam = [v for _, v in scripts if v in self.ranges]
        if fam:
            key = join_name(base, [(k, "□" if v in self.ranges else v) for k, v in scripts])
            self.bind(key, Binding("local", new, over=tuple(self.ranges[v][1] for v in fam), pos=st.pos))
        else:
            self.bind(name, Binding("local", new, pos=st.pos))
        self.claim(st, name, new)

    def match_declared(self, name: str, want: Type, got: Type, node, decl: Decl | None = None):
        if want.kind == "group" or got.kind == "group":
            if want.kind != got.kind or (want.group != got.group and isinstance(want.group, tuple)
                                         and isinstance(got.group, tuple)
                                         and want.group[0] != got.group[0]):
                self.err(f"{name} is declared as {self.show(want)} but gets {self.show(got)}", node)
            return
        seq = decl is not None and isinstance(decl.set, Set) and decl.set.seq
        if want.rank != got.rank or not seq and not all(
                self.unify(a, b) for a, b in zip(want.shape, got.shape, strict=True)):
            self.err(f"{name} is declared {self.show(want)} but this computes {self.show(got)}", node)
        if want.kind in INTEGRAL and got.kind == "real":
            self.err(f"{name} is declared {self.show(want)} (whole numbers) but this computes real numbers",
                     node)

    def claim(self, st: Step, name: str, t: Type):
        t = self.rtype(t)
        inferred = None
        if not (t.kind in ("group", "func") or any(s.startswith(("?", "#")) or s == "⋆"
                                                   for d in t.shape for s in d.symbols())):
            try:
                inferred = Claim(name, to_set(t), subset=t.kind == "subset")
            except Exception:  # a shape the card notation cannot write (a negative length)
                inferred = None
        if inferred is not None:  # kept even when the card's own claim is wrong: editors offer it
            self.claims[id(st)] = inferred
        if st.claim is not None:
            c = st.claim
            base, scripts = split_name(c.name)
            if c.name != name:
                self.err(f"the comment claims {c.name} but this step sets {name}", c)
            want = self.set_type(c.set, c, new_dims=False)
            if c.subset or t.kind == "subset":  # T̃ ⊆ [ℓ]: a set of positions, sized by the [ℓ]
                if not (c.subset and t.kind == "subset" and c.set.kind == "upto" and not c.set.shape):
                    rel = "⊆" if c.subset else "∈"
                    hint = f"claim it as {name} ⊆ [{poly_brief(t.shape[0])}]" if t.kind == "subset" else None
                    self.err(f"the comment claims {c.name} {rel} {set_text(c.set)} but this step computes "
                             f"{self.show(t)}", c, hint=hint)
                want = Type("subset", (self.dim(c.set.bounds[0], new_dims=False),))
            same = want.rank == t.rank and all(self.unify(a, b) for a, b in zip(want.shape, t.shape,
                                                                                strict=True))
            kinds_ok = want.kind == t.kind or {want.kind, t.kind} <= set(INTEGRAL) or \
                want.kind in ("real", "interval") and t.kind in ("real", "nat", "integer")
            if not same or not kinds_ok:
                moving = any(s.startswith("#") for d in t.shape for s in d.symbols())
                self.claim_failed(CardError(
                    f"the comment claims {claim_text(c)} but this step computes {self.show(t)}", c.pos,
                    "a length that grows on every pass of a while loop is known only at run time (…): "
                    "leave it out of the claim" if moving else None))
        if inferred is None:  # checked again on a later pass of a loop, where the shape is known only at run time
            self.claims.pop(id(st), None)

    def claim_failed(self, e: CardError):
        if self.deferred is None:
            raise e
        self.deferred.append(e)

    def s_if(self, st: Step):
        c = self.expr(st.cond)
        if c.kind != "boolean":
            self.err(f"a condition must be true or false, not {self.show(c)}", st.cond)
        self.inline_body(st)

    def inline_body(self, st: Step):
        """Run a one-line body; the line's ▷ claim is about the body's value."""
        inner = st.body[0]
        if st.claim is not None:
            inner = replace(inner, claim=st.claim)
        self.step(inner)
        if id(inner) in self.claims:
            self.claims[id(st)] = self.claims[id(inner)]

    def s_sample(self, st: Step):
        w = self.expr(st.value)
        if w.rank != 1 or w.kind != "real":
            self.err(f"sampling needs a vector of probabilities or weights, not {self.show(w)}", st.value)
        n = w.shape[0]
        if st.dist:
            self.bind(st.dist, Binding("local", w, pos=st.pos))
        y = Type("span", (), (Poly.const(self.base), n - Poly.const(1 - self.base)))
        self.assign_name(st.target, y, replace(st, claim=None))
        self.claim(st, st.target.attr, y)

    def s_return(self, st: Step):
        t = self.expr(st.value)
        if st.target is not None:
            name = st.target.attr
        elif st.value.op == "name" and st.value.attr in self.card.outputs:
            name = st.value.attr
        elif len(self.card.outputs) == 1:
            name = self.card.outputs[0]
        else:
            self.err("say which output this returns: return Y = …", st)
        b = self.env.get(name)
        if b is None or b.role != "output":
            self.err(f"return {name}: {name} is not an output of {self.card.name}", st.target or st,
                     hint=f"outputs: {', '.join(self.card.outputs)}")
        self.match_declared(name, b.type, t, st.value, b.decl)
        self.produced.add(name)
        self.claim(st, name, t)

    def loop_range(self, st: Step) -> tuple[Poly, Poly]:
        if len(st.domain) == 2:
            lo, hi = [self.index_value(x) for x in st.domain]
            return lo, hi - lo + Poly.const(1)
        return Poly.const(self.base), self.index_value(st.domain[0])

    def s_for(self, st: Step):
        rng = self.loop_range(st)
        if st.var in self.env and self.env[st.var].role != "index":
            self.err(f"loop index {st.var} hides {self.env[st.var].role} {st.var}", st,
                     hint="choose another index name")
        self.loop(st, {st.var: rng})

    def s_forall(self, st: Step):
        ranges = {}
        for v in st.vars:
            ranges[v] = (Poly.const(self.base), self.infer_range(v, _step_exprs(st.body[0]), st))
        self.loop(st, ranges)

    def s_while(self, st: Step):
        c = self.expr(st.cond)
        if c.kind != "boolean" or c.shape:
            self.err("a while condition must be one true/false value", st.cond)
        self.loop(st, {})

    def loop(self, st: Step, ranges):
        before = {n: b.type for n, b in self.env.items()}
        outer, self.deferred = self.deferred, []  # a claim may hold only from the second pass on: wait
        try:
            with self.scope(ranges):
                if st.kind in ("for", "forall") and (st.inline or st.kind == "forall"):
                    self.inline_body(st)
                else:
                    self.steps(st.body)
        finally:
            first_pass, self.deferred = self.deferred, outer
        grows = st.kind in ("for", "while") and not st.inline and self.claims_per_pass(st, before, ranges)
        for e in first_pass if not grows else ():  # nothing grows: the first pass is every pass
            self.claim_failed(e)
        for n, b in list(self.env.items()):
            old = before.get(n)
            if old is not None and old.kind == b.type.kind and old.rank == b.type.rank and \
                    not self.unify_shapes(old.shape, b.type.shape):
                shape = tuple(d if self.unify_shapes([d], [e]) else self.fresh("len")
                              for d, e in zip(old.shape, b.type.shape, strict=True))
                b.type = replace(b.type, shape=shape)


    def claims_per_pass(self, st: Step, before: dict, ranges) -> bool:
        """A value that grows by the same amount each pass (``x ← [x, y_i]``):
        check the body again with its shape at pass i (``ℓ + i − 1``; in a while
        loop, a length known only at run time), so that its claims hold on every
        pass, not only the first.  The types the compiler reads stay those of
        the first pass, and after the loop the length is a run-time one, as
        before.  False if nothing grows that way."""
        growth = {}
        for n, b in self.env.items():
            old = before.get(n)
            if old is None or old.kind != b.type.kind or old.rank != b.type.rank or \
                    self.unify_shapes(old.shape, b.type.shape):
                continue
            steps = [self.res(e) - self.res(d) for d, e in zip(old.shape, b.type.shape, strict=True)]
            if any(d.constant is None for d in steps):
                return False  # a change that is not a fixed step each pass: the old rule (a fresh length)
            growth[n] = steps
        if not growth:
            return False
        first_types, first_env, first_subst = dict(self.types), {n: b.type for n, b in self.env.items()}, \
            dict(self.subst)
        try:
            self.check_pass(st, before, ranges, growth)
        finally:  # what the second pass learned about shapes mentions its pass: keep only its verdicts
            self.types, self.subst = first_types, first_subst
            for n, t in first_env.items():
                if n in self.env:
                    self.env[n].type = t
        return True

    def check_pass(self, st: Step, before: dict, ranges, growth: dict) -> None:
        if not ranges:  # a while loop: nothing counts its passes, so the length is known only at run time
            for n, steps in growth.items():
                t = before[n]
                self.fresh_n += 1  # a length no claim can state ("#…": not an unknown that unifies)
                self.env[n].type = replace(t, shape=tuple(Poly.sym(f"#len{self.fresh_n}") if k else d
                                                          for d, k in zip(t.shape, steps, strict=True)))
            self.steps(st.body)
            return
        (var, (first, _)), = ranges.items()
        passes = Poly.sym(var) - first  # passes done before pass `var`
        for n, steps in growth.items():
            t = before[n]
            self.env[n].type = replace(t, shape=tuple(d + k * passes for d, k in zip(t.shape, steps, strict=True)))
        with self.scope(ranges):
            self.steps(st.body)
        for n, steps in growth.items():
            t, now = before[n], self.env[n].type
            want = tuple(d + k * (passes + Poly.const(1)) for d, k in zip(t.shape, steps, strict=True))
            if not self.unify_shapes(want, now.shape):
                self.err(f"{n} grows by a different amount on a later pass of this loop", st)


class _Scope:
    """Binds index variables for the duration of a loop, Σ or ∀."""

    def __init__(self, ch: Checker, ranges):
        self.ch, self.ranges = ch, ranges

    def __enter__(self):
        self.saved = {v: (self.ch.ranges.get(v), self.ch.env.get(v)) for v in self.ranges}
        for v, (first, count) in self.ranges.items():
            self.ch.ranges[v] = (first, count)
            self.ch.env[v] = Binding("index", replace(NAT, value=Poly.sym(v)))
        return self

    def __exit__(self, *exc):
        for v, (r, b) in self.saved.items():
            if r is None:
                self.ch.ranges.pop(v, None)
            else:
                self.ch.ranges[v] = r
            if b is None:
                self.ch.env.pop(v, None)
            else:
                self.ch.env[v] = b
        return False


def _targets(st: Step, bound) -> list[str]:
    """The names a step and the steps inside it assign: ``k_t`` under a bound ``t`` is the family
    ``k_□``; a function ``P(θ) ← …`` is ``P``."""
    bound = {*bound, *([st.var] if st.var else []), *st.vars}
    out = [st.dist] if st.dist else []
    t = st.target
    if t is not None and t.op == "index":
        t = t.args[0]
    if t is not None and t.op == "call":
        out.append(t.attr[0])
    elif t is not None and t.op == "name":
        base, scripts = split_name(t.attr)
        if any(v in bound for _, v in scripts):
            out.append(join_name(base, [(k, "□" if v in bound else v) for k, v in scripts]))
        else:
            out.append(t.attr)
    for b in st.body:
        out += _targets(b, bound)
    return out


def _decl_key(name: str, d: Decl) -> str:
    """A declared name's key: ``W^h_q_ℓ for h ∈ [H], ℓ ∈ [N]`` is the family ``W^□_q_□``."""
    over = {v for v, _ in d.over}
    base, scripts = split_name(name)
    return join_name(base, [(k, "□" if v in over else v) for k, v in scripts])


def _step_exprs(st: Step) -> Expr:
    """All the expressions of a step, as one expression to walk."""
    parts = [x for x in (st.target, st.value, st.cond) if x is not None]
    for b in st.body:
        parts.append(_step_exprs(b))
    return Expr("list", tuple(parts), ",")
