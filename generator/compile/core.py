"""The core IR: a card lowered to whole-array operations.

Where the card IR says what the paper says (``∀t: k_t ← W_k e_t + b_k``), the
core IR says what NumPy does (``k = e @ W_k.T + b_k``): a straight-line list
of ``Op``s over named arrays, plus ``Loop``s over layers.  ``ad.py``
differentiates it, ``emit.py`` prints it.

Layout of every array: ``[batch…, core…]``.  The batch prefix (any number of
leading axes) is present on ``batched`` values, absent on parameters and
constants; ``shape`` is the core shape, symbolic.  Axis numbers in ``attr``
always count from the end, so they hold whatever the batch prefix is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..lang.shapes import Poly


@dataclass
class Op:
    out: str
    prim: str
    args: tuple[str, ...]
    attr: tuple = ()
    shape: tuple[Poly, ...] = ()
    batched: bool = True
    kind: str = "real"  # real, int, bool
    step: int | None = None  # the card step it comes from (for comments)


@dataclass
class Loop:
    """``for var in range(count)`` whose body updates ``carried`` values.

    ``carried``: (outer name, body input name, body output name).
    ``sliced``: (stacked name, per-iteration name) parameters indexed by var.
    ``body`` reads those plus any value defined before the loop.
    """

    var: str
    count: Poly
    carried: list[tuple[str, str, str]]
    sliced: list[tuple[str, str]]
    body: list
    step: int | None = None
    outs: list[tuple[str, str]] = field(default_factory=list)  # (outer result, body output)
    # A recurrence's per-step writes (Y[t] ← h, y_t ← h): (outer array, body value, the axis of
    # the outer array the step indexes, counted from the end, the outer array's shape).
    stacks: list[tuple[str, str, int, tuple[Poly, ...]]] = field(default_factory=list)


@dataclass
class Value:
    name: str
    shape: tuple[Poly, ...]
    batched: bool
    kind: str = "real"


@dataclass
class Program:
    """A lowered card: its inputs, parameters (flattened, stacked per
    repetition), body and outputs."""

    name: str
    inputs: list[Value]
    params: list[Value]
    param_paths: dict[str, tuple[str, ...]]  # value name -> path in Params (θ_ℓ.W_qkv …)
    hypers: list[str]
    dims: dict[str, str]  # dimension symbol -> how generated code computes it
    body: list
    outputs: list[Value]
    values: dict[str, Value] = field(default_factory=dict)  # every value's shape, for comments
    draws: bool = False  # a `with probability` choice: forward takes an rng


def matmul_attr(mode: str, a_single: bool, b_single: bool) -> tuple:
    """A matrix-vector product whose matrix is one matrix for every example carries "rows": the
    printers then multiply all the rows at once (``x @ W.T``), one matrix product, not one per row."""
    if (mode == "mv" and a_single) or (mode == "vm" and b_single):
        return (mode, "rows")
    return (mode,)


def walk(body):
    """Every Op in a body, loops included, in order."""
    for x in body:
        if isinstance(x, Loop):
            yield from walk(x.body)
        else:
            yield x
