"""Core ops -> NumPy source: one printer per primitive, in one table.

Every printer takes the op and its argument names and returns a Python
expression.  Axis numbers count from the end, so the expressions work for any
number of leading batch axes.
"""

from __future__ import annotations

from functools import lru_cache

from ..lang.shapes import ATOMS, Poly
from . import causal
from .core import Op
from .naming import ascii_name


@lru_cache(maxsize=4096)
def py_dim(p: Poly) -> str:
    """A dimension as a Python expression over the dimension variables. Memoized: a Poly is
    immutable, and an atom's entry in ATOMS, once made, never changes (setdefault)."""
    if not p.terms:
        return "0"
    parts = []
    for m, c in sorted(p.terms):
        num = [_dim_name(s) for s, e in m for _ in range(max(e, 0))]
        den = [_dim_name(s) for s, e in m for _ in range(max(-e, 0))]
        coef = c.numerator
        text = "*".join(([str(abs(coef))] if abs(coef) != 1 or not num else []) + num)
        denom = c.denominator
        if den or denom != 1:
            d = "*".join(([str(denom)] if denom != 1 else []) + den)
            text = f"{text} // {d}" if "*" not in d else f"{text} // ({d})"
        parts.append(("-" if coef < 0 else "+", text))
    out = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, text in parts[1:]:
        out += f" {sign} {text}"
    return out


def _dim_name(s: str) -> str:
    """A dimension name, or an atom (⌊a/b⌋, a mod b) as Python's // and %, which floor alike."""
    if s not in ATOMS:
        return ascii_name(s)
    op, a, b = ATOMS[s]
    x, y = [t if t.isidentifier() or t.isdigit() else f"({t})" for t in (py_dim(a), py_dim(b))]
    return f"({x} {'//' if op == 'floordiv' else '%'} {y})"


def _pow(a: str, c) -> str:
    """Small whole powers as products: x**3 through the generic pow is many times slower."""
    if float(c) == int(c) and 1 <= int(c) <= 4:
        return " * ".join([a] * int(c))
    return f"{a} ** {c!r}"


def _axes(t) -> str:
    return str(t[0]) if len(t) == 1 else str(tuple(t))


def _mm(op: Op, a: str, b: str) -> str:
    mode = op.attr[0]
    if op.attr[1:] == ("rows",):  # one matrix for every row: one matrix product over all of them
        return f"{b} @ {a}.T" if mode == "mv" else f"{a} @ {b}"
    return {"mm": f"{a} @ {b}",
            "mv": f"({a} @ {b}[..., None])[..., 0]",
            "vm": f"({a}[..., None, :] @ {b})[..., 0, :]",
            "vv": f"np.sum({a} * {b}, axis=-1)"}[mode]


def _transpose(op: Op, a: str) -> str:
    perm = op.attr[0]
    n = len(perm)
    if n >= 2 and list(perm) == list(range(-n, -2)) + [-1, -2]:
        return f"np.swapaxes({a}, -1, -2)"
    return f"_permute({a}, {tuple(perm)})"


def _reshape(op: Op, a: str) -> str:
    axis, new = op.attr
    dims = ", ".join(py_dim(d) for d in new)
    if len(new) == 1:  # merge axis and the next one
        return f"{a}.reshape({a}.shape[:{axis}] + ({dims},) + {a}.shape[{axis} + 2:])" if axis != -2 \
            else f"{a}.reshape({a}.shape[:-2] + ({dims},))"
    tail = f" + {a}.shape[{axis + 1}:]" if axis != -1 else ""
    return f"{a}.reshape({a}.shape[:{axis}] + ({dims},){tail})" if axis != -1 \
        else f"{a}.reshape({a}.shape[:-1] + ({dims},))"


def _slice(op: Op, a: str) -> str:
    axis, lo, hi = op.attr
    if not (str(lo).lstrip("-").isdigit() and str(hi).lstrip("-").isdigit()):  # bounds known only at run time
        card, _, line = str(op.step).rpartition(":")
        return f"_slice_in({a}, {axis}, {lo}, {hi}, {f'{card}.card, line {line}'!r})"
    before = ", ".join([":"] * (-axis - 1))
    idx = f"{lo}:{hi}" + (", " + before if before else "")
    return f"{a}[..., {idx}]"


def draw_shape(op: Op) -> str:
    """The shape of a draw (every example's, every element's): ``batch + (ℓ, …)``."""
    dims = ", ".join(py_dim(d) for d in op.shape) + ("," if len(op.shape) == 1 else "")
    return f"batch + ({dims})" if op.batched else f"({dims})"


