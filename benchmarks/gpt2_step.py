"""Benchmark one GPT-2 training step (forward, mean next-token cross-entropy, every parameter gradient)
on the CPU, three ways in the same run:

  generated    generated/GPT2.py + generated/cross_entropy.py (the code cardgen emits)
  pytorch      transformers' GPT2LMHeadModel, eager mode (no torch.compile), dropout 0, eval mode
  hand-numpy   benchmarks/numpy_gpt2.py, a hand-written batched llm.c-style NumPy GPT-2

All three start from the same weights (the PyTorch model's random init); before timing, the script
checks once that hand-numpy and PyTorch agree with the generated code on the loss and on every
gradient (float32, relative error <= 1e-4). Implementations take turns round-robin, so machine noise
hits every one alike; a turn is 1 + --burst steps back to back, as in a training loop, the first of
which (after the pause, on idle cores) is reported apart from the steady ones.
Size: V=256, T=128, D=128, H=4, N=4 blocks, D_f=4·D, B=8, float32.

Run it from the repository root as

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gpt2_step.py [--threads N] [--steps S]

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, if the environment sets them, make OpenBLAS pick slower
kernels for current NumPy; the script leaves them alone (OpenBLAS reads them when NumPy is imported)
and only reports whether they are set. `--profile` skips the timing and instead profiles five steps
of the generated code: cProfile's top functions, then wall time per source line of the generated
modules and per card line. benchmarks/README.md explains the other flags and the output.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import importlib.util
import linecache
import os
import platform
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import numpy_gpt2
import torch
from threadpoolctl import threadpool_info, threadpool_limits
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parent.parent
V, T, D, H, N, B = 256, 128, 128, 4, 4, 8
D_F = 4 * D
CTX = T
# --size: the benchmark size, and one closer to GPT-2 small (D_f = 4·D, ctx = T in both)
SIZES = {"bench": (256, 128, 128, 4, 4, 8), "gpt2s": (512, 256, 384, 6, 6, 4)}
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
TOLERANCE = 1e-4


def load_generated(name):
    spec = importlib.util.spec_from_file_location(f"generated_{name}", ROOT / "generated" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpt2 = load_generated("GPT2")
ce = load_generated("cross_entropy")


# ----------------------------------------------------------------------------- the three steps

def make_torch_model(attn_implementation):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=V, n_positions=CTX, n_embd=D, n_layer=N, n_head=H, n_inner=D_F,
                     activation_function="gelu_new", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                     attn_implementation=attn_implementation)
    model = GPT2LMHeadModel(cfg).float()
    model.eval()
    return model


# Params name -> the tensor in one HF block. HF's Conv1D stores weights as (in, out), the layout of Params.
BLOCK_TENSORS = {
    "gamma_1": lambda b: b.ln_1.weight, "beta_1": lambda b: b.ln_1.bias,
    "W_qkv": lambda b: b.attn.c_attn.weight, "b_qkv": lambda b: b.attn.c_attn.bias,
    "W_o": lambda b: b.attn.c_proj.weight, "b_o": lambda b: b.attn.c_proj.bias,
    "gamma_2": lambda b: b.ln_2.weight, "beta_2": lambda b: b.ln_2.bias,
    "W_fc": lambda b: b.mlp.c_fc.weight, "b_fc": lambda b: b.mlp.c_fc.bias,
    "W_proj": lambda b: b.mlp.c_proj.weight, "b_proj": lambda b: b.mlp.c_proj.bias,
}


def torch_tensors(model):
    """Every parameter tensor of the torch model, keyed by Params name (per-block ones as lists)."""
    t = model.transformer
    named = {"W_e": t.wte.weight, "W_p": t.wpe.weight, "gamma_f": t.ln_f.weight, "beta_f": t.ln_f.bias}
    named.update({name: [get(b) for b in t.h] for name, get in BLOCK_TENSORS.items()})
    return named


def to_numpy(tensors, grad=False):
    def arr(p):
        return (p.grad if grad else p).detach().numpy().astype(np.float32)
    return {name: np.stack([arr(p) for p in v]) if isinstance(v, list) else arr(v)
            for name, v in tensors.items()}


WORKSPACE: dict | None = {}  # the generated modules' arrays, kept from step to step (--no-workspace: None)


def generated_step(cfg, params, x):
    ws = WORKSPACE
    logits, cache = gpt2.forward(cfg, params, x, 0, workspace=ws)
    loss_seq, ce_cache = ce.forward(ce.Config(), ce.Params(), logits[:, :-1], x[:, 1:], workspace=ws)
    loss = float(np.mean(loss_seq))  # mean over the batch of the per-sequence means
    batch = x.shape[0]
    _, d = ce.backward(ce.Config(), ce.Params(), ce_cache, np.full(batch, 1.0 / batch, dtype=logits.dtype),
                       workspace=ws)
    d_logits = np.zeros_like(logits)
    d_logits[:, :-1] = d["P"]
    grads, _ = gpt2.backward(cfg, params, cache, d_logits, workspace=ws)
    return loss, vars(grads)


def hand_numpy_step(params, x):
    logits, cache = numpy_gpt2.forward(params, x, H)
    loss, d_logits = numpy_gpt2.cross_entropy(logits, x)
    return loss, numpy_gpt2.backward(params, cache, d_logits)


def torch_step(model, tokens):
    model.zero_grad()  # set_to_none: backward allocates fresh grads, as in a training loop
    logits = model(tokens).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))
    loss.backward()
    return loss.item()


# ----------------------------------------------------------------------------- checks and reports

def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def check_agreement(steps, reference="generated"):
    """Loss and every gradient of each implementation against the reference; exits if off."""
    ref_loss, ref_grads = steps[reference]()
    print(f"agreement with {reference} (float32; max|a-b|/max|b| per gradient; loss {ref_loss:.6f}):")
    ok = True
    for name, step in steps.items():
        if name == reference:
            continue
        loss, grads = step()
        errors = {k: rel_err(grads[k], ref_grads[k]) for k in ref_grads}
        worst = max(errors, key=errors.get)
        loss_err = abs(loss - ref_loss) / abs(ref_loss)
        print(f"  {name:<11} loss {loss:.6f} (rel {loss_err:.1e}); worst of {len(errors)} gradients: "
              f"{worst} {errors[worst]:.1e}")
        ok &= loss_err <= TOLERANCE and errors[worst] <= TOLERANCE
    if not ok:
        sys.exit(f"an implementation disagrees with {reference} beyond {TOLERANCE:g}; timings would mislead")


def print_environment(n_threads, attn_implementation):
    print(f"GPT-2 step: V={V} T={T} D={D} H={H} N={N} D_f={D_F} B={B} float32; {B * T} tokens per step")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for var in OPENBLAS_VARS:
        value = os.environ.get(var)
        state = "not set" if value is None else f"SET to {value!r} (run with `env -u {var}`)"
        print(f"  {var}: {state}")
    for lib in threadpool_info():  # NumPy's BLAS, torch's OpenMP, and any other library's pool
        parts = Path(lib["filepath"]).parts  # the package that ships the library, e.g. numpy.libs
        owner = parts[parts.index("site-packages") + 1] if "site-packages" in parts else parts[-2]
        mark = "   <- NumPy's BLAS" if owner == "numpy.libs" else ""
        print(f"  {lib['user_api']} in {owner}: {lib['internal_api']} {lib.get('version') or ''} "
              f"kernel={lib.get('architecture', '-')} threading={lib.get('threading_layer', '-')} "
              f"threads={lib['num_threads']}{mark}")
    print(f"  torch: {torch.get_num_threads()} intra-op threads, attention={attn_implementation!r}, "
          f"eager, no torch.compile")
    print(f"threads for every implementation: {n_threads}")


# ----------------------------------------------------------------------------- timing

def time_round_robin(steps, n_steps, pause, burst=0):
    """Times each step function, interleaved by turns; the starting one rotates every round.

    Each turn starts after `pause` idle seconds, so that worker threads the previous turn left
    spinning have gone to sleep: OpenBLAS's spin for about 2^28 cycles (~0.1 s) after their last
    call and would otherwise take CPU from a PyTorch step that follows a NumPy one.
    With burst = 0 a turn is one step, timed: n_steps of them. With burst = K > 0 a turn is K + 1
    steps back to back, as a training loop runs them: the first, after the pause, is kept apart as
    the step after idle, the other K are the steady steps, at least n_steps of them.
    Returns, per implementation, a list of (wall seconds, system CPU seconds, minor page faults) of
    the steady steps (of every step when burst = 0), and the wall seconds of the steps after idle."""
    names = list(steps)
    samples = {name: [] for name in names}
    after_idle = {name: [] for name in names}
    rounds = n_steps if burst == 0 else -(-n_steps // burst)
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            time.sleep(pause)
            for k in range(burst + 1):
                before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                steps[name]()
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_SELF)
                if k == 0:
                    after_idle[name].append(wall)
                if k > 0 or burst == 0:
                    samples[name].append((wall, after.ru_stime - before.ru_stime,
                                          after.ru_minflt - before.ru_minflt))
    return samples, after_idle


def report(timed, burst):
    samples, after_idle = timed
    n = len(next(iter(samples.values())))
    row = "  {:<12} {:>9} {:>8} {:>8} {:>9} {:>7} {:>11} {:>10}"
    if burst:
        print(f"\n{n} steady steps each ({len(next(iter(after_idle.values())))} turns of {burst + 1} steps back "
              f"to back, the first of each timed apart as 'after idle'), round-robin; sys ms and page faults "
              f"are medians per steady step:")
    else:
        print(f"\n{n} timed steps each, round-robin, each after the pause; sys ms and page faults are medians "
              "per step:")
    print(row.format("", "median ms", "min ms", "max ms", "tokens/s", "sys ms", "page faults",
                     "after idle" if burst else ""))
    medians, idle = {}, {}
    for name, rows in samples.items():
        walls, sys_times, faults = zip(*rows, strict=True)
        medians[name] = statistics.median(walls)
        idle[name] = statistics.median(after_idle[name])
        ms = [f"{1e3 * t:.1f}" for t in (medians[name], min(walls), max(walls), statistics.median(sys_times))]
        tokens_per_s = f"{B * T / medians[name]:,.0f}"
        print(row.format(name, *ms[:3], tokens_per_s, ms[3], f"{statistics.median(faults):,.0f}",
                         f"{1e3 * idle[name]:.1f}" if burst else ""))
    print("  (tokens/s from the median" + ("; after idle: median ms of the first step of a turn)" if burst else ")"))
    for label, m in (("", medians), ("after idle: ", idle if burst else None)):
        if m is None:
            continue
        for other in m:
            if other != "generated":
                print(f"  {label}generated / {other:<10} = {m['generated'] / m[other]:.2f}x (ratio of medians)")


def keep_freed_memory():
    """Ask glibc to keep freed memory in the process instead of handing it back to the kernel.

    By default glibc returns large freed blocks, so every big NumPy temporary is page-faulted in
    (and zeroed by the kernel) again on the next step. Returns whether mallopt accepted both settings."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


