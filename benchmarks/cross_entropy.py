"""The cross_entropy card's own (fused) backward rule against the backward cardgen derives from the
same card without its rule: forward + backward of the loss, interleaved rounds, medians, and the two
gradients' largest relative difference.

    python benchmarks/cross_entropy.py [--rounds 9] [--gpt2]

``--gpt2`` times the whole training step instead (the trainer's loss_and_grads: GPT2 forward, the
loss, GPT2 backward) at benchmarks/gpt2_step.py's size, V=256, T=128, D=128, H=4, N=4, B=8, float32.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import cardgen

CARDS = Path(__file__).resolve().parent.parent / "cards"
SIZES = ((4, 64, 50257), (8, 1024, 512), (8, 128, 256))  # (B, T, V): GPT-2's vocabulary, a long context, gpt2_step.py's


def modules():
    text = (CARDS / "cross_entropy.card").read_text("utf-8")
    derived = text[: text.index("\n  backward")] + "\n"  # the card without its rule
    return {name: cardgen.loads(t, path=[CARDS]).compile() for name, t in (("fused", text), ("derived", derived))}


def step(m, logits, y, d, ws):
    _, cache = m.forward(m.Config(), m.Params(), logits, y, workspace=ws)
    return m.backward(m.Config(), m.Params(), cache, d, workspace=ws)[1]["P"]


def gpt2_step(mods, rounds: int):
    from cardgen.train.trainer import Trainer
    gpt2 = cardgen.load(CARDS / "GPT2.card").compile()
    cfg = gpt2.Config(V=256, D=128, H=4, D_f=512, N=4, ctx=128)
    params = gpt2.init_params(cfg, np.random.default_rng(0), np.float32)
    tokens = np.random.default_rng(1).integers(0, 256, size=(8, 129))
    trainers = {name: Trainer(gpt2, m, None, cfg) for name, m in mods.items()}
    spaces = {name: {} for name in mods}
    grads = {name: t.loss_and_grads(params, tokens, spaces[name])[1] for name, t in trainers.items()}
    diff = max(float(np.max(np.abs(getattr(grads["fused"], f) - getattr(grads["derived"], f)))
                     / np.max(np.abs(getattr(grads["derived"], f)))) for f in gpt2.Params.__dataclass_fields__)
    times = {name: [] for name in mods}
    for _ in range(rounds):
        for name, t in trainers.items():
            t0 = time.perf_counter()
            t.loss_and_grads(params, tokens, spaces[name])
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"GPT-2 training step, float32: fused {med['fused'] * 1e3:.1f} ms  derived {med['derived'] * 1e3:.1f} ms  "
          f"ratio {med['fused'] / med['derived']:.3f}  max relative difference of the gradients {diff:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--gpt2", action="store_true", help="time the whole GPT-2 training step")
    args = ap.parse_args()
    mods = modules()
    if args.gpt2:
        gpt2_step(mods, args.rounds)
        return
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