PRINT = {
    "const": lambda op: f"np.asarray({op.attr[0]})",
    "draw": lambda op: f"rng.random({draw_shape(op)})",  # float64 draws whatever the dtype: one stream
    "iota": lambda op: f"np.arange({py_dim(op.attr[0])}, {py_dim(op.attr[0] + op.shape[0])})",
    "add": lambda op, a, b: f"{a} + {b}",
    "sub": lambda op, a, b: f"{a} - {b}",
    "mul": lambda op, a, b: f"{a} * {b}",
    "div": lambda op, a, b: f"{a} / {b}",
    "floordiv": lambda op, a, b: f"{a} // {b}",
    "mod": lambda op, a, b: f"{a} % {b}",
    "powv": lambda op, a, b: f"{a} ** {b}",
    "maximum": lambda op, a, b: f"np.maximum({a}, {b})",
    "minimum": lambda op, a, b: f"np.minimum({a}, {b})",
    "min": lambda op, a: f"np.min({a}, axis={_axes(op.attr[0])})",
    "mean": lambda op, a: f"np.mean({a}, axis={_axes(op.attr[0])})",
    "erf": lambda op, a: f"_erf({a})",
    "concat": lambda op, *parts: f"_concat(({', '.join(parts)},), {op.attr[0]})",
    "neg": lambda op, a: f"-{a}",
    "not": lambda op, a: f"~{a}" if op.shape or op.batched else f"(not {a})",  # ~True is −2
    "le": lambda op, a, b: f"{a} <= {b}", "lt": lambda op, a, b: f"{a} < {b}",
    "ge": lambda op, a, b: f"{a} >= {b}", "gt": lambda op, a, b: f"{a} > {b}",
    "eq": lambda op, a, b: f"{a} == {b}", "ne": lambda op, a, b: f"{a} != {b}",
    "square": lambda op, a: f"{a} * {a}",
    "pow": lambda op, a: _pow(a, op.attr[0]),
    "relu": lambda op, a: f"np.maximum({a}, 0)",
    "sigmoid": lambda op, a: f"_sigmoid({a})",
    "silu": lambda op, a: f"{a} * _sigmoid({a})",
    "gelu": lambda op, a: f"_gelu({a})",
    "softmax": lambda op, a: f"_softmax({a}, {op.attr[0]})",
    "log_softmax": lambda op, a: f"_log_softmax({a}, {op.attr[0]})",
    "sum": lambda op, a: f"np.sum({a}, axis={_axes(op.attr[0])})",
    "max": lambda op, a: f"np.max({a}, axis={_axes(op.attr[0])})",
    "matmul": _mm,
    "transpose": _transpose,
    "expand": lambda op, a: f"np.expand_dims({a}, {_axes(op.attr[0])})",
    "reshape": _reshape,
    "slice": _slice,
    "take": lambda op, t, j: f"{t}[{j}]" if op.attr[0] == 0 else f"{t}[{j} - {op.attr[0]}]",
    "take_along": lambda op, a, j: (f"_take_along({a}, {j}"
                                    f"{' - ' + str(op.attr[1]) if op.attr[1] else ''}, {op.attr[0]})"),
    "pick": lambda op, a: f"np.take({a}, {op.attr[1]}, axis={op.attr[0]})",
    "index": lambda op, a: f"{a}[{at_index(op.attr[0], op.attr[1], len(op.shape) + 1, op.batched)}]",
    "where": lambda op, c, a, b: f"np.where({c}, {a}, {b})",
    "copy": lambda op, a: f"{a}",
    "batch": lambda op, a: f"np.broadcast_to({a}, batch + np.shape({a}))",  # batch: forward's batch axes
    "broadcast": lambda op, a: _broadcast(op, a),
}
PRINT.update({name: lambda op, a, fn=f"np.{name}": f"{fn}({a})"
              for name in ("exp", "log", "tanh", "sqrt", "abs", "sin", "cos", "round")})


def at_index(var: str, axis: int, rank: int, batched: bool) -> str:
    """The subscript that picks step ``var`` along ``axis`` (from the end) of an array whose
    own rank is ``rank``: ``l`` for a layer's slice of a stacked parameter, ``..., t, :``
    for a time step of a batched sequence."""
    if not batched and axis == -rank:
        return var
    return ", ".join(["...", var] + [":"] * (-axis - 1))


def _broadcast(op: Op, a: str) -> str:
    n, sizes, start = op.attr
    return f"_broadcast_axes({a}, {n}, ({', '.join(py_dim(d) for d in sizes)},), {-start})"


SCALAR_MATH = {"sqrt": "math.sqrt", "exp": "math.exp", "log": "math.log", "tanh": "math.tanh", "erf": "math.erf",
               "sin": "math.sin", "cos": "math.cos"}


def op_expr(op: Op) -> str:
    if not op.shape and not op.batched and op.prim in SCALAR_MATH:
        # A number made of sizes and constants stays a Python float, so it never
        # promotes float32 arrays to float64 (NumPy scalars would).
        return f"{SCALAR_MATH[op.prim]}({op.args[0]})"
    return PRINT[op.prim](op, *op.args)


