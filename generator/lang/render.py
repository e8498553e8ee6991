"""IR -> text: canonical card text (``cardgen fmt``), Phuong–Hutter
pseudocode (``cardgen render``) and Markdown.  Card text and pseudocode are
two spellings of one grammar, so both parse back to the same IR.
"""

from __future__ import annotations

from .ir import Card, Claim, Configuration, Decl, Expr, Group, Rule, Set, Step

# ------------------------------------------------------------ expressions
# Binding strength of each op: a child printed where a stronger one is
# needed gets parentheses.
LEVEL = {
    "cmp": 1, "choose": 1,
    "add": 2, "sub": 2,
    "matmul": 3, "mul": 3, "div": 3, "mod": 3,
    "neg": 4, "not": 4, "grad": 4, "sum": 4,
    "juxt": 5,
    "transpose": 6, "square": 6, "pow": 6, "index": 6,
    "sqrt": 5.5,  # √ takes the whole postfix chain after it: (√x)[i] needs its parentheses
}
ATOM = 7
INFIX = {"add": " + ", "sub": " − ", "matmul": " · ", "mul": " ⊙ ", "div": " / ", "mod": " mod "}
PREFIX = {"neg": "−", "not": "¬", "grad": "∇"}


def level(e: Expr) -> int:
    return LEVEL.get(e.op, ATOM)


def expr_text(e: Expr, compact: bool = False) -> str:
    """An expression as card text; ``compact`` drops spaces (shapes: ``H·d_mid``)."""
    return Printer(compact).show(e)


class Printer:
    def __init__(self, compact: bool = False):
        self.compact = compact

    def at(self, e: Expr, need: int) -> str:
        s = self.show(e)
        return f"({s})" if level(e) < need else s

    def show(self, e: Expr) -> str:
        return getattr(self, "op_" + e.op)(e)

    def infix(self, e: Expr) -> str:
        a, b = e.args
        lv = LEVEL[e.op]
        sym = INFIX[e.op].strip() if self.compact and e.op != "mod" else INFIX[e.op]
        return self.at(a, lv + _mixed(e, a)) + sym + self.at(b, lv + 1)

    op_add = op_sub = op_matmul = op_mul = op_div = op_mod = infix

    def op_floordiv(self, e):
        return "⌊" + self.infix(Expr("div", e.args)) + "⌋"

    def prefix(self, e: Expr) -> str:
        return PREFIX[e.op] + self.at(e.args[0], 4)

    op_neg = op_not = op_grad = prefix

    def op_name(self, e):
        return e.attr

    def op_num(self, e):
        return e.attr

    def op_inf(self, e):
        return "∞"

    def op_none(self, e):
        return ""

    def op_ellipsis(self, e):
        return "…"

    def op_sqrt(self, e):
        return "√" + self.at(e.args[0], 6)

    def op_juxt(self, e):
        a, b = e.args
        right = self.show(b)
        if level(b) < 6 or b.op == "list" or right.startswith("−"):
            right = f"({right})"
        return self.at(a, 5) + " " + right

    def op_transpose(self, e):
        return self.at(e.args[0], 6) + "^⊤"

    def op_square(self, e):
        return self.at(e.args[0], 6) + "²"

    def op_pow(self, e):
        return self.at(e.args[0], 6) + "^{" + self.show(e.args[1]) + "}"

    def op_index(self, e):
        base, *idx = e.args
        return self.at(base, 6) + bracket(", ".join(self.show(i) for i in idx))

    def op_slice(self, e):
        lo, hi = [self.show(x) for x in e.args]
        if not lo and not hi:
            return ":"
        return f"{lo} : {hi}".strip()

    def op_call(self, e):
        fname, n_in = e.attr
        ins = ", ".join(self.show(a) for a in e.args[:n_in])
        bar = ", ".join(self.show(a) for a in e.args[n_in:])
        return f"{fname}({ins}{' | ' if bar else ''}{bar})".replace("( | ", "(| ")

    def op_kwarg(self, e):
        name, idx = e.attr
        sub = f"[{', '.join(idx)}]" if idx else ""
        return f"{name}{sub} = {self.show(e.args[0])}"

    def op_list(self, e):
        sep = "; " if e.attr == ";" else ", "
        return bracket(sep.join(self.show(x) for x in e.args))

    def op_iverson(self, e):
        return "[[" + self.show(e.args[0]) + "]]"

    def op_set_builder(self, e):
        rng, cond = e.args
        return "{" + f"{e.attr} ∈ [{self.show(rng)}] : {self.show(cond)}" + "}"

    def op_cmp(self, e):
        a, b = e.args
        return f"{self.at(a, 2)} {e.attr} {self.at(b, 2)}"

    def op_choose(self, e):
        a, p, b = e.args
        return f"{self.at(a, 2)} with probability {self.at(p, 2)} else {self.at(b, 2)}"

    def op_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        if form == "implicit":
            sub = var
        elif form == "in":
            sub = "{" + f"{var}∈{self.show(bounds[0])}" + "}"
        else:
            sub = "{" + f"{var}={self.show(bounds[0])}" + "}^{" + self.show(bounds[1]) + "}"
        return f"Σ_{sub} " + (self.show(body) if body.op == "sum" else self.at(body, 5))


