"""Core ops -> array-API source: one printer per primitive, in one table,
beside ``npcode.PRINT`` (the NumPy target's table) and with the same keys.

The module this target writes takes its functions from ``xp``, the namespace
of its inputs (``array_api_compat.array_namespace``), so one module runs on
NumPy, PyTorch, JAX and CuPy arrays.  Where NumPy's table writes into an
array (``out=``, ``np.copyto``, ``a[i] += g``) this one builds a new array:
JAX arrays are immutable and ``jax.jit`` traces only pure code.  Helpers take
``xp`` as their first argument, so they never look the namespace up again;
arrays they make go on their operands' device (``array_api_compat.device``).
"""

from __future__ import annotations

from .core import Op
from .npcode import SCALAR_MATH, at_index, draw_shape, py_dim

# Constants the lowerer spells for NumPy (layout.py, lower_expr.py): Python's own here.
CONSTANTS = {"np.inf": "math.inf", "-np.inf": "-math.inf", "np.pi": "math.pi"}


def _axes(t) -> str:
    return str(t[0]) if len(t) == 1 else str(tuple(t))


def _mm(op: Op, a: str, b: str) -> str:
    if op.attr[1:] == ("rows",):  # one matrix for every row: one matrix product over all of them
        return f"{b} @ {a}.T" if op.attr[0] == "mv" else f"{a} @ {b}"
    return {"mm": f"{a} @ {b}",
            "mv": f"({a} @ xp.expand_dims({b}, axis=-1))[..., 0]",
            "vm": f"(xp.expand_dims({a}, axis=-2) @ {b})[..., 0, :]",
            "vv": f"xp.sum({a} * {b}, axis=-1)"}[op.attr[0]]


def _transpose(op: Op, a: str) -> str:
    perm = op.attr[0]
    n = len(perm)
    if n >= 2 and list(perm) == list(range(-n, -2)) + [-1, -2]:
        return f"xp.matrix_transpose({a})"
    return f"_permute(xp, {a}, {tuple(perm)})"


def _reshape(op: Op, a: str) -> str:
    axis, new = op.attr
    dims = ", ".join(py_dim(d) for d in new)
    if len(new) == 1:  # merge axis and the next one
        tail = f" + tuple({a}.shape[{axis} + 2:])" if axis != -2 else ""
    else:
        tail = f" + tuple({a}.shape[{axis + 1}:])" if axis != -1 else ""
    return f"xp.reshape({a}, tuple({a}.shape[:{axis}]) + ({dims},){tail})"


def _slice(op: Op, a: str) -> str:
    axis, lo, hi = op.attr
    if not (str(lo).lstrip("-").isdigit() and str(hi).lstrip("-").isdigit()):  # bounds known only at run time
        card, _, line = str(op.step).rpartition(":")
        return f"_slice_in({a}, {axis}, {lo}, {hi}, {f'{card}.card, line {line}'!r})"
    before = ", ".join([":"] * (-axis - 1))
    return f"{a}[..., {lo}:{hi}" + (", " + before if before else "") + "]"


def _number(op: Op, i: int, a: str) -> str:
    """Operand i of + or −, as a number: the array API has no arithmetic on booleans (``attr``
    names the boolean operands, lower_expr.plus)."""
    return f"xp.astype({a}, dtype)" if op.attr and i in op.attr[0] else a


def _offset(j: str, k) -> str:
    return f"{j} - {k}" if k else j


