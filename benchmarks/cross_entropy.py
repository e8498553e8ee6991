"""The cross_entropy card's own (fused) backward rule against the backward cardgen derives from the
same card without its rule: forward + backward of the loss, interleaved rounds, medians, and the two
gradients' largest relative difference.

    python benchmarks/cross_entropy.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import cardgen

CARDS = Path(__file__).resolve().parent.parent / "cards"
SIZES = ((4, 64, 50257), (8, 1024, 512))  # (B, T, V): GPT-2's vocabulary, and a long context


def modules():
    text = (CARDS / "cross_entropy.card").read_text("utf-8")
    derived = text[: text.index("\n  backward")] + "\n"  # the card without its rule
    return {name: cardgen.loads(t, path=[CARDS]).compile() for name, t in (("fused", text), ("derived", derived))}


def step(m, logits, y, d, ws):
    _, cache = m.forward(m.Config(), m.Params(), logits, y, workspace=ws)
    return m.backward(m.Config(), m.Params(), cache, d, workspace=ws)[1]["P"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    mods = modules()
    for dtype in (np.float32, np.float64):
        for b, t, v in SIZES:
            rng = np.random.default_rng(0)
            logits = rng.standard_normal((b, t, v)).astype(dtype)
            y = rng.integers(0, v, (b, t))
            d = np.full(b, 1.0 / b, dtype)
            spaces = {name: {} for name in mods}
            grads = {name: step(m, logits, y, d, spaces[name]).copy() for name, m in mods.items()}
            diff = float(np.max(np.abs(grads["fused"] - grads["derived"])) / np.max(np.abs(grads["derived"])))
            times = {name: [] for name in mods}
            for _ in range(args.rounds):
                for name, m in mods.items():
                    t0 = time.perf_counter()
                    step(m, logits, y, d, spaces[name])
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            print(f"{np.dtype(dtype).name:7} B={b} T={t:<4} V={v:<5}  fused {med['fused'] * 1e3:7.1f} ms  "
                  f"derived {med['derived'] * 1e3:7.1f} ms  ratio {med['fused'] / med['derived']:.2f}  "
                  f"max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
