"""IR -> LaTeX math, and the Markdown page `cardgen render --format md`
prints.  Math goes in GitHub's $`…`$ and ```math blocks, which Markdown
leaves alone, so `_` and `*` inside never turn into emphasis."""

from __future__ import annotations

import re
import unicodedata

from ..lang.ir import Card, Expr, Group, Set, Step
from ..lang.names import split_name
from ..lang.render import LEVEL, Printer, _mixed, _next, config_head

GREEK = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon",
    "ζ": r"\zeta", "η": r"\eta", "θ": r"\theta", "ι": r"\iota", "κ": r"\kappa", "λ": r"\lambda",
    "μ": r"\mu", "ν": r"\nu", "ξ": r"\xi", "π": r"\pi", "ρ": r"\rho", "σ": r"\sigma",
    "τ": r"\tau", "υ": r"\upsilon", "φ": r"\phi", "χ": r"\chi", "ψ": r"\psi", "ω": r"\omega",
    "Γ": r"\Gamma", "Δ": r"\Delta", "Θ": r"\Theta", "Λ": r"\Lambda", "Ξ": r"\Xi", "Π": r"\Pi",
    "Σ": r"\Sigma", "Φ": r"\Phi", "Ψ": r"\Psi", "Ω": r"\Omega", "ℓ": r"\ell", "∞": r"\infty",
    "𝓦": r"\mathcal{W}", "′": "'",
}
ACCENTS = {"\u0302": r"\hat", "\u0303": r"\tilde", "\u0304": r"\bar", "\u0307": r"\dot"}
TEX_INFIX = {"add": " + ", "sub": " - ", "matmul": r" \cdot ", "mul": r" \odot ", "div": " / ",
             "mod": r" \bmod "}
TEX_PREFIX = {"neg": "-", "not": r"\neg ", "grad": r"\nabla "}
FUNCS = {"exp", "log", "tanh", "softmax", "GELU", "ReLU", "SiLU", "max", "length", "sqrt", "abs", "erf", "min",
         "mean", "sin", "cos", "sigmoid", "round"}


def tex_symbol(text: str) -> str:
    """One base name: Greek to macros, accents to \\hat{…}, words upright."""
    out = []
    for ch in unicodedata.normalize("NFD", text):
        if ch in ACCENTS and out:
            out[-1] = f"{ACCENTS[ch]}{{{out[-1]}}}"
        elif ch in GREEK:
            out.append(GREEK[ch] + " ")
        elif unicodedata.category(ch) == "Mn":
            continue
        else:
            out.append(name_char(ch))
    s = "".join(out).strip()
    plain = re.fullmatch(r"[A-Za-z][A-Za-z0-9]+", s)
    return rf"\mathrm{{{s}}}" if plain else s


def tex_name(text: str) -> str:
    base, scripts = split_name(text)
    out = tex_symbol(base)
    subs = [v for k, v in scripts if k == "_"]
    sups = [v for k, v in scripts if k == "^"]
    if sups:
        out += "^{" + ",".join(tex_script(v) for v in sups) + "}"
    if subs:
        out += "_{" + ",".join(tex_script(v) for v in subs) + "}"
    return out


def tex_callee(fname: str) -> str:
    """A called function or card, upright; a word_word name (layer_norm) is
    one word, not a subscript."""
    if fname in FUNCS or re.fullmatch(r"[A-Za-z][A-Za-z0-9]+(_[A-Za-z0-9]+)+", fname):
        return r"\mathrm{" + fname.replace("_", r"\_") + "}"
    return tex_name(fname)


def tex_signature(card: Card) -> str:
    """The box title: outputs ← name(inputs | parameters), as LaTeX math."""
    bar = r" \mid " + ", ".join(map(tex_name, card.bar)) if card.bar else ""
    return (", ".join(map(tex_name, card.outputs)) + r" \leftarrow " + tex_callee(card.name)
            + r"\left(" + ", ".join(map(tex_name, card.inputs)) + bar + r"\right)")