def _mixed(e: Expr, a: Expr) -> int:
    """1 where mod meets another product on its left (``(h mod 2) · w``, ``(2 · h) mod G``): the same
    binding strength, but parentheses say which is meant."""
    return int(LEVEL.get(e.op) == LEVEL.get(a.op) == LEVEL["mod"] and "mod" in (e.op, a.op) and e.op != a.op)


def bracket(inner: str) -> str:
    """[inner]; a space keeps "[ [" from reading as the Iverson bracket "[["."""
    return "[" + (" " if inner.startswith("[") else "") + inner + "]"


# ------------------------------------------------------------------- sets
SET_BASE = {"real": "ℝ", "nat": "ℕ", "integer": "ℤ", "boolean": "{0,1}"}


def dim_text(d: Expr) -> str:
    return expr_text(d, compact=True)


def set_text(s: Set | Group) -> str:
    if isinstance(s, Group):
        return group_text(s)
    if s.kind in SET_BASE:
        base = SET_BASE[s.kind]
    elif s.kind == "span":
        base = "{" + dim_text(s.bounds[0]) + ".." + dim_text(s.bounds[1]) + "}"
    elif s.kind == "upto":
        base = "[" + dim_text(s.bounds[0]) + "]"
    elif s.kind == "simplex":
        base = "Δ(" + dim_text(s.bounds[0]) + ")"
    else:
        base = "(" + ", ".join(dim_text(b) for b in s.bounds) + ")"
    if s.seq:
        return base + "*"
    if not s.shape:
        return base
    dims = [dim_text(d) for d in s.shape]
    if len(dims) == 1 and len(dims[0]) == 1:
        return f"{base}^{dims[0]}"
    return base + "^{" + "×".join(dims) + "}"


def group_text(g: Group) -> str:
    if g.card is None:
        return "{" + ", ".join(g.members) + "}"
    if not g.bindings:
        return g.card
    return g.card + "[" + ", ".join(f"{k} = {dim_text(v)}" for k, v in g.bindings) + "]"


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------ whole cards
ROLE_WORD = {
    "card": {"input": "input", "output": "output", "hyper": "hyper", "param": "param"},
    "text": {"input": "Input:", "output": "Output:", "hyper": "Hyperparameters:",
             "param": "Parameters:"},
}
DESC_COL_MAX = 44
NOTE_COL_MAX = 56


def signature(card: Card) -> str:
    ins = ", ".join(card.inputs)
    bar = (" | " + ", ".join(card.bar)) if card.bar else ""
    return f"{', '.join(card.outputs)} ← {card.name}({ins}{bar})".replace("( | ", "(| ")


