"""Causal attention in row blocks (generator/compile/causal.py), on and off: the generated
CausalSelfAttention module's forward plus backward as cardgen builds it, against the same card
compiled with the plan turned off (every T×T product and softmax pass over the whole square).
Both get the same weights and inputs and must agree before anything is timed; calls interleaved,
medians, one BLAS thread.

    python benchmarks/causal_blocks.py [--B 4] [--T 256 1024] [--D 384] [--H 6] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import cardgen
from cardgen.compile import causal


def modules():
    card = cardgen.load("cards/CausalSelfAttention.card")
    blocked = card.compile()
    plan = causal.plan
    causal.plan = lambda *args, **kwargs: {}
    try:
        whole = cardgen.load("cards/CausalSelfAttention.card").compile()
    finally:
        causal.plan = plan
    return blocked, whole


def measure(blocked, whole, b, t, d, h, rounds):
    cfg = blocked.Config(D=d, H=h)
    rng = np.random.default_rng(0)
    params = blocked.init_params(cfg, rng, np.float32)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    g = rng.standard_normal((b, t, d)).astype(np.float32)
    runs = {"blocked": (blocked, params, {}), "whole": (whole, whole.Params(**vars(params)), {})}

    def step(mod, p, ws):
        y, cache = mod.forward(cfg, p, x, workspace=ws)
        grads, d_in = mod.backward(cfg, p, cache, g, workspace=ws)
        return y, grads, d_in
    (y1, g1, x1), (y2, g2, x2) = (step(*r) for r in runs.values())
    worst = max(float(np.max(np.abs(a - c)) / max(float(np.max(np.abs(c))), 1e-30))
                for a, c in [(y1, y2), (x1["X"], x2["X"])] + [(getattr(g1, k), getattr(g2, k)) for k in vars(g1)])
    if worst > 1e-4:
        raise SystemExit(f"T={t}: the two modules disagree (relative {worst:.1e}); nothing timed")
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for k, r in runs.items():
            start = time.perf_counter()
            step(*r)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, nargs="+", default=[128, 256, 1024])
    ap.add_argument("--D", type=int, default=384)
    ap.add_argument("--H", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    threadpool_limits(1, user_api="blas")
    kernel = next((i.get("architecture") for i in threadpool_info() if i["user_api"] == "blas"), "?")
    print(f"CausalSelfAttention forward + backward, float32, B={args.B} D={args.D} H={args.H}, one BLAS thread "
          f"(kernel {kernel}), medians of {args.rounds} interleaved calls")
    print(f"  {'T':>5} {'blocked ms':>11} {'whole ms':>9} {'blocked / whole':>16}")
    blocked, whole = modules()
    for t in args.T:
        m = measure(blocked, whole, args.B, t, args.D, args.H, args.rounds)
        print(f"  {t:>5} {1e3 * m['blocked']:>11.2f} {1e3 * m['whole']:>9.2f} {m['blocked'] / m['whole']:>16.3f}")


if __name__ == "__main__":
    main()