# ----------------------------------------------------------------------------- profiling

class LineTimer:
    """Wall time per source line of the given files, from Python's line events (sys.settrace).

    The time between two events goes to the line that was running; while a traced function runs,
    its lines get their own time, and the calling line resumes afterwards. Tracing adds roughly a
    microsecond per line, small next to these lines' array operations."""

    def __init__(self, files):
        self.files = {str(f) for f in files}
        self.times = Counter()
        self.hits = Counter()
        self.function = {}  # line -> name of the function it is in
        self.stack = []
        self.line = None
        self.t = 0.0

    def _charge(self):
        if self.line is not None:
            self.times[self.line] += time.perf_counter() - self.t

    def _on_call(self, frame, event, arg):
        if frame.f_code.co_filename not in self.files:
            return None  # untraced: its time stays with the calling line
        self._charge()
        self.stack.append(self.line)
        self.line = None
        self.t = time.perf_counter()
        return self._on_event

    def _on_event(self, frame, event, arg):
        self._charge()
        if event == "line":
            self.line = (frame.f_code.co_filename, frame.f_lineno)
            self.hits[self.line] += 1
            self.function[self.line] = frame.f_code.co_name
        elif event == "return":
            self.line = self.stack.pop()
        self.t = time.perf_counter()
        return self._on_event

    def __enter__(self):
        sys.settrace(self._on_call)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