def decl_body(d: Decl) -> str:
    names = ", ".join(d.names)
    if isinstance(d.set, Group):
        s = f"{names} = {group_text(d.set)}"
    else:
        s = f"{names} ∈ {set_text(d.set)}"
        if d.default is not None:
            s += f" = {expr_text(d.default)}"
    if d.over:
        s += " for " + ", ".join(f"{v} ∈ [{expr_text(n)}]" for v, n in d.over)
    return s


def config_head(c: Configuration) -> str:
    return c.name + (" (training)" if c.training else "")


def config_values(c: Configuration) -> str:
    """``V = 50257, D = 768``: the values as written, a minus sign as −."""
    return ", ".join(f"{k} = {v.replace('-', '−', 1) if v.startswith('-') else v}" for k, v in c.values)


def rule_head(rule: Rule, style: str) -> str:
    """``backward straight-through "why"`` in a card, ``Backward: straight-through — why`` in pseudocode."""
    head = "backward" if style == "card" else "Backward:"
    if rule.straight_through:
        head += " straight-through"
    if rule.desc is not None:
        head += " " + (quote(rule.desc) if style == "card" else f"— {rule.desc}")
    return head


def claim_text(c: Claim) -> str:
    return f"{c.name} {'⊆' if c.subset else '∈'} {set_text(c.set)}"