# TeX's special characters as math, the spelling LaTeX, KaTeX and MathJax
# (GitHub) all read alike: for card text in a formula (math_text) and for the
# signs a braced script may hold (the grammar allows anything but braces, and
# x_{a%b} must not start a TeX comment).
TEXT_SPECIAL = {"\\": r"\backslash", "{": r"\{", "}": r"\}", "$": r"\$", "%": r"\%", "#": r"\#",
                "&": r"\&", "_": r"\_", "^": r"\hat{}", "~": r"\sim"}


def name_char(c: str) -> str:
    """One character of a name in math.  The grammar lets only letters, digits and a few signs
    into names; this keeps anything else literal too (IR built by hand): TeX's specials as macros,
    a backtick (which would close Markdown's $`…`$) as an accent, invisible ones by code point."""
    if c in TEXT_SPECIAL:
        return "{" + TEXT_SPECIAL[c] + "}"
    if c == "`":
        return r"{\grave{}}"
    if not c.isprintable() or unicodedata.category(c) in ("Zl", "Zp"):
        return rf"\text{{[U+{ord(c):04X}]}}"
    return c


def tex_script(v: str) -> str:
    parts = [p for p in re.split(r"([^\w′]+)", v) if p]
    if len(parts) > 1 or "_" in v or not re.fullmatch(r"[\w′]*", v):  # names and signs: x_{1:N_data}, Y_{H−1}
        return "".join(tex_name(p) if p[:1].isalpha() else "".join(
            "-" if c == "−" else name_char(c) for c in p) for p in parts)
    s = "".join(GREEK.get(c, c) + (" " if c in GREEK and GREEK[c].startswith("\\") else "") for c in v)
    return rf"\mathrm{{{s}}}" if re.fullmatch(r"[A-Za-z]{2,}[0-9]*", s) else s.strip()


class TexPrinter(Printer):
    def at(self, e: Expr, need: int) -> str:
        s = self.show(e)
        return rf"\left({s}\right)" if LEVEL.get(e.op, 7) < need else s

    def infix(self, e):
        a, b = e.args
        lv = LEVEL[e.op]
        return self.at(a, lv + _mixed(e, a)) + TEX_INFIX[e.op] + self.at(b, lv + 1)

    op_add = op_sub = op_matmul = op_mul = op_div = op_mod = infix

    def op_floordiv(self, e):
        return r"\left\lfloor " + self.infix(Expr("div", e.args)) + r" \right\rfloor"

    def prefix(self, e):
        return TEX_PREFIX[e.op] + self.at(e.args[0], 4)

    op_neg = op_not = op_grad = prefix

    def op_name(self, e):
        return tex_name(e.attr)

    def op_num(self, e):
        return e.attr

    def op_inf(self, e):
        return r"\infty"

    def op_ellipsis(self, e):
        return r"\ldots"

    def op_sqrt(self, e):
        return r"\sqrt{" + self.show(e.args[0]) + "}"

    def op_juxt(self, e):
        a, b = e.args
        right = self.show(b)
        if LEVEL.get(b.op, 7) < 6 or b.op == "list":
            right = rf"\left({right}\right)"
        return self.at(a, 5) + r"\, " + right

    def op_transpose(self, e):
        return "{" + self.at(e.args[0], 6) + r"}^{\top}"

    def op_square(self, e):
        return "{" + self.at(e.args[0], 6) + "}^{2}"

    def op_pow(self, e):
        return "{" + self.at(e.args[0], 6) + "}^{" + self.show(e.args[1]) + "}"

    def op_index(self, e):
        base, *idx = e.args
        return self.at(base, 6) + "[" + ", ".join(self.show(i) for i in idx) + "]"

    def op_slice(self, e):
        lo, hi = [self.show(x) for x in e.args]
        return ":" if not lo and not hi else f"{lo} : {hi}"

    def op_call(self, e):
        fname, n_in = e.attr
        ins = ", ".join(self.show(a) for a in e.args[:n_in])
        bar = ", ".join(self.show(a) for a in e.args[n_in:])
        head = tex_callee(fname)
        return head + r"\left(" + ins + (r" \mid " if bar else "") + bar + r"\right)"

    def op_kwarg(self, e):
        name, idx = e.attr
        sub = "[" + ", ".join(tex_name(i) for i in idx) + "]" if idx else ""
        return f"{tex_name(name)}{sub} = {self.show(e.args[0])}"

    def op_list(self, e):
        sep = "; " if e.attr == ";" else ", "
        return "[" + sep.join(self.show(x) for x in e.args) + "]"

    def op_iverson(self, e):
        return r"[\![" + self.show(e.args[0]) + r"]\!]"

    def op_set_builder(self, e):
        rng, cond = e.args
        return rf"\{{{tex_name(e.attr)} \in [{self.show(rng)}] : {self.show(cond)}\}}"

    def op_cmp(self, e):
        sym = {"≤": r"\le", "≥": r"\ge", "≠": r"\ne", "<": "<", ">": ">", "=": "="}[e.attr]
        a, b = e.args
        return f"{self.at(a, 2)} {sym} {self.at(b, 2)}"

    def op_choose(self, e):
        a, p, b = e.args
        return rf"{self.at(a, 2)} \text{{ with probability }} {self.at(p, 2)} \text{{ else }} {self.at(b, 2)}"

    def op_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        v = tex_name(var)
        if form == "implicit":
            sub = f"_{{{v}}}"
        elif form == "in":
            sub = rf"_{{{v} \in {self.show(bounds[0])}}}"
        else:
            sub = f"_{{{v}={self.show(bounds[0])}}}^{{{self.show(bounds[1])}}}"
        return r"\sum" + sub + " " + (self.show(body) if body.op == "sum" else self.at(body, 5))


