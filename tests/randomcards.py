"""Random well-formed cards, for differential testing (tests/test_differential.py under
hypothesis, scripts/difffuzz.py with a seed).

A card is built step by step from *constructs*, each a small template that reads values already
defined and defines a new one of a known shape.  Shapes are drawn from a few kinds, written for
the card's convention: ``TD`` (a token-by-width matrix: ``ℝ^{T×D}`` in rows, ``ℝ^{D×T}`` in
columns), ``TT`` (scores), ``Th`` (one head: width ``D/H``).  The output is the sum of the
token-by-width values, so every step reaches it.  ``CONSTRUCTS`` names them all; ``OPEN`` lists
those the compiler gets wrong today (see the README's differential-testing section), left out
of the CI run and drawn by ``scripts/difffuzz.py --constructs all``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

UNARY = ["tanh", "σ", "GELU", "SiLU", "sin", "cos", "exp"]


class Chooser:
    """What a construct asks of its source of randomness (hypothesis or random.Random)."""

    def choice(self, seq):
        raise NotImplementedError

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError


class SeededChooser(Chooser):
    def __init__(self, seed: int):
        self.r = random.Random(seed)

    def choice(self, seq):
        return self.r.choice(list(seq))

    def integer(self, lo, hi):
        return self.r.randint(lo, hi)


class DrawChooser(Chooser):
    """hypothesis's ``draw``, so that failing cards shrink."""

    def __init__(self, draw, st):
        self.draw, self.st = draw, st

    def choice(self, seq):
        return self.draw(self.st.sampled_from(list(seq)))

    def integer(self, lo, hi):
        return self.draw(self.st.integers(lo, hi))


@dataclass
class Builder:
    rows: bool
    c: Chooser
    lines: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # declaration lines
    hypers: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)  # name -> shape kind
    inputs: dict[str, str] = field(default_factory=dict)  # inputs beside X: name -> set
    n: int = 0
    depth: int = 0  # indentation of loop bodies
    allowed: set = field(default_factory=set)  # the constructs this card may use

    # ------------------------------------------------------------ helpers
    @property
    def one(self) -> int:
        return 0 if self.rows else 1

    def fresh(self, stem: str = "V") -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def param(self, shape: str, stem: str = "W") -> str:
        name = self.fresh(stem)
        self.params.append(f"param  {name} ∈ ℝ^{{{shape}}}")
        return name

    def emit(self, text: str):
        self.lines.append("  " * self.depth + text)

    def pick(self, kind: str) -> str:
        return self.c.choice(sorted(n for n, k in self.values.items() if k == kind))

    def shape(self, kind: str) -> str:
        dims = {"TD": ("T", "D"), "TT": ("T", "T"), "Th": ("T", "D/H")}[kind]
        return "×".join(dims if self.rows else dims[::-1])

    def mm(self, a: str, w: str) -> str:
        """A token-by-width value times a D×D weight, in the convention's order."""
        return f"{a} {w}" if self.rows else f"{w} {a}"

    def bias(self, b: str) -> str:
        return b if self.rows else f"{b} 1^⊤"

    def define(self, kind: str, expr: str, stem: str = "V") -> str:
        name = self.fresh(stem)
        self.emit(f"{name} ← {expr}")
        self.values[name] = kind
        return name


# ---------------------------------------------------------------- constructs
def c_unary(b: Builder):
    a = b.pick("TD")
    f = b.c.choice(UNARY)
    arg = f"{a} / 4" if f == "exp" else a
    b.define("TD", f"{f}({arg})")


def c_binary(b: Builder):
    x, y = b.pick("TD"), b.pick("TD")
    op = b.c.choice(["+", "−", "⊙"] if x != y else ["+", "⊙"])  # not X − X: a zero row has no layer norm
    b.define("TD", f"{x} {op} {y}" if op != "⊙" else f"{x} ⊙ tanh({y})")


def c_divide(b: Builder):
    x, y = b.pick("TD"), b.pick("TD")
    b.define("TD", f"{x} / (1 + {y} ⊙ {y})")


def c_linear(b: Builder):
    a = b.pick("TD")
    w = b.param("D×D")
    if b.c.choice([True, False]):
        bias = b.param("D", "c")
        b.define("TD", f"{b.mm(a, w)} + {b.bias(bias)}")
    else:
        b.define("TD", b.mm(a, w))


