"""The built-in functions, each from its definition, element by element where it is
element-wise.  One row per name that ``lang.check_call.BUILTINS`` accepts; ``softmax`` and
``max`` are in ``interp.py`` because they need the card's convention or two arguments."""

from __future__ import annotations

import math

import numpy as np


def _each(f):
    """A scalar function applied to every element (``math`` is the definition, not NumPy's
    vectorised kernels)."""
    vec = np.vectorize(f, otypes=[float])

    def apply(x):
        out = vec(np.asarray(x, dtype=float))
        return float(out) if out.ndim == 0 else out
    return apply


def _exp(x):
    return math.exp(x) if x != -math.inf else 0.0


def _log(x):
    if x < 0 or math.isnan(x):
        return math.nan
    return math.log(x) if x > 0 else -math.inf


def _sigma(x):
    """The logistic function 1 / (1 + e^{−x})."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


ELEMENTWISE = {
    "exp": _each(_exp),
    "log": _each(_log),
    "tanh": _each(math.tanh),
    "sin": _each(math.sin),
    "cos": _each(math.cos),
    "round": _each(lambda x: float(round(x))),  # to the nearest integer, ties to even (as NumPy)
    "abs": _each(abs),
    "sqrt": _each(lambda x: math.sqrt(x) if x >= 0 else math.nan),
    "σ": _each(_sigma),
    "ReLU": _each(lambda x: x if x > 0 else 0.0),
    "SiLU": _each(lambda x: x * _sigma(x)),
    "GELU": _each(lambda x: x * 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))),  # x·Φ(x)
}