PRINT = {
    "const": lambda op: (f"xp.asarray({op.attr[0]}, dtype=dtype, device=device)" if op.kind == "real"
                         else f"xp.asarray({op.attr[0]}, device=device)"),
    "draw": lambda op: f"xp.asarray(rng.random({draw_shape(op)}), device=device)",  # NumPy's generator draws
    "iota": lambda op: f"xp.arange({py_dim(op.attr[0])}, {py_dim(op.attr[0] + op.shape[0])}, device=device)",
    "add": lambda op, a, b: f"{_number(op, 0, a)} + {_number(op, 1, b)}",
    "sub": lambda op, a, b: f"{_number(op, 0, a)} - {_number(op, 1, b)}",
    "floordiv": lambda op, a, b: f"{a} // {b}",
    "mod": lambda op, a, b: f"{a} % {b}",
    "mul": lambda op, a, b: f"{a} * {b}",
    "div": lambda op, a, b: f"{a} / {b}",
    "powv": lambda op, a, b: f"{a} ** {b}",
    "maximum": lambda op, a, b: f"_maximum(xp, {a}, {b})",
    "neg": lambda op, a: f"-{a}",
    "not": lambda op, a: f"xp.logical_not({a})" if op.shape or op.batched else f"(not {a})",  # ~True is −2
    "le": lambda op, a, b: f"{a} <= {b}", "lt": lambda op, a, b: f"{a} < {b}",
    "ge": lambda op, a, b: f"{a} >= {b}", "gt": lambda op, a, b: f"{a} > {b}",
    "eq": lambda op, a, b: f"{a} == {b}", "ne": lambda op, a, b: f"{a} != {b}",
    "square": lambda op, a: f"{a} * {a}",
    "pow": lambda op, a: (" * ".join([a] * int(op.attr[0])) if float(op.attr[0]) == int(op.attr[0])
                          and 1 <= int(op.attr[0]) <= 4 else f"{a} ** {op.attr[0]!r}"),
    "relu": lambda op, a: f"_maximum(xp, {a}, 0)",
    "sigmoid": lambda op, a: f"_sigmoid(xp, {a})",
    "silu": lambda op, a: f"{a} * _sigmoid(xp, {a})",
    "gelu": lambda op, a: f"_gelu(xp, {a})",
    "softmax": lambda op, a: f"_softmax(xp, {a}, {op.attr[0]})",
    "log_softmax": lambda op, a: f"_log_softmax(xp, {a}, {op.attr[0]})",
    "sum": lambda op, a: f"xp.sum({a}, axis={_axes(op.attr[0])})",
    "max": lambda op, a: f"xp.max({a}, axis={_axes(op.attr[0])})",
    "matmul": _mm,
    "transpose": _transpose,
    "expand": lambda op, a: f"_expand(xp, {a}, {_axes(op.attr[0])})",
    "reshape": _reshape,
    "slice": _slice,
    "take": lambda op, t, j: f"_take(xp, {t}, {_offset(j, op.attr[0])})",
    "take_along": lambda op, a, j: f"_take_along(xp, {a}, {_offset(j, op.attr[1])}, {op.attr[0]})",
    "pick": lambda op, a: f"_pick({a}, {op.attr[1]}, {op.attr[0]})",
    "index": lambda op, a: f"{a}[{at_index(op.attr[0], op.attr[1], len(op.shape) + 1, op.batched)}]",
    "where": lambda op, c, a, b: f"xp.where({c}, {a}, {b})",
    "copy": lambda op, a: f"{a}",
    "batch": lambda op, a: f"_batch(xp, {a}, batch, device)",  # batch: forward's batch axes
    "broadcast": lambda op, a: (f"_broadcast_axes(xp, {a}, {op.attr[0]}, "
                                f"({', '.join(py_dim(d) for d in op.attr[1])},), {-op.attr[2]})"),
}
PRINT.update({name: lambda op, a, fn=f"xp.{name}": f"{fn}({a})"
              for name in ("exp", "log", "tanh", "sqrt", "abs", "sin", "cos", "sign", "round")})
PRINT.update({
    "erf": lambda op, a: f"_erf(xp, {a})",
    "mean": lambda op, a: f"xp.mean({a}, axis={_axes(op.attr[0])})",
    "min": lambda op, a: f"xp.min({a}, axis={_axes(op.attr[0])})",
    "minimum": lambda op, a, b: f"_minimum(xp, {a}, {b})",
    "concat": lambda op, *parts: f"_concat(xp, ({', '.join(parts)},), {op.attr[0]})",
})

