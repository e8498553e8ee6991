"""The targets a card compiles to: a printer table per target (one printer per
primitive, the same keys in each) and the helper functions its modules carry.

- ``numpy`` (the default): NumPy only, results written into arrays that die at
  that op and, with ``workspace=``, kept between calls (``npcode.py``, ``memory.py``).
- ``array-api``: written against the Python array API standard through
  ``array_api_compat``; runs on NumPy, PyTorch, JAX and CuPy arrays, writes into
  no array, so ``jax.jit`` traces it (``xpcode.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import npcode, xpcode


@dataclass(frozen=True)
class Target:
    name: str
    table: dict[str, Callable]           # primitive -> printer
    op_expr: Callable                    # an op -> its Python expression
    out_expr: Callable | None            # an op writing into a given array; None: every op makes a new one
    helpers: str                         # functions every module of this target carries
    causal: dict[str, Callable] | None = None  # causal.plan's ops, over the blocks they need; None: whole

    @property
    def in_place(self) -> bool:
        """Writes into arrays (memory plan, workspace): NumPy only."""
        return self.out_expr is not None


TARGETS = {
    "numpy": Target("numpy", npcode.PRINT, npcode.op_expr, npcode.out_expr,
                    npcode.HELPERS + npcode.BACKWARD_HELPERS, npcode.CAUSAL),
    "array-api": Target("array-api", xpcode.PRINT, xpcode.op_expr, None,
                        xpcode.HELPERS + xpcode.BACKWARD_HELPERS),
}
DEFAULT = "numpy"