HELPERS = '''
def _check_input(name, value, shape, kind, lo, hi, card_set):
    """ValueError, in the card's terms, for an input of the wrong kind, shape or range."""
    a = np.asarray(value)
    if kind == "i" and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be token ids (integers), not {a.dtype}; the card says {name} ∈ {card_set}")
    if kind == "f" and not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be real numbers (float32 or float64), not {a.dtype}; "
                         f"the card says {name} ∈ {card_set}")
    core = a.shape[a.ndim - len(shape):] if a.ndim >= len(shape) else None
    if core is None or any(want is not None and got != want for got, want in zip(core, shape, strict=True)):
        wanted = "(…, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"{name} has shape {a.shape}, expected {wanted}: the card says {name} ∈ {card_set}")
    if lo is not None and a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} holds ids {a.min()}..{a.max()}, outside {lo}..{hi}: "
                         f"the card says {name} ∈ {card_set}")


def _as_mask(name, value, card_set):
    """A true/false input as NumPy booleans; the numbers 0 and 1 are read as false and true
    (on integers ¬ is NumPy's bitwise ~, which would turn 1 into −2: still true)."""
    a = np.asarray(value)
    if a.dtype == np.bool_:
        return a
    if (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)) and np.isin(a, (0, 1)).all():
        return a != 0
    raise ValueError(f"{name} must be true/false values (booleans, or the numbers 0 and 1), not {a.dtype}"
                     f"{' holding other numbers' if a.dtype.kind in 'iuf' else ''}; the card says {name} ∈ {card_set}")


def _check_divides(quotient, num, den, num_text, den_text):
    """ValueError, in the card's terms, for a size the card divides that does not divide evenly."""
    if den == 0 or num % den:
        raise ValueError(f"{quotient} must be a whole number, but {num_text} = {num} is not a multiple of "
                         f"{den_text} = {den}: the card divides {num_text} by {den_text}")


def _check_length(text, value, sizes):
    """ValueError, in the card's terms, for a length the card computes that comes out negative."""
    if value < 0:
        given = ", ".join(f"{name} = {size}" for name, size in sizes)
        raise ValueError(f"{text} is {value} here ({given}), a negative length: the inputs or sizes are too "
                         "small for the card, or a range in it runs backwards")


def _check_params(params, shapes):
    """ValueError for a parameter of the wrong shape, or not float32/float64 (float16 would lose the
    gradient, complex would compute something else), or of another dtype than the first."""
    first = None
    for field, want in shapes.items():
        value = getattr(params, field)
        dtype = np.asarray(value).dtype
        if dtype != np.float32 and dtype != np.float64:
            raise ValueError(f"params.{field} is {dtype}: generated modules compute in float32 or float64 "
                             "(convert with .astype(np.float32))")
        if first is None:
            first = field, dtype
        elif dtype != first[1]:
            raise ValueError(f"params.{field} is {dtype} but params.{first[0]} is {first[1]}: the parameters "
                             "share one dtype, which the whole computation follows")
        got = np.shape(value)
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


def _buf(workspace, key, shape, dtype):
    """An array for one value: reused from the workspace while its shape and dtype still fit."""
    if workspace is None:
        return np.empty(shape, dtype)
    buf = workspace.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = workspace[key] = np.empty(shape, dtype)
    return buf


# The closed-form helpers and the element-wise passes over big arrays can run on several threads,
# each on a block of rows (NumPy's ufuncs release the GIL): CARDGEN_THREADS=N, read when the module
# loads. Off by default: measured on 2 cores, handing blocks to a second thread while OpenBLAS's own
# threads spin after each matrix product made the GPT-2 step slower (74 ms against 63 ms).
# Rows are independent, so the numbers are the same with any count.
_PARALLEL_MIN = 1 << 18  # elements (1 MiB of float32) below which one thread beats handing out blocks
_THREADS = int(os.environ["CARDGEN_THREADS"]) if os.environ.get("CARDGEN_THREADS", "").isdigit() else 1
_POOL = {}


def _rows(f, out, axis, *args):
    """f(out, axis, *args) block by block along an axis of out that f does not reduce over, one block
    per thread; the arrays among args that have that axis are cut alike, the others (broadcast)
    passed whole."""
    n = _THREADS if out.size >= _PARALLEL_MIN else 1
    if n < 2:  # the default: no more work than the call itself
        f(out, axis, *args)
        return out
    reduced = None if axis is None else axis % out.ndim
    cut = next((a for a in range(out.ndim) if out.shape[a] >= n and a != reduced), None)
    if cut is None:
        f(out, axis, *args)
        return out
    key = os.getpid(), n  # a forked child has none of its parent's threads: it starts its own pool
    if key not in _POOL:
        _POOL.clear()
        _POOL[key] = concurrent.futures.ThreadPoolExecutor(n - 1, thread_name_prefix="cardgen")
    bounds = [out.shape[cut] * i // n for i in range(n + 1)]

    def part(a, lo, hi):
        k = cut - (out.ndim - np.ndim(a))  # the same axis, counted in a (broadcasting aligns the ends)
        if k < 0 or np.shape(a)[k] != out.shape[cut]:
            return a
        return a[(slice(None),) * k + (slice(lo, hi),)]

    def block(i):
        lo, hi = bounds[i], bounds[i + 1]
        f(part(out, lo, hi), axis, *(part(a, lo, hi) for a in args))
    others = [_POOL[key].submit(block, i) for i in range(1, n)]
    block(0)  # this thread takes a block too: one hand-over fewer
    for done in others:
        done.result()
    return out


def _threaded(ufunc, *args, out):
    """ufunc(*args, out=out), on every thread for a big array (NumPy's own ufuncs use one)."""
    if _THREADS < 2:
        return ufunc(*args, out=out)
    return _rows(lambda o, _, *a: ufunc(*a, out=o), out, None, *args)


def _power(x, n, out):
    """x**n for a small whole n, as products written into out, on every thread for a big array."""
    _threaded(np.multiply, x, x, out=out)
    for _ in range(n - 2):
        _threaded(np.multiply, out, x, out=out)
    return out


def _softmax(x, axis, out=None):
    """Stable softmax; a row that is all −∞ (fully masked) gives zeros, not NaN."""
    return _rows(_softmax_rows, np.empty_like(x) if out is None else out, axis, x)


def _softmax_rows(out, axis, x):
    m = np.max(x, axis=axis, keepdims=True)
    m[~np.isfinite(m)] = 0
    z = np.subtract(x, m, out=out)
    np.exp(z, out=z)
    s = np.sum(z, axis=axis, keepdims=True)
    s[s == 0] = 1
    np.divide(z, s, out=z)


def _causal_blocks(t, out, *inputs):
    """Row blocks [lo, hi) of a causal T×T matrix, block [lo, hi) seeing keys < hi only: 64 rows (at most
    16 blocks). None where one op over the whole square is the way: below T = 256 (smaller products
    cost more there than the skipped half saves), or when out overlaps an input."""
    if t < 256 or any(np.may_share_memory(out, a) for a in inputs):
        return None
    size = max(64, -(-t // 16))
    return [(lo, min(lo + size, t)) for lo in range(0, t, size)]


def _causal_lower(a, b, out):
    """a @ b where only the entries on and below the diagonal's blocks are needed; zeros above them."""
    blocks = _causal_blocks(out.shape[-1], out, a, b)
    if blocks is None:
        return np.matmul(a, b, out=out)
    for lo, hi in blocks:
        np.matmul(a[..., lo:hi, :], b[..., :hi], out=out[..., lo:hi, :hi])
        out[..., lo:hi, hi:] = 0
    return out


def _causal_left_lower(p, v, out):
    """p @ v for p zero above the diagonal: rows [lo, hi) contract over the first hi columns only."""
    blocks = _causal_blocks(p.shape[-1], out, p, v)
    if blocks is None:
        return np.matmul(p, v, out=out)
    for lo, hi in blocks:
        np.matmul(p[..., lo:hi, :hi], v[..., :hi, :], out=out[..., lo:hi, :])
    return out


def _causal_left_upper(q, v, out):
    """q @ v for q zero below the diagonal (a lower-triangular one transposed): rows [lo, hi) contract
    over the columns from lo on."""
    blocks = _causal_blocks(q.shape[-1], out, q, v)
    if blocks is None:
        return np.matmul(q, v, out=out)
    for lo, hi in blocks:
        np.matmul(q[..., lo:hi, lo:], v[..., lo:, :], out=out[..., lo:hi, :])
    return out


def _causal_softmax(x, out):
    """softmax over the last axis of x, −∞ above the diagonal: each row block over the keys it sees."""
    blocks = _causal_blocks(x.shape[-1], out, x)
    if blocks is None:
        return _softmax(x, -1, out)
    for lo, hi in blocks:
        _rows(_softmax_rows, out[..., lo:hi, :hi], -1, x[..., lo:hi, :hi])
        out[..., lo:hi, hi:] = 0
    return out


def _causal_softmax_grad(g, y, out):
    """_softmax_grad for y zero above the diagonal, as its result is: over the keys each row sees."""
    blocks = _causal_blocks(y.shape[-1], out, g, y)
    if blocks is None:
        return _softmax_grad(g, y, -1, out)
    for lo, hi in blocks:
        _rows(_softmax_grad_rows, out[..., lo:hi, :hi], -1, g[..., lo:hi, :hi], y[..., lo:hi, :hi])
        out[..., lo:hi, hi:] = 0
    return out


def _log_softmax(x, axis, out=None):
    m = np.max(x, axis=axis, keepdims=True)
    m[~np.isfinite(m)] = 0
    z = np.subtract(x, m, out=out)
    return np.subtract(z, np.log(np.sum(np.exp(z), axis=axis, keepdims=True)), out=z)


def _where(c, a, b, out):
    out[...] = b
    np.copyto(out, a, where=c)
    return out


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# erf to within 2 ulp of math.erf in float64, as whole-array NumPy: x + x·P(x²) below
# _ERF_SPLIT, 1 − exp(−x²)·Q(2/(2+|x|)) up to 6, ±1 beyond (scripts/erf_fit.py fits P and Q).
_ERF_SPLIT = 0.85
_ERF_SMALL = (
    0.12837916709551256, -0.3761263890318335, 0.11283791670932594, -0.026866170640255645,
    0.00522397757126982, -0.0008548323506677763, 0.00012055190337021296, -1.4921921653420798e-05,
    1.6399123262977372e-06, -1.5697115571004142e-07, 1.0675693706713948e-08,
)
_ERF_LARGE = (
    0.2353394787736969, 0.18269741890774815, 0.04699743747135581, 0.007200186868365619,
    0.00022438494222794502, -0.000126149853106114, -9.98121130264979e-06, 3.6488971927330955e-06,
    2.1105765303893802e-07, -1.4468547969994302e-07, 4.824729532804602e-09, 4.985129653759654e-09,
    -8.079784162602375e-10,
)
_ERF_MID, _ERF_HALF = 0.4758771929824561, 0.22587719298245615


def _horner(coefficients, v, out):
    """Σ c_k v^k into out (not v), in place: one array for the whole evaluation."""
    np.multiply(v, coefficients[-1], out=out)
    for c in coefficients[-2:0:-1]:
        out += c
        out *= v
    out += coefficients[0]
    return out


def _scratch(workspace, shape, dtype, n):
    """n work arrays for a helper, kept in the workspace (shared by every helper: each uses them
    only while it runs); fresh ones without a workspace."""
    return [_buf(workspace, ("_scratch", i), shape, dtype) for i in range(n)]


def _erf(x, out=None, workspace=None):
    """Both pieces on clamped copies of x, joined by exact 0/1 weights: a select (np.where) with a
    data-dependent mask costs ~20 element-wise passes, an arithmetic join three.  Three work arrays."""
    x = np.asarray(x)
    dtype = np.result_type(x, np.float32)
    out = np.empty(x.shape, dtype) if out is None else out
    b, v, large = _scratch(workspace, x.shape, dtype, 3)
    np.abs(x, out=b)
    np.clip(b, _ERF_SPLIT, 6.0, out=b)
    np.add(b, 2.0, out=v)
    np.divide(2.0 / _ERF_HALF, v, out=v)
    v -= _ERF_MID / _ERF_HALF
    _horner(_ERF_LARGE, v, large)
    np.square(b, out=b)
    np.negative(b, out=b)
    large *= np.exp(b, out=b)
    np.subtract(1.0, large, out=large)
    np.copysign(large, x, out=large)
    np.clip(x, -_ERF_SPLIT, _ERF_SPLIT, out=b)  # the last read of x: out may be x itself
    np.square(b, out=v)
    small = _horner(_ERF_SMALL, v, out)
    small *= b
    small += b
    np.abs(b, out=v)
    np.less(v, _ERF_SPLIT, out=v)  # 1 where |x| < SPLIT (NaN: 0, and NaN·0 keeps it NaN)
    small *= v
    np.subtract(1.0, v, out=v)
    large *= v
    small += large  # one of the two terms is ±0: the sum is the other, exactly (−0 + −0 for x = −0)
    return small


# float32: Φ(x) = ½ + c·N(c²)/D(c²), c = x clamped to ±4√2 (Φ is 1 in float32 beyond), a rational fit
# (scripts/erf_fit.py): 20 passes instead of erf's 60, within 2.2·10⁻⁷ of Φ (float32 spacing of 1: 6·10⁻⁸).
_PHI32_CLAMP = 5.656854249492381
_PHI32_N = (
    0.39894226993523063, 0.035831378976121465, 0.004501072772993772, 0.000168013365171882,
    3.1556806144701803e-06, -2.129746566811348e-08, 1.0636697546763609e-10,
)
_PHI32_D = (1.0, 0.25648193193441804, 0.029031524799142488, 0.001821659471016465, 6.0973191060033246e-05)


def _gelu(x, out=None, workspace=None):
    """x Φ(x), Φ(x) = (1 + erf(x/√2)) / 2; out must not be x."""
    if np.result_type(x) == np.float32:
        out = np.empty(np.shape(x), np.float32) if out is None else out
        c, t, den = _scratch(workspace, np.shape(x), np.float32, 3)
        np.clip(x, -_PHI32_CLAMP, _PHI32_CLAMP, out=c)
        np.square(c, out=t)
        _horner(_PHI32_N, t, out)
        out *= c
        out /= _horner(_PHI32_D, t, den)
        out += 0.5
        out *= x
        return out
    out = _erf(np.multiply(x, 0.7071067811865476, out=out), out, workspace)
    out += 1.0
    out *= x
    out *= 0.5
    return out


def _concat(parts, axis):
    """Join along axis (from the end), broadcasting every other axis first: [A, B] and [A; B]."""
    nd = max(np.ndim(p) for p in parts)
    parts = [np.reshape(p, (1,) * (nd - np.ndim(p)) + np.shape(p)) for p in parts]
    ax = nd + axis
    common = np.broadcast_shapes(*(p.shape[:ax] + (1,) + p.shape[ax + 1:] for p in parts))
    return np.concatenate([np.broadcast_to(p, common[:ax] + p.shape[ax:ax + 1] + common[ax + 1:]) for p in parts],
                          axis=ax)


def _take_along(a, idx, axis):
    """One element along axis per position: a[…, idx[…], …] (idx may lack a's batch axes)."""
    idx = np.reshape(idx, (1,) * (np.ndim(a) - np.ndim(idx)) + np.shape(idx))
    return np.take_along_axis(a, idx, axis).squeeze(axis)


def _permute(x, perm):
    n = x.ndim
    lead = tuple(range(n - len(perm)))
    return np.transpose(x, lead + tuple(n + p for p in perm))


def _broadcast_axes(x, n, sizes, core):
    """Broadcast the n size-1 axes that start core axes from the end."""
    start = x.ndim - core
    return np.broadcast_to(x, x.shape[:start] + sizes + x.shape[start + n:])


def _sum_to(g, ndim, axes=()):
    """Sum a broadcast gradient back to its operand's shape."""
    if ndim is not None and g.ndim > ndim:
        g = np.sum(g, axis=tuple(range(g.ndim - ndim)))
    if axes:
        g = np.sum(g, axis=axes, keepdims=True)
    return g
'''