# Backward-only primitives (made by ad.py; never differentiated again).
PRINT.update({
    "scale": lambda op, a: f"{op.attr[0]!r} * {a}",
    "one_minus": lambda op, a: f"1.0 - {a}",
    "positive": lambda op, a: f"xp.astype({a} > 0, {a}.dtype)",
    "silu_grad": lambda op, a: f"_silu_grad(xp, {a})",
    "gelu_grad": lambda op, g, x, y: f"{g} * _gelu_grad(xp, {x})",
    "softmax_grad": lambda op, g, y: f"_softmax_grad(xp, {g}, {y}, {op.attr[0]})",
    "layer_norm_grad": lambda op, g, y, s: f"_layer_norm_grad(xp, {g}, {y}, {s}, {op.attr[0]})",
    "gelu_tanh_grad": lambda op, g, x, t: f"_gelu_tanh_grad(xp, {g}, {x}, {t}, {', '.join(map(repr, op.attr))})",
    "log_softmax_grad": lambda op, g, y: f"{g} - xp.exp({y}) * xp.sum({g}, axis={op.attr[0]}, keepdims=True)",
    "unsum": lambda op, g, s: f"xp.broadcast_to(_expand(xp, {g}, {_axes(op.attr[0])}), {s})",
    "squeeze": lambda op, g: f"xp.squeeze({g}, axis={_axes(op.attr[0])})",
    "reshape_to": lambda op, g, s: f"xp.reshape({g}, {s})",
    "unslice": lambda op, g, s: f"_unslice(xp, {g}, {s}, {op.attr[0]}, {op.attr[1]}, {op.attr[2]})",
    "scatter": lambda op, g, j, t: f"_scatter_rows(xp, {g}, {_offset(j, op.attr[0])}, {t})",
    "put_along": lambda op, g, j, s: f"_put_along(xp, {g}, {_offset(j, op.attr[1])}, {s}, {op.attr[0]})",
    "unpick": lambda op, g, s: f"_unpick(xp, {g}, {s}, {op.attr[0]}, {op.attr[1]})",
    "select_grad": lambda op, c, g: f"xp.where({c}, {g}, 0)" if op.attr[0] else f"xp.where({c}, 0, {g})",
    "sum_to": lambda op, g: f"_sum_to(xp, {g}, {op.attr[0]}, {op.attr[1]})",
    "slice_add": lambda op, acc, g: f"{acc} + _unslice(xp, {g}, {acc}.shape, {op.attr[0]}, {op.attr[1]}, {op.attr[2]})",
    "broadcast_like": lambda op, g, s: f"xp.broadcast_to({g}, {s})",
    "wgrad": lambda op, x, g: f"_wgrad(xp, {x}, {g})",
    "outer": lambda op, a, b: f"xp.expand_dims({a}, axis=-1) * xp.expand_dims({b}, axis=-2)",
    "concat_part": lambda op, g, *shapes: f"_concat_part({g}, {op.attr[0]}, {op.attr[1]}, ({', '.join(shapes)},))",
    "erf_grad": lambda op, a: f"1.1283791670955126 * xp.exp(-({a} * {a}))",  # 2/√π · exp(−x²)
    "extreme_grad": lambda op, g, x, y: f"_extreme_grad(xp, {g}, {x}, {y}, {_axes(op.attr[0])})",
    "powv_da": lambda op, a, p: f"{p} * {a} ** ({p} - 1)",
    "powv_dp": lambda op, y, a: f"{y} * xp.log({a})",
    "unmean": lambda op, g, s: (f"xp.broadcast_to(_expand(xp, {g}, {_axes(op.attr[0])}) / "
                                f"math.prod({s}[a] for a in {tuple(op.attr[0])}), {s})"),
})


def op_expr(op: Op) -> str:
    if not op.shape and not op.batched and op.prim in SCALAR_MATH:
        # A number made of sizes and constants stays a Python float (as in the NumPy target).
        return f"{SCALAR_MATH[op.prim]}({CONSTANTS.get(op.args[0], op.args[0])})"
    if op.prim == "const":
        return PRINT["const"](op.__class__(**{**vars(op), "attr": (CONSTANTS.get(op.attr[0], op.attr[0]),)}))
    return PRINT[op.prim](op, *(CONSTANTS.get(a, a) for a in op.args))


