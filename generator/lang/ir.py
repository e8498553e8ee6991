"""The card IR: what a card says, as frozen dataclasses.

One expression node shape, ``Expr(op, args, attr)``, for every operator; each
later stage keeps a table keyed by ``op``.  Source positions ride along on every
node but are left out of equality, so ``parse(render(card)) == card`` is a
plain ``==``.  This module imports neither lark nor jinja2.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pos:
    """Where a node starts and ends in its source (1-based line and column)."""

    line: int
    col: int
    end_line: int
    end_col: int


def _pos() -> Pos | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Expr:
    """An expression: ``op`` names it, ``args`` are sub-expressions, ``attr``
    holds what is not an expression (a name, a literal, an operator symbol).

    Ops: name num inf | add sub matmul mul div neg not grad sqrt juxt |
    transpose square pow index slice | call kwarg | list ellipsis |
    iverson set_builder cmp choose | sum.
    """

    op: str
    args: tuple[Expr, ...] = ()
    attr: object = None
    pos: Pos | None = _pos()

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.args))
        attr = "" if self.attr is None else f"{self.attr!r}" + (", " if inner else "")
        return f"{self.op}({attr}{inner})"


def name(text: str, pos: Pos | None = None) -> Expr:
    return Expr("name", (), text, pos)


def num(text: str, pos: Pos | None = None) -> Expr:
    return Expr("num", (), text, pos)


@dataclass(frozen=True)
class Set:
    """A declared set such as ``ℝ^{T×D}``, ``{1..V}^T``, ``[N_V]*`` or ``ℕ``.

    ``kind``: real nat integer boolean span upto interval simplex.  ``bounds``
    are the kind's own expressions (``{lo..hi}``, ``[n]``, ``(lo, hi)``, ``Δ(n)``:
    the probability distributions over n outcomes, a vector of n).  ``shape`` is
    the tuple of dimension expressions; ``seq`` marks ``*`` (a sequence whose
    length is known only at run time).
    """

    kind: str
    bounds: tuple[Expr, ...] = ()
    shape: tuple[Expr, ...] = ()
    seq: bool = False
    pos: Pos | None = _pos()


@dataclass(frozen=True)
class Group:
    """A named collection of parameters: ``{W_q, b_q}`` (``members``) or all
    the parameters of another card (``card``, with dimension ``bindings``)."""

    members: tuple[str, ...] = ()
    card: str | None = None
    bindings: tuple[tuple[str, Expr], ...] = ()
    pos: Pos | None = _pos()


@dataclass(frozen=True)
class Decl:
    """One declaration line: ``param γ, β ∈ ℝ^{d_e} "scale and offset"``.

    ``role``: input output hyper param.  ``over`` repeats the declaration per
    index (``for h ∈ [H]``, ``for h ∈ [H], ℓ ∈ [L]``): (index name, upper bound) pairs.
    """

    role: str
    names: tuple[str, ...]
    set: Set | Group
    default: Expr | None = None
    over: tuple[tuple[str, Expr], ...] = ()
    desc: str | None = None
    pos: Pos | None = _pos()


@dataclass(frozen=True)
class Claim:
    """A ``▷ x ∈ ℝ^{…}`` annotation: the checker verifies it.  ``subset``:
    ``▷ T̃ ⊆ [ℓ]``, a set of positions (the value of ``{t ∈ [ℓ] : …}``)."""

    name: str
    set: Set
    pos: Pos | None = _pos()
    subset: bool = False


@dataclass(frozen=True)
class Step:
    """One numbered step.

    kind     fields used
    assign   target (name, index or fun_target expr), value
    if       cond, body (one step)
    sample   target, value (weights); dist names the distribution if ``∝``
    return   value; target if ``return x = …``
    for      var, domain (``for t ∈ [ℓ]``: (ℓ,); ``for l = a, …, b``: (a, b)),
             body; inline for a one-line loop
    forall   vars, body (one step)
    while    cond, body
    remark   note (a ``▷`` line on its own)

    ``note`` is free text after ``▷``; ``claim`` is a checked type annotation.
    Claims are derived (``render`` writes one per step), so they are left out
    of equality.
    """

    kind: str
    target: Expr | None = None
    value: Expr | None = None
    cond: Expr | None = None
    var: str | None = None
    vars: tuple[str, ...] = ()
    domain: tuple[Expr, ...] = ()
    body: tuple[Step, ...] = ()
    inline: bool = False
    dist: str | None = None
    note: str | None = None
    claim: Claim | None = field(default=None, compare=False)
    pos: Pos | None = _pos()


@dataclass(frozen=True)
class Convention:
    """Columns (the paper: one column per token) or rows (GPT-2 code); the
    index base decides ``x[1:ℓ]`` (1-based, inclusive) vs ``x[0:T]`` (0-based,
    half-open)."""

    axes: str = "columns"
    base: int = 1


@dataclass(frozen=True)
class Configuration:
    """A named set of hyperparameter values: ``config gpt2: V = 50257, D = 768``.

    ``values`` pairs a hyperparameter with its number, as written (``"1e-5"``);
    ``training`` marks the configuration ``cardgen train`` uses by default.
    """

    name: str
    values: tuple[tuple[str, str], ...]
    training: bool = False
    desc: str | None = None
    pos: Pos | None = _pos()
    value_pos: tuple[Pos | None, ...] = field(default=(), compare=False, repr=False)  # one per value

    def where(self, i: int) -> Pos | None:
        return self.value_pos[i] if i < len(self.value_pos) else self.pos


@dataclass(frozen=True)
class Rule:
    """A card's own backward pass (``backward`` after the steps), as ``jax.custom_vjp`` states one:
    steps that compute ``d_x`` for every real input and parameter ``x`` from ``d_y`` of each output
    ``y`` and the forward's values.  ``straight_through`` marks a rule that is deliberately not the
    true gradient (a straight-through estimator): gradient checks report it instead of failing it."""

    steps: tuple[Step, ...]
    straight_through: bool = False
    desc: str | None = None
    pos: Pos | None = _pos()


@dataclass(frozen=True)
class Card:
    """A whole algorithm card: signature, purpose, declarations, named
    configurations, steps and, if the card states one, its own backward rule."""

    name: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    bar: tuple[str, ...]
    purpose: str | None
    convention: Convention
    decls: tuple[Decl, ...]
    steps: tuple[Step, ...]
    configs: tuple[Configuration, ...] = ()
    path: str = field(default="<card>", compare=False)
    source: str = field(default="", compare=False, repr=False)
    pos: Pos | None = _pos()
    rule: Rule | None = None

    def decl_of(self, name: str) -> Decl | None:
        for d in self.decls:
            if name in d.names:
                return d
        return None

    def config(self, name: str) -> Configuration | None:
        return next((c for c in self.configs if c.name == name), None)