# Backward-only primitives (made by ad.py; never differentiated again).
PRINT.update({
    "scale": lambda op, a: f"{op.attr[0]!r} * {a}",
    "one_minus": lambda op, a: f"1.0 - {a}",
    "positive": lambda op, a: f"({a} > 0)",
    "silu_grad": lambda op, a: f"_silu_grad({a})",
    "gelu_grad": lambda op, g, x, y: f"_gelu_grad({g}, {x}, {y})",
    "softmax_grad": lambda op, g, y: f"_softmax_grad({g}, {y}, {op.attr[0]})",
    "layer_norm_grad": lambda op, g, y, s: f"_layer_norm_grad({g}, {y}, {s}, {op.attr[0]})",
    "gelu_tanh_grad": lambda op, g, x, t: f"_gelu_tanh_grad({g}, {x}, {t}, {', '.join(map(repr, op.attr))})",
    "log_softmax_grad": lambda op, g, y: f"{g} - np.exp({y}) * np.sum({g}, axis={op.attr[0]}, keepdims=True)",
    "unsum": lambda op, g, s: f"np.broadcast_to(np.expand_dims({g}, {_axes(op.attr[0])}), {s})",
    "squeeze": lambda op, g: f"np.squeeze({g}, {_axes(op.attr[0])})",
    "reshape_to": lambda op, g, s: f"{g}.reshape({s})",
    "unslice": lambda op, g, s: f"_unslice({g}, {s}, {op.attr[0]}, {op.attr[1]}, {op.attr[2]})",
    "scatter": lambda op, g, j, t: f"_scatter_rows({g}, {j}{' - ' + str(op.attr[0]) if op.attr[0] else ''}, {t})",
    "put_along": lambda op, g, j, s: (f"_put_along({g}, {j}{' - ' + str(op.attr[1]) if op.attr[1] else ''}, "
                                      f"{s}, {op.attr[0]})"),
    "unpick": lambda op, g, s: f"_unpick({g}, {s}, {op.attr[0]}, {op.attr[1]})",
    "select_grad": lambda op, c, g: f"np.where({c}, {g}, 0)" if op.attr[0] else f"np.where({c}, 0, {g})",
    "sum_to": lambda op, g: f"_sum_to({g}, {op.attr[0]}, {op.attr[1]})",
    "slice_add": lambda op, acc, g: f"_slice_add({acc}, {g}, {op.attr[0]}, {op.attr[1]}, {op.attr[2]})",
    "broadcast_like": lambda op, g, s: f"np.broadcast_to({g}, {s})",
    "wgrad": lambda op, x, g: f"_wgrad({x}, {g})",
    "outer": lambda op, a, b: f"{a}[..., :, None] * {b}[..., None, :]",
    "sign": lambda op, a: f"np.sign({a})",
    "concat_part": lambda op, g, *shapes: f"_concat_part({g}, {op.attr[0]}, {op.attr[1]}, ({', '.join(shapes)},))",
    "powv_da": lambda op, a, p: f"{p} * {a} ** ({p} - 1)",
    "powv_dp": lambda op, y, a: f"{y} * np.log({a})",
    "erf_grad": lambda op, a: f"1.1283791670955126 * np.exp(-np.square({a}))",  # 2/√π · exp(−x²)
    "extreme_grad": lambda op, g, x, y: f"_extreme_grad({g}, {x}, {y}, {_axes(op.attr[0])})",
    "unmean": lambda op, g, s: f"_unmean({g}, {s}, {tuple(op.attr[0])})",
})