def tex(e: Expr) -> str:
    return TexPrinter().show(e)


def tex_dim(e: Expr) -> str:
    return TexPrinter().show(e).replace(r" \cdot ", r"\cdot ")


def tex_set(s: Set | Group) -> str:
    if isinstance(s, Group):
        if s.card is None:
            return r"\{" + ", ".join(tex_name(m) for m in s.members) + r"\}"
        binds = ", ".join(f"{tex_name(k)} = {tex_dim(v)}" for k, v in s.bindings)
        return tex_callee(s.card) + (f"[{binds}]" if binds else "")
    base = {"real": r"\mathbb{R}", "nat": r"\mathbb{N}", "integer": r"\mathbb{Z}",
            "boolean": r"\{0,1\}"}.get(s.kind)
    if s.kind == "span":
        base = r"\{" + tex_dim(s.bounds[0]) + r"..\," + tex_dim(s.bounds[1]) + r"\}"
    elif s.kind == "upto":
        base = "[" + tex_dim(s.bounds[0]) + "]"
    elif s.kind == "interval":
        base = "(" + ", ".join(tex_dim(b) for b in s.bounds) + ")"
    elif s.kind == "simplex":
        base = r"\Delta(" + tex_dim(s.bounds[0]) + ")"
    if s.seq:
        return base + "^{*}"
    if s.shape:
        return base + "^{" + r" \times ".join(tex_dim(d) for d in s.shape) + "}"
    return base


def tex_decl(d) -> str:
    names = ", ".join(tex_name(n) for n in d.names)
    rel = " = " if isinstance(d.set, Group) else r" \in "
    s = names + rel + tex_set(d.set)
    if d.default is not None:
        s += " = " + tex(d.default)
    for v, n in d.over:
        s += rf",\ {tex_name(v)} \in [{tex(n)}]"
    return s


def tex_config(c) -> str:
    r"""A named configuration's values as math: ``V = 50257,\ D = 768``."""
    return r",\ ".join(f"{tex_name(k)} = {v}" for k, v in c.values)


