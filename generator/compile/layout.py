"""The layout of a lowered value, and the helpers that line axes up.

An abstract value ``AV`` is laid out ``[batch…, mapped…, dims…]``: the mapped
axes (named by index variable, outermost first) then the card's own axes.
Every lowering rule (expressions, calls, steps) builds its ops through
``Layout.op`` and lines its operands up with ``align`` / ``expand`` /
``permute``, so broadcasting and transposes are decided here, once.
``Mapped`` puts an index variable in scope as an axis.  ``ParamGroup`` and
``Members`` are the two other things a name can lower to (a called card's
parameters, a group of named members); they sit here beside ``AV``.

``Layout`` is mixed into ``lower.Lowerer``: it reads the lowerer's ``block``,
``memo``, ``transposed``, ``names``, ``extents``, ``scope``, ``subst`` and
``step_no`` (``Mapped`` also ``firsts``), all set by ``Lowerer.__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..lang.shapes import Poly
from .core import Op

ONE = Poly.const(1)


@dataclass(frozen=True)
class AV:
    """A lowered value: the name of an array (or a Python literal when
    ``const`` is set), its mapped index axes and its own axes."""

    name: str
    mapped: tuple[str, ...] = ()
    dims: tuple[Poly, ...] = ()
    kind: str = "real"
    batched: bool = False
    const: object = None
    ones: tuple[str, ...] = ()  # mapped axes that are size 1 here (broadcast along)

    @property
    def rank(self) -> int:
        return len(self.mapped) + len(self.dims)


def common_ones(mapped, *avs) -> tuple[str, ...]:
    """Mapped axes that stay size 1 after broadcasting: size 1 in every operand."""
    return tuple(v for v in mapped if all(a.const is not None or a.rank == 0 and not a.batched
                                          or v in a.ones or v not in a.mapped for a in avs))


def const(v) -> AV:
    """A compile-time constant, printed as Python."""
    if isinstance(v, bool):
        return AV(repr(v), kind="bool", const=v)
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return AV("np.inf" if v > 0 else "-np.inf", kind="real", const=v)
    return AV(repr(v), kind="int" if isinstance(v, int) else "real", const=v)


@dataclass
class ParamGroup:
    """The parameters of a called card, by the callee's names."""

    card: str
    leaves: dict  # callee name -> AV | ParamGroup


@dataclass(frozen=True)
class Members:
    """A group such as 𝓦^h_qkv = {W^h_q, …} or 𝓦^h_ℓ = {W^h_q_ℓ, …}: its members, and the
    indices its declaration repeats over (``for h ∈ [H], ℓ ∈ [N]``), which its members' names use."""

    names: tuple[str, ...]
    vars: tuple[str, ...] = ()