BACKWARD_HELPERS = '''
def _silu_grad(x):
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _gelu_grad(g, x, y, out=None, workspace=None):
    """g · GELU'(x) = g · (Φ(x) + x φ(x)), with Φ(x) = y / x from the forward's y = x Φ(x): no
    second erf.  Where |x| < 1e-30 (0, or tiny enough that x Φ(x) loses digits) Φ is ½."""
    out = np.empty(np.broadcast_shapes(np.shape(g), np.shape(x)), np.result_type(g, x)) if out is None else out
    t, tiny = _scratch(workspace, np.shape(x), np.result_type(x), 2)
    np.abs(x, out=tiny)
    np.less(tiny, 1e-30, out=tiny)  # 1 where x is (nearly) 0
    np.square(x, out=t)
    np.multiply(t, -0.5, out=out)
    np.exp(out, out=out)
    out *= t
    out *= 0.3989422804014327  # x² φ(x)
    out += y
    np.add(x, tiny, out=t)  # x, or 1 where x is 0: y / 1 = 0 there, and ½ is added
    out /= t
    tiny *= 0.5
    out += tiny
    out *= g
    return out


def _concat_part(g, axis, i, shapes):
    """The slice of a join's gradient that belongs to its part i."""
    lo = sum(s[axis] for s in shapes[:i])
    index = [slice(None)] * g.ndim
    index[axis] = slice(lo, lo + shapes[i][axis])
    return g[tuple(index)]


def _extreme_grad(g, x, y, axis):
    """The gradient of max or min along axis: to the entries equal to it, shared among ties."""
    hit = x == np.expand_dims(y, axis)
    return hit * (np.expand_dims(g, axis) / np.sum(hit, axis=axis, keepdims=True))


def _unmean(g, shape, axis):
    """The gradient of a mean along axis: an equal share to every entry."""
    return np.broadcast_to(np.expand_dims(g, axis) / math.prod(shape[a] for a in axis), shape)  # axis: a tuple


def _wgrad(x, g, out=None):
    """x^T g summed over all leading axes, as one matrix product."""
    return np.matmul(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]), out=out)


def _fresh(out, *arrays):
    return np.empty(np.broadcast_shapes(*(np.shape(a) for a in arrays)), np.result_type(*arrays)) if out is None \
        else out


def _layer_norm_grad(g, y, s, axis, out=None):
    """d_e of y = (e − mean e) / s, s = √(var e + ε), from g = d_y: (g − mean g − y ⊙ mean(g ⊙ y)) / s."""
    return _rows(_layer_norm_grad_rows, _fresh(out, g, y), axis, g, y, s)


def _layer_norm_grad_rows(t, axis, g, y, s):
    np.multiply(g, y, out=t)
    gy = np.mean(t, axis=axis, keepdims=True)
    np.multiply(y, gy, out=t)
    np.subtract(g, t, out=t)
    np.subtract(t, np.mean(g, axis=axis, keepdims=True), out=t)
    np.divide(t, s, out=t)


def _gelu_tanh_grad(g, x, t, a, c, k, out=None):
    """d_x of y = a x (1 + t), t = tanh(c (x + k x³)), from g = d_y: g ⊙ a ((1 + t) + c x (1 + 3k x²)(1 − t²)),
    in place in one array and one temporary (the chain rule through the steps takes a dozen)."""
    return _rows(_gelu_tanh_grad_rows, _fresh(out, g, x, t), -1, g, x, t, a, c, k)


def _gelu_tanh_grad_rows(r, axis, g, x, t, a, c, k):
    np.multiply(x, x, out=r)
    r *= 3.0 * k * c
    r += c
    r *= x
    s = np.multiply(t, t)
    np.subtract(1.0, s, out=s)
    r *= s
    r += t
    r += 1.0
    r *= g
    if a != 1.0:
        r *= a


def _softmax_grad(g, y, axis, out=None):
    """d_x of y = softmax(x) from g = d_y: y ⊙ (g − Σ g ⊙ y)."""
    return _rows(_softmax_grad_rows, _fresh(out, g, y), axis, g, y)


def _softmax_grad_rows(t, axis, g, y):
    np.multiply(g, y, out=t)
    s = np.sum(t, axis=axis, keepdims=True)
    np.subtract(g, s, out=t)
    np.multiply(t, y, out=t)


def _unslice(g, shape, axis, lo, hi, out=None):
    """Zeros of shape with g at […, lo:hi, …] along axis (out: an array to write it into)."""
    if out is None or out.shape != tuple(shape):
        out = np.empty(shape, dtype=g.dtype)
    index = [slice(None)] * len(shape)
    for a, b in ((0, lo), (hi, shape[axis])):  # zeros around the slice only: it is written next
        index[axis] = slice(a, b)
        out[tuple(index)] = 0
    index[axis] = slice(lo, hi)
    np.copyto(*_region(out[tuple(index)], g))
    return out


def _region(region, g):
    """(destination, g) for writing g into region: g may come in another shape of the same size
    (the heads of a gradient before they are joined), written through a view of region if it can."""
    if np.shape(g) == region.shape or np.size(g) != region.size:
        return region, g
    try:
        return np.reshape(region, np.shape(g), copy=False), g
    except ValueError:  # no view of region has g's shape: copy g into region's
        return region, np.reshape(g, region.shape)


def _fill_where(b, c, a):
    """b with a where c holds (in place)."""
    np.copyto(b, a, where=c)
    return b


def _zero_where(g, c):
    """g with zeros where c holds (in place)."""
    np.copyto(g, 0, where=c)
    return g


def _slice_add(acc, g, axis, lo, hi):
    """acc with g added into acc[…, lo:hi, …] (in place: acc is a fresh gradient)."""
    index = [slice(None)] * acc.ndim
    index[axis] = slice(lo, hi)
    region, g = _region(acc[tuple(index)], g)
    region += g
    return acc


def _scatter_rows(g, idx, table):
    """Gradient of table[idx]: rows of g added into the rows they came from."""
    out = np.zeros_like(table)
    idx = np.reshape(idx, -1)
    if idx.size == 0:
        return out
    rows = np.reshape(g, (-1, *table.shape[1:]))
    order = np.argsort(idx, kind="stable")  # rows of one token together: one sum per token (np.add.at is slow)
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
    out[sorted_idx[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def _put_along(g, idx, shape, axis):
    """Gradient of _take_along: g added at idx along axis into an array of the table's shape, summed
    over the axes take_along broadcast the table over."""
    g = np.expand_dims(g, axis)
    n, axis = len(shape), axis % len(shape)
    idx = np.reshape(idx, (1,) * (n - np.ndim(idx)) + np.shape(idx))
    summed = tuple(d for d in range(n) if shape[d] == 1 and g.shape[d] != 1)
    if summed and all(idx.shape[d] == 1 for d in range(n) if d not in summed):
        # the pick moves only along summed axes (query heads sharing a key head): each of their
        # positions adds its slice of g into the slot it picked; no array larger than the table
        out = np.zeros(shape, dtype=g.dtype)
        for pos in np.ndindex(idx.shape):
            at = [pos[d] if d in summed else slice(None) for d in range(n)]
            at[axis] = 0
            into = [0 if d in summed else slice(None) for d in range(n)]
            into[axis] = idx[pos]
            out[tuple(into)] += g[tuple(at)]
        return out
    # otherwise scatter into the shape take_along broadcast the table to, then sum back
    full = tuple(shape[d] if d == axis else max(shape[d], g.shape[d]) for d in range(n))
    out = np.zeros(full, dtype=g.dtype)
    np.put_along_axis(out, np.broadcast_to(idx, g.shape), g, axis)
    return np.sum(out, axis=summed, keepdims=True) if summed else out


def _unpick(g, shape, axis, i):
    out = np.zeros(shape, dtype=g.dtype)
    index = [slice(None)] * len(shape)
    index[axis] = i
    out[tuple(index)] = g
    return out
'''


