"""Text (a card, or the pseudocode `cardgen render` prints) -> IR.

The only module that imports lark.  The grammar lives in ``grammar/card.lark``
(shipped inside the package as ``cardgen.grammar``); the tree-to-IR transformer
below is one small method per grammar alias.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import time
import unicodedata
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import lark
from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive

from . import ir
from .errors import CardError
from .files import atomic_write
from .ir import Card, Claim, Configuration, Convention, Decl, Expr, Group, Pos, Rule, Set, Step
from .limits import MAX_DEPTH
from .scanner import TerminalContextualLexer

# Parsing and checking take about 20 µs of CPU a character (Lark is half of
# it), so a card this long is answered in under half a second, under a second
# on a busy machine; the longest card in cards/ has 4,136 characters.
MAX_BYTES = 20_000
# Python's int() refuses more than 4,300 digits, and no card needs a number of
# more than a few; the cap also bounds the coefficients of a dimension.
MAX_NUMBER = 100

# Terminal names as a user would say them, for "expected …" messages.
WORDS = {
    "NAME": "a name", "CALLNAME": "a call like f(", "NUMBER": "a number",
    "STRING": 'a "description"', "DESC": "a — description", "NOTE": "a ▷ comment",
    "PURPOSE": "a /* purpose */", "KWARG": "a named argument like Mask =",
    "STEPNO": "a step number", "_NL": "end of line", "$END": "end of file",
    "ALGORITHM": '"algorithm"', "CONVENTION": '"convention"', "AXES": '"columns" or "rows"',
    "BASE": '"1-based" or "0-based"', "ROLE": "input, output, hyper or param",
    "ARROW": '"←"', "IN": '"∈"', "BAR": '"|"', "FOR": '"for"', "FORALL": '"∀"', "DO": '"do"',
    "END": '"end"', "WHILE": '"while"', "IF": '"if"', "THEN": '"then"', "RETURN": '"return"',
    "WITH": '"with"', "PROBABILITY": '"probability"', "ELSE": '"else"', "SAMPLE": '"∼"',
    "PROPTO": '"∝"', "REAL": '"ℝ"', "NAT": '"ℕ"', "INT_SET": '"ℤ"', "STAR": '"*"',
    "TIMES": '"×"', "DOTS": '".."', "ELLIPSIS": '"…"', "SEMI": '";"', "COLON": '":"',
    "DOT": '"·"', "HADAMARD": '"⊙"', "MINUS": '"−"', "NOT": '"¬"', "NABLA": '"∇"',
    "SIGMA": '"Σ"', "SQRT": '"√"',
    "MOD": '"mod"', "LFLOOR": '"⌊"', "RFLOOR": '"⌋"', "INF": '"∞"', "TRANSPOSE": '"^⊤"', "SQUARED": '"²"',
    "CMP": "a comparison", "ISO": '"[["', "ISC": '"]]"', "EQ": '"="', "COUNT_LINE": "a parameter count",
    "CONFIG": '"config"', "CONFIG_NAME": "a configuration name like gpt2-medium",
    "TRAINING": '"(training)"', "BACKWARD": '"backward"', "STRAIGHT": '"straight-through"',
    "SIMPLEX": '"Δ"', "SUBSET": '"⊆"',
}
ROLES = {"input": "input", "output": "output", "hyper": "hyper", "param": "param",
         "Input:": "input", "Output:": "output", "Hyperparameters:": "hyper",
         "Parameters:": "param"}
CMP_CANON = {"<=": "≤", ">=": "≥", "!=": "≠", "==": "="}
CLAIM_RE = re.compile(r"^\s*[^\s∈⊆;]+\s*(∈|in|⊆|subseteq)\s*[ℝℕℤΔ{\[(RNZ]")


class BracketPostLex:
    """Tells the "]]" that closes ``[[t ≤ t′]]`` from two "]" closing nested
    indexes (``W_e[:, x[t]]``): the lexer only makes single "]", and two
    adjacent ones become one ISC token when the innermost open bracket is
    an Iverson ``[[``."""

    always_accept = ("RSQB",)

    def process(self, stream):
        stack: list[str] = []
        stream = iter(stream)
        for tok in stream:
            if tok.type in ("LSQB", "ISO"):
                stack.append(tok.type)
            elif tok.type == "RSQB" and stack:
                if stack.pop() == "ISO":
                    nxt = next(stream, None)
                    if nxt is not None and nxt.type == "RSQB" and nxt.start_pos == tok.end_pos:
                        tok = Token.new_borrow_pos("ISC", "]]", tok)
                        tok.end_column, tok.end_pos = nxt.end_column, nxt.end_pos
                        yield tok
                        continue
                    yield tok
                    if nxt is not None:
                        yield nxt
                    continue
            yield tok


PARSER_OPTIONS = {"parser": "lalr", "lexer": "contextual", "propagate_positions": True,
                  "start": ["start", "claim_start", "dim_start"], "maybe_placeholders": False,
                  "_plugins": {"ContextualLexer": TerminalContextualLexer}}


@cache
def _parser() -> lark.Lark:
    text = resources.files("cardgen.grammar").joinpath("card.lark").read_text("utf-8")
    return cached_parser(text, cache_dir())


def _build_parser(grammar: str) -> lark.Lark:
    return lark.Lark(grammar, postlex=BracketPostLex(), **PARSER_OPTIONS)


# ------------------------------------------------------------ parser cache
# Building the LALR tables takes ~0.4 s of CPU, most of a `cardgen check`; loading them takes
# ~20 ms. The cache file is named by, and starts with, a hash of everything the tables depend
# on (the grammar's text, the options, Lark's and Python's versions), so a changed grammar is a
# different file and a file that does not start with the current key is never used. Each
# grammar or template edit writes a new file, so writing one also removes those not used for
# STALE_DAYS (use refreshes a file's time): two installs sharing the folder each keep theirs.
STALE_DAYS = 30


def cache_dir() -> Path | None:
    """Where the built parser is kept between runs: ``$CARDGEN_CACHE_DIR`` (``off``: nowhere),
    else ``$XDG_CACHE_HOME/cardgen``, else ``~/.cache/cardgen``."""
    env = os.environ.get("CARDGEN_CACHE_DIR")
    if env is not None:
        return None if env in ("", "off") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative (which the XDG spec says to ignore)
        home = os.path.expanduser("~")
        if not os.path.isabs(home):  # no home at all: no cache, rather than one in the current folder
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "cardgen"


def parser_key(grammar: str) -> str:
    parts = [grammar, repr(sorted(PARSER_OPTIONS.items())), lark.__version__, sys.version]
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def cached_parser(grammar: str, folder: Path | None) -> lark.Lark:
    """The parser for ``grammar``, loaded from ``folder`` when a file there was built from this
    very grammar, else built (and saved there for the next run). The cache is an optimisation
    only: a folder that cannot be used, or a damaged or foreign file, means building afresh."""
    if folder is None:
        return _build_parser(grammar)
    key = parser_key(grammar).encode("ascii")
    path = folder / f"parser-{key[:32].decode()}.lark.pickle"
    data = _read_private(path)
    if data is not None and data.startswith(key + b"\n"):
        try:
            parser = lark.Lark.load(io.BytesIO(data[len(key) + 1:]))
        except Exception:  # noqa: BLE001 - written by an older Lark, or damaged: build it again
            pass
        else:
            mark_used(path)
            return parser
    parser = _build_parser(grammar)
    buf = io.BytesIO(key + b"\n")
    buf.seek(0, io.SEEK_END)
    parser.save(buf)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _private(folder):
            atomic_write(path, buf.getvalue(), 0o600)
            prune(folder, "parser-*.lark.pickle", path)
    except OSError:
        pass  # a read-only home, a full disk: run without the cache
    return parser


def mark_used(path: Path) -> None:
    """Refreshes a cache file's time (at most once a day: a check should not write on every run)."""
    try:
        if path.stat().st_mtime < time.time() - 86400:
            os.utime(path)
    except OSError:
        pass


def prune(folder: Path, pattern: str, keep: Path) -> None:
    """Removes our cache files matching ``pattern`` in ``folder``, other than ``keep``, that no run
    has used for STALE_DAYS."""
    cutoff = time.time() - STALE_DAYS * 86400
    for old in folder.glob(pattern):
        try:
            if old != keep and _private(old) and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def _private(path: Path) -> bool:
    """Ours, and nobody else can write to it: the cache is unpickled, so it must be trusted."""
    try:
        st = path.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _read_private(path: Path) -> bytes | None:
    if not (_private(path.parent) and _private(path)):
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def _pos_of(x) -> Pos | None:
    if isinstance(x, Expr):
        return x.pos
    if isinstance(x, Token):
        return Pos(x.line, x.column, x.end_line, x.end_column)
    meta = getattr(x, "meta", x)
    if getattr(meta, "empty", True):
        return None
    return Pos(meta.line, meta.column, meta.end_line, meta.end_column)


def _exprs(children):
    return [c for c in children if not isinstance(c, Token)]


def _tok(children, *types):
    return [c for c in children if isinstance(c, Token) and c.type in types]


def unquote(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s[1:-1])


@v_args(meta=True)
class ToIR(Transformer_NonRecursive):
    """Lark tree -> IR.  Each method is named after a grammar alias."""

    # ---------------------------------------------------------- expressions
    def name(self, m, c):
        return ir.name(str(c[0]), _pos_of(m))

    def num(self, m, c):
        text = str(c[0])
        if len(text) > MAX_NUMBER:
            raise CardError(f"a number of {len(text):,} characters; numbers have at most {MAX_NUMBER}",
                            _pos_of(m), hint="name a large size as a hyperparameter: `hyper K ∈ ℕ`")
        return ir.num(text, _pos_of(m))

    def inf(self, m, c):
        return Expr("inf", (), None, _pos_of(m))

    def _op(op):  # noqa: N805 - a method factory used in the class body
        def build(self, m, c):
            return Expr(op, tuple(_exprs(c)), None, _pos_of(m))
        return build

    add, sub, matmul, mul, div = _op("add"), _op("sub"), _op("matmul"), _op("mul"), _op("div")
    neg, not_, grad, sqrt = _op("neg"), _op("not"), _op("grad"), _op("sqrt")
    juxt, transpose, square, pow = _op("juxt"), _op("transpose"), _op("square"), _op("pow")
    index, iverson, choose = _op("index"), _op("iverson"), _op("choose")
    mod = _op("mod")

    def floor_(self, m, c):
        return _floordiv(_exprs(c)[0], _pos_of(m))

    def target_index(self, m, c):
        base = ir.name(str(c[0]), _pos_of(c[0]))
        return Expr("index", (base, *_exprs(c)), None, _pos_of(m))

    def slice(self, m, c):
        lo = hi = None
        seen_colon = False
        for x in c:
            if isinstance(x, Token):
                seen_colon = True
            elif seen_colon:
                hi = x
            else:
                lo = x
        none = Expr("none")
        return Expr("slice", (lo or none, hi or none), None, _pos_of(m))

    def cmp(self, m, c):
        a, op, b = c
        return Expr("cmp", (a, b), CMP_CANON.get(str(op), str(op)), _pos_of(m))

    def sum(self, m, c):
        var, form, bounds = c[1]
        return Expr("sum", (c[2], *bounds), (var, form), _pos_of(m))

    def sum_implicit(self, m, c):
        return (str(c[0]), "implicit", ())

    def sum_span(self, m, c):
        hi = c[2] if not isinstance(c[2], Token) else ir.name(str(c[2]), _pos_of(c[2]))
        return (str(c[0]), "span", (c[1], hi))

    def sum_in(self, m, c):
        return (str(c[0]), "in", (c[2],))

    def call(self, m, c):
        fname = str(c[0])[:-1]
        inputs, bar, has_bar = c[1]
        if fname == "sqrt" and len(inputs) == 1 and not has_bar:  # ASCII for √
            return Expr("sqrt", (inputs[0],), None, _pos_of(m))
        if fname == "floor" and len(inputs) == 1 and not has_bar:  # ASCII for ⌊a / b⌋
            return _floordiv(inputs[0], _pos_of(m))
        return Expr("call", (*inputs, *bar), (fname, len(inputs)), _pos_of(m))

    def args(self, m, c):
        inputs, bar, seen = [], [], False
        for x in c:
            if isinstance(x, Token):
                seen = True
            else:
                (bar if seen else inputs).append(x)
        return inputs, bar, seen

    def kwarg(self, m, c):
        text = str(c[0]).rstrip("=≡ \t")
        name, _, idx = text.partition("[")
        idxs = tuple(s.strip() for s in idx.rstrip("] ").split(",")) if idx else ()
        return Expr("kwarg", (c[1],), (name.strip(), idxs), _pos_of(m))

    def list_(self, m, c):
        items, sep = c[0]
        return Expr("list", tuple(items), sep, _pos_of(m))

    def list_items(self, m, c):
        sep = ";" if _tok(c, "SEMI") else ","
        items = []
        for x in _exprs(c):
            items.extend(x if isinstance(x, tuple) else (x,))
        return items, sep

    def ellipsis(self, m, c):
        return Expr("ellipsis", (), None, _pos_of(m))

    def ellipsis_then(self, m, c):
        return (Expr("ellipsis", (), None, _pos_of(c[0])), c[1])

    def set_builder(self, m, c):
        var = str(c[0])
        rng, cond = _exprs(c)
        return Expr("set_builder", (rng, cond), var, _pos_of(m))

    def fun_target(self, m, c):
        args = tuple(ir.name(str(t), _pos_of(t)) for t in c[1:])
        return Expr("call", args, (str(c[0])[:-1], len(args)), _pos_of(m))

    # ---------------------------------------------------------------- steps
    def assign(self, m, c):
        target, value = _exprs(c)
        return Step("assign", target=target, value=value, pos=_pos_of(m))

    def if_then(self, m, c):
        cond, body = _exprs(c)
        return Step("if", cond=cond, body=(body,), pos=_pos_of(m))

    def sample_from(self, m, c):
        target, _, dist, _, weights = c
        return Step("sample", target=ir.name(str(target), _pos_of(target)), value=weights,
                    dist=str(dist), pos=_pos_of(m))

    def sample(self, m, c):
        return Step("sample", target=ir.name(str(c[0]), _pos_of(c[0])), value=c[2], pos=_pos_of(m))

    def return_named(self, m, c):
        return Step("return", target=ir.name(str(c[1]), _pos_of(c[1])), value=c[2], pos=_pos_of(m))

    def return_(self, m, c):
        return Step("return", value=c[1], pos=_pos_of(m))

    def for_in_inline(self, m, c):
        var = _tok(c, "NAME")[0]
        bound, body = _exprs(c)
        return Step("for", var=str(var), domain=(bound,), body=(body,), inline=True, pos=_pos_of(m))

    def forall(self, m, c):
        names = tuple(str(t) for t in _tok(c, "NAME"))
        (body,) = _exprs(c)
        return Step("forall", vars=names, body=(body,), pos=_pos_of(m))

    def for_count(self, m, c):
        var = str(_tok(c, "NAME")[0])
        ell = next(i for i, x in enumerate(c) if isinstance(x, Token) and x.type == "ELLIPSIS")
        head = _exprs(c[:ell])
        stop = _exprs(c[ell:])[0]
        body = tuple(x for x in _exprs(c[ell:])[1:] if isinstance(x, Step))
        start = head[0]
        if len(head) == 2 and not _counts_by_one(start, head[1]):
            raise CardError("a counting loop goes up by one", _pos_of(head[1]),
                            hint=f"write `for {var} = 1, 2, …, {_plain(stop)} do` "
                                 f"or `for {var} = 1, …, {_plain(stop)} do`")
        return Step("for", var=var, domain=(start, stop), body=body, note=_block_note(c),
                    pos=_pos_of(m))

    def for_in(self, m, c):
        var = str(_tok(c, "NAME")[0])
        exprs = _exprs(c)
        return Step("for", var=var, domain=(exprs[0],), body=tuple(exprs[1:]),
                    note=_block_note(c), pos=_pos_of(m))

    def while_(self, m, c):
        exprs = _exprs(c)
        return Step("while", cond=exprs[0], body=tuple(exprs[1:]), note=_block_note(c),
                    pos=_pos_of(m))

    def step(self, m, c):
        (st,) = _exprs(c)
        notes = _tok(c, "NOTE")
        if notes:
            note, claim = _split_note(notes[0])
            st = _replace(st, note=note, claim=claim)
        return st

    def remark(self, m, c):
        return Step("remark", note=_note_text(c[0]), pos=_pos_of(m))

    # --------------------------------------------------------- declarations
    def tensor_set(self, m, c):
        base, *rest = c
        shape = rest[0] if rest else ()
        return Set(base.kind, base.bounds, tuple(shape), False, _pos_of(m))

    def seq_set(self, m, c):
        return Set(c[0].kind, c[0].bounds, (), True, _pos_of(m))

    def real(self, m, c):
        return Set("real", pos=_pos_of(m))

    def nat(self, m, c):
        return Set("nat", pos=_pos_of(m))

    def integer(self, m, c):
        return Set("integer", pos=_pos_of(m))

    def boolean(self, m, c):
        if (str(c[0]), str(c[1])) != ("0", "1"):
            raise CardError("a two-element set must be {0,1}", _pos_of(m),
                            hint="write {0,1} for booleans or {lo..hi} for a range of integers")
        return Set("boolean", pos=_pos_of(m))

    def span(self, m, c):
        lo, hi = _exprs(c)
        return Set("span", (lo, hi), pos=_pos_of(m))

    def upto(self, m, c):
        return Set("upto", (c[0],), pos=_pos_of(m))

    def interval(self, m, c):
        return Set("interval", tuple(c), pos=_pos_of(m))

    def simplex(self, m, c):
        return Set("simplex", tuple(_exprs(c)), pos=_pos_of(m))

    def shape(self, m, c):
        return tuple(_exprs(c))

    def decl(self, m, c):
        role = ROLES[str(c[0])]
        names = c[1]
        st = c[3]
        default = desc = None
        over = ()
        for x in c[4:]:
            kind, val = x
            if kind == "default":
                default = val
            elif kind == "over":
                over = val
            else:
                desc = val
        return Decl(role, names, st, default, over, desc, _pos_of(m))

    def group_decl(self, m, c):
        role = ROLES[str(c[0])]
        over, desc = (), None
        for kind, val in c[3:]:
            if kind == "over":
                over = val
            else:
                desc = val
        return Decl(role, c[1], c[2], None, over, desc, _pos_of(m))

    def config(self, m, c):
        training = any(isinstance(t, Token) and t.type == "TRAINING" for t in c)
        items = [x for x in c if isinstance(x, tuple) and x[0] == "item"]
        desc = next((x[1] for x in c if isinstance(x, tuple) and x[0] == "desc"), None)
        return Configuration(str(c[1]), tuple(x[1] for x in items), training, desc, _pos_of(m),
                             tuple(x[2] for x in items))

    def config_item(self, m, c):
        sign = "-" if len(c) == 3 else ""
        return ("item", (str(c[0]), sign + str(c[-1])), _pos_of(m))

    def rule(self, m, c):
        ste = any(isinstance(t, Token) and t.type == "STRAIGHT" for t in c)
        desc = next((x[1] for x in c if isinstance(x, tuple) and x[0] == "desc"), None)
        return Rule(tuple(x for x in c if isinstance(x, Step)), ste, desc, _pos_of(c[0]))

    def count_line(self, m, c):
        return None

    def default(self, m, c):
        return ("default", c[0])

    def over(self, m, c):
        names = [str(t) for t in _tok(c, "NAME")]
        return ("over", tuple(zip(names, _exprs(c), strict=True)))

    def desc(self, m, c):
        t = c[0]
        return ("desc", (unquote(str(t)) if t.type == "STRING" else str(t)[1:]).strip())

    def members(self, m, c):
        return Group(members=c[0], pos=_pos_of(m))

    def card_group(self, m, c):
        return Group(card=str(c[0]), bindings=tuple(c[1:]), pos=_pos_of(m))

    def binding(self, m, c):
        return (str(c[0]), c[1])

    def names(self, m, c):
        return tuple(str(t) for t in c)

    sig_names = names

    # ---------------------------------------------------------------- card
    def header(self, m, c):
        outputs = c[1]
        fname = next(t for t in c if isinstance(t, Token) and t.type == "CALLNAME")
        groups, seen_bar, inputs, bar = list(c), False, (), ()
        for x in groups:
            if isinstance(x, Token) and x.type == "BAR":
                seen_bar = True
            elif isinstance(x, tuple) and x is not outputs:
                if seen_bar:
                    bar = x
                else:
                    inputs = x
        return ("header", str(fname)[:-1], outputs, inputs, bar, _pos_of(m))

    def purpose(self, m, c):
        t = c[0]
        text = unquote(str(t)) if t.type == "STRING" else str(t)[2:-2]
        return ("purpose", text.strip())

    def convention(self, m, c):
        return ("convention", Convention(str(c[1]), int(str(c[2])[0])))

    def card(self, m, c):
        _, name, outputs, inputs, bar, pos = c[0]
        purpose, conv = None, Convention()
        decls, steps, configs, rule = [], [], [], None
        for x in c[1:]:
            if isinstance(x, tuple) and x[0] == "purpose":
                purpose = x[1]
            elif isinstance(x, tuple) and x[0] == "convention":
                conv = x[1]
            elif isinstance(x, Decl):
                decls.append(x)
            elif isinstance(x, Step):
                steps.append(x)
            elif isinstance(x, Configuration):
                configs.append(x)
            elif isinstance(x, Rule):
                rule = x
        return Card(name, outputs, inputs, bar, purpose, conv, tuple(decls), tuple(steps), tuple(configs),
                    pos=pos, rule=rule)

    def start(self, m, c):
        return _exprs(c)[0]

    def dim_start(self, m, c):
        return c[0]

    def claim_start(self, m, c):
        return (str(c[0]), c[2], c[1].type == "SUBSET")


def _floordiv(inner: Expr, pos: Pos | None) -> Expr:
    """⌊a / b⌋: the quotient of whole numbers; the floor of anything else is not in the language."""
    if inner.op != "div":
        raise CardError("⌊…⌋ takes a division of whole numbers, ⌊a / b⌋", pos,
                        hint="write ⌊a / b⌋ (ASCII floor(a / b)) for the quotient and a mod b (a % b) for "
                             "the remainder")
    return Expr("floordiv", inner.args, None, pos)


def _replace(st: Step, **kw) -> Step:
    from dataclasses import replace
    return replace(st, **kw)


def _counts_by_one(a: Expr, b: Expr) -> bool:
    if a.op == "num" and b.op == "num":
        return float(b.attr) == float(a.attr) + 1
    return b == Expr("add", (a, ir.num("1")))


def _plain(e: Expr) -> str:
    from .render import expr_text
    return expr_text(e)


def _note_text(tok: Token) -> str:
    text = str(tok)
    return text[1:].strip()


def _block_note(c) -> str | None:
    notes = _tok(c, "NOTE")
    return _note_text(notes[0]) if notes else None


def _split_note(tok: Token) -> tuple[str | None, Claim | None]:
    """``▷ Q ∈ ℝ^{…}; query`` -> a claim and the free text after ``;``."""
    text = _note_text(tok)
    if not CLAIM_RE.match(text):
        return text or None, None
    claim_text, _, rest = text.partition(";")
    offset = tok.column + (len(str(tok)) - len(str(tok)[1:].lstrip()))
    try:
        tree = _parser().parse(" " * (offset - 1) + claim_text.rstrip(), start="claim_start")
    except lark.exceptions.LarkError:
        return text, None  # not a claim after all: free text such as "tokens in X"
    try:
        _check_depth(tree)
        name, st, subset = _to_ir(tree)
    except CardError as e:  # parsed as one line: put it on the note's line
        if e.pos is not None:
            e.pos = Pos(tok.line, e.pos.col, tok.line, e.pos.end_col)
        raise
    pos = Pos(tok.line, tok.column, tok.end_line, tok.end_column)
    return rest.strip() or None, Claim(name, _relined(st, tok.line), pos, subset)


def _relined(node, line: int):
    """A claim is parsed on its own: put every node of it back on the note's line."""
    from dataclasses import fields, is_dataclass, replace
    if isinstance(node, tuple):
        return tuple([_relined(x, line) for x in node])  # not a generator: 3.12 counts those as C recursion
    if not is_dataclass(node):
        return node
    changes = {}
    for f in fields(node):
        v = getattr(node, f.name)
        if f.name == "pos" and v is not None:
            changes["pos"] = Pos(line, v.col, line, v.end_col)
        elif isinstance(v, (tuple, Expr, Set)):
            changes[f.name] = _relined(v, line)
    return replace(node, **changes)


# ------------------------------------------------------------------ errors
def _expected_words(expected) -> str:
    exp = set(expected)
    if len(exp) > 1:
        exp.discard("RSQB")  # always lexable (nested brackets), so it says nothing here
    words = []
    if {"NAME", "NUMBER"} <= exp or {"NAME", "CALLNAME"} <= exp:
        words.append("an expression")
        exp -= {"NAME", "NUMBER", "CALLNAME", "INF", "MINUS", "NOT", "NABLA", "SIGMA", "SQRT",
                "LPAR", "LSQB", "LBRACE", "__ANON_0", "__ANON_1"}
    terms = {t.name: t for t in _parser().terminals}
    for e in sorted(exp):
        if e in WORDS:
            words.append(WORDS[e])
        elif e in terms and terms[e].pattern.type == "str":
            words.append(f'"{terms[e].pattern.value}"')
    words = list(dict.fromkeys(words))
    if len(words) > 7:
        words = words[:7] + ["…"]
    return ", ".join(words) if words else "something else"


# What a braced subscript may hold besides letters and digits (grammar/card.lark's _SCRIPT).
SCRIPT_SYMBOLS = "_^:,=+−-· ′"


def _bad_name_char(text: str, line: int, col: int) -> CardError | None:
    """At ``line:col`` a name's braced script ``_{…}`` did not lex: point at the first
    character a name cannot hold (a quote, a slash, a line separator…), not at the ``_``."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    s, i = lines[line - 1], col - 1
    while i < len(s) and s[i:i + 2] != "_{" and (s[i].isalnum() or s[i] in "_^′"):
        i += 1  # the error may be at the start of the name (a call name that did not lex)
    if not (s[i:i + 2] == "_{" and i > 0 and (s[i - 1].isalnum() or s[i - 1] == "′")):
        return None
    for j in range(i + 2, len(s)):
        ch = s[j]
        if ch == "}":
            return None
        if not (ch.isalnum() or ch in SCRIPT_SYMBOLS or unicodedata.category(ch) == "Mn"):
            shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"
            return CardError(f"a name cannot hold {shown}", Pos(line, j + 1, line, j + 2),
                             hint="a name is letters and digits with _ and ^ scripts (W_e, e_{ℓ_z}, "
                                  "x_{1:N}); other text belongs in a \"description\" or a ▷ comment")
    return None


def _lark_error(e: Exception, line: int | None = None, text: str = "") -> CardError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken
    if isinstance(e, (UnexpectedCharacters, UnexpectedToken)) and text:
        at = (e.token.line, e.token.column) if isinstance(e, UnexpectedToken) else (e.line, e.column)
        if at[0] is not None and at[1] is not None and (bad := _bad_name_char(text, line or at[0], at[1])):
            return bad
    if isinstance(e, UnexpectedToken):
        tok = e.token
        stray = _stray_end(tok, text)
        if stray is not None:
            return stray
        if tok.type == "$END":
            pos = Pos(line or tok.line or 1, tok.column or 1, line or tok.line or 1, tok.column or 1)
            what = "the card ends too early"
        else:
            ln = line or tok.line
            pos = Pos(ln, tok.column, ln, tok.end_column or tok.column + 1)
            shown = "end of line" if tok.type == "_NL" else f"'{tok}'"
            what = f"unexpected {shown}"
        hint = _hint_for(e.expected, tok)
        return CardError(f"{what}; expected {_expected_words(e.expected)}", pos, hint)
    if isinstance(e, UnexpectedCharacters):
        ln = line or e.line
        ch = e.char
        pos = Pos(ln, e.column, ln, e.column + 1)
        shown = repr(ch) if not ch.isprintable() else f"'{ch}'"
        allowed = set(e.allowed or ())
        if len(allowed) > 1:
            allowed.discard("RSQB")  # always lexable, for nested brackets: not a real expectation
        expected = _expected_words(allowed)
        return CardError(f"unexpected character {shown}; expected {expected}", pos,
                         _char_hint(ch))
    if isinstance(e, UnexpectedEOF):
        return CardError("the card ends too early", None)
    return CardError(str(e).splitlines()[0], None)


def _stray_end(tok, text: str) -> CardError | None:
    """`end` with no loop open reads as a name; say what it is."""
    if tok.type != "_NL" or not text:
        return None
    lines = text.split("\n")  # as Lark counts lines
    ln = tok.line
    if not 0 < ln <= len(lines):
        return None
    m = re.match(r"^(\s*\d*\s*)(end)\s*$", lines[ln - 1])
    if not m:
        return None
    col = len(m.group(1)) + 1
    return CardError("`end` without a loop to close", Pos(ln, col, ln, col + 3),
                     hint="each `end` closes a `for … do` or `while … do` opened above it")


def _hint_for(expected, tok) -> str | None:
    if tok.type == "ARROW":
        return "two statements on one line? put each step on its own line"
    if "END" in expected and tok.type == "$END":
        return "a `for … do` or `while … do` block needs a closing `end`"
    if tok.type == "NAME" and "_NL" in expected:
        return "two statements on one line? put each step on its own line"
    if tok.type == "CALLNAME" and "ARROW" in expected:
        return "a signature reads `algorithm Y ← name(inputs | parameters)`"
    return None


def _char_hint(ch: str) -> str | None:
    if ch in "ℝℕℤ":
        return f"{ch} names a set; it can only follow ∈"
    if ch == "_":
        return "names start with a letter"
    if ch == "\t":
        return None
    if unicodedata.category(ch) in ("Zl", "Zp") or ch in "\r\x85\x0b\x0c":
        return (f"U+{ord(ch):04X} is not a line break in a card (only \\n is); it may appear in a "
                '"description" or a ▷ comment, nowhere else')
    if not ch.isprintable():
        return "the file contains a control character; is it a text file?"
    return None


# ------------------------------------------------------------------- entry
def parse(text: str, path: str = "<card>") -> Card:
    """Parse a card (or its rendered pseudocode) into IR; raise CardError."""
    try:
        return _parse(text, path)
    except CardError as e:
        raise e.located(path, text) from None


def _parse(text: str, path: str) -> Card:
    if len(text) > MAX_BYTES:
        raise _too_large(text, f"{len(text):,} characters")
    if "\x00" in text:
        at = text.index("\x00")
        ln = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        raise CardError("the file contains NUL bytes; a card is UTF-8 text", Pos(ln, col, ln, col + 1),
                        hint="is this a binary file?")
    if lone := re.search("[\ud800-\udfff]", text):  # only a str made in Python holds one; no file can
        at = lone.start()
        ln, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        raise CardError(f"U+{ord(text[at]):04X} is half of a UTF-16 surrogate pair, not a character; a card is "
                        "UTF-8 text", Pos(ln, col, ln, col + 1))
    if not text.strip():
        raise CardError("the file is empty; a card starts with `algorithm Y ← name(inputs | parameters)`",
                        Pos(1, 1, 1, 1))
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = _parser().parse(text, start="start")
    except lark.exceptions.LarkError as e:
        if isinstance(getattr(e, "orig_exc", None), CardError):
            raise e.orig_exc from None
        raise _lark_error(e, text=text) from None
    _check_depth(tree)
    card = _to_ir(tree)
    from dataclasses import replace
    return replace(card, path=path, source=text)


def _to_ir(tree):
    """ToIR on a tree; a CardError raised inside (a number too long, a loop
    that does not count by one) comes out as itself, not in Lark's VisitError
    (twice over for a claim: it is transformed inside its step)."""
    try:
        return ToIR().transform(tree)
    except lark.exceptions.VisitError as e:
        err = e
        while isinstance(err, lark.exceptions.VisitError):
            err = err.orig_exc
        if isinstance(err, CardError):
            raise err from None
        raise


def _too_large(text: str, size: str) -> CardError:
    """The file is ``size``: an error placed where the limit is passed."""
    ln = text.count("\n", 0, MAX_BYTES) + 1
    col = MAX_BYTES - (text.rfind("\n", 0, MAX_BYTES) + 1) + 1
    return CardError(f"the file is {size}; cards are at most {MAX_BYTES:,} characters",
                     Pos(ln, col, ln, col + 1),
                     hint="split it into cards that call each other: `y ← Name(x | θ)`")


def _check_depth(tree) -> None:
    """Refuse a parse tree too deep for the stages after parsing, which recurse."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            pos = _pos_of(node) or Pos(1, 1, 1, 2)
            raise CardError(f"the expression is nested more than {MAX_DEPTH} levels deep",
                            Pos(pos.line, pos.col, pos.line, pos.col + 1),
                            hint="split it into steps with names of their own")
        for child in getattr(node, "children", ()):
            if isinstance(child, lark.Tree):
                stack.append((child, depth + 1))


@lru_cache(maxsize=4096)
def parse_dim(text: str) -> Expr:
    """A dimension written as text (``3·D``, ``T − 1``) -> Expr."""
    return _to_ir(_parser().parse(text, start="dim_start"))


def parse_file(path) -> Card:
    from pathlib import Path
    p = Path(path)
    try:
        with p.open("rb") as f:
            return parse_stream(f, str(p))
    except OSError as e:
        raise CardError(f"cannot read {p}: {e.strerror}", path=str(p)) from None


def parse_stream(f, name: str) -> Card:
    """A card read from a binary stream (a file, standard input): no more than a
    card of MAX_BYTES characters can take, so neither a huge file nor an endless
    stream (/dev/zero, a pipe) is read to its end."""
    limit = 4 * MAX_BYTES + 3  # UTF-8 takes at most 4 bytes a character; and a BOM
    data = f.read(limit + 1)
    if len(data) > limit:
        text = data.decode("utf-8", errors="replace")
        raise _too_large(text, f"more than {limit:,} bytes").located(name, text)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        ln = data.count(b"\n", 0, e.start) + 1
        line_start = data.rfind(b"\n", 0, e.start) + 1
        col = len(data[line_start:e.start].decode("utf-8", errors="replace")) + 1
        raise CardError(f"byte 0x{data[e.start]:02x} is not UTF-8; a card is UTF-8 text",
                        Pos(ln, col, ln, col + 1), hint="is this a binary file?",
                        path=name, source="") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return parse(text, name)