class CardWriter:
    """Lays out a card in one of two styles: ``card`` (the .card file) or
    ``text`` (the paper's pseudocode).  ``claims`` maps a step (by identity)
    to its checked claim; without it the card's own claims are written."""

    def __init__(self, style: str, claims: dict[int, Claim] | None = None,
                 count_line: str | None = None):
        self.style = style
        self.claims = claims
        self.count_line = count_line
        self.rows: list[tuple[int | None, int, str, str | None]] = []

    def card(self, card: Card) -> str:
        card_style = self.style == "card"
        out = [("algorithm " if card_style else "Algorithm: ") + signature(card)]
        ind = "  " if card_style else ""
        if card.purpose is not None:
            boxed = not card_style and "*/" not in card.purpose  # a purpose holding */ stays quoted
            out.append(ind + (f"/* {card.purpose} */" if boxed else quote(card.purpose)))
        conv = card.convention
        out.append(ind + ("convention " if card_style else "Convention: ")
                   + f"{conv.axes}, {conv.base}-based")
        out += self.decls(card.decls, ind)
        out += self.configs(card.configs, ind)
        if self.count_line:
            out.append(ind + self.count_line)
        self.rows = []
        self.number = 0
        for st in card.steps:
            self.step(st, 0)
        out += self.layout_steps(ind)
        if card.rule is not None:  # numbered on from the forward's steps, so each step has one number
            self.rows = []
            out.append(ind + rule_head(card.rule, self.style))
            for st in card.rule.steps:
                self.step(st, 0)
            out += self.layout_steps(ind)
        return "\n".join(out) + "\n"

    def decls(self, decls, ind: str) -> list[str]:
        words = ROLE_WORD[self.style]
        role_w = max((len(words[d.role]) for d in decls), default=0)
        bodies = [decl_body(d) for d in decls]
        col = min(DESC_COL_MAX, max((len(b) for b in bodies), default=0))
        lines = []
        for d, body in zip(decls, bodies, strict=True):
            line = f"{ind}{words[d.role].ljust(role_w)} {body}"
            if d.desc is not None:
                desc = quote(d.desc) if self.style == "card" else f"— {d.desc}"
                line = f"{ind}{words[d.role].ljust(role_w)} {body.ljust(col)}  {desc}"
            lines.append(line.rstrip())
        return lines

    def configs(self, configs: tuple[Configuration, ...], ind: str) -> list[str]:
        word = "config" if self.style == "card" else "Configuration"
        heads = [config_head(c) + ":" for c in configs]
        col = max((len(h) for h in heads), default=0)
        bodies = [f"{head.ljust(col)} {config_values(c)}" for c, head in zip(configs, heads, strict=True)]
        desc_col = max((len(b) for b in bodies), default=0)
        lines = []
        for c, body in zip(configs, bodies, strict=True):
            if c.desc is not None:
                body = body.ljust(desc_col) + "  " + (quote(c.desc) if self.style == "card" else f"— {c.desc}")
            lines.append(f"{ind}{word} {body}")
        return lines

    def note_of(self, st: Step) -> str | None:
        claim = self.claims.get(id(st)) if self.claims is not None else st.claim
        parts = [claim_text(claim)] if claim else []
        if st.note:
            parts.append(st.note)
        return "; ".join(parts) if parts else None

    def emit(self, depth: int, text: str, note: str | None, numbered: bool = True):
        if numbered:
            self.number += 1
        self.rows.append((self.number if numbered else None, depth, text, note))

    def step(self, st: Step, depth: int):
        if st.kind == "remark":
            self.emit(depth, "▷ " + st.note, None, numbered=False)
            return
        if st.kind in ("for", "while") and not st.inline:
            self.emit(depth, self.block_head(st), st.note)
            for s in st.body:
                self.step(s, depth + 1)
            self.emit(depth, "end", None)
            return
        self.emit(depth, self.stmt(st), self.note_of(st))

    def block_head(self, st: Step) -> str:
        if st.kind == "while":
            return f"while {expr_text(st.cond)} do"
        if len(st.domain) == 2:
            start, stop = st.domain
            second = _next(start)
            mid = f", {second}" if second else ""
            return f"for {st.var} = {expr_text(start)}{mid}, …, {expr_text(stop)} do"
        return f"for {st.var} ∈ [{expr_text(st.domain[0])}] do"

    def stmt(self, st: Step) -> str:
        k = st.kind
        if k == "assign":
            return f"{expr_text(st.target)} ← {expr_text(st.value)}"
        if k == "if":
            return f"if {expr_text(st.cond)} then {self.stmt(st.body[0])}"
        if k == "sample":
            if st.dist:
                return f"{expr_text(st.target)} ∼ {st.dist} ∝ {expr_text(st.value)}"
            return f"{expr_text(st.target)} ∼ {expr_text(st.value)}"
        if k == "return":
            if st.target is not None:
                return f"return {expr_text(st.target)} = {expr_text(st.value)}"
            return f"return {expr_text(st.value)}"
        if k == "for":
            return f"for {st.var} ∈ [{expr_text(st.domain[0])}] : {self.stmt(st.body[0])}"
        if k == "forall":
            return f"∀{', '.join(st.vars)}: {self.stmt(st.body[0])}"
        raise ValueError(f"cannot write a {k} step inline")

    def layout_steps(self, ind: str) -> list[str]:
        width = len(str(self.number)) if self.number else 1
        texts = []
        for n, depth, text, note in self.rows:
            num = str(n).rjust(width) if n is not None else " " * width
            texts.append((f"{ind}{num} {'  ' * depth}{text}", note))
        col = min(NOTE_COL_MAX, max((len(t) for t, nt in texts if nt), default=0))
        return [(f"{t.ljust(col)}  ▷ {nt}" if nt else t).rstrip() for t, nt in texts]


def _next(start: Expr) -> str | None:
    if start.op == "num" and start.attr.isdigit():
        return str(int(start.attr) + 1)
    return None


def card_text(card: Card, claims: dict[int, Claim] | None = None) -> str:
    """Canonical card text, as ``cardgen fmt`` writes it."""
    return CardWriter("card", claims).card(card)


def pseudocode(card: Card, claims: dict[int, Claim] | None = None,
               count_line: str | None = None) -> str:
    """Phuong–Hutter pseudocode, as ``cardgen render`` prints it."""
    return CardWriter("text", claims, count_line).card(card)
