"""`cardgen primitives`: the table of built-in functions and operators, with
their card and ASCII spellings, their shape rule and whether cardgen
differentiates them.  The README's list is this table (a test compares them).

The built-ins come from the checker's ``BUILTINS`` and ``SHAPE_RULES``, their
primitives from the lowering's ``UNARY``/``REDUCE``/``BINARY`` and the answer
"derivative" from ``ad.VJP``.  An operator's row carries an example; its
derivative column is found by running the example through check, lowering
and differentiation, so the table says what the stages do, not what a
comment claims.
"""

from __future__ import annotations

from ..compile.ad import VJP, NoDerivativeError, differentiate
from ..compile.emit import output_names
from ..compile.lower import LoweringError, lower
from ..compile.lower_expr import BINARY, REDUCE, UNARY
from ..lang.check import Library, check
from ..lang.check_call import ASCII_SPELLING, BUILTINS, SHAPE_RULES
from ..lang.errors import CardError
from ..lang.parse import parse

# (card spelling, ASCII spelling, shape rule, example, the example's result set)
OPERATORS = [
    ("a + b, a − b", "a + b, a - b", "element-wise, broadcasting (NumPy's rule, trailing axes)", "X + Z − X",
     "ℝ^{T×D}"),
    ("a ⊙ b", "a * b", "element-wise, broadcasting", "X ⊙ Z", "ℝ^{T×D}"),
    ("a / b", "a / b", "element-wise, broadcasting", "X / (Z ⊙ Z + 1)", "ℝ^{T×D}"),
    ("a · b, a b", "a @ b, a b", "matrix product: m×n by n×k is m×k; a vector is a row or a column as it fits",
     "X · Z^⊤ + X Z^⊤", "ℝ^{T×T}"),
    ("−a", "-a", "the argument's shape", "−X", "ℝ^{T×D}"),
    ("a^⊤", "a^T", "the two axes swapped", "X^⊤", "ℝ^{D×T}"),
    ("a², a^{p}", "a^{2}, a^{p}", "element-wise power (p a number)", "X² + X^{3}", "ℝ^{T×D}"),
    ("√a", "sqrt(a)", "element-wise", "√(X ⊙ X + 1)", "ℝ^{T×D}"),
    ("Σ_{i=a}^{b} e, Σ_{i∈S} e, Σ_i e", "sum_{i=a}^{b} e", "e's shape, summed over the index", "Σ_{t=0}^{T − 1} X[t]",
     "ℝ^D"),
    ("a[i, j], a[i : j]", "a[i, j], a[i : j]", "an index drops its axis, a slice keeps it shorter",
     "X[0] + X[1 : 2][0]", "ℝ^D"),
    ("⌊a / b⌋, a mod b", "floor(a / b), a mod b, a % b",
     "whole numbers only (indices, sizes, loop variables); floors, so the remainder has b's sign",
     "⌊T / 2⌋ + T mod 3 + ⌊(T + D) / 3⌋ · (D % 2)", "ℕ"),
    ("[a_1, …, a_n], [a_1; …; a_n]", "[a_1, ..., a_n], [a_1; ...; a_n]",
     "joined side by side (`,`, the last axis) or stacked (`;`, the first)", "[X; Z]", "ℝ^{2·T×D}"),
    ("a ≤ b, <, ≥, >, ≠, =", "a <= b, <, >=, >, !=, ==", "booleans, element-wise, broadcasting", "X ≤ Z",
     "{0,1}^{T×D}"),
    ("¬a", "not a", "booleans, the argument's shape", "¬(X ≤ Z)", "{0,1}^{T×D}"),
    ("[[c]]", "[[c]]", "a condition as 0/1 (Iverson bracket)", "[[X ≤ Z]] ⊙ X", "ℝ^{T×D}"),
    ("a with probability p else b", "a with probability p else b", "a's shape; a drawn per element with probability p",
     "X with probability 0.5 else Z", "ℝ^{T×D}"),
]


def _example_card(expr: str, out_set: str) -> str:
    return (f"algorithm y ← F(X, Z)\n  convention rows, 0-based\n  input  X, Z ∈ ℝ^{{T×D}}\n"
            f"  output y ∈ {out_set}\n  1 return y = {expr}\n")


def derivative_of(expr: str, out_set: str) -> str:
    """yes / no / — (the result is not real), by running the example through the stages."""
    if out_set.startswith("{0,1}"):
        return "— (booleans)"
    card = parse(_example_card(expr, out_set))
    lib = Library(cards={"F": card})
    try:
        checked = check(card, lib)
        if out_set in ("ℕ", "ℤ"):
            return "— (whole numbers)"
        prog = lower(checked, lib)
        names = prog.names
        differentiate(prog, names, [names.fresh("d_" + o) for o in output_names(prog, checked)])
    except (NoDerivativeError, LoweringError):
        return "no"
    except CardError as e:  # a row whose example no longer checks: the table is wrong, say so loudly
        raise AssertionError(f"primitives table: the example {expr!r} fails: {e.message}") from None
    return "yes"


def builtin_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for name, rule in BUILTINS.items():
        if name in ASCII_SPELLING.values():
            continue  # an ASCII alias: on its card name's row
        if rule == "length":
            deriv = "— (a natural number)"
        else:
            prims = ["softmax"] if rule == "softmax" else \
                [p for p in (UNARY.get(name), REDUCE.get(name), BINARY.get(name)) if p]
            deriv = "yes" if prims and all(p in VJP for p in prims) else "no"
        ascii_name = ASCII_SPELLING.get(name, name)
        if rule == "extreme":
            card, ascii_name = f"{name}(a), {name}(a, b)", f"{ascii_name}(a), {ascii_name}(a, b)"
        else:
            card, ascii_name = f"{name}(a)", f"{ascii_name}(a)"
        rows.append((card, ascii_name, SHAPE_RULES[rule], deriv))
    return rows


def operator_rows() -> list[tuple[str, str, str, str]]:
    return [(card, asc, rule, derivative_of(ex, out)) for card, asc, rule, ex, out in OPERATORS]


def primitives_table() -> str:
    """The Markdown table `cardgen primitives` prints and the README holds."""
    lines = ["| card | ASCII | shape rule | derivative |", "|---|---|---|---|"]
    for card, asc, rule, deriv in [*builtin_rows(), *operator_rows(), ("π", "", "the number π", "—")]:
        lines.append(f"| `{card}` | {f'`{asc}`' if asc else '—'} | {rule} | {deriv} |")
    return "\n".join(lines) + "\n"
