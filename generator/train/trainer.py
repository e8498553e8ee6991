"""Training and sampling with compiled cards.

The step follows the paper's DTraining (Algorithm 13) with AdamW for the update:
for a batch of sequences x, P(θ) ← Model(x | θ) (forward of the model card),
loss(θ) = cross_entropy(P, x shifted by one) (teacher forcing, the loss card),
∇loss(θ) by the derived backward passes, then θ ← AdamW(θ, ∇loss, m, v, t) (the
AdamW card), over all parameters at once.  Sampling follows DInference (Algorithm
14): P ← Model(x | θ̂), p ← the last column, y ∼ q ∝ p^{1/τ}, x ← [x, y], with the
context window sliding once the text outgrows the model's positions.

Every number is computed by generated modules; this file only wires them.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field

import numpy as np

from .shards import add_up, bounds, one_blas_thread, workspaces


@dataclass
class AdamWSettings:
    """The AdamW card's hyperparameters (its defaults), plus clipping and accumulation."""

    lr: float = 1e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float | None = None  # clip the gradient's global norm to this, if given
    accumulate: int = 1              # micro-batches per update


@dataclass
class TrainState:
    """Everything a step changes: parameters, AdamW moments (shaped like Params), step count.
    After the first step the fields are views of one flat θ, m and v, which each step updates in
    place (a new or resumed state's arrays are joined once, and not written into)."""

    params: object
    m: object
    v: object
    step: int = 0
    workspace: dict = field(default_factory=dict)


# Elements per call of the AdamW card: small work arrays (11 of them, a set per block size), few calls.
# At the benchmark size, one thread: 7.3 ms a step and 5.0 MiB of work arrays; 1 << 15: 9.1 ms, 1.5 MiB;
# 8.4 ms in one call over everything, 45 MiB. With threads, blocks a quarter of this size run side by side.
ADAMW_BLOCK = 1 << 17