# Inside a formula, card text goes in \text{…}; TeX's special characters
# (TEXT_SPECIAL) and the notation's symbols leave it for math mode, as text
# fonts lack ∈, ≤, τ, ….
TEXT_SYMBOLS = {
    "←": r"\leftarrow", "∈": r"\in", "×": r"\times", "⊙": r"\odot", "·": r"\cdot", "⊤": r"\top",
    "√": r"\surd", "Σ": r"\Sigma", "≤": r"\le", "≥": r"\ge", "≠": r"\ne", "¬": r"\neg", "∞": r"\infty",
    "∇": r"\nabla", "∼": r"\sim", "∝": r"\propto", "…": r"\ldots", "−": "-", "∀": r"\forall", "≡": r"\equiv",
    "▷": r"\triangleright", "ℝ": r"\mathbb{R}", "ℕ": r"\mathbb{N}", "ℤ": r"\mathbb{Z}", "²": "^{2}",
    "⌊": r"\lfloor", "⌋": r"\rfloor",
    "→": r"\to", "⋆": r"\star", "∑": r"\sum", "∉": r"\notin", "≈": r"\approx", "⊆": r"\subseteq",
    "∅": r"\emptyset", "∘": r"\circ", "⋯": r"\cdots", "′": "'", "⁻": "^{-}", "¹": "^{1}", "ᵀ": r"^{\top}",
    **{k: v for k, v in GREEK.items() if v.startswith("\\")},
}


def math_text(text: str) -> str:
    """Card text (a ▷ note) inside a formula, shown literally."""
    out, run = [], []
    for c in text:
        macro = TEXT_SPECIAL.get(c) or TEXT_SYMBOLS.get(c)
        if macro is None:
            run.append(" " if unicodedata.category(c)[0] in "CZ" else c)
            continue
        if run:
            out.append(rf"\text{{{''.join(run)}}}")
            run = []
        out.append("{" + macro + "}")
    if run:
        out.append(rf"\text{{{''.join(run)}}}")
    return "".join(out)


def md_text(text: str) -> str:
    """Plain text for Markdown: characters that would format are escaped ($ too: GitHub reads $…$ as math)."""
    return re.sub(r"([\\`*_{}\[\]<>#|~$])", r"\\\1", text)


KW = {"for": r"\textbf{for}", "do": r"\textbf{do}", "end": r"\textbf{end}", "while": r"\textbf{while}",
      "if": r"\textbf{if}", "then": r"\textbf{then}", "return": r"\textbf{return}"}


class TexSteps:
    """Walks a card's steps and prints each as LaTeX math; a subclass lays the
    lines out (``MdSteps``: a Markdown math array; texbox: algpseudocode)."""

    kw = KW

    def __init__(self, claims):
        self.claims = claims

    def steps(self, steps):
        for st in steps:
            self.step(st, 0)
        return self

    def step(self, st: Step, depth: int):
        if st.kind == "remark":
            self.remark(depth, st.note)
        elif st.kind in ("for", "while") and not st.inline:
            self.open(depth, st.kind, self.loop_cond(st), st.note)
            for s in st.body:
                self.step(s, depth + 1)
            self.close(depth, st.kind)
        else:
            c = self.claims.get(id(st))
            rel = r" \subseteq " if c is not None and c.subset else r" \in "
            claim = None if c is None else tex_name(c.name) + rel + tex_set(c.set)
            self.line(depth, self.stmt(st), claim, st.note)

    def loop_cond(self, st: Step) -> str:
        """What follows ``for`` or ``while``: ``l = 1, 2, \\ldots, L``, ``t \\in [\\ell]``, a condition."""
        if st.kind == "while":
            return tex(st.cond)
        if len(st.domain) == 2:
            lo, hi = st.domain
            second = _next(lo)
            return rf"{tex_name(st.var)} = {tex(lo)}, {second + ', ' if second else ''}\ldots, {tex(hi)}"
        return rf"{tex_name(st.var)} \in [{tex(st.domain[0])}]"

    def stmt(self, st: Step) -> str:
        k = st.kind
        if k == "assign":
            return f"{tex(st.target)} \\leftarrow {tex(st.value)}"
        if k == "if":
            return rf"{self.kw['if']}\ {tex(st.cond)}\ {self.kw['then']}\ {self.stmt(st.body[0])}"
        if k == "sample":
            dist = rf"{tex_name(st.dist)} \propto " if st.dist else ""
            return rf"{tex(st.target)} \sim {dist}{tex(st.value)}"
        if k == "return":
            named = f"{tex(st.target)} = " if st.target is not None else ""
            return rf"{self.kw['return']}\ {named}{tex(st.value)}"
        if k == "for":
            return rf"{self.kw['for']}\ {tex_name(st.var)} \in [{tex(st.domain[0])}] :\ {self.stmt(st.body[0])}"
        return rf"\forall {', '.join(tex_name(v) for v in st.vars)} :\ {self.stmt(st.body[0])}"


