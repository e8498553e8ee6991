"""Grouped-query attention, before and after integer division: the corpus card
(cards/LLaMAAttention.card: query head h slices key/value head ⌊h·H_kv/H⌋) against the two
forms a card had to take without ⌊…⌋: every query head sums all H_kv key/value heads, an
Iverson bracket keeping its own, either before the scores (H·H_kv head-sized key and value
sums) or over the scores (H·H_kv score products where H suffice).  Forward plus backward of
the generated code, medians of interleaved runs.

    python benchmarks/gqa.py [--rounds 9] [--T 128] [--D 512] [--H 8] [--H_kv 2] [--B 4]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from pathlib import Path

import numpy as np

from cardgen import parse
from cardgen.compile.gradcheck import load_module
from cardgen.lang.check import Library, check

ROOT = Path(__file__).resolve().parent.parent

MASKED = """algorithm Ṽ ← GQAMasked(X, C, S | W_q, W_k, W_v, W_o)
  "Grouped-query attention without ⌊…⌋: each query head sums every key/value head, an Iverson bracket keeping one."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  input  C ∈ ℝ^{T×D/H}
  input  S ∈ ℝ^{T×D/H}
  output Ṽ ∈ ℝ^{T×D}
  hyper  D, H, H_kv ∈ ℕ
  param  W_q, W_o ∈ ℝ^{D×D}
  param  W_k, W_v ∈ ℝ^{D×H_kv·D/H}
   1 Q ← X W_q
   2 K ← X W_k
   3 V ← X W_v
   4 for g ∈ [H_kv] do
   5   R_g ← RoPE(K[:, g · D / H : (g + 1) · D / H], C, S)
   6   U_g ← V[:, g · D / H : (g + 1) · D / H]
   7 end
   8 for h ∈ [H] do
   9   Q_h ← RoPE(Q[:, h · D / H : (h + 1) · D / H], C, S)
  10   K_h ← Σ_{g=0}^{H_kv − 1} ([[g · H ≤ h · H_kv]] ⊙ [[h · H_kv < (g + 1) · H]] ⊙ R_g)
  11   V_h ← Σ_{g=0}^{H_kv − 1} ([[g · H ≤ h · H_kv]] ⊙ [[h · H_kv < (g + 1) · H]] ⊙ U_g)
  12   A_h ← Q_h K_h^⊤ / √(D / H)
  13   ∀t, u: if u > t then A_h[t, u] ← −∞
  14   Y_h ← softmax(A_h) V_h
  15 end
  16 Y ← [Y_0, Y_1, …, Y_{H−1}]
  17 return Ṽ = Y W_o
"""


# The form: every query head scores against every key head, the bracket keeping its own
# (H·H_kv score products of T×T where H suffice).
SCORES = MASKED.replace("GQAMasked(", "GQAScores(").replace(
    "  10   K_h ← Σ_{g=0}^{H_kv − 1} ([[g · H ≤ h · H_kv]] ⊙ [[h · H_kv < (g + 1) · H]] ⊙ R_g)\n", "").replace(
    "  12   A_h ← Q_h K_h^⊤ / √(D / H)\n",
    "  12   A_h ← Σ_{g=0}^{H_kv − 1} ([[g · H ≤ h · H_kv]] ⊙ [[h · H_kv < (g + 1) · H]] ⊙ Q_h R_g^⊤) / √(D / H)\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    for name, default in (("T", 128), ("D", 512), ("H", 8), ("H_kv", 2), ("B", 4)):
        ap.add_argument(f"--{name}", type=int, default=default)
    args = ap.parse_args()
    lib = Library(folders=[str(ROOT / "cards")])
    after = lib.checked("LLaMAAttention")
    masked, scores = parse(MASKED), parse(SCORES)
    lib_before = Library(cards={"GQAMasked": masked, "GQAScores": scores}, folders=[str(ROOT / "cards")])
    w = args.D // args.H
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.B, args.T, args.D))
    angle = np.arange(args.T)[:, None] * 500000.0 ** (-np.arange(0, w, 2) / w)
    C, S = np.cos(np.concatenate([angle, angle], -1)), np.sin(np.concatenate([angle, angle], -1))
    runs = {}
    for label, ch, lb in (("⌊h·H_kv/H⌋ slices", after, lib),
                          ("Iverson K/V sums", check(masked, lib_before), lib_before),
                          ("Iverson score sums", check(scores, lib_before), lib_before)):
        mod = load_module(ch, lb)
        cfg = mod.Config(D=args.D, H=args.H, H_kv=args.H_kv)
        params = mod.init_params(cfg, np.random.default_rng(1), np.float64)
        runs[label] = (mod, cfg, params)
    outs = [mod.forward(cfg, params, X, C, S)[0] for mod, cfg, params in runs.values()]
    assert all(np.allclose(y, outs[0], rtol=1e-10, atol=1e-12) for y in outs), "the cards disagree"

    def step(mod, cfg, params):
        y, cache = mod.forward(cfg, params, X, C, S)
        mod.backward(cfg, params, cache, np.ones_like(y))

    times = {k: [] for k in runs}
    for _ in range(args.rounds):
        for k, r in runs.items():
            times[k].append(min(timeit.repeat(lambda r=r: step(*r), number=1, repeat=3)))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"B={args.B} T={args.T} D={args.D} H={args.H} H_kv={args.H_kv}, float64, forward + backward:")
    for k, v in med.items():
        print(f"  {k:20s} {v * 1e3:8.1f} ms")
    first, *others = times
    for k in others:
        ratio = statistics.median([b / a for a, b in zip(times[first], times[k], strict=True)])
        print(f"  {k} / slices: median of the rounds' ratios {ratio:.2f}×")
    t, w = args.T, args.D // args.H
    print(f"  score products (T×T, inner width {w}): slices {args.H}, Iverson score sums {args.H * args.H_kv}; "
          f"key/value entries formed: slices {args.H * t * w:,}, Iverson K/V sums {args.H * args.H_kv * t * w:,} "
          "(a batch element)")


if __name__ == "__main__":
    main()
