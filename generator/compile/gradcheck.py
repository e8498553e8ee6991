"""Gradient checks of generated code: float64 central differences in random
directions, for every parameter and every real-valued input of a card."""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import types
from dataclasses import dataclass

import numpy as np

from ..lang.check import Checked, Library
from ..lang.shapes import Poly
from .emit import module_source
from .lower import lower
from .naming import ascii_name

EPS = 1e-5
TOL = 1e-6


def derivative(f, eps: float = EPS) -> float:
    """f′(0) by the five-point stencil: error O(eps⁴) + roundoff O(u/eps)."""
    return (-f(2 * eps) + 8 * f(eps) - 8 * f(-eps) + f(-2 * eps)) / (12 * eps)


def relative_error(f, ana: float, floor: float) -> float:
    """|f′(0) − ana| relative to the larger of the two (or ``floor``).  A stencil that straddles a
    kink (ReLU at 0, max) is wrong however right the gradient is: such a failure is measured again
    with a step 16 times smaller, which a wrong gradient fails as well."""
    for eps in (EPS, EPS / 16):
        num = derivative(f, eps)
        err = abs(num - ana) / max(abs(num), abs(ana), floor)
        if err <= TOL:
            break
    return err


def import_source(name: str, src: str, file: str) -> types.ModuleType:
    """Import generated source as the module ``name``, from memory. It is registered in sys.modules
    (dataclasses look their module up there), and taken out again if it fails to run."""
    mod = types.ModuleType(name)
    mod.__file__ = file
    sys.modules[name] = mod
    try:
        exec(compile(src, file, "exec"), mod.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def load_module(checked: Checked, lib: Library, source_path: str | None = None,
                target: str = "numpy") -> types.ModuleType:
    """Generate a card's module (for a target of ``targets.TARGETS``) and import it, without writing a file."""
    suffix = "" if target == "numpy" else "_" + target.replace("-", "_")
    name = f"cardgen_generated_{ascii_name(checked.card.name)}{suffix}"
    src = module_source(checked, lib, source_path or f"cards/{checked.card.name}.card", target=target)
    return import_source(name, src, f"<cardgen:{ascii_name(checked.card.name)}>")


def small_sizes(checked: Checked, lib: Library, given: dict[str, int]) -> dict[str, int]:
    """Distinct small sizes for every dimension, so transposed axes cannot
    hide; dimensions that divide others (H in D/H) get 2."""
    prog = lower(checked, lib)
    shapes = [d for v in prog.inputs + prog.params for d in v.shape]
    from .core import walk
    shapes += [d for op in walk(prog.body) for d in op.shape]
    divisors = {s for p in shapes + default_sizes(checked, lib) for m, _ in p.terms for s, e in m if e < 0}
    dividends = {s for p in shapes for m, c in p.terms if c.denominator != 1 or any(e < 0 for _, e in m)
                 for s, e in m if e > 0}  # D in D/H: an input length that must divide evenly
    sizes = dict(given)
    pool = iter([6, 4, 8, 10, 12, 14, 16, 18, 20, 22, 24])
    inputs_dims = {s for v in prog.inputs for d in v.shape for s in d.symbols()}
    for sym in prog.dims:
        b = checked.env.get(sym)
        if sym in sizes or b is not None and b.role == "hyper" and b.type.kind == "span":
            continue  # a token (mask_token ∈ [N_V]) is no size: it keeps its default, inside the vocabulary
        if sym in divisors:
            sizes[sym] = 2
        elif sym in inputs_dims and not prog.dims[sym].startswith("config.") and sym not in dividends:
            sizes[sym] = 3 if sym not in sizes.values() else 5
        else:
            sizes[sym] = next(pool)
    for sym in sorted(dividends - set(given)):  # D in D/(2·H): a multiple of every divisor it meets
        need = math.lcm(*(int(c.denominator) * math.prod(sizes.get(s, 2) ** -e for s, e in m if e < 0)
                          for p in shapes for m, c in p.terms if any(x == sym for x, _ in m)))
        if sym in sizes and sizes[sym] % need:
            sizes[sym] = need * max(1, round(sizes[sym] / need))
    return sizes


def default_sizes(checked: Checked, lib: Library) -> list[Poly]:
    """Sizes that hyperparameter defaults compute (d_attn = d_e/H), in the card and the cards it calls."""
    from ..lang.check_call import callees
    out, todo, seen = [], [checked], set()
    while todo:
        ch = todo.pop()
        if ch.card.name in seen:
            continue
        seen.add(ch.card.name)
        for d in ch.card.decls:
            t = ch.types.get(id(d.default)) if d.role == "hyper" and d.default is not None else None
            if t is not None and t.value is not None:
                out.append(t.value)
        todo += [sub for n in callees(ch.card) if (sub := lib.checked(n)) is not None]
    return out


@dataclass
class Result:
    card: str
    errors: dict[str, float]  # tensor -> max relative error
    rules: tuple[str, ...] = ()  # the cards whose own backward rule the gradients come from
    straight_through: tuple[str, ...] = ()  # those of them the card marks as not the true gradient
    # tensor -> the straight-through rules its gradient flows through (``estimators_on_the_way``);
    # only these tensors' errors are excused
    through: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    def status(self, tensor: str | None = None) -> str:
        """"ok" within the tolerance; above it "straight-through" where the tensor's gradient flows
        through a straight-through estimator (a rule deliberately not the true gradient), else
        "FAIL".  Of the whole card (no ``tensor``): the worst of its tensors'."""
        if tensor is None:
            found = {self.status(t) for t in self.errors}
            return next((s for s in ("FAIL", "straight-through") if s in found), "ok")
        if self.errors[tensor] <= TOL:
            return "ok"
        return "straight-through" if self.through.get(tensor) else "FAIL"

    @property
    def passed(self) -> bool:
        return self.status() != "FAIL"

    def note(self, tensor: str) -> str:
        """What a report says after a tensor's error: nothing within the tolerance; the estimator
        that excuses it; else that it failed, and on a card with a straight-through rule, that the
        tensor's gradient does not flow through one."""
        status = self.status(tensor)
        if status == "ok":
            return ""
        if status == "straight-through":
            return (f"  > tolerance: straight-through estimator of {', '.join(self.through[tensor])}, "
                    "not the true gradient by design (not failed)")
        if not self.straight_through:
            return "  > tolerance"
        return ("  > tolerance: FAIL, its gradient does not flow through the straight-through estimator of "
                + ", ".join(self.straight_through))


def estimators_on_the_way(prog) -> dict[str, tuple[str, ...]]:
    """For each parameter and real input of ``prog`` (a lowered program), the cards of the
    straight-through rules its gradient flows through: those with a call whose input (a value the
    rule gives a gradient) the tensor reaches in the forward's dataflow, along the edges a gradient
    takes back (``ad.gradient_edges``, which ``ad.needs_grad`` follows too).  A tensor not named
    has no estimator on its way: its gradient is to be the true one."""
    from .ad import gradient_edges
    regions = [r for r in getattr(prog, "rules", ()) if r.straight_through]
    if not regions:
        return {}
    sources = [v.name for v in prog.params] + [v.name for v in prog.inputs if v.kind == "real"]
    reach: dict[str, set[str]] = {s: {s} for s in sources}  # value -> the tensors that reach it
    edges = gradient_edges(prog.body)
    changed = True
    while changed:
        changed = False
        for src, dst in edges:
            new = reach.get(src, set()) - reach.get(dst, set())
            if new:
                reach.setdefault(dst, set()).update(new)
                changed = True
    out: dict[str, list[str]] = {}
    for region in regions:
        for x, _ in region.grads:
            for tensor in reach.get(x, ()):
                if region.card not in out.setdefault(tensor, []):
                    out[tensor].append(region.card)
    return {t: tuple(out[t]) for t in sources if t in out}


def gradcheck(checked: Checked, lib: Library, given: dict[str, int] | None = None, seed: int = 0,
              directions: int = 2) -> Result:
    mod = load_module(checked, lib)
    prog = lower(checked, lib)
    sizes = small_sizes(checked, lib, given or {})
    cfg = make_config(mod, sizes)
    rng = np.random.default_rng(seed)
    params = mod.init_params(cfg, rng, np.float64)
    params = mod.Params(**{f.name: getattr(params, f.name) + 0.1 * rng.standard_normal(
        getattr(params, f.name).shape) for f in dataclasses.fields(mod.Params)})
    args = make_inputs(prog, sizes, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        outs, cache = run_forward(mod, cfg, params, args)
    if not all(np.all(np.isfinite(o)) for o in outs):  # a card that needs positive inputs (AdamW's v)
        args = make_inputs(prog, sizes, rng, positive=True)
        outs, cache = run_forward(mod, cfg, params, args)
    g_outs = [rng.standard_normal(np.shape(o)) for o in outs]
    grads, input_grads = mod.backward(cfg, params, cache, *g_outs)

    def loss(p, a):
        return float(sum(np.sum(o * g) for o, g in zip(run_forward(mod, cfg, p, a)[0], g_outs, strict=True)))

    base = abs(loss(params, args))
    floor = 1e-4 * (1.0 + base)  # float64 roundoff of the differences is ~1e-12·|loss|
    errors: dict[str, float] = {}
    for f in dataclasses.fields(mod.Params):
        w = getattr(params, f.name)
        for _ in range(directions):
            d = rng.standard_normal(w.shape)
            ana = float(np.sum(getattr(grads, f.name) * d))
            err = relative_error(lambda h, f=f, w=w, d=d: loss(dataclasses.replace(params, **{f.name: w + h * d}),
                                                               args), ana, floor)
            errors[f.name] = max(errors.get(f.name, 0.0), err)
    names = list(inspect.signature(mod.forward).parameters)[2:]
    for i, name in enumerate(names):
        if name not in input_grads:
            continue
        for _ in range(directions):
            d = rng.standard_normal(np.shape(args[i]))
            ana = float(np.sum(input_grads[name] * d))
            err = relative_error(lambda h, i=i, d=d: loss(params, args[:i] + [args[i] + h * d] + args[i + 1:]),
                                 ana, floor)
            errors[name] = max(errors.get(name, 0.0), err)
    rules = getattr(prog, "rules", ())
    through = estimators_on_the_way(prog)
    return Result(checked.card.name, errors, tuple(dict.fromkeys(r.card for r in rules)),
                  tuple(dict.fromkeys(r.card for r in rules if r.straight_through)),
                  {t: cards for t, cards in through.items() if t in errors})


def make_config(mod, sizes: dict):
    """A Config with the given sizes; other fields without a default get a small value."""
    given = {ascii_name(k): v for k, v in sizes.items()}
    values = {}
    for f in dataclasses.fields(mod.Config):
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.default is dataclasses.MISSING:
            values[f.name] = 0.1 if f.type in ("float", float) else 2
    return mod.Config(**values)


def run_forward(mod, cfg, params, args, **kw):
    """forward(...) as (outputs, cache), whether the card has one output or several."""
    *outs, cache = mod.forward(cfg, params, *args, **kw)
    return outs, cache


def make_inputs(prog, sizes: dict[str, int], rng, positive: bool = False, batch=(2,)):
    vals = {k: v for k, v in sizes.items()}
    args = []
    for v in prog.inputs:
        shape = tuple(int(d.evaluate(vals)) for d in v.shape)
        full = (batch if v.batched else ()) + shape
        if v.kind == "bool":
            args.append(np.tril(np.ones(full, bool)) if len(shape) == 2 else np.ones(full, bool))
        elif v.kind == "int":
            if not v.batched and not shape:
                args.append(1)  # an offset such as p_start
            else:
                hi = _token_range(prog, v, vals)
                args.append(rng.integers(prog_base(prog), prog_base(prog) + hi, size=full))
        elif positive:
            args.append(rng.uniform(0.5, 1.5, size=full))
        else:
            args.append(rng.standard_normal(full))
    return args


def prog_base(prog) -> int:
    return getattr(prog, "base", 0)


def _token_range(prog, v, vals) -> int:
    bound = getattr(prog, "token_bounds", {}).get(v.name)
    if bound is None:
        return 2
    n = bound.evaluate(vals)
    return int(n) if n is not None else 2


__all__ = ["gradcheck", "load_module", "Result", "TOL", "Poly", "estimators_on_the_way"]
