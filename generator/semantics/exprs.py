"""The expression rules: one method ``x_<op>`` per IR op, each computing the op's value the way
the paper defines it (element by element where that is the reading).  Calls are in calls.py.
``ExprRules`` is mixed into ``frame.Frame``."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..lang.ir import Expr
from ..lang.names import list_family
from ..lang.render import expr_text
from .builtins import ELEMENTWISE
from .values import number

CMP = {"<": np.less, "≤": np.less_equal, ">": np.greater, "≥": np.greater_equal,
       "=": np.equal, "≠": np.not_equal}



class ExprRules:
    """A rule per expression op, and ``value`` that picks one."""

    def value(self, e: Expr):
        return getattr(self, "x_" + e.op)(e)

    def x_name(self, e):
        return self.resolve(e.attr, e)

    def x_num(self, e):
        return int(e.attr) if e.attr.isdigit() else float(e.attr)

    def x_inf(self, e):
        return math.inf

    def x_add(self, e):
        a, b = self.operands(e)
        return a + b

    def x_sub(self, e):
        a, b = self.operands(e)
        return a - b

    def x_mul(self, e):
        a, b = self.operands(e)
        return a * b

    def x_div(self, e):
        a, b = self.operands(e)
        if _is_int(a) and _is_int(b) and b != 0:
            q = Fraction(int(a), int(b))
            return int(q) if q.denominator == 1 else float(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(a, b) if np.ndim(a) or np.ndim(b) else _scalar_div(float(a), float(b))

    def x_floordiv(self, e):
        a, b = self.whole_operands(e, "⌊a / b⌋")
        return np.floor_divide(a, b) if np.ndim(a) or np.ndim(b) else int(a) // int(b)

    def x_mod(self, e):
        a, b = self.whole_operands(e, "a mod b")
        return np.mod(a, b) if np.ndim(a) or np.ndim(b) else int(a) % int(b)

    def whole_operands(self, e, what: str):
        """Whole numbers, by definition: ⌊a / b⌋ = the greatest integer ≤ a/b; a mod b = a − b⌊a / b⌋."""
        out = []
        for x in e.args:
            v = number(self.value(x))
            arr = np.asarray(v)
            if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
                v = arr.astype(np.int64) if arr.ndim else int(arr)
            elif arr.dtype.kind not in "iu":
                self.err(f"{what} takes whole numbers; {expr_text(x)} = {arr.tolist()}", x)
            out.append(v)
        if np.any(np.asarray(out[1]) == 0):
            self.err(f"{what} divides by zero: {expr_text(e.args[1])} = 0", e.args[1])
        return out

    def operands(self, e):
        return tuple(number(self.value(x)) for x in e.args)

    def x_matmul(self, e):
        return self.product(*self.operands(e))

    def product(self, a, b):
        if np.ndim(a) == 0 or np.ndim(b) == 0:
            return a * b
        return np.matmul(a, b)

    def x_juxt(self, e):
        left, right = e.args
        if left.op == "name" and left.attr in ELEMENTWISE | {"softmax": 0, "max": 0, "length": 0} \
                and left.attr not in self.env:
            return self.builtin(left.attr, [right], e)
        if right.op == "transpose" and right.args[0] == Expr("num", (), "1"):
            return np.asarray(number(self.value(left)))[..., None]  # b 1^⊤: b in every column
        if left == Expr("num", (), "1") and right.op == "transpose":
            return np.asarray(number(self.value(right)))[None, ...]
        return self.product(*self.operands(e))

    def x_neg(self, e):
        return -number(self.value(e.args[0]))

    def x_not(self, e):
        return np.logical_not(self.value(e.args[0]))

    def x_sqrt(self, e):
        return ELEMENTWISE["sqrt"](number(self.value(e.args[0])))

    def x_square(self, e):
        a = number(self.value(e.args[0]))
        return a * a

    def x_pow(self, e):
        a, p = self.operands(e)
        return np.power(np.asarray(a, dtype=float), float(p)) if np.ndim(a) else float(a) ** float(p)

    def x_transpose(self, e):
        a = self.value(e.args[0])
        return np.transpose(a) if np.ndim(a) == 2 else a

    def x_cmp(self, e):
        a, b = [self.value(x) for x in e.args]
        out = CMP[e.attr](a, b)
        return bool(out) if np.ndim(out) == 0 else out

    def x_iverson(self, e):
        return self.value(e.args[0])

    def x_choose(self, e):
        a, p, b = [self.value(x) for x in e.args]
        if self.rng is None:
            self.err("`with probability` needs a random generator: interpret(…, rng=…)", e)
        pick = self.rng.random(np.shape(np.broadcast(a, b))) < p
        return np.where(pick, a, b)

    def x_set_builder(self, e):
        rng, cond = e.args
        n = self.whole(self.value(rng), rng)
        out = np.zeros(n, dtype=bool)
        for i in range(n):
            with self.bound({e.attr: (self.base + i, n)}):
                out[i] = self.truth(self.value(cond), cond)
        return out

    def x_sum(self, e):
        var, form = e.attr
        body, *bounds = e.args
        if form == "span":
            lo, hi = [self.whole(self.value(b), b) for b in bounds]
            points = range(lo, hi + 1)
        elif form == "in":
            s = np.asarray(self.value(bounds[0]))
            points = [self.base + i for i in np.flatnonzero(s)]
        else:
            points = range(self.base, self.base + self.extent(var, body, e))
        total = 0
        n = len(points)
        for i in points:
            with self.bound({var: (i, n)}):
                total = total + number(self.value(body))
        return total

    def x_index(self, e):
        base, *idx = e.args
        arr = self.value(base)
        if np.ndim(arr) < len(idx):
            self.err(f"{expr_text(base)} has {np.ndim(arr)} axes here, not {len(idx)}", e)
        axis = 0
        for ix in idx:
            n = np.shape(arr)[axis]
            if ix.op == "slice":
                arr = np.asarray(arr)[(slice(None),) * axis + (self.slice_of(ix, n),)]
                axis += 1
                continue
            k = np.asarray(self.value(ix))
            if k.dtype == bool:
                self.err("the interpreter indexes with positions, not true/false values", ix)
            arr = np.take(arr, self.position(k, n, ix), axis=axis)
            axis += k.ndim
        return arr

    def slice_of(self, s: Expr, n: int) -> slice:
        lo_e, hi_e = s.args
        lo = 0 if lo_e.op == "none" else self.whole(self.value(lo_e), lo_e) - self.base
        hi = n if hi_e.op == "none" else self.whole(self.value(hi_e), hi_e) + (1 if self.base == 1 else 0) - \
            self.base
        if not 0 <= lo <= hi <= n:
            self.err(f"the slice {expr_text(s)} runs {lo + self.base}…{hi - 1 + self.base}, outside "
                     f"{self.base}…{n - 1 + self.base}", s)
        return slice(lo, hi)

    def position(self, k, n: int, node):
        """A card index (1- or 0-based) as a NumPy position, checked to be inside the axis."""
        k = np.asarray(k)
        if k.dtype.kind == "f":
            if not np.all(k == np.round(k)):
                self.err(f"{expr_text(node)} is not a whole number", node)
            k = k.astype(np.int64)
        pos = k - self.base
        if np.any(pos < 0) or np.any(pos >= n):
            self.err(f"the index {expr_text(node)} = {k.tolist()} is outside {self.base}…{n - 1 + self.base}", node)
        return int(pos) if pos.ndim == 0 else pos

    def x_list(self, e):
        items = [x for x in e.args if x.op != "ellipsis"]
        if len(items) != len(e.args):
            return self.family_list(items, e.attr, e)
        return _join([np.asarray(number(self.value(x))) for x in items], e.attr)

    def family_list(self, items, sep: str, e):
        key, by = list_family(items[0].attr, lambda v: v in self.idx, self.env)  # [Y^g_0, …, Y^g_{H−1}]
        fixed = tuple(self.idx[v] if v in self.idx else int(v) for v in by)
        fam = self.env.get(key)
        if not isinstance(fam, dict):
            self.err(f"no family {key.replace('□', '•')} here", e)
        members = [np.asarray(fam[k]) for k in sorted(fam) if k[:len(fixed)] == fixed]
        if members[0].ndim == 0:
            return np.array(members)
        if members[0].ndim == 1:
            return np.stack(members, axis=-1 if sep == "," else 0)
        return np.concatenate(members, axis=-1 if sep == "," else 0)

    def x_grad(self, e):
        self.err("the interpreter does not differentiate: ∇ is the compiler's (cardgen gradcheck)", e)

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _scalar_div(a: float, b: float) -> float:
    if b == 0:
        return math.copysign(math.inf, a) * math.copysign(1.0, b) if a else math.nan
    return a / b


def _join(items: list[np.ndarray], sep: str) -> np.ndarray:
    """A list literal: numbers make a vector, ``[x, y]`` appends to a sequence, vectors become
    columns (``,``) or rows (``;``), matrices join along the last (``,``) or first (``;``) axis."""
    ranks = {a.ndim for a in items}
    if ranks == {0}:
        return np.array(items)
    if ranks == {1}:
        return np.stack(items, axis=-1 if sep == "," else 0)
    if ranks == {0, 1}:
        return np.concatenate([np.atleast_1d(a) for a in items])
    return np.concatenate(items, axis=-1 if sep == "," else 0)