def c_square(b: Builder):
    a = b.pick("TD")
    b.define("TD", f"{a}² − {a}")


def c_scores(b: Builder):
    """S ← Q K^⊤ (rows) or K^⊤ Q (columns), scaled."""
    q, k = b.pick("TD"), b.pick("TD")
    expr = f"{q} {k}^⊤ / √D" if b.rows else f"{k}^⊤ {q} / √D"
    b.define("TT", expr, "S")


def c_mask(b: Builder):
    """A ∀ update of a score matrix: masked (causal) or shifted by the positions."""
    s = b.pick("TT")
    form = b.c.choice(["causal", "shift", "iverson"])
    if form == "causal":
        b.emit(f"∀t, u: if u > t then {s}[t, u] ← −∞")
    elif form == "shift":
        b.emit(f"∀t, u: {s}[t, u] ← {s}[t, u] − (t − u) / T")
    else:
        b.emit(f"∀t, u: {s}[t, u] ← {s}[t, u] + [[t ≤ u]]")


def c_attend(b: Builder):
    s, v = b.pick("TT"), b.pick("TD")
    b.define("TD", f"softmax({s}) {v}" if b.rows else f"{v} softmax({s})")


def c_softmax(b: Builder):
    a = b.pick("TD")
    b.define("TD", f"softmax({a})")


def c_rowsum(b: Builder):
    """A Σ over the width per token, built element by element, then each token scaled by it."""
    a = b.pick("TD")
    r, y = b.fresh("R"), b.fresh("V")
    if b.rows:
        b.emit(f"∀t: {r}[t] ← Σ_{{i=0}}^{{D − 1}} {a}[t, i]²")
        b.emit(f"∀t: {y}[t, :] ← {a}[t, :] / (1 + {r}[t])")
    else:
        b.emit(f"∀t: {r}[t] ← Σ_{{i=1}}^{{D}} {a}[i, t]²")
        b.emit(f"∀t: {y}[:, t] ← {a}[:, t] / (1 + {r}[t])")
    b.values[y] = "TD"


def c_mean_norm(b: Builder):
    """A scalar Σ over everything, then a division by it."""
    a = b.pick("TD")
    m = b.fresh("m")
    lo, hi_t, hi_d = (0, "T − 1", "D − 1") if b.rows else (1, "T", "D")
    idx = "[t, i]" if b.rows else "[i, t]"
    b.emit(f"{m} ← Σ_{{t={lo}}}^{{{hi_t}}} (Σ_{{i={lo}}}^{{{hi_d}}} {a}{idx}²) / (T · D)")
    b.define("TD", f"{a} / √(1 + {m})")


def c_heads(b: Builder):
    """Per-head slices, scores, an optional ∀ update, attention, heads joined (rows)."""
    if not b.rows:
        return c_heads_columns(b)
    heads(b)


def c_heads_columns(b: Builder):
    """The same in a columns, 1-based card: a slice (h − 1)·D/H + 1 : h·D/H per head."""
    if b.rows or "heads_columns" not in b.allowed:
        return c_scores(b)
    heads(b)


def heads(b: Builder):
    b.hypers.add("H")
    a, v = b.pick("TD"), b.pick("TD")
    lo, hi = ("h · D / H", "(h + 1) · D / H") if b.rows else ("(h − 1) · D / H + 1", "h · D / H")
    sl = (lambda x: f"{x}[:, {lo} : {hi}]") if b.rows else (lambda x: f"{x}[{lo} : {hi}, :]")
    b.emit("for h ∈ [H] do")
    b.depth += 1
    qn, kn, sn, yn = (b.fresh(p) for p in ("Q", "K", "S", "Y"))
    q, k, s, y = (f"{n}_h" for n in (qn, kn, sn, yn))
    b.emit(f"{q} ← {sl(a)}")
    b.emit(f"{k} ← {sl(v)}")
    b.emit(f"{s} ← {q} {k}^⊤" if b.rows else f"{s} ← {k}^⊤ {q}")
    form = b.c.choice(["none", "causal", "shift"] if "heads_update" in b.allowed else ["none", "causal"])
    if form == "causal":
        b.emit(f"∀t, u: if u > t then {s}[t, u] ← −∞")
    elif form == "shift":
        b.emit(f"∀t, u: {s}[t, u] ← {s}[t, u] − (t − u)")
    b.emit(f"{y} ← softmax({s}) {k}" if b.rows else f"{y} ← {k} softmax({s})")
    b.depth -= 1
    b.emit("end")
    first, last = (f"{yn}_0", f"{yn}_{{H−1}}") if b.rows else (f"{yn}_1", f"{yn}_H")
    sep = "," if b.rows else ";"
    b.define("TD", f"[{first}{sep} {yn}_{b.one + 1}{sep} …{sep} {last}]")