class MdSteps(TexSteps):
    """Rows of a ``rll`` math array: number, indented step, ▷ comment."""

    def __init__(self, claims):
        super().__init__(claims)
        self.lines: list[str] = []
        self.n = 0

    def add(self, depth, body, note, numbered=True):
        if numbered:
            self.n += 1
        num = str(self.n) if numbered else ""
        pad = r"\quad " * depth
        tail = rf" & \triangleright\ {note}" if note else " &"
        self.lines.append(f"{num} & {pad}{body}{tail} \\\\")

    def line(self, depth, body, claim, note):
        parts = [claim] if claim else []
        if note:
            parts.append(math_text(note))
        self.add(depth, body, ";\\ ".join(parts) if parts else None)

    def open(self, depth, kind, cond, note):
        self.line(depth, rf"{self.kw[kind]}\ {cond}\ {self.kw['do']}", None, note)

    def remark(self, depth, note):
        self.add(depth, r"\triangleright\ " + math_text(note), None, False)

    def close(self, depth, kind):
        self.add(depth, self.kw["end"], None)


ROLE_MD = {"input": "Input", "output": "Output", "hyper": "Hyperparameters", "param": "Parameters"}


def markdown(checked, count_line: str | None = None) -> str:
    card: Card = checked.card
    head = tex_signature(card)
    out = [f"### Algorithm: $`{head}`$", ""]
    if card.purpose:
        out += [f"*{md_text(card.purpose)}*", ""]
    conv = card.convention
    out.append(f"**Convention:** {conv.axes}, {conv.base}-based  ")
    for d in card.decls:
        desc = f" — {md_text(d.desc)}" if d.desc else ""
        out.append(f"**{ROLE_MD[d.role]}:** $`{tex_decl(d)}`${desc}  ")
    for c in card.configs:
        desc = f" — {md_text(c.desc)}" if c.desc else ""
        out.append(f"**Configuration** {md_text(config_head(c))}: $`{tex_config(c)}`${desc}  ")
    if count_line:
        out.append(md_text(count_line) + "  ")
    steps = MdSteps(checked.claims).steps(card.steps)
    out += ["", "```math", r"\begin{array}{rll}", *steps.lines, r"\end{array}", "```", ""]
    if card.rule is not None:  # numbered on from the forward's steps, as the text render does
        steps.lines = []
        steps.steps(card.rule.steps)
        out += [f"**Backward:**{rule_words(card.rule, md_text)}  ", "", "```math", r"\begin{array}{rll}",
                *steps.lines, r"\end{array}", "```", ""]
    return "\n".join(out)


def rule_words(rule, escape) -> str:
    """What follows **Backward:** (``escape``: the format's escaping of prose)."""
    words = " straight-through" if rule.straight_through else ""
    return words + (escape(f" — {rule.desc}") if rule.desc else "")