def card_line(filename, lineno):
    """The card line a generated line implements: the comment the generator put above its group of
    lines (e.g. "LayerNorm 3 return ê = …"); None inside helper functions, which have no such comment."""
    for n in range(lineno, 0, -1):
        text = linecache.getline(filename, n).strip()
        if text.startswith("# "):
            return text[2:].split("▷")[0].strip()
        if text.startswith("def "):
            return None


def profile_generated(step, n_steps=5, top=25):
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n_steps):
        step()
    profiler.disable()
    print(f"\ncProfile, {n_steps} generated steps, top {top} by total (own) time. Array arithmetic written "
          "as operators (+, *, @) runs inside forward/backward and is counted there:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)

    files = [ROOT / "generated" / "GPT2.py", ROOT / "generated" / "cross_entropy.py"]
    with LineTimer(files) as timer:
        for _ in range(n_steps):
            step()
    total = sum(timer.times.values())

    def source(line):
        return re.split(r"\s#\s", linecache.getline(*line).strip())[0].strip()  # without the shape comment

    products = ("@", "np.matmul(", "_wgrad(")  # the modules write products as np.matmul(..., out=...)
    matmul = sum(t for line, t in timer.times.items() if any(p in source(line) for p in products))
    print(f"Wall time per line of generated/GPT2.py and cross_entropy.py, {n_steps} steps under "
          f"sys.settrace: {1e3 * total / n_steps:.1f} ms per step in {len(timer.times)} lines; lines with a "
          f"matrix product (@, np.matmul or _wgrad) take {100 * matmul / total:.0f}%. Top {top} lines:")
    print(f"  {'ms/step':>8} {'%':>5} {'runs':>5}  line")
    for line, t in timer.times.most_common(top):
        print(f"  {1e3 * t / n_steps:>8.2f} {100 * t / total:>5.1f} {timer.hits[line] // n_steps:>5}  "
              f"{Path(line[0]).name}:{line[1]}  {source(line)[:80]}")

    groups = Counter()
    for line, t in timer.times.items():
        groups[(timer.function[line], card_line(*line) or "")] += t
    print(f"\nThe same time by card line (forward or backward) and helper function; top {top // 2}:")
    print(f"  {'ms/step':>8} {'%':>5}  where")
    for (function, card), t in groups.most_common(top // 2):
        where = f"{function}: {card[:80]}" if card else f"{function} (helper)"
        print(f"  {1e3 * t / n_steps:>8.2f} {100 * t / total:>5.1f}  {where}")


# ----------------------------------------------------------------------------- main

def measure_check_cost(cfg, params, x, n=40):
    """The generated forward with its checks, against the same forward with the checks stubbed out."""
    ws = {}

    def forward():
        gpt2.forward(cfg, params, x, 0, workspace=ws)

    def median_ms():
        forward()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)
    checks = gpt2._check_input, gpt2._check_params
    rounds = []
    for _ in range(3):  # interleaved, so machine noise hits both alike
        with_checks = median_ms()
        gpt2._check_input = gpt2._check_params = lambda *a: None
        without = median_ms()
        gpt2._check_input, gpt2._check_params = checks
        rounds.append((with_checks, without))
    start = time.perf_counter()
    for _ in range(1000):
        gpt2._check_input("x", x, (None,), "i", 0, V - 1, "{0..V−1}^T")
        gpt2._check_params(params, {k: np.shape(v) for k, v in vars(params).items()})
    alone = (time.perf_counter() - start)  # ms per call: seconds for 1000 calls
    for w, wo in rounds:
        print(f"  forward with checks {w:.2f} ms, without {wo:.2f} ms")
    fwd = statistics.median(wo for _, wo in rounds)
    print(f"  the checks alone: {alone * 1e3:.1f} µs per forward = {100 * alone / fwd:.2f}% of a forward "
          f"({fwd:.1f} ms)")


def training_steps(model, params, cfg, x, compare=(), jax=True, threads=1):
    """Whole training steps, AdamW included, on the same batch (B, T) of inputs and targets. The
    generated step runs ``threads`` shards of the batch, one per thread, each with one BLAS thread
    (``Trainer(threads=…)``, ``cardgen train --threads``); PyTorch runs ``threads`` intra-op threads."""
    from cardgen.train.trainer import AdamWSettings, Trainer
    trainer = Trainer(gpt2, ce, load_generated("AdamW"), cfg, AdamWSettings(lr=1e-4, weight_decay=0.01),
                      threads=threads)
    state = trainer.state(gpt2.Params(**{k: v.copy() for k, v in vars(params).items()}))  # zero moments
    tokens = np.concatenate([x, x[:, :1]], axis=1)  # (B, T+1): inputs x, next-token targets
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    t_tokens = torch.from_numpy(tokens)
    hand = {k: v.copy() for k, v in vars(params).items()}
    hand_m = {k: np.zeros_like(v) for k, v in hand.items()}
    hand_v = {k: np.zeros_like(v) for k, v in hand.items()}
    count = [0]

    def pytorch():
        opt.zero_grad(set_to_none=True)
        logits = model(t_tokens[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), t_tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    def hand_numpy():
        count[0] += 1
        loss, grads = hand_numpy_step(gpt2.Params(**hand), x)
        b1, b2, lr, wd, t = 0.9, 0.999, 1e-4, 0.01, count[0]
        for k, g in grads.items():
            w, m, v = hand[k], hand_m[k], hand_v[k]
            w *= 1 - lr * wd
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            w -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
        return loss

    steps = {"generated": lambda: trainer.step(state, [tokens]), "pytorch": pytorch, "hand-numpy": hand_numpy}
    if threads > 1:  # what the shards buy: the same trainer as one call, BLAS on `threads` threads
        one = Trainer(gpt2, ce, load_generated("AdamW"), cfg, AdamWSettings(lr=1e-4, weight_decay=0.01))
        one_state = one.state(gpt2.Params(**{k: v.copy() for k, v in vars(params).items()}))
        steps[ONE_CALL] = lambda: one.step(one_state, [tokens])
    for rev in compare:
        steps[f"gen@{rev}"] = revision_training_step(rev, params, cfg, tokens, threads)
    jax_step = jax_training_step(params, tokens) if jax else None
    if jax_step is not None:
        steps["jax-jit"] = jax_step
    return steps


def revision_training_step(rev, params, cfg, tokens, threads=1):
    """The generated training step as it was at git revision ``rev``: that revision's generated GPT2,
    cross_entropy and AdamW modules and its trainer (its relative imports resolved in today's
    package), on ``threads`` threads as the generated row, so one run measures what a change bought."""
    import types

    from cardgen.compile.gradcheck import import_source

    def show(path):
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout

    def name(path):
        return f"rev_{re.sub(r'[^0-9A-Za-z]', '_', rev)}_{Path(path).stem}"
    gpt2_r, ce_r, adamw_r = (import_source(name(p), show(p), f"{rev}:{p}")
                             for p in (f"generated/{n}.py" for n in ("GPT2", "cross_entropy", "AdamW")))
    path = "generator/train/trainer.py"
    tr = types.ModuleType(f"cardgen.train.{name(path)}")
    tr.__package__, tr.__file__ = "cardgen.train", f"{rev}:{path}"
    sys.modules[tr.__name__] = tr  # dataclasses look their module up there
    exec(compile(show(path), tr.__file__, "exec"), tr.__dict__)
    cfg_r = gpt2_r.Config(**vars(cfg))
    settings = tr.AdamWSettings(lr=1e-4, weight_decay=0.01)
    trainer = (tr.Trainer(gpt2_r, ce_r, adamw_r, cfg_r, settings, threads=threads) if threads > 1
               else tr.Trainer(gpt2_r, ce_r, adamw_r, cfg_r, settings))  # revisions before threads= too
    zeros = {k: np.zeros_like(v) for k, v in vars(params).items()}
    state = tr.TrainState(gpt2_r.Params(**{k: v.copy() for k, v in vars(params).items()}),
                          gpt2_r.Params(**zeros), gpt2_r.Params(**{k: v.copy() for k, v in zeros.items()}))
    return lambda: trainer.step(state, [tokens])


def jax_training_step(params, tokens):
    """JAX jit on the CPU, if JAX is installed: the same model, loss and AdamW (benchmarks/jax_gpt2.py)."""
    try:
        import jax
        import jax.numpy as jnp
        import jax_gpt2
    except ImportError:
        print("jax: not installed (pip install jax), not timed")
        return None
    p = {k: jnp.asarray(v) for k, v in vars(params).items()}
    m = {k: jnp.zeros_like(v) for k, v in p.items()}
    v = {k: jnp.zeros_like(v) for k, v in p.items()}
    step = jax_gpt2.make_train_step(H)
    t_tokens = jnp.asarray(tokens)
    ref = float(jax_gpt2.loss_fn(p, t_tokens, H))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; loss {ref:.6f} at the start")
    state = {"p": p, "m": m, "v": v, "t": 0}

    def run():
        state["t"] += 1
        state["p"], state["m"], state["v"], loss = step(state["p"], state["m"], state["v"], state["t"], t_tokens)
        return float(loss)  # waits for the result
    return run


# ----------------------------------------------------------------------------- peak memory

MEMORY_IMPLEMENTATIONS = ("generated", "pytorch", "hand-numpy")
ONE_CALL = "gen-one-call"  # --train with --threads > 1: the generated step unsharded, beside the sharded one


def current_rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def rss_of(name, steps, n_steps):
    """In a process of its own (``--rss-of NAME``): the RSS once everything is set up, then the peak
    RSS over n_steps of one implementation, as a JSON line. Every process sets up the same things
    (modules, the PyTorch model, the parameters), so the difference is the step's own memory."""
    import json
    before = current_rss_kib()
    for _ in range(n_steps):
        steps[name]()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"name": name, "before_kib": before, "peak_kib": peak}))