class Trainer:
    """One model card's forward/backward, the cross_entropy card and the AdamW card, wired
    into a training step."""

    def __init__(self, model: types.ModuleType, loss: types.ModuleType, adamw: types.ModuleType,
                 config, settings: AdamWSettings | None = None, threads: int = 1):
        self.model, self.loss, self.adamw = model, loss, adamw
        self.config = config
        self.settings = settings or AdamWSettings()
        self.takes_offset = len(_inputs(model)) == 2  # GPT2(x, p_start): positions start at 0
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.threads = threads
        self._pool = None

    def init(self, rng: np.random.Generator, dtype=np.float32) -> TrainState:
        return self.state(self.model.init_params(self.config, rng, dtype))

    def state(self, params, m=None, v=None, step: int = 0) -> TrainState:
        """A state to train from: the parameters (and moments, zero if not given) joined once into
        the flat θ, m and v that every step updates in place; the fields become views of them."""
        def zeros():
            return self.model.Params(**{f.name: np.zeros_like(getattr(params, f.name)) for f in _fields(params)})
        state = TrainState(params, zeros() if m is None else m, zeros() if v is None else v, step)
        flat_state(state, [f.name for f in _fields(params)])
        return state

    def logits(self, params, x, workspace=None):
        args = (x, 0) if self.takes_offset else (x,)
        out, cache = self.model.forward(self.config, params, *args, workspace=workspace)
        return out, cache

    def loss_and_grads(self, params, tokens, workspace=None):
        """Mean next-token cross-entropy of a batch (B, T+1) and its gradient, shaped like Params."""
        loss, parts = self.shard_grads(params, tokens, workspace)
        grads = parts[0]
        if len(parts) > 1:
            for f in _fields(grads):
                setattr(grads, f.name, add_up([getattr(g, f.name) for g in parts]))
        return loss, grads

    def shard_grads(self, params, tokens, workspace=None):
        """The mean loss of a batch and its gradient as a list of parts whose sum it is: one part, or
        with ``threads`` > 1 one per shard of the batch, each computed on its own thread.

        Data parallelism: the sequences are independent, so the batch splits along its first axis
        into ``threads`` shards, each runs forward and backward on a thread of its own (NumPy releases
        the GIL in its loops and matrix products) with its own workspace, its loss seeded with
        1/B per sequence of the whole batch, and the weight gradient is the sum of the shards'.
        OpenBLAS runs one thread per call meanwhile (threadpoolctl, if installed), so the shards
        don't fight over the cores. The sum changes the rounding, not the maths: a run's numbers
        depend on its thread count, not on timing."""
        batch = tokens.shape[0]
        if min(self.threads, batch) == 1:
            return self._shard(params, tokens, workspace, batch, mean=True)
        done = self._side_by_side(self._shard, params, tokens, workspace, batch)
        return sum(loss for loss, _ in done), [g for _, (g,) in done]

    def _side_by_side(self, f, params, tokens, workspace, *args) -> list:
        """f(params, shard, its workspace, *args) for each of ``threads`` shards of the batch, each on a
        shard thread with one BLAS thread; the results in the shards' order."""
        batch = tokens.shape[0]
        n = min(self.threads, batch)
        with one_blas_thread():
            jobs = [self._executor().submit(f, params, tokens[lo:hi], ws, *args)
                    for (lo, hi), ws in zip(bounds(batch, n), workspaces(workspace, n), strict=True)]
            return [job.result() for job in jobs]

    def _shard(self, params, tokens, workspace, batch: int, mean: bool = False):
        """Loss and gradient of the sequences ``tokens`` out of a batch of ``batch``: each sequence's
        loss weighs 1/batch."""
        x, y = tokens[:, :-1], tokens[:, 1:]
        logits, cache = self.logits(params, x, workspace)
        per_seq, ce_cache = self.loss.forward(self.loss.Config(), self.loss.Params(), logits, y, workspace=workspace)
        _, d = self.loss.backward(self.loss.Config(), self.loss.Params(), ce_cache,
                                  np.full(tokens.shape[0], 1.0 / batch, dtype=logits.dtype), workspace=workspace)
        grads, _ = self.model.backward(self.config, params, cache, d["P"], workspace=workspace)
        loss = float(np.mean(per_seq)) if mean else float(np.sum(per_seq, dtype=np.float64)) / batch
        return loss, [grads]

    def evaluate(self, params, tokens, workspace=None) -> float:
        """Mean next-token cross-entropy of a batch (B, T+1), forward only; with ``threads`` > 1 the
        batch's shards run side by side, as a step's do (the same numbers up to rounding)."""
        batch = tokens.shape[0]
        if min(self.threads, batch) == 1:
            return float(np.mean(self._losses(params, tokens, workspace)))
        done = self._side_by_side(self._losses, params, tokens, workspace)
        return sum(float(np.sum(per_seq, dtype=np.float64)) for per_seq in done) / batch

    def _losses(self, params, tokens, workspace):
        """Each sequence's loss."""
        logits, _ = self.logits(params, tokens[:, :-1], workspace)
        per_seq, _ = self.loss.forward(self.loss.Config(), self.loss.Params(), logits, tokens[:, 1:],
                                       workspace=workspace)
        return per_seq

    def step(self, state: TrainState, micro_batches, lr: float | None = None) -> float:
        """One update: gradients of every micro-batch summed (mean), clipped, then AdamW at ``lr``
        (default: the settings' rate). Each step computes its gradients afresh: nothing carries
        over between steps."""
        total, parts = 0.0, []
        n = len(micro_batches)
        for tokens in micro_batches:
            loss, shards = self.shard_grads(state.params, tokens, state.workspace)
            total += loss
            if n == 1:  # summed as AdamW gathers them
                parts = [{f.name: getattr(g, f.name) for f in _fields(g)} for g in shards]
                continue
            for g in shards:  # the next micro-batch reuses the workspace: keep a sum of our own
                if not parts:
                    parts = [{f.name: np.array(getattr(g, f.name), copy=True) for f in _fields(g)}]
                else:
                    for name in parts[0]:
                        parts[0][name] += getattr(g, name)
        if n > 1:
            for name in parts[0]:
                parts[0][name] /= n
        s = self.settings
        if s.clip_norm is not None:
            grads = _summed(parts)
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
            if norm > s.clip_norm:
                for name in grads:
                    grads[name] *= s.clip_norm / (norm + 1e-6)
            parts = [grads]
        state.step += 1
        cfg = self.adamw.Config(eta=s.lr if lr is None else lr, beta_1=s.beta_1, beta_2=s.beta_2, eps=s.eps,
                                lam=s.weight_decay)
        self.update(state, parts, cfg)
        return total / n

    def update(self, state: TrainState, grads, cfg) -> None:
        """The AdamW card over every parameter, block by block of one flat θ, m and v (the fields of
        ``state`` are views of them): each block's gradient is gathered into a small buffer, the card
        runs on it, and its results are written back in place. Work arrays of one block instead of
        the whole model (45 MiB less at the benchmark size, and they stay in cache); element-wise,
        so the numbers are the card's, parameter by parameter. ``grads``: a dict of gradients, or a
        list of dicts whose sum the gradient is (the shards'), summed block by block as gathered."""
        parts = grads if isinstance(grads, list) else [grads]
        names = [f.name for f in _fields(state.params)]
        theta, m, v = flat_state(state, names)
        sizes = [np.size(parts[0][name]) for name in names]
        starts = np.cumsum([0, *sizes]).tolist()
        flat_parts = [[np.ravel(part[name]) for name in names] for part in parts]  # views: contiguous arrays
        size = ADAMW_BLOCK if self.threads == 1 else ADAMW_BLOCK // 4  # blocks side by side: work arrays each
        blocks = [(lo, min(lo + size, theta.size)) for lo in range(0, theta.size, size)]

        def run(i: int, blocks: list[tuple[int, int]]):  # a run of blocks, on thread i, with its own arrays
            first = 0  # the first parameter the block may touch
            for lo, hi in blocks:
                g = _flat_buffer(state.workspace, ("AdamW:g", i, hi - lo), hi - lo, theta.dtype)
                while starts[first + 1] <= lo:
                    first += 1
                k = first
                while k < len(names) and starts[k] < hi:  # the parameters this block overlaps
                    a, b = max(lo, starts[k]), min(hi, starts[k + 1])
                    g[a - lo:b - lo] = flat_parts[0][k][a - starts[k]:b - starts[k]]
                    for flat_grads in flat_parts[1:]:
                        g[a - lo:b - lo] += flat_grads[k][a - starts[k]:b - starts[k]]
                    k += 1
                ws = state.workspace.setdefault(("AdamW", i, hi - lo), {})  # two sizes: full blocks, the last
                new = self.adamw.forward(cfg, self.adamw.Params(), theta[lo:hi], g, m[lo:hi], v[lo:hi], state.step,
                                         workspace=ws)
                for flat, block in zip((theta, m, v), new[:3], strict=True):
                    flat[lo:hi] = block  # the card has read its inputs: the block is written in place
        runs = [blocks[lo:hi] for lo, hi in bounds(len(blocks), self.threads)]
        if len(runs) == 1:
            return run(0, runs[0])
        jobs = [self._executor().submit(run, i, r) for i, r in enumerate(runs)]  # disjoint blocks: no races
        for job in jobs:
            job.result()

    def _executor(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="cardgen-shard")
        return self._pool

    def generate(self, params, prompt, n_tokens: int, temperature: float, rng: np.random.Generator,
                 context: int | None = None) -> np.ndarray:
        """DInference: append n_tokens sampled tokens to prompt (1-D token ids).
        Temperature 0 picks the most likely token; the window slides past ``context``."""
        x = np.asarray(prompt, dtype=np.int64)
        out = []
        for _ in range(n_tokens):
            window = x if context is None else x[-context:]
            logits, _ = self.logits(params, window[None, :])
            p = logits[0, -1].astype(np.float64)
            if temperature == 0:
                y = int(np.argmax(p))
            else:
                z = p / temperature  # q ∝ softmax(p)^{1/τ} = softmax(p/τ)
                q = np.exp(z - np.max(z))
                q /= q.sum()
                y = int(rng.choice(len(q), p=q))
            out.append(y)
            x = np.append(x, y)
        return np.asarray(out, dtype=np.int64)


