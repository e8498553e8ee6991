"""Exact GELU against the tanh approximation, forward and backward, on the issue's 4×64×512 array
in float64 and float32: medians of interleaved runs, so that every row sees the same machine load.

Rows (each a forward and a backward with a gradient of ones):
- exact GELU: the module cardgen generates for `return y = GELU(x)` (its `_gelu`, `_gelu_grad`);
- tanh GELU, generated: the module for `return y = GELU_tanh(x)` (cards/GELU_tanh.card), the same
  module contract, so the fair comparison;
- tanh GELU, by hand: the tanh formula and its closed-form derivative in NumPy, in place (the
  cheapest tanh GELU NumPy can do; a bar, not something cardgen generates).
Both generated modules run with a workspace, as training runs them.

    python benchmarks/gelu.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import math
import statistics
import timeit

import numpy as np

from cardgen import parse
from cardgen.compile.gradcheck import load_module
from cardgen.lang.check import Library, check

C = 0.7978845608028654  # √(2/π)


def module_for(body: str):
    card = parse(f"algorithm y ← F(x)\n  convention rows, 0-based\n  input  x ∈ ℝ^D\n  output y ∈ ℝ^D\n"
                 f"  1 return y = {body}\n")
    lib = Library(folders=["cards"])
    lib.cards["F"] = card
    return load_module(check(card, lib), lib)


def generated_step(mod):
    cfg, params, ws = mod.Config(), mod.Params(), {}

    def step(x, g):
        _, cache = mod.forward(cfg, params, x, workspace=ws)
        return mod.backward(cfg, params, cache, g, workspace=ws)
    return step


def by_hand_step():
    bufs: dict = {}

    def step(x, g):
        if "u" not in bufs or bufs["u"].shape != x.shape or bufs["u"].dtype != x.dtype:
            bufs.update({k: np.empty_like(x) for k in ("u", "th", "y", "d")})
        u, th, y, d = bufs["u"], bufs["th"], bufs["y"], bufs["d"]
        np.multiply(x, x, out=u)               # forward: ½ x (1 + tanh(C (x + 0.044715 x³)))
        u *= 0.044715
        u += 1.0
        u *= x
        u *= C
        np.tanh(u, out=th)
        np.add(th, 1.0, out=y)
        y *= x
        y *= 0.5
        np.multiply(th, th, out=d)             # backward: ½ (1 + th) + ½ x (1 − th²) C (1 + 3·0.044715 x²)
        np.subtract(1.0, d, out=d)
        np.multiply(x, x, out=u)
        u *= 3 * 0.044715
        u += 1.0
        u *= C
        d *= u
        d *= x
        d += th
        d += 1.0
        d *= 0.5
        d *= g
        return y, d
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    rows = {"exact GELU": generated_step(module_for("GELU(x)")),
            "tanh GELU, generated": generated_step(module_for("GELU_tanh(x)")),
            "tanh GELU, by hand": by_hand_step()}
    x64 = np.random.default_rng(0).standard_normal((4, 64, 512))
    for dtype in (np.float64, np.float32):
        x = x64.astype(dtype)
        g = np.ones_like(x)
        times: dict[str, list[float]] = {k: [] for k in rows}
        for _ in range(args.rounds):
            for name, step in rows.items():
                times[name].append(min(timeit.repeat(lambda s=step, x=x, g=g: s(x, g), number=5, repeat=3)) / 5)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratios = {k: statistics.median(e / t for e, t in zip(times["exact GELU"], v, strict=True))
                  for k, v in times.items() if k != "exact GELU"}
        print(f"{np.dtype(dtype).name}, forward + backward: "
              + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in medians.items()))
        print("    exact / " + ", exact / ".join(f"{k}: {r:.2f}×" for k, r in ratios.items()))
    per_erf = np.vectorize(math.erf, otypes=[float])
    t = min(timeit.repeat(lambda: 0.5 * x64 * (1 + per_erf(x64 / math.sqrt(2))), number=1, repeat=3))
    print(f"float64: math.erf once per element, forward only (before): {t * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