def report_memory(args):
    """Peak RSS of each implementation's step, each measured in a fresh process of its own."""
    import json
    import subprocess
    what = "training step (forward, loss, backward, AdamW)" if args.train else "forward + backward"
    print(f"\npeak RSS of the {what}, {args.memory_steps} steps, one process per implementation:")
    print(f"  {'':<12} {'peak MiB':>9} {'set-up MiB':>11} {'step MiB':>9}")
    rows = {}
    for name in MEMORY_IMPLEMENTATIONS + ((ONE_CALL,) if args.train and args.threads > 1 else ()):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-of", name, "--size", args.size,
               "--threads", str(args.threads), "--memory-steps", str(args.memory_steps)]
        cmd += ["--train"] * args.train + ["--no-workspace"] * args.no_workspace
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows[name] = row
        peak, before = row["peak_kib"] / 1024, row["before_kib"] / 1024
        print(f"  {name:<12} {peak:>9.1f} {before:>11.1f} {peak - before:>9.1f}")
    smallest = min(rows, key=lambda n: rows[n]["peak_kib"] - rows[n]["before_kib"])
    print(f"  (step MiB = peak − RSS once set up; smallest step: {smallest})")


def main():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=cores,
                        help=f"threads for NumPy's BLAS and for torch (default: the {cores} usable cores)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per implementation (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per implementation (default 3)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="idle seconds before each turn, so thread pools stop spinning (default 0.2)")
    parser.add_argument("--burst", type=int, default=3,
                        help="steady steps per turn: each turn runs 1 + BURST steps back to back, as a training "
                             "loop does, and times the first, after the pause, apart (default 3; 0: every "
                             "step after a pause, as before 3 December)")
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                        help="transformers' attention implementation for the PyTorch model (default sdpa)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="mallopt: glibc keeps freed memory, so NumPy temporaries stop page-faulting")
    parser.add_argument("--no-workspace", action="store_true",
                        help="generated code allocates its arrays on every call instead of reusing a workspace")
    parser.add_argument("--check-cost", action="store_true",
                        help="measure what the generated forward's input and parameter checks cost")
    parser.add_argument("--train", action="store_true",
                        help="time a whole training step: forward, loss, backward and the AdamW update "
                             "(generated: cardgen.train.trainer.Trainer with the AdamW card; "
                             "pytorch: torch.optim.AdamW)")
    parser.add_argument("--engines", action="store_true",
                        help="add the array-API modules (--target array-api) on PyTorch eager and under jax.jit "
                             "(benchmarks/engines_gpt2.py)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of timing, profile 5 generated steps (cProfile, then per line)")
    parser.add_argument("--size", choices=sorted(SIZES), default="bench",
                        help="bench: V=256 T=128 D=128 H=4 N=4 B=8 (default); "
                             "gpt2s: V=512 T=256 D=384 H=6 N=6 B=4")
    parser.add_argument("--unset-blas-env", action="store_true",
                        help=f"run with {' and '.join(OPENBLAS_VARS)} unset (the script starts itself again "
                             "without them: OpenBLAS reads them when NumPy loads)")
    parser.add_argument("--compare", action="append", default=[], metavar="REV",
                        help="with --train: also time the generated step of git revision REV (its generated "
                             "modules and trainer), as the row gen@REV; repeatable")
    parser.add_argument("--memory", action="store_true",
                        help="instead of timing, report the peak RSS of each implementation's step, each "
                             "measured in a process of its own (with --train: whole training steps)")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps per --memory process (default 3)")
    # --memory runs one child process per implementation:
    parser.add_argument("--rss-of", choices=(*MEMORY_IMPLEMENTATIONS, ONE_CALL), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.unset_blas_env and any(v in os.environ for v in OPENBLAS_VARS):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    global V, T, D, H, N, B, D_F, CTX
    V, T, D, H, N, B = SIZES[args.size]
    D_F, CTX = 4 * D, T
    global WORKSPACE
    if args.no_workspace:
        WORKSPACE = None

    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads, user_api="blas")  # NumPy's BLAS; stays in force
    if args.memory:
        print_environment(args.threads, args.attn)
        report_memory(args)
        return
    if args.rss_of:
        model = make_torch_model(args.attn)
        params = gpt2.Params(**to_numpy(torch_tensors(model)))
        cfg = gpt2.Config(V=V, D=D, H=H, D_f=D_F, N=N, ctx=CTX)
        x = np.random.default_rng(1).integers(0, V, size=(B, T))
        tokens = torch.from_numpy(x)
        steps = training_steps(model, params, cfg, x, jax=False, threads=args.threads) if args.train else {
            "generated": lambda: generated_step(cfg, params, x),
            "pytorch": lambda: torch_step(model, tokens),
            "hand-numpy": lambda: hand_numpy_step(params, x),
        }
        rss_of(args.rss_of, steps, args.memory_steps)
        return
    print_environment(args.threads, args.attn)
    if args.keep_freed_memory:
        print("glibc malloc: keeps freed memory (mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD = 1 GiB): "
              + ("ok" if keep_freed_memory() else "FAILED, running with the defaults"))
    else:
        print("glibc malloc: defaults (freed large blocks go back to the kernel; see --keep-freed-memory)")

    model = make_torch_model(args.attn)
    params = gpt2.Params(**to_numpy(torch_tensors(model)))
    cfg = gpt2.Config(V=V, D=D, H=H, D_f=D_F, N=N, ctx=CTX)
    x = np.random.default_rng(1).integers(0, V, size=(B, T))
    tokens = torch.from_numpy(x)

    def pytorch_with_grads():
        return torch_step(model, tokens), to_numpy(torch_tensors(model), grad=True)

    check_agreement({
        "generated": lambda: generated_step(cfg, params, x),
        "hand-numpy": lambda: hand_numpy_step(params, x),
        "pytorch": pytorch_with_grads,
    })

    steps = {
        "generated": lambda: generated_step(cfg, params, x),
        "pytorch": lambda: torch_step(model, tokens),
        "hand-numpy": lambda: hand_numpy_step(params, x),
    }
    if args.engines:  # the same step, array-API target, on other engines; agreement checked first
        import engines_gpt2
        more = {"xp-torch": engines_gpt2.torch_step(cfg, params, x),
                "xp-jax-jit": engines_gpt2.jax_step(cfg, params, x)}
        check_agreement({"generated": lambda: generated_step(cfg, params, x), **more})
        steps.update({name: (lambda s=s: s()[0]) for name, s in more.items()})
    if args.check_cost:
        measure_check_cost(cfg, params, x)
        return
    if args.train:
        steps = training_steps(model, params, cfg, x, args.compare, threads=args.threads)
        print("timing whole training steps: forward, loss, backward, AdamW (lr 1e-4, weight decay 0.01)")
    time_round_robin(steps, args.warmup, args.pause)  # warm-up, discarded
    if args.profile:
        profile_generated(steps["generated"])
        return
    report(time_round_robin(steps, args.steps, args.pause, args.burst), args.burst)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