HELPERS = '''
def _check_input(xp, name, value, shape, kind, lo, hi, card_set):
    """ValueError, in the card's terms, for an input of the wrong kind, shape or range."""
    a = value if is_array_api_obj(value) else xp.asarray(value)
    if kind == "i" and not xp.isdtype(a.dtype, "integral"):
        raise ValueError(f"{name} must be token ids (integers), not {a.dtype}; the card says {name} ∈ {card_set}")
    if kind == "f" and not xp.isdtype(a.dtype, "real floating"):
        raise ValueError(f"{name} must be real numbers (float32 or float64), not {a.dtype}; "
                         f"the card says {name} ∈ {card_set}")
    core = tuple(a.shape[a.ndim - len(shape):]) if a.ndim >= len(shape) else None
    if core is None or any(want is not None and got != want for got, want in zip(core, shape, strict=True)):
        wanted = "(…, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {wanted}: "
                         f"the card says {name} ∈ {card_set}")
    if lo is not None and a.size:
        try:
            low, high = int(xp.min(a)), int(xp.max(a))
        except TypeError:  # traced (jax.jit): the ids are not known until the compiled code runs
            return
        if low < lo or high > hi:
            raise ValueError(f"{name} holds ids {low}..{high}, outside {lo}..{hi}: "
                             f"the card says {name} ∈ {card_set}")


def _as_mask(xp, name, value, card_set):
    """A true/false input as booleans; the numbers 0 and 1 are read as false and true."""
    a = value if is_array_api_obj(value) else xp.asarray(value)
    if xp.isdtype(a.dtype, "bool"):
        return a
    if xp.isdtype(a.dtype, ("integral", "real floating")):
        try:
            only_01 = bool(xp.all((a == 0) | (a == 1)))
        except TypeError:  # traced (jax.jit): the values are not known until the compiled code runs
            only_01 = True
        if only_01:
            return a != 0
    raise ValueError(f"{name} must be true/false values (booleans, or the numbers 0 and 1), not {a.dtype}"
                     f"{' holding other numbers' if xp.isdtype(a.dtype, 'numeric') else ''}; "
                     f"the card says {name} ∈ {card_set}")


def _check_divides(quotient, num, den, num_text, den_text):
    """ValueError, in the card's terms, for a size the card divides that does not divide evenly."""
    if den == 0 or num % den:
        raise ValueError(f"{quotient} must be a whole number, but {num_text} = {num} is not a multiple of "
                         f"{den_text} = {den}: the card divides {num_text} by {den_text}")


def _batch(xp, a, batch, device):
    """a repeated over forward's batch axes."""
    a = a if is_array_api_obj(a) else xp.asarray(a, device=device)
    return xp.broadcast_to(a, tuple(batch) + tuple(a.shape))


def _check_params(params, shapes):
    for field, want in shapes.items():
        got = tuple(getattr(params, field).shape)
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=True)):
            raise ValueError(f"params.{field} has shape {got}, but the config asks for {want}")


def _slice_in(a, axis, lo, hi, where):
    """a[…, lo:hi, …] along axis, refusing a slice that runs outside the array."""
    n = a.shape[axis]
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"slice {lo}:{hi} runs outside an axis of length {n} ({where})")
    index = [slice(None)] * a.ndim
    index[axis] = slice(lo, hi)
    return a[tuple(index)]


def _maximum(xp, a, b):
    return xp.maximum(a, xp.asarray(b, dtype=a.dtype, device=_device(a)) if isinstance(b, (int, float)) else b)


def _minimum(xp, a, b):
    return xp.minimum(a, xp.asarray(b, dtype=a.dtype, device=_device(a)) if isinstance(b, (int, float)) else b)


def _concat(xp, parts, axis):
    """Join along axis (from the end), broadcasting every other axis first: [A, B] and [A; B]."""
    nd = max(p.ndim for p in parts)
    parts = [xp.reshape(p, (1,) * (nd - p.ndim) + tuple(p.shape)) for p in parts]
    ax = nd + axis
    common = [max(p.shape[i] for p in parts) for i in range(nd)]
    return xp.concat([xp.broadcast_to(p, tuple(common[:ax]) + (p.shape[ax],) + tuple(common[ax + 1:]))
                      for p in parts], axis=ax)


def _softmax(xp, x, axis):
    """Stable softmax; a row that is all −∞ (fully masked) gives zeros, not NaN."""
    m = xp.max(x, axis=axis, keepdims=True)
    z = xp.exp(x - xp.where(xp.isfinite(m), m, 0))
    s = xp.sum(z, axis=axis, keepdims=True)
    return z / xp.where(s == 0, 1, s)


def _log_softmax(xp, x, axis):
    m = xp.max(x, axis=axis, keepdims=True)
    z = x - xp.where(xp.isfinite(m), m, 0)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


def _sigmoid(xp, x):
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def _erf(xp, x):
    """The array API has no erf: each engine's own (NumPy: math.erf per element, as the NumPy target)."""
    kind = type(x).__module__.split(".")[0]
    if kind == "torch":
        import torch
        return torch.special.erf(x)
    if kind in ("jax", "jaxlib"):
        import jax.scipy.special
        return jax.scipy.special.erf(x)
    if kind == "cupy":
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(x)
    if kind == "numpy":
        import numpy as np
        return xp.asarray(np.vectorize(math.erf, otypes=[float])(x))
    raise TypeError(f"no erf for arrays of {type(x).__module__} (GELU needs one)")


def _gelu(xp, x):
    return xp.astype(0.5 * x * (1.0 + _erf(xp, x / math.sqrt(2.0))), x.dtype)


def _expand(xp, x, axes):
    """np.expand_dims with one axis or several (the standard takes one)."""
    if isinstance(axes, int):
        return xp.expand_dims(x, axis=axes)
    n = x.ndim + len(axes)
    for axis in sorted(a % n for a in axes):
        x = xp.expand_dims(x, axis=axis)
    return x


def _take(xp, table, idx):
    """table[idx]: the rows that the ids pick, for ids of any shape."""
    if isinstance(idx, int):
        return table[idx]
    rows = xp.take(table, xp.reshape(idx, (-1,)), axis=0)
    return xp.reshape(rows, tuple(idx.shape) + tuple(table.shape[1:]))


def _take_along(xp, a, idx, axis):
    """One element along axis per position: a[…, idx[…], …] (idx has a size-1 axis there
    and may lack a's batch axes; each is broadcast to the other, as NumPy's take_along_axis)."""
    idx = xp.reshape(idx, (1,) * (a.ndim - idx.ndim) + tuple(idx.shape))
    axis = axis % a.ndim
    shape = tuple(max(a.shape[d], idx.shape[d]) for d in range(a.ndim))
    a = xp.broadcast_to(a, shape[:axis] + (a.shape[axis],) + shape[axis + 1:])
    idx = xp.broadcast_to(idx, shape[:axis] + (1,) + shape[axis + 1:])
    return xp.squeeze(xp.take_along_axis(a, idx, axis=axis), axis=axis)


def _pick(a, i, axis):
    index = [slice(None)] * a.ndim
    index[axis] = i
    return a[tuple(index)]


def _permute(xp, x, perm):
    n = x.ndim
    lead = tuple(range(n - len(perm)))
    return xp.permute_dims(x, lead + tuple(n + p for p in perm))


def _broadcast_axes(xp, x, n, sizes, core):
    """Broadcast the n size-1 axes that start core axes from the end."""
    start = x.ndim - core
    return xp.broadcast_to(x, tuple(x.shape[:start]) + sizes + tuple(x.shape[start + n:]))


def _sum_to(xp, g, ndim, axes=()):
    """Sum a broadcast gradient back to its operand's shape."""
    if ndim is not None and g.ndim > ndim:
        g = xp.sum(g, axis=tuple(range(g.ndim - ndim)))
    if axes:
        g = xp.sum(g, axis=axes, keepdims=True)
    return g
'''