# Ops that can write their result into a given array (the workspace).
def _ufunc_out(op: Op, args, out: str) -> str:
    from .memory import UFUNC
    if op.batched and op.shape:  # activations: big enough to share among threads (_threaded decides)
        return f"_threaded({UFUNC[op.prim]}, {', '.join(args)}, out={out})"
    return f"{UFUNC[op.prim]}({', '.join(args)}, out={out})"


OUT = {
    **{p: _ufunc_out for p in ("add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sqrt", "abs", "sin", "cos")},
    "matmul": lambda op, args, out: f"np.matmul({args[0]}, {args[1]}, out={out})" if op.attr[0] == "mm" else None,
    "softmax": lambda op, args, out: f"_softmax({args[0]}, {op.attr[0]}, {out})",
    "log_softmax": lambda op, args, out: f"_log_softmax({args[0]}, {op.attr[0]}, {out})",
    "softmax_grad": lambda op, args, out: f"_softmax_grad({args[0]}, {args[1]}, {op.attr[0]}, {out})",
    "layer_norm_grad": lambda op, args, out: f"_layer_norm_grad({args[0]}, {args[1]}, {args[2]}, {op.attr[0]}, {out})",
    "gelu_tanh_grad": lambda op, args, out: (f"_gelu_tanh_grad({args[0]}, {args[1]}, {args[2]}, "
                                             f"{', '.join(map(repr, op.attr))}, {out})"),
    "wgrad": lambda op, args, out: f"_wgrad({args[0]}, {args[1]}, {out})",
    "sum": lambda op, args, out: f"np.sum({args[0]}, axis={_axes(op.attr[0])}, out={out})",
    "scale": lambda op, args, out: f"np.multiply({args[0]}, {op.attr[0]!r}, out={out})",
    "one_minus": lambda op, args, out: f"np.subtract(1.0, {args[0]}, out={out})",
    "pow": lambda op, args, out: (f"_power({args[0]}, {int(op.attr[0])}, {out})"
                                  if op.batched and op.shape and float(op.attr[0]) == int(op.attr[0])
                                  and 2 <= int(op.attr[0]) <= 4 else None),
    "square": lambda op, args, out: _ufunc_out(Op(op.out, "mul", (args[0], args[0]), (), op.shape, op.batched),
                                               (args[0], args[0]), out),
    "where": lambda op, args, out: f"_where({args[0]}, {args[1]}, {args[2]}, {out})",
    "erf": lambda op, args, out: f"_erf({args[0]}, {out}, workspace)",
    "gelu": lambda op, args, out: f"_gelu({args[0]}, {out}, workspace)",
    "gelu_grad": lambda op, args, out: f"_gelu_grad({args[0]}, {args[1]}, {args[2]}, {out}, workspace)",
    "select_grad": lambda op, args, out: (f"_where({args[0]}, {args[1]}, 0, {out})" if op.attr[0]
                                         else f"_where({args[0]}, 0, {args[1]}, {out})"),
    "unslice": lambda op, args, out: (f"_unslice({args[0]}, {args[1]}, {op.attr[0]}, {op.attr[1]}, {op.attr[2]}, "
                                      f"{out})"),
}


# Ops a causal mask makes block-triangular (causal.plan), each over the blocks it needs.
CAUSAL = {
    causal.LOWER: lambda op, out: f"_causal_lower({op.args[0]}, {op.args[1]}, {out})",
    causal.LEFT_LOWER: lambda op, out: f"_causal_left_lower({op.args[0]}, {op.args[1]}, {out})",
    causal.LEFT_UPPER: lambda op, out: f"_causal_left_upper({op.args[0]}, {op.args[1]}, {out})",
    causal.SOFTMAX: lambda op, out: f"_causal_softmax({op.args[0]}, {out})",
    causal.SOFTMAX_GRAD: lambda op, out: f"_causal_softmax_grad({op.args[0]}, {op.args[1]}, {out})",
}


def out_expr(op: Op, out: str) -> str | None:
    """The op writing into ``out``, or None when it cannot."""
    f = OUT.get(op.prim)
    return f(op, op.args, out) if f else None
