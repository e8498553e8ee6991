"""Exact GELU (the generated modules' `_gelu`, with their vectorized erf) against
the tanh approximation, on the issue's 4×64×512 array: medians of interleaved
runs, so that both see the same machine load.

    python benchmarks/gelu.py [--rounds 15]
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

CARD = """algorithm y ← F(x)
  convention rows, 0-based
  input  x ∈ ℝ^D
  output y ∈ ℝ^D
  1 return y = GELU(x)
"""


def tanh_gelu(x):
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    card = parse(CARD)
    lib = Library(cards={"F": card})
    gelu = load_module(check(card, lib), lib)._gelu
    per_erf = np.vectorize(math.erf, otypes=[float])
    x64 = np.random.default_rng(0).standard_normal((4, 64, 512))
    for dtype in (np.float64, np.float32):
        x = x64.astype(dtype)
        times = {"tanh GELU": [], "exact GELU": []}
        for _ in range(args.rounds):
            times["tanh GELU"].append(min(timeit.repeat(lambda x=x: tanh_gelu(x), number=5, repeat=3)) / 5)
            times["exact GELU"].append(min(timeit.repeat(lambda x=x: gelu(x), number=5, repeat=3)) / 5)
        ratios = [e / t for e, t in zip(times["exact GELU"], times["tanh GELU"], strict=True)]
        line = ", ".join(f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in times.items())
        print(f"{np.dtype(dtype).name}: {line}; exact / tanh: median {statistics.median(ratios):.2f}×")
    t = min(timeit.repeat(lambda: 0.5 * x64 * (1 + per_erf(x64 / math.sqrt(2))), number=1, repeat=3))
    print(f"float64: math.erf once per element (before): {t * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