BACKWARD_HELPERS = '''
def _silu_grad(xp, x):
    s = _sigmoid(xp, x)
    return s * (1.0 + x * (1.0 - s))


def _gelu_grad(xp, x):
    cdf = 0.5 * (1.0 + _erf(xp, x / math.sqrt(2.0)))
    pdf = xp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return xp.astype(cdf + x * pdf, x.dtype)


def _wgrad(xp, x, g):
    """x^T g summed over all leading axes, as one matrix product."""
    return xp.matrix_transpose(xp.reshape(x, (-1, x.shape[-1]))) @ xp.reshape(g, (-1, g.shape[-1]))


def _concat_part(g, axis, i, shapes):
    """The slice of a join's gradient that belongs to its part i."""
    lo = sum(s[axis] for s in shapes[:i])
    index = [slice(None)] * g.ndim
    index[axis] = slice(lo, lo + shapes[i][axis])
    return g[tuple(index)]


def _extreme_grad(xp, g, x, y, axis):
    """The gradient of max or min along axis: to the entries equal to it, shared among ties."""
    hit = xp.astype(x == _expand(xp, y, axis), g.dtype)
    return hit * (_expand(xp, g, axis) / xp.sum(hit, axis=axis, keepdims=True))


def _softmax_grad(xp, g, y, axis):
    return (g - xp.sum(g * y, axis=axis, keepdims=True)) * y


def _gelu_tanh_grad(xp, g, x, t, a, c, k):
    """d_x of y = a x (1 + t), t = tanh(c (x + k x³)), from g = d_y."""
    return g * (a * ((1.0 + t) + c * x * (1.0 + 3.0 * k * x * x) * (1.0 - t * t)))


def _layer_norm_grad(xp, g, y, s, axis):
    """d_e of y = (e − mean e) / s, s = √(var e + ε), from g = d_y: (g − mean g − y ⊙ mean(g ⊙ y)) / s."""
    return (g - xp.mean(g, axis=axis, keepdims=True) - y * xp.mean(g * y, axis=axis, keepdims=True)) / s


def _unslice(xp, g, shape, axis, lo, hi):
    """Zeros of shape with g at […, lo:hi, …] along axis, built by joining (no writes)."""
    axis = axis % len(shape)
    parts = []
    for n in (lo, shape[axis] - hi):
        parts.append(xp.zeros(tuple(shape[:axis]) + (n,) + tuple(shape[axis + 1:]), dtype=g.dtype, device=_device(g)))
    g = xp.broadcast_to(g, tuple(shape[:axis]) + (hi - lo,) + tuple(shape[axis + 1:]))
    return xp.concat([parts[0], g, parts[1]], axis=axis)


def _scatter_rows(xp, g, idx, table):
    """Gradient of table[idx]: rows of g added into the rows they came from (a one-hot product:
    the standard has no scatter-add, and a product needs no writes)."""
    idx = xp.reshape(idx, (-1,))
    rows = xp.reshape(g, (idx.shape[0], -1))
    hot = xp.astype(xp.expand_dims(idx, axis=-1) == xp.arange(table.shape[0], device=_device(g)), g.dtype)
    out = xp.matrix_transpose(hot) @ rows
    return xp.reshape(out, tuple(table.shape))


def _put_along(xp, g, idx, shape, axis):
    """Gradient of take_along: g at idx along axis, zeros elsewhere (a one-hot product: the
    standard has no scatter), summed back over the axes take_along broadcast."""
    n, axis = len(shape), axis % len(shape)
    g = xp.expand_dims(g, axis=axis)
    idx = xp.reshape(idx, (1,) * (n - idx.ndim) + tuple(idx.shape))
    ids = xp.reshape(xp.arange(shape[axis], device=_device(g)), (shape[axis],) + (1,) * (n - 1 - axis))
    full = xp.astype(idx == ids, g.dtype) * g
    return _sum_to(xp, full, None, tuple(d for d in range(n) if shape[d] == 1 and full.shape[d] != 1))


def _unpick(xp, g, shape, axis, i):
    return _unslice(xp, xp.expand_dims(g, axis=axis), shape, axis, i % shape[axis], i % shape[axis] + 1)
'''