def c_layers(b: Builder):
    """A loop over layers with per-layer parameters: carrying one value, or two, reading a value
    from before the loop, or normalising each token inside it."""
    b.hypers.add("N")
    a, v = b.pick("TD"), b.pick("TD")
    w = b.fresh("W")
    b.params.append(f"param  {w}_ℓ ∈ ℝ^{{D×D}} for ℓ ∈ [N]")
    x = b.define("TD", a, "X")
    form = b.c.choice(["plain", "closure", "two", "normalise"])
    b.emit("for ℓ ∈ [N] do" if b.rows or b.c.choice([True, False]) else "for ℓ = 1, 2, …, N do")
    b.depth += 1
    if form == "plain":
        b.emit(f"{x} ← {x} + tanh({b.mm(x, f'{w}_ℓ')})")
    elif form == "closure":
        b.emit(f"{x} ← {x} + tanh({b.mm(v, f'{w}_ℓ')}) ⊙ {x} / 2")
    elif form == "two":
        z = b.fresh("Z")
        b.lines.insert(len(b.lines) - 1, "  " * (b.depth - 1) + f"{z} ← tanh({v})")
        b.emit(f"{x} ← {x} + tanh({b.mm(z, f'{w}_ℓ')})")
        b.emit(f"{z} ← {z} + tanh({b.mm(x, f'{w}_ℓ')}) / 2")
        b.values[z] = "TD"
    else:
        lo, hi = ("0", "D − 1") if b.rows else ("1", "D")
        b.emit(f"{x} ← {x} + tanh({b.mm(x, f'{w}_ℓ')})")
        if b.rows:
            b.emit(f"∀t: {x}[t, :] ← {x}[t, :] / √(Σ_{{i={lo}}}^{{{hi}}} {x}[t, i]² / D + 1)")
        else:
            b.emit(f"∀t: {x}[:, t] ← {x}[:, t] / √(Σ_{{i={lo}}}^{{{hi}}} {x}[i, t]² / D + 1)")
    b.depth -= 1
    b.emit("end")


def c_tokens(b: Builder):
    """A family built per token, then joined back."""
    a = b.pick("TD")
    w = b.param("D×D")
    k = b.fresh("k")
    if b.rows:
        b.emit(f"for t ∈ [T] : {k}_t ← tanh({a}[t] {w})")
        b.define("TD", f"[{k}_0; {k}_1; …; {k}_{{T−1}}]")
    else:
        b.emit(f"∀t: {k}_t ← tanh({w} {a}[:, t])")
        b.define("TD", f"[{k}_1, {k}_2, …, {k}_T]")


def c_norm_call(b: Builder):
    """A corpus card called per token: LayerNorm/RMSNorm (rows), layer_norm (columns)."""
    a = b.pick("TD")
    if b.rows:
        which = b.c.choice(["LayerNorm", "RMSNorm"])
        g = b.param("D", "g")
        if which == "LayerNorm":
            be = b.param("D", "β")
            b.define("TD", f"LayerNorm({a} | {g}, {be})")
        else:
            b.define("TD", f"RMSNorm({a} | {g})")
    else:
        g, be = b.param("D", "g"), b.param("D", "β")
        x = b.fresh("X")
        b.emit(f"for t ∈ [T] : {x}[:, t] ← layer_norm({a}[:, t] | {g}, {be})")
        b.values[x] = "TD"


def c_block_call(b: Builder):
    """A corpus card with a parameter group (rows only): MLP, CausalSelfAttention, GELU_tanh."""
    if not b.rows:
        return c_linear(b)
    a = b.pick("TD")
    which = b.c.choice(["MLP", "CausalSelfAttention", "GELU_tanh"])
    if which == "GELU_tanh":
        b.define("TD", f"GELU_tanh({a})")
        return
    if which == "MLP":
        b.hypers.add("D_f")
    else:
        b.hypers.add("H")
    th = b.fresh("θ")
    b.params.append(f"param  {th} = {which}")
    b.define("TD", f"{a} + {which}({a} | {th})")


