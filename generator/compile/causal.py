"""Causal attention in row blocks: a causally masked score matrix's products and softmax passes
over the blocks of keys each block of rows can see, not the whole T×T square.

A card says ``∀t, u: if u > t then S[t, u] ← −∞`` and then ``softmax(S) V``; the softmax is then
exactly zero above the diagonal, and so are its gradient and every product that only feeds it.
Computed in row blocks of b rows, block i needs the first (i + 1)·b keys only: at T = 1024 in
sixteen blocks of 64, 17/32 of each T×T product and pass. Below T = 256 the helpers run one block,
the whole op: smaller products cost more there than the skipped half saves. The values are the same
arrays with the same numbers (the skipped entries are the zeros or the −∞ the full computation gives
them), so the cache, ``render --memory`` and everything downstream see no difference.

What is found, in the forward and backward ops of a program (``plan``):

- a causal mask ``M = iota(T) > expand(iota(T), −1)`` (``M[t, u] = u > t``, on the last two axes);
- ``W = where(M, −∞, S)``: the scores ``S`` (``X / c`` or a product ``X``) are read only by ``W``,
  so the product that makes them is computed below the diagonal only (``lower``);
- ``P = softmax(W)`` over the last axis: ``P`` is lower-triangular, its softmax runs over the seen
  blocks (``softmax``);
- ``softmax_grad(G, P)``: lower-triangular too (``softmax_grad``); a product read only by it is
  computed below the diagonal only;
- products whose left factor is lower-triangular (``P V``, ``d_S K``) or its transpose
  (``Pᵀ d_Y``, ``d_Sᵀ Q``): each row block contracts over the key blocks that are not zero.

Anything else, and any value that escapes (saved for the backward, an output, read twice), keeps
the full computation. The numpy target prints these ops with the ``_causal_*`` helpers
(``npcode.CAUSAL``); other targets ignore the plan.
"""

from __future__ import annotations

from ..lang.shapes import Poly
from .ad import walk_all
from .core import Op

LOWER, LEFT_LOWER, LEFT_UPPER, SOFTMAX, SOFTMAX_GRAD = "lower", "left_lower", "left_upper", "softmax", "softmax_grad"


def _swaps_last_two(op: Op) -> bool:
    perm = op.attr[0] if op.attr else ()
    n = len(perm)
    return n >= 2 and perm[-1] == -2 and perm[-2] == -1 and all(perm[i] == i - n for i in range(n - 2))


def plan(forward: list, backward: list, escaping: set[str]) -> dict[int, str]:
    """id(op) -> how to compute it in row blocks, for the ops of ``forward`` and ``backward`` (bodies
    of ops and loops). ``escaping``: values read outside these ops (saved for the backward, outputs,
    gradients returned): they are computed whole."""
    ops = list(walk_all(forward)) + list(walk_all(backward))
    defs = {op.out: op for op in ops}
    uses: dict[str, int] = {}
    for op in ops:
        for a in op.args:
            uses[a] = uses.get(a, 0) + 1

    def once(name: str) -> bool:
        return uses.get(name) == 1 and name not in escaping

    def number(name: str) -> bool:  # one number: a scalar value, or a literal
        op = defs.get(name)
        if op is None:
            try:
                float(name)
            except ValueError:
                return False
            return True
        return not op.shape and not op.batched

    def only_for(name: str) -> Op | None:
        """The op that makes ``name``, when that op is a matrix product whose result nothing else reads."""
        op = defs.get(name)
        ok = op is not None and once(name) and op.prim == "matmul" and op.attr[:1] == ("mm",)
        return op if ok else None

    def causal_mask(name: str):
        """T when ``name`` is the mask u > t over (T, T): iota(T) > expand(iota(T), −1); else None."""
        op = defs.get(name)
        if op is None or op.prim not in ("gt", "lt") or len(op.args) != 2:
            return None
        cols, rows = op.args if op.prim == "gt" else op.args[::-1]  # cols > rows: u > t
        c, r = defs.get(cols), defs.get(rows)
        ok = (c is not None and r is not None and c.prim == "iota" and c.attr[0] == Poly.const(0)
              and len(c.shape) == 1 and r.prim == "expand" and r.args == (cols,) and tuple(r.attr[0]) == (-1,))
        return c.shape[0] if ok else None

    out: dict[int, str] = {}
    lower: set[str] = set()   # lower-triangular on the last two axes (zero above the diagonal)
    upper: set[str] = set()   # their transposes
    for op in ops:
        if op.prim == "softmax" and op.attr[:1] == (-1,):
            w = defs.get(op.args[0])
            t = causal_mask(w.args[0]) if w is not None and w.prim == "where" and w.args[1] == "-np.inf" else None
            if t is not None and tuple(op.shape[-2:]) == (t, t):
                out[id(op)] = SOFTMAX
                lower.add(op.out)
                s = w.args[2]  # the scores: read by the mask only, they are needed below the diagonal only
                src = defs.get(s)
                if src is not None and src.prim == "div" and once(s) and number(src.args[1]):
                    s = src.args[0]  # X / c: the product X
                if (prod := only_for(s)) is not None:
                    out[id(prod)] = LOWER
        elif op.prim == "softmax_grad" and op.args[1] in lower and op.attr[:1] == (-1,):
            out[id(op)] = SOFTMAX_GRAD
            lower.add(op.out)
            src = only_for(op.args[0])
            if src is not None:
                out[id(src)] = LOWER
        elif op.prim == "transpose" and op.args[0] in lower and _swaps_last_two(op):
            upper.add(op.out)
        elif op.prim == "matmul" and op.attr[:1] == ("mm",) and id(op) not in out:
            if op.args[0] in lower:
                out[id(op)] = LEFT_LOWER
            elif op.args[0] in upper:
                out[id(op)] = LEFT_UPPER
    return out
