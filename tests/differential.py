"""Differential testing: a card through the compiler (the generated module, in memory) and the
reference interpreter (``cardgen.semantics``) on the same random values.

Forward outputs must agree to ``FORWARD_TOL`` (relative to the largest magnitude of the output,
float64); each parameter's and real input's generated gradient must agree with central
differences *of the interpreter* in a random direction to ``GRAD_TOL``.  Used by
``tests/test_differential.py`` and ``scripts/difffuzz.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import numpy as np

from cardgen.api import interpret
from cardgen.compile.gradcheck import (
    derivative,
    estimators_on_the_way,
    load_module,
    make_config,
    make_inputs,
    run_forward,
    small_sizes,
)
from cardgen.compile.lower import lower, wrapper_kind
from cardgen.lang.check import Checked, Library

FORWARD_TOL = 1e-12
GRAD_TOL = 1e-6


@dataclass
class Report:
    card: str
    forward: dict[str, float] = field(default_factory=dict)  # output -> relative difference
    grads: dict[str, float] = field(default_factory=dict)  # tensor -> relative difference
    straight_through: tuple[str, ...] = ()  # cards whose rule is deliberately not the true gradient
    excused: set[str] = field(default_factory=set)  # the grads through such a rule: they differ by design

    def problems(self) -> list[str]:
        out = [f"{self.card}: output {n} differs from the interpreter by {e:.2e} (relative)"
               for n, e in self.forward.items() if not e <= FORWARD_TOL]
        out += [f"{self.card}: gradient of {n} differs from the interpreter's differences by {e:.2e}"
                for n, e in self.grads.items() if not e <= GRAD_TOL and n not in self.excused]
        return out


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    return float(np.max(np.abs(a - b))) / scale


def compare(checked: Checked, lib: Library, seed: int = 0, grads: bool = True,
            sizes: dict | None = None, per_tensor: bool = False) -> Report:
    """Run ``checked`` both ways on random parameters and inputs (batch of 2).  Gradients are
    checked in one random direction over every tensor at once, or (``per_tensor``) one per tensor."""
    mod = load_module(checked, lib)
    prog = lower(checked, lib)
    sizes = small_sizes(checked, lib, sizes or {})
    cfg = make_config(mod, sizes)
    rng = np.random.default_rng(seed)
    template = mod.init_params(cfg, rng, np.float64)
    params = mod.Params(**{f.name: 0.5 * rng.standard_normal(np.shape(getattr(template, f.name)))
                           for f in dataclasses.fields(mod.Params)})
    args = make_inputs(prog, sizes, rng)
    names = [n for n in inspect.signature(mod.forward).parameters][2:2 + len(args)]
    with np.errstate(invalid="ignore", divide="ignore"):
        outs, cache = run_forward(mod, cfg, params, args)
    if not all(np.all(np.isfinite(o)) for o in outs):  # a card that needs positive inputs
        args = make_inputs(prog, sizes, rng, positive=True)
        outs, cache = run_forward(mod, cfg, params, args)

    training = wrapper_kind(checked.card) == "training"
    base = checked.card.convention.base

    def interp(p, a) -> list:
        # A card that draws (`with probability`): the module's forward draws from default_rng(0) when
        # given no generator, example after example, in the interpreter's order; so does this.
        chance = np.random.default_rng(0)
        if training:  # the module's forward is loss(θ) per sequence: each a data set of one
            hyp = {**dataclasses.asdict(cfg), "N_data": 1}
            losses = [interpret(checked, {n: {base: x[i]} for n, x in zip(names, a, strict=True)}, p, hyp,
                                lib=lib, at_gradient=True, rng=chance) for i in range(len(a[0]))]
            return [np.array([next(iter(got.values())) for got in losses])]
        got = interpret(checked, dict(zip(names, a, strict=True)), p, cfg, lib=lib, rng=chance)
        return [np.asarray(got[n], dtype=float) for n in checked.card.outputs]

    report = Report(checked.card.name, straight_through=tuple(r.card for r in prog.rules if r.straight_through))
    ref = interp(params, args)
    for n, o, r in zip(["loss"] if training else checked.card.outputs, outs, ref, strict=True):
        report.forward[n] = relative(o, r)
    if not grads or not all(np.all(np.isfinite(r)) for r in ref):
        return report  # outputs that are not numbers here (a card dividing by zero) have no gradient
    g_outs = [rng.standard_normal(np.shape(o)) for o in outs]
    d_params, d_inputs = mod.backward(cfg, params, cache, *g_outs)

    def loss(p, a) -> float:
        return float(sum(np.sum(o * g) for o, g in zip(interp(p, a), g_outs, strict=True)))

    floor = 1e-4 * (1.0 + abs(loss(params, args)))
    through = estimators_on_the_way(prog)
    # (field or input name, its value, where it goes, its generated gradient)
    tensors = [(f.name, getattr(params, f.name), ("param", f.name), getattr(d_params, f.name))
               for f in dataclasses.fields(mod.Params)]
    tensors += [(name, args[i], ("input", i), d_inputs[name]) for i, name in enumerate(names) if name in d_inputs]

    def moved(h, dirs: dict):
        p = dataclasses.replace(params, **{k[1]: getattr(params, k[1]) + h * d for k, d in dirs.items()
                                           if k[0] == "param"})
        a = [x + h * dirs[("input", i)] if ("input", i) in dirs else x for i, x in enumerate(args)]
        return loss(p, a)

    groups = [[t] for t in tensors] if per_tensor else [tensors]
    for group in groups:
        dirs = {where: rng.standard_normal(np.shape(value)) for _, value, where, _ in group}
        num = derivative(lambda h, dirs=dirs: moved(h, dirs))
        ana = float(sum(np.sum(g * dirs[where]) for _, _, where, g in group))
        label = group[0][0] if per_tensor else "all parameters and inputs"
        report.grads[label] = abs(num - ana) / max(abs(num), abs(ana), floor)
        if any(name in through for name, *_ in group):  # an estimator on the way (see test_custom.py)
            report.excused.add(label)
    return report