def c_recurrence(b: Builder):
    """An Elman recurrence over the tokens, writing one row (column) per step."""
    a = b.pick("TD")
    wx, wh = b.param("D×D"), b.param("D×D")
    h, y = b.fresh("h"), b.fresh("Y")
    b.emit(f"{h} ← {a}[{b.one}]" if b.rows else f"{h} ← {a}[:, 1]")
    b.emit("for t ∈ [T] do")
    b.depth += 1
    if b.rows:
        b.emit(f"{h} ← tanh({a}[t] {wx} + {h} {wh})")
        b.emit(f"{y}[t, :] ← {h}")
    else:
        b.emit(f"{h} ← tanh({wx} {a}[:, t] + {wh} {h})")
        b.emit(f"{y}[:, t] ← {h}")
    b.depth -= 1
    b.emit("end")
    b.values[y] = "TD"


def c_gram(b: Builder):
    """A width-by-width product of two token matrices (A^⊤ B), applied to a third."""
    x, y, z = b.pick("TD"), b.pick("TD"), b.pick("TD")
    g = b.fresh("G")
    b.emit(f"{g} ← {x}^⊤ {y} / T" if b.rows else f"{g} ← {x} {y}^⊤ / T")
    b.define("TD", f"{z} {g}" if b.rows else f"{g} {z}")


def c_power(b: Builder):
    a = b.pick("TD")
    form = b.c.choice(["cube", "root"])
    b.define("TD", f"{a}^{{3}} / 4" if form == "cube" else f"(1 + {a} ⊙ {a})^{{1/2}}")


def c_embed(b: Builder):
    """Token ids looked up in an embedding table and added to a token matrix."""
    a = b.pick("TD")
    b.hypers.add("V")
    if "x" not in b.inputs:
        b.inputs["x"] = "{0..V−1}^T" if b.rows else "{1..V}^T"
    w = b.fresh("E")
    if b.rows:
        b.params.append(f"param  {w} ∈ ℝ^{{V×D}}")
        b.define("TD", f"{a} + {w}[x]")
    else:
        b.params.append(f"param  {w} ∈ ℝ^{{D×V}}")
        e = b.fresh("e")
        b.emit(f"for t ∈ [T] : {e}_t ← {w}[:, x[t]]")
        b.define("TD", f"{a} + [{e}_1, {e}_2, …, {e}_T]")


def c_mhattention(b: Builder):
    """The paper's MHAttention (columns) with a causal mask given per index, or no mask."""
    if b.rows:
        return c_block_call(b)
    b.hypers.add("H")
    a = b.pick("TD")
    w = b.fresh("𝓦")
    b.params.append(f"param  {w} = MHAttention[d_x = D, d_z = D, d_out = D, d_attn = D/H, d_mid = D/H]")
    mask = b.c.choice(["Mask[t, t′] = [[t ≤ t′]]", "Mask = 1"])
    b.define("TD", f"{a} + MHAttention({a} | {w}, {mask})")


def c_maximum(b: Builder):
    x, y = b.pick("TD"), b.pick("TD")
    b.define("TD", f"max({x}, {y} + 1 / 2)")


def c_iverson(b: Builder):
    """Iverson brackets in arithmetic: a 0/1 matrix from two comparisons."""
    s = b.pick("TT") if "TT" in b.values.values() else None
    if s is None:
        return c_scores(b)
    b.define("TT", f"{s} ⊙ ([[{s} > 0]] − [[{s} < −1]])", "S")


def c_halves(b: Builder):
    """Constant slices: the two halves of the width, swapped and joined side by side."""
    a = b.pick("TD")
    b.hypers.add("H")  # D/H with H = 2 in the tests: two halves
    if b.rows:
        b.define("TD", f"[{a}[:, D / H : D], {a}[:, 0 : D / H]] / 2")
    else:
        b.define("TD", f"[{a}[D / H + 1 : D, :]; {a}[1 : D / H, :]] / 2")


