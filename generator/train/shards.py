"""A compiled card's forward and backward over a batch cut into shards, one thread each.

A card is written for one example; its module takes any leading batch axes, and the examples of a
batch never meet. So a batch splits along its first batch axis into shards that run forward and
backward side by side: NumPy releases the GIL inside its loops and matrix products, and with one
BLAS thread per call (threadpoolctl) two shards on two cores beat one call whose products OpenBLAS
splits. Outputs and input gradients are joined again along that axis; parameter gradients are the
sum of the shards', in shard order, so the numbers depend on the shard count, never on timing.

    >>> import numpy as np, cardgen
    >>> mod = cardgen.load("cards/LayerNorm.card").compile()
    >>> cfg, params = mod.Config(D=8), mod.init_params(mod.Config(D=8), np.random.default_rng(0))
    >>> e = np.random.default_rng(1).standard_normal((6, 8))
    >>> two = cardgen.Sharded(mod, threads=2)
    >>> y, cache = two.forward(cfg, params, e)
    >>> grads, input_grads = two.backward(cfg, params, cache, np.ones_like(y))
    >>> bool(np.allclose(y, mod.forward(cfg, params, e)[0]))
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` (at most ``n``) slices of ``range(n)`` in order, their sizes differing by at most one."""
    k = max(1, min(shards, n))
    cuts = [round(i * n / k) for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


_BLAS = []  # threadpoolctl's controller, made once: it looks through the loaded libraries


@contextlib.contextmanager
def one_blas_thread():
    """NumPy's BLAS on one thread while shards run side by side, restored after; nothing if
    threadpoolctl is not installed."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    with _BLAS[0].limit(limits=1, user_api="blas"):
        yield


@dataclasses.dataclass
class ShardedCache:
    """What ``Sharded.backward`` needs: each shard's cache and where the shards lie on the batch axis."""

    caches: list
    slices: list[tuple[int, int]]


class Sharded:
    """``forward``/``backward`` with the module's own signatures, the batch cut into ``threads``
    shards along its first batch axis. Inputs without batch axes (the module's ``INPUT_RANKS``
    says which) go whole to every shard. A card with random draws is refused: the shards' draws
    would not be one call's."""

    def __init__(self, module: types.ModuleType, threads: int = 2):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        if not hasattr(module, "INPUT_RANKS"):
            raise ValueError(f"{module.__name__} was generated before cardgen recorded its inputs' ranks: "
                             "build it again")
        if _takes_rng(module):
            raise ValueError(f"{module.__name__}'s card draws random numbers: shards would draw differently "
                             "from one call")
        if any(r is None for r in module.OUTPUT_RANKS.values()):
            raise ValueError(f"{module.__name__} has an output without batch axes: shards cannot be joined")
        self.module, self.threads = module, threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cardgen-shard") if threads > 1 else None

    def _split(self, inputs: dict) -> int:
        """The batch size: the first batch axis, shared by every input that has batch axes."""
        sizes = {}
        for name, value in inputs.items():
            rank = self.module.INPUT_RANKS[name]
            if rank is not None and np.ndim(value) > rank:
                sizes[name] = np.shape(value)[0]
        if not sizes:
            raise ValueError(f"no input of {self.module.__name__} has a batch axis to cut into shards "
                             f"(ranks in the card: {self.module.INPUT_RANKS})")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the inputs' first batch axes differ: {sizes}")
        batched = {n for n, r in self.module.INPUT_RANKS.items() if r is not None}
        if missing := sorted(batched - set(sizes)):
            raise ValueError(f"{', '.join(missing)} has no batch axis while {', '.join(sizes)} has one: give "
                             "every batched input the same leading axes")
        return next(iter(sizes.values()))

    def _run(self, jobs):
        if self._pool is None or len(jobs) == 1:
            return [f() for f in jobs]
        with one_blas_thread():
            futures = [self._pool.submit(f) for f in jobs]
            return [f.result() for f in futures]

    def forward(self, config, params, *inputs, workspace: dict | None = None):
        names = list(self.module.INPUT_RANKS)
        given = dict(zip(names, inputs, strict=True))
        slices = bounds(self._split(given), self.threads)
        spaces = workspaces(workspace, len(slices))

        def job(i, lo, hi):
            part = [v[lo:hi] if _cut(self.module.INPUT_RANKS[n], v) else v for n, v in given.items()]
            return self.module.forward(config, params, *part, workspace=spaces[i])
        results = self._run([lambda i=i, lo=lo, hi=hi: job(i, lo, hi) for i, (lo, hi) in enumerate(slices)])
        outs = [r[:-1] for r in results]
        joined = tuple(np.concatenate([o[k] for o in outs]) for k in range(len(outs[0])))
        cache = ShardedCache([r[-1] for r in results], slices)
        return (*joined, cache)

    def backward(self, config, params, cache: ShardedCache, *d_outputs, workspace: dict | None = None):
        spaces = workspaces(workspace, len(cache.slices))

        def job(i, lo, hi):
            return self.module.backward(config, params, cache.caches[i], *(d[lo:hi] for d in d_outputs),
                                        workspace=spaces[i])
        results = self._run([lambda i=i, lo=lo, hi=hi: job(i, lo, hi) for i, (lo, hi) in enumerate(cache.slices)])
        grads = results[0][0]
        if len(results) > 1:
            grads = type(grads)(**{f.name: add_up([getattr(g, f.name) for g, _ in results])
                                   for f in dataclasses.fields(grads)})
        input_grads = {}
        for name in results[0][1]:
            parts = [ig[name] for _, ig in results]
            rank = self.module.INPUT_RANKS.get(name)
            input_grads[name] = np.concatenate(parts) if rank is not None else add_up(parts)
        return grads, input_grads


def _cut(rank, value) -> bool:
    return rank is not None and np.ndim(value) > rank


def add_up(parts):
    """The sum of arrays in order, in a new array (the only one itself): the shards' rounding."""
    out = np.add(parts[0], parts[1]) if len(parts) > 1 else parts[0]
    for p in parts[2:]:
        out += p
    return out


def workspaces(workspace, n: int) -> list:
    """A workspace of its own for each of n shards, kept in the caller's (None: none)."""
    return [None if workspace is None else workspace.setdefault(("shard", i), {}) for i in range(n)]


def _takes_rng(module) -> bool:
    import inspect
    return "rng" in inspect.signature(module.forward).parameters
