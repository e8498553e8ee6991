"""Symbolic dimensions: polynomials over dimension names, so ``h·D/H`` and
``(h+1)·D/H`` differ by exactly ``D/H``, and ``p+T − p`` is ``T``.

A dimension is a ``Poly``: a sum of terms, each a coefficient times a
product of names raised to integer powers.  Names starting with ``?`` are
unknowns that unification may bind.  An integer quotient or remainder whose
operands are not both numbers (``⌊h·H_kv/H⌋``, ``(h mod G)``) is an *atom*: a
name of its own, spelled as the card writes it, whose operands ``ATOMS`` keeps,
so ``(⌊h·G⌋ + 1)·w − ⌊h·G⌋·w`` is ``w`` and substituting sizes reaches inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

Monomial = tuple[tuple[str, int], ...]

# A card's dimensions have a few terms and small coefficients.  Bounds keep a
# hostile one cheap: (A+…+H+1)^12 multiplied out has 125,970 terms, and a
# coefficient of 4,300 digits or more cannot even be printed (str(int)).
MAX_TERMS = 100  # terms of a dimension, and term pairs one product may form
MAX_COEF = 10**100


# atom name -> (op, numerator, divisor), op "floordiv" or "mod"; a name is made from its
# operands' text, so equal atoms are one name, and the table is only a cache of that text's meaning
ATOMS: dict[str, tuple[str, Poly, Poly]] = {}


class TooLargeError(Exception):
    """A dimension past MAX_TERMS or MAX_COEF; the checker reports it at the
    expression that built it."""


@dataclass(frozen=True)
class Poly:
    terms: tuple[tuple[Monomial, Fraction], ...]

    # ------------------------------------------------------------ builders
    @staticmethod
    def const(c) -> Poly:
        c = Fraction(c)
        return Poly((((), c),) if c else ())

    @staticmethod
    def sym(name: str) -> Poly:
        return Poly(((((name, 1),), Fraction(1)),))

    @staticmethod
    def _make(acc: dict) -> Poly:
        terms = tuple(sorted((m, c) for m, c in acc.items() if c))
        if len(terms) > MAX_TERMS:
            raise TooLargeError(f"it has more than {MAX_TERMS} terms")
        if any(abs(c.numerator) > MAX_COEF or c.denominator > MAX_COEF for _, c in terms):
            raise TooLargeError("a coefficient has more than 100 digits")
        return Poly(terms)

    def __add__(self, other: Poly) -> Poly:
        acc = dict(self.terms)
        for m, c in other.terms:
            acc[m] = acc.get(m, 0) + c
        return Poly._make(acc)

    def __neg__(self) -> Poly:
        return Poly(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, other: Poly) -> Poly:
        return self + (-other)

    def __mul__(self, other: Poly) -> Poly:
        if len(self.terms) * len(other.terms) > MAX_TERMS:  # before the work, not after
            raise TooLargeError(f"multiplied out it has more than {MAX_TERMS} terms")
        acc: dict = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = _mono_mul(m1, m2)
                acc[m] = acc.get(m, 0) + c1 * c2
        return Poly._make(acc)

    def floordiv(self, other: Poly) -> Poly:
        """⌊self / other⌋ on whole numbers: a number when both are, else an atom."""
        return _atom("floordiv", self, other)

    def mod(self, other: Poly) -> Poly:
        """self mod other (Knuth's: self − other·⌊self / other⌋, the sign of other)."""
        return _atom("mod", self, other)

    def divide(self, other: Poly) -> Poly | None:
        """Exact division by a single term; None for anything else."""
        if len(other.terms) != 1:
            return None
        m, c = other.terms[0]
        inv = Poly(((tuple((s, -e) for s, e in m), 1 / c),))
        return self * inv

    # ------------------------------------------------------------- queries
    @property
    def constant(self) -> Fraction | None:
        if not self.terms:
            return Fraction(0)
        if len(self.terms) == 1 and self.terms[0][0] == ():
            return self.terms[0][1]
        return None

    def symbols(self) -> list[str]:
        """The dimension names it depends on, those inside its atoms too."""
        out = set()
        for m, _ in self.terms:
            for s, _ in m:
                if s in ATOMS:
                    _, a, b = ATOMS[s]
                    out.update(a.symbols(), b.symbols())
                else:
                    out.add(s)
        return sorted(out)

    def atoms(self) -> list[str]:
        """Its integer quotients and remainders (``⌊h·G⌋``), by name."""
        return sorted({s for m, _ in self.terms for s, _ in m if s in ATOMS})

    def unknowns(self) -> list[str]:
        return [s for s in self.symbols() if s.startswith("?")]

    def subst(self, env: dict[str, Poly]) -> Poly:
        if not any(s in env or s in ATOMS for m, _ in self.terms for s, _ in m):  # the common case, kept cheap
            return self
        out = Poly.const(0)
        for m, c in self.terms:
            term = Poly.const(c)
            for s, e in m:
                if s in ATOMS and s not in env:
                    op, a, b = ATOMS[s]
                    base = _atom(op, a.subst(env), b.subst(env))
                else:
                    base = env.get(s, Poly.sym(s))
                if e < 0:
                    inv = Poly.const(1).divide(base)
                    base = inv if inv is not None else Poly.sym(s)
                for _ in range(abs(e)):
                    term = term * base
            out = out + term
        return out

    def evaluate(self, values: dict[str, int | float]) -> Fraction | None:
        total = Fraction(0)
        for m, c in self.terms:
            t = Fraction(c)
            for s, e in m:
                if s in ATOMS and s not in values:
                    v = _atom_value(s, values)
                    if v is None:
                        return None
                    t *= v ** e
                    continue
                if s not in values:
                    return None
                t *= Fraction(values[s]) ** e
            total += t
        return total

    def __str__(self) -> str:
        return poly_text(self)


def _atom(op: str, a: Poly, b: Poly) -> Poly:
    ca, cb = a.constant, b.constant
    if ca is not None and cb is not None and cb != 0 and ca.denominator == cb.denominator == 1:
        return Poly.const(ca // cb if op == "floordiv" else ca % cb)
    if cb == 1:
        return a if op == "floordiv" else Poly.const(0)
    if op == "floordiv":
        name = f"⌊{_operand(a)}/{_operand(b, True)}⌋"
    else:
        name = f"({_operand(a)} mod {_operand(b, True)})"
    ATOMS.setdefault(name, (op, a, b))
    return Poly.sym(name)


def _operand(p: Poly, right: bool = False) -> str:
    """An atom's operand as the dimension grammar reads it back (parse_dim)."""
    text = poly_text(p)
    simple = len(p.terms) == 1 and not (right and ("·" in text or "/" in text)) and not text.startswith("−")
    return text if simple else f"({text})"


def _atom_value(name: str, values) -> Fraction | None:
    op, a, b = ATOMS[name]
    x, y = a.evaluate(values), b.evaluate(values)
    if x is None or y is None or y == 0 or x.denominator != 1 or y.denominator != 1:
        return None
    return Fraction(x // y if op == "floordiv" else x % y)


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    acc = dict(a)
    for s, e in b:
        acc[s] = acc.get(s, 0) + e
    return tuple(sorted((s, e) for s, e in acc.items() if e))


def _mono_text(m: Monomial) -> tuple[str, str]:
    num = "·".join(s for s, e in m for _ in range(e))
    den = "·".join(s for s, e in m for _ in range(-e))
    return num, den


@lru_cache(maxsize=4096)  # a Poly is immutable; messages and modules print the same few often
def poly_text(p: Poly) -> str:
    """Card notation for a dimension: ``3·D``, ``D/H``, ``T − 1``."""
    return "".join(_poly_parts(p))


def poly_brief(p: Poly, width: int = 80) -> str:
    """``poly_text`` for a message: the first terms of a long dimension and
    how many there are."""
    parts = _poly_parts(p)
    text = "".join(parts)
    if len(text) <= width:
        return text
    shown = parts[0]
    for part in parts[1:]:
        if len(shown) + len(part) > width // 2:
            break
        shown += part
    if len(shown) > width // 2:  # one long term: D·D·D·…
        shown = shown[:width // 2] + "…"
    return f"{shown} + … ({len(parts)} terms)" if len(parts) > 1 else shown


@lru_cache(maxsize=4096)
def _poly_parts(p: Poly) -> tuple[str, ...]:
    """The terms as text, each after the first with its sign: ``("T", " − 1")``."""
    if not p.terms:
        return ("0",)
    parts = []
    for m, c in sorted(p.terms, key=lambda t: (len(t[0]) == 0, t[0])):
        num, den = _mono_text(m)
        mag = abs(c)
        coef = "" if (mag == 1 and num) else _frac(mag)
        body = "·".join(x for x in (coef, num) if x) or "1"
        if den:
            body += "/" + (den if "·" not in den else f"({den})")
        if not parts:
            parts.append(("−" if c < 0 else "") + body)
        else:
            parts.append(f" {'−' if c < 0 else '+'} {body}")
    return tuple(parts)


def _frac(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
