"""Questions an editor asks about a card, answered from its checked IR. Places are 1-based
(line, column) in code points, as the parser counts them; server.py converts to the protocol's units."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ..lang.check import BUILTINS, Binding, Checked, Library
from ..lang.check_call import ELEMENTWISE
from ..lang.errors import CardError
from ..lang.ir import Card, Decl, Expr, Pos, Step
from ..lang.names import join_name, split_name
from ..lang.render import claim_text, signature
from ..lang.types import Type, type_text

Place = tuple[int, int]  # (line, col), 1-based

ROLE = {"input": "input", "output": "output", "hyper": "hyperparameter", "param": "parameter",
        "local": "computed in a step", "index": "loop index", "dim": "dimension (a length known at run time)",
        "func": "function", "group": "parameter group"}


def inside(pos: Pos | None, at: Place) -> bool:
    return pos is not None and (pos.line, pos.col) <= at < (pos.end_line, pos.end_col)


def size(pos: Pos) -> tuple[int, int]:
    return (pos.end_line - pos.line, pos.end_col - pos.col)


# ------------------------------------------------------------------ walking the card
def step_exprs(st: Step):
    """(expression, its step) for every expression of a step and the steps inside it."""
    for e in (st.target, st.value, st.cond, *st.domain):
        if e is not None:
            yield from ((x, st) for x in walk(e))
    for b in st.body:
        yield from step_exprs(b)


def walk(e: Expr):
    yield e
    for a in e.args:
        if isinstance(a, Expr):
            yield from walk(a)


def every_step(card: Card) -> tuple[Step, ...]:
    """The card's steps, then its backward rule's."""
    return card.steps + (card.rule.steps if card.rule is not None else ())


def all_steps(steps):
    for st in steps:
        yield st
        yield from all_steps(st.body)


def expr_at(card: Card, at: Place) -> tuple[Expr, Step | None] | None:
    """The innermost expression at ``at`` (in a step, or a declaration's default)."""
    found = [(e, st) for top in every_step(card) for e, st in step_exprs(top) if inside(e.pos, at)]
    found += [(e, None) for d in card.decls if d.default is not None for e in walk(d.default) if inside(e.pos, at)]
    return min(found, key=lambda x: size(x[0].pos)) if found else None


NAME_CHARS = r"[^\s,;:(){}\[\]=∈←|⊙·+−*/√⊤\"▷]+"


def word_at(source: str, at: Place) -> str | None:
    """The name-like run of characters at ``at`` in the text (for declaration lines, which keep no
    position per name)."""
    lines = source.split("\n")
    if not 0 < at[0] <= len(lines):
        return None
    for m in re.finditer(NAME_CHARS, lines[at[0] - 1]):
        if m.start() < at[1] <= m.end() or m.end() == at[1] - 1 and m.end() > m.start():
            return m.group()
    return None


def decl_at(card: Card, at: Place) -> Decl | None:
    return next((d for d in card.decls if d.pos is not None and d.pos.line == at[0]), None)


def binding(checked: Checked, text: str) -> tuple[str, Binding] | None:
    """A name as written (``Y^h``, ``k_t``, ``W_q``) to its binding, a family's by any index."""
    if text in checked.env:
        return text, checked.env[text]
    base, scripts = split_name(text)
    for mask in itertools.product((False, True), repeat=min(len(scripts), 4)):
        key = join_name(base, [(k, "□" if m else v) for (k, v), m in zip(scripts, mask, strict=False)])
        if key in checked.env:
            return key, checked.env[key]
    return None


# ------------------------------------------------------------------ hover
def shown(t: Type) -> str:
    if t.kind == "group":
        return "a parameter group"
    if t.kind == "func":
        return "a function" + (f" giving {shown(t.result)}" if t.result is not None else "")
    return type_text(t)


def hover(checked: Checked, lib: Library, at: Place) -> tuple[str, Pos | None] | None:
    """Markdown for what is at ``at``: a name's checked type and shape, a call's callee."""
    card = checked.card
    hit = expr_at(card, at)
    if hit is not None:
        e, st = hit
        if e.op == "call" and at < _args_start(e):
            return call_hover(e.attr[0], lib), e.pos
        if e.op == "name":
            t = checked.types.get(id(e))
            if t is None and st is not None and id(st) in checked.claims and e is st.target:
                return _code(claim_text(checked.claims[id(st)])), e.pos
            found = binding(checked, e.attr)
            if t is None and found is not None:
                t = found[1].type
            if t is not None:
                return _code(f"{e.attr} ∈ {shown(t)}") + _about(card, found), e.pos
        t = checked.types.get(id(e))
        if t is not None:
            return _code(f"{_source_of(card, e.pos)} ∈ {shown(t)}"), e.pos
    word = word_at(card.source, at)
    if word is None:
        return None
    if decl_at(card, at) is not None or word in checked.env:
        found = binding(checked, word)
        if found is not None:
            key, b = found
            return _code(f"{word} ∈ {shown(b.type)}") + _about(card, found), None
    if word in lib.names():
        return call_hover(word, lib), None
    return None


def _args_start(e: Expr) -> Place:
    firsts = [a.pos for a in e.args if isinstance(a, Expr) and a.pos is not None]
    return min(((p.line, p.col) for p in firsts), default=(e.pos.end_line, e.pos.end_col))


def _source_of(card: Card, pos: Pos) -> str:
    lines = card.source.split("\n")
    if pos.line == pos.end_line:
        return lines[pos.line - 1][pos.col - 1:pos.end_col - 1]
    return lines[pos.line - 1][pos.col - 1:] + " …"


def _code(text: str) -> str:
    return f"```card\n{text}\n```"


def _about(card: Card, found: tuple[str, Binding] | None) -> str:
    if found is None:
        return ""
    key, b = found
    parts = [ROLE.get(b.role, b.role)]
    if b.over:
        parts.append("a family over " + ", ".join(type_text(Type("nat", (o,))).removeprefix("ℕ^") for o in b.over))
    if b.decl is not None and b.decl.desc:
        parts.append(b.decl.desc)
    return "\n\n" + " — ".join(parts)


def call_hover(name: str, lib: Library) -> str:
    if name in BUILTINS:
        kind = "element-wise" if name in ELEMENTWISE else BUILTINS[name]
        return _code(f"{name}(…)") + f"\n\nbuilt-in ({kind})"
    try:
        card = lib.card(name)
    except CardError as e:
        return f"`{name}`: {e.message}"
    if card is None:
        return f"`{name}`: no card of that name on the search path"
    text = _code("algorithm " + signature(card))
    if card.purpose:
        text += f"\n\n{card.purpose}"
    return text + f"\n\n{card.path}"


# ------------------------------------------------------------------ definition
@dataclass(frozen=True)
class Target:
    path: str
    pos: Pos | None  # None: the top of the file


def definition(checked: Checked, lib: Library, at: Place) -> Target | None:
    card = checked.card
    hit = expr_at(card, at)
    word = None
    if hit is not None:
        e, _ = hit
        if e.op == "call" and at < _args_start(e):
            word = e.attr[0]
        elif e.op == "name":
            found = binding(checked, e.attr)
            if found is not None and found[1].pos is not None:
                return Target(card.path, found[1].pos)
            word = e.attr
    word = word or word_at(card.source, at)
    if word is None:
        return None
    found = binding(checked, word)
    if found is not None and found[1].pos is not None and decl_at(card, at) is None:
        return Target(card.path, found[1].pos)
    try:
        other = lib.card(word) if word not in BUILTINS else None
    except CardError:
        other = None
    if other is not None and other.path != card.path:
        return Target(other.path, other.pos)
    return None


# ------------------------------------------------------------------ completion
def completions(checked: Checked | None, lib: Library) -> list[tuple[str, str, str]]:
    """(label, kind, detail): the card's names, the built-ins and the cards on the search path."""
    out = []
    if checked is not None:
        for n, b in checked.env.items():
            if b.role not in ("index",) and "□" not in n:
                out.append((n, "variable" if b.role in ("local", "input", "output") else "constant",
                            f"{ROLE.get(b.role, b.role)}: {shown(b.type)}"))
            elif "□" in n:
                out.append((n.replace("□", "•"), "variable", f"family: {shown(b.type)}"))
    out += [(f, "function", "built-in") for f in BUILTINS]
    out += [(n, "module", "card") for n in lib.names()]
    seen, unique = set(), []
    for item in out:
        if item[0] not in seen:
            seen.add(item[0])
            unique.append(item)
    return unique


# ------------------------------------------------------------------ ▷ claims
@dataclass(frozen=True)
class Edit:
    line: int
    col: int
    end_line: int
    end_col: int
    text: str


def claim_edits(checked: Checked, lines: range | None = None) -> list[Edit]:
    """Insert the ▷ claim each step lacks and correct those the checker would write otherwise,
    keeping the free-text note after ``;``."""
    card = checked.card
    src = card.source.split("\n")
    edits = []
    for st in _claim_steps(every_step(card)):
        new = checked.claims.get(id(st))
        if new is None or st.pos is None or lines is not None and st.pos.line not in lines:
            continue
        old = st.claim
        if old is not None and claim_text(old) == claim_text(new):
            continue
        comment = "▷ " + "; ".join([claim_text(new)] + ([st.note] if st.note else []))
        if old is not None and old.pos is not None:
            edits.append(Edit(old.pos.line, old.pos.col, old.pos.end_line, old.pos.end_col, comment))
            continue
        text = src[st.pos.end_line - 1]
        mark = text.find("▷", st.pos.end_col - 1)
        if mark >= 0:
            end = len(text.rstrip())
            edits.append(Edit(st.pos.end_line, mark + 1, st.pos.end_line, end + 1, comment))
        else:
            end = len(text.rstrip())
            edits.append(Edit(st.pos.end_line, end + 1, st.pos.end_line, end + 1, "  " + comment))
    return edits


def _claim_steps(steps):
    """Steps that carry a claim: not block loops themselves, but the steps in them."""
    for st in steps:
        if st.kind in ("for", "while") and not st.inline:
            yield from _claim_steps(st.body)
        elif st.kind != "remark":
            yield st