class Layout:
    """Building ops on AVs: memoised ops, axis order, broadcasting."""

    def op(self, prim: str, args: tuple, attr: tuple, like: AV, mapped=None, dims=None, kind=None,
           batched=None, name: str | None = None, ones=None) -> AV:
        names = tuple(a.name if isinstance(a, AV) else a for a in args)
        key = (prim, names, repr(attr))
        memo = self.memo.setdefault(id(self.block), {})
        out = AV("", like.mapped if mapped is None else mapped,
                 like.dims if dims is None else dims, kind or like.kind,
                 like.batched if batched is None else batched)
        ones = like.ones if ones is None else ones
        out = replace(out, ones=tuple(v for v in out.mapped if v in ones))
        if key in memo:  # the same operation on the same arrays: reuse it (labels may differ)
            return replace(out, name=memo[key].name)
        out = replace(out, name=name or self.names.temp())
        shape = tuple(ONE if v in out.ones else self.extents[v] for v in out.mapped) + out.dims
        self.block.append(Op(out.name, prim, names, attr, shape, out.batched, out.kind, self.step_no))
        memo[key] = out
        if prim == "transpose":
            self.transposed[out.name] = (args[0], attr[0])
        return out

    def materialize(self, a: AV) -> AV:
        """A constant as an array value (only where an op needs one)."""
        if a.const is None:
            return a
        return self.op("const", (), (a.name,), a, kind=a.kind)

    # ------------------------------------------------------------ layout
    def canon_order(self, labels) -> tuple[str, ...]:
        order = {v: i for i, v in enumerate(self.scope)}
        return tuple(sorted(labels, key=lambda v: (order.get(v, 1 << 20), v)))

    def permute(self, a: AV, mapped: tuple[str, ...], dims_perm=None) -> AV:
        """Reorder mapped axes to ``mapped`` (and own axes by ``dims_perm``)."""
        if a.const is not None or (tuple(a.mapped) == tuple(mapped) and dims_perm is None):
            return a
        n = a.rank
        src = [a.mapped.index(v) for v in mapped] + [len(a.mapped) + i for i in (dims_perm or range(len(a.dims)))]
        if src == list(range(n)):
            return replace(a, mapped=tuple(mapped))
        perm = tuple(i - n for i in src)
        dims = tuple(a.dims[i] for i in dims_perm) if dims_perm is not None else a.dims
        prev = self.transposed.get(a.name)
        if prev is not None:  # a transpose of a transpose: compose them
            orig, p0 = prev
            composed = tuple(p0[p + n] for p in perm)
            if composed == tuple(range(-n, 0)):
                return replace(orig, mapped=tuple(mapped), dims=dims)
        return self.op("transpose", (a,), (perm,), a, mapped=mapped, dims=dims)

    def expand(self, a: AV, mapped: tuple[str, ...], ndims: int) -> AV:
        """Give ``a`` size-1 axes for the mapped axes it lacks and leading own
        axes up to ``ndims``, so NumPy broadcasting lines everything up."""
        if a.const is not None or (a.rank == 0 and not a.batched):
            return a  # an unbatched scalar broadcasts as it is
        a = self.permute(a, tuple(v for v in mapped if v in a.mapped))
        if tuple(a.mapped) == tuple(mapped) and len(a.dims) == ndims:
            return a
        missing_dims = ndims - len(a.dims)
        new_axes = [i for i, v in enumerate(mapped) if v not in a.mapped]
        new_axes += [len(mapped) + i for i in range(missing_dims)]
        total = len(mapped) + ndims
        axes = tuple(i - total for i in new_axes)
        ones = tuple(a.ones) + tuple(v for v in mapped if v not in a.mapped)
        kept = [i for i in range(total) if i not in new_axes]
        if not a.batched and all(n < k for n in new_axes for k in kept):
            # NumPy pads missing leading axes itself: no op needed for an unbatched value
            return replace(a, mapped=tuple(mapped), dims=(ONE,) * missing_dims + a.dims,
                           ones=tuple(v for v in mapped if v in ones))
        return self.op("expand", (a,), (axes,), a, mapped=mapped, dims=(ONE,) * missing_dims + a.dims,
                       ones=ones)

    def align(self, *avs: AV) -> tuple[list[AV], tuple[str, ...], tuple[Poly, ...]]:
        mapped = self.canon_order({v for a in avs for v in a.mapped})
        nd = max(len(a.dims) for a in avs)
        out = [self.expand(a, mapped, nd) for a in avs]
        dims = []
        for i in range(nd):
            ds = [a.dims[len(a.dims) - nd + i] for a in avs if len(a.dims) - nd + i >= 0 and a.const is None]
            real = [d for d in ds if d != ONE]
            dims.append(real[0] if real else ONE)
        return out, mapped, tuple(dims)

    def binary(self, prim: str, a: AV, b: AV, kind: str | None = None, attr: tuple = ()) -> AV:
        if a.const is not None and b.const is not None:
            return self.fold(prim, a, b)
        (a2, b2), mapped, dims = self.align(a, b)
        k = kind or ("real" if "real" in (a.kind, b.kind) or prim == "div" else a.kind)
        return self.op(prim, (a2, b2), attr, a2 if a2.const is None else b2, mapped=mapped, dims=dims, kind=k,
                       batched=a.batched or b.batched, ones=common_ones(mapped, a2, b2))

    def fold(self, prim: str, a: AV, b: AV) -> AV:
        x, y = a.const, b.const
        val = {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y,
               "div": lambda: x / y, "floordiv": lambda: x // y if y else None,
               "mod": lambda: x % y if y else None}.get(prim)
        out = val() if val is not None else None
        if out is None:
            return self.binary(prim, self.materialize(a), b)
        return const(out)

    # ------------------------------------------------------------- sizes
    def dim(self, p: Poly) -> Poly:
        return p.subst(self.subst)

    def dim_value(self, p: Poly) -> AV:
        """A dimension in this lowering's names (already through ``dim``) as a run-time number."""
        from .npcode import py_dim
        c = p.constant
        if c is not None:
            return const(int(c) if c.denominator == 1 else float(c))
        return AV(py_dim(p), kind="int")


    # ------------------------------------------------------- mapped axes
    def unmap(self, v: AV, idx: list[str]) -> AV:
        """Mapped axes ``idx`` become the value's own leading axes."""
        missing = [x for x in idx if x not in v.mapped]
        if missing:
            v = self.expand(v, self.canon_order(set(v.mapped) | set(missing)), len(v.dims))
        order = tuple(x for x in v.mapped if x not in idx) + tuple(idx)
        v = self.permute(v, order)
        dims = tuple(ONE if x in v.ones else self.extents[x] for x in idx)
        if ONE in dims:  # broadcast along an index that the value does not depend on
            full = tuple(self.extents[x] for x in idx)
            v = self.op("broadcast", (v,), (len(idx), full, -(len(idx) + len(v.dims))), v, dims=v.dims, ones=())
            dims = full
        return AV(v.name, order[: len(order) - len(idx)], dims + v.dims, v.kind, v.batched,
                  ones=tuple(x for x in v.ones if x not in idx))


class Mapped:
    """An index variable read as an array axis while lowering its body.
    With ``count`` None the lowerer's ``infer_extent`` reads the extent off
    the body (the axis the index indexes there)."""

    def __init__(self, lw: Layout, var: str, first: Poly, count: Poly | None, body):
        self.lw, self.var, self.first, self.count, self.body = lw, var, first, count, body

    def __enter__(self):
        lw = self.lw
        count = self.count
        if count is None:
            count = lw.infer_extent(self.var, self.body)
        self.saved = (lw.extents.get(self.var), lw.firsts.get(self.var))
        lw.extents[self.var] = count
        lw.firsts[self.var] = self.first
        lw.scope.append(self.var)
        return self

    def __exit__(self, *exc):
        lw = self.lw
        lw.scope.remove(self.var)
        ext, first = self.saved
        if ext is None:
            lw.extents.pop(self.var, None)
        else:
            lw.extents[self.var] = ext
        if first is None:
            lw.firsts.pop(self.var, None)
        else:
            lw.firsts[self.var] = first
        return False