def c_pairs(b: Builder):
    """A family with two indices (width and token): P^i_t, summed over both."""
    a = b.pick("TD")
    y = b.fresh("P")
    b.emit(f"∀i, t: {y}^i_t ← tanh({a}[t, i])" if b.rows else f"∀i, t: {y}^i_t ← tanh({a}[i, t])")
    lo, d, t = ("0", "D − 1", "T − 1") if b.rows else ("1", "D", "T")
    b.define("TD", f"{a} + Σ_{{i={lo}}}^{{{d}}} (Σ_{{t={lo}}}^{{{t}}} {y}^i_t) / (T · D)")


def c_nested_layers(b: Builder):
    """A layer loop inside a layer loop, both carrying one value."""
    b.hypers.add("N")
    a = b.pick("TD")
    w, u = b.fresh("W"), b.fresh("U")
    b.params.append(f"param  {w}_ℓ ∈ ℝ^{{D×D}} for ℓ ∈ [N]")
    b.params.append(f"param  {u}_k ∈ ℝ^{{D×D}} for k ∈ [N]")
    x = b.define("TD", a, "X")
    b.emit("for ℓ ∈ [N] do")
    b.emit(f"  {x} ← {x} + tanh({b.mm(x, f'{w}_ℓ')})")
    b.emit("  for k ∈ [N] do")
    b.emit(f"    {x} ← {x} + {b.mm(x, f'{u}_k')} / 4")
    b.emit("  end")
    b.emit("end")


CONSTRUCTS = {
    "unary": c_unary, "binary": c_binary, "divide": c_divide, "linear": c_linear, "square": c_square,
    "scores": c_scores, "mask": c_mask, "attend": c_attend, "softmax": c_softmax, "rowsum": c_rowsum,
    "mean": c_mean_norm, "heads": c_heads, "layers": c_layers, "tokens": c_tokens,
    "norm_call": c_norm_call, "block_call": c_block_call, "recurrence": c_recurrence,
    "heads_columns": c_heads_columns, "heads_update": c_heads,
    "gram": c_gram, "power": c_power, "embed": c_embed, "mhattention": c_mhattention, "maximum": c_maximum,
    "iverson": c_iverson, "halves": c_halves, "pairs": c_pairs, "nested_layers": c_nested_layers,
}
NEEDS = {"mask": "TT", "attend": "TT", "iverson": "TT"}  # a construct that reads a kind some step must make first
OPEN = {  # construct -> the open bug it runs into (README, "Differential testing")
    "halves": "build refuses a join of two matrices [A, B] (issue 10)",
    "nested_layers": "a layer loop inside a layer loop: check refuses it (the backward read the first pass's saves)",
}


def random_card(c: Chooser, name: str = "Random", constructs=None, max_steps: int = 6) -> str:
    """A card's text: a random convention, 1…max_steps constructs, the output the sum of the
    token-by-width values."""
    allowed = [k for k in (constructs or [k for k in CONSTRUCTS if k not in OPEN]) if k in CONSTRUCTS]
    rows = c.choice([True, False])
    b = Builder(rows, c)
    b.allowed = set(allowed)
    b.values["X"] = "TD"
    for _ in range(c.integer(1, max_steps)):
        kind = c.choice(allowed)
        need = NEEDS.get(kind)
        if need and need not in b.values.values():
            if "scores" not in allowed:
                continue
            kind = "scores"
        CONSTRUCTS[kind](b)
    outs = [n for n, k in b.values.items() if k == "TD" and n != "X"] or ["X"]
    tail = outs[-3:]
    b.emit(f"return Y = {' + '.join(tail)}")
    conv = "rows, 0-based" if rows else "columns, 1-based"
    td = b.shape("TD")
    ins = ", ".join(["X", *b.inputs])
    head = [f"algorithm Y ← {name}({ins} | θ)", f"  convention {conv}", f"  input  X ∈ ℝ^{{{td}}}"]
    head += [f"  input  {n} ∈ {s}" for n, s in b.inputs.items()]
    head += [f"  output Y ∈ ℝ^{{{td}}}", "  hyper  D ∈ ℕ"]
    head += [f"  hyper  {h} ∈ ℕ" for h in sorted(b.hypers)]
    head += [f"  {p}" for p in b.params] or []
    if not b.params:
        head.append("  param  W0 ∈ ℝ^{D×D}")
        b.lines.insert(0, f"X ← X + 0 · ({b.mm('X', 'W0')})")
    body = [f"  {i} {line}" for i, line in enumerate(b.lines, 1)]
    return "\n".join(head + body) + "\n"