def _fields(obj):
    return dataclasses.fields(obj)


def _summed(parts: list[dict]) -> dict:
    """One dict of gradients: the parts' sum, name by name, in order (the only part itself)."""
    return {name: add_up([part[name] for part in parts]) for name in parts[0]}


def flat_state(state: TrainState, names: list[str]):
    """θ, m and v as flat vectors whose views the fields of ``state`` are: the last ones while the
    fields still are their views, otherwise joined afresh (a new or resumed state), one at a time so
    that each holder's old arrays can go before the next is joined."""
    last = state.workspace.get("AdamW:flat")
    if last is not None:
        *flats, views = last
        if all(views.get((id(h), n)) is getattr(h, n) for h in (state.params, state.m, state.v) for n in names):
            return flats
    dtype = np.result_type(*(getattr(state.params, n) for n in names))
    shapes = [np.shape(getattr(state.params, n)) for n in names]
    flats, views = [], {}
    for holder in (state.params, state.m, state.v):
        flat = np.concatenate([np.ravel(getattr(holder, n)) for n in names]).astype(dtype, copy=False)
        at = 0
        for name, shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            setattr(holder, name, flat[at:at + size].reshape(shape))
            views[id(holder), name] = getattr(holder, name)
            at += size
        flats.append(flat)
    state.workspace["AdamW:flat"] = (*flats, views)
    return flats


def _flat_buffer(workspace: dict, key, size: int, dtype):
    buf = workspace.get(key)
    if buf is None or buf.size != size or buf.dtype != dtype:
        buf = workspace[key] = np.empty(size, dtype)
    return buf


def _inputs(mod) -> list[str]:
    import inspect
    return [p for p in inspect.signature(mod.forward).parameters if p not in ("config", "params", "workspace")]


# ---------------------------------------------------------------------- data
def stdlib_text(limit_bytes: int = 4_000_000) -> bytes:
    """Real text that every machine with Python has: the standard library's own sources,
    in a fixed order."""
    import sysconfig
    from pathlib import Path
    root = Path(sysconfig.get_paths()["stdlib"])
    out, size = [], 0
    for p in sorted(root.glob("*.py")):
        data = p.read_bytes()
        out.append(data)
        size += len(data)
        if size >= limit_bytes:
            break
    return b"".join(out)


def split(data: bytes, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Byte-level tokens (0..255), the last ``val_fraction`` held out for validation."""
    tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    n = int(len(tokens) * (1 - val_fraction))
    return tokens[:n], tokens[n:]


def batches(tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` random windows of ``length + 1`` tokens (input and next-token targets)."""
    starts = rng.integers(0, len(tokens) - length - 1, size=batch)
    return np.stack([tokens[s:s + length + 1] for s in starts])
