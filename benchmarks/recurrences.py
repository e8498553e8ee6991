"""The recurrence cards (cards/RNN.card, LSTM.card, GRU.card) against PyTorch's own layers
(torch.nn.RNN, LSTM, GRU, eager, batch_first): forward plus backward of a batch of sequences, the
same weights, interleaved rounds, medians, both on the same thread count. Both must agree on the
output and every gradient before anything is timed.

    python benchmarks/recurrences.py [--d_x 64] [--d_h 128] [--ell 64] [--B 16] [--rounds 15] [--threads 1]
    python benchmarks/recurrences.py --compare REV   # also the generated modules of git revision REV

PyTorch runs each layer as fused cuDNN-style CPU kernels; the generated modules run one NumPy call
per card operation and time step, so at small sizes a step's Python overhead is what they pay.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"RNN": (torch.nn.RNN, 1, ()), "LSTM": (torch.nn.LSTM, 4, ("c_0",)), "GRU": (torch.nn.GRU, 3, ())}
TENSORS = {"W_x": "weight_ih_l0", "b_x": "bias_ih_l0", "W_h": "weight_hh_l0", "b_h": "bias_hh_l0"}


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def revision_module(rev: str, card: str, folder: Path):
    text = subprocess.run(["git", "show", f"{rev}:generated/{card}.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = folder / f"{card}_{rev}.py"
    path.write_text(text, "utf-8")
    return load(path, f"rev_{rev}_{card}")


def columns(a):
    return np.swapaxes(a, -1, -2)


def contenders(card: str, args, old):
    """name -> step(): forward plus backward, the same weights and data for each."""
    layer_type, gates, extra = LAYERS[card]
    rng = np.random.default_rng(0)
    d_x, d_h = args.d_x, args.d_h
    shapes = {"W_x": (gates * d_h, d_x), "b_x": (gates * d_h,), "W_h": (gates * d_h, d_h), "b_h": (gates * d_h,)}
    weights = {k: (0.1 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    X = rng.standard_normal((args.B, args.ell, d_x)).astype(np.float32)
    dY = rng.standard_normal((args.B, args.ell, d_h)).astype(np.float32)
    states = {s: rng.standard_normal((args.B, d_h)).astype(np.float32) for s in ("h_0", *extra)}
    steps, results = {}, {}

    def generated(module):
        cfg, params, ws = module.Config(d_x=d_x, d_h=d_h), module.Params(**weights), {}

        def step():
            Y, cache = module.forward(cfg, params, columns(X), *states.values(), workspace=ws)
            grads, d_in = module.backward(cfg, params, cache, columns(dY), workspace=ws)
            return columns(Y), {k: getattr(grads, k) for k in TENSORS}, columns(d_in["X"])
        return step

    steps["generated"] = generated(load(ROOT / "generated" / f"{card}.py", f"generated_{card}"))
    for rev, module in old.items():
        steps[f"gen@{rev}"] = generated(module)
    layer = layer_type(d_x, d_h, batch_first=True)
    with torch.no_grad():
        for k, hf in TENSORS.items():
            getattr(layer, hf).copy_(torch.from_numpy(weights[k]))
    Xt = torch.from_numpy(X).requires_grad_(True)
    st = tuple(torch.from_numpy(v[None]) for v in states.values())
    dYt = torch.from_numpy(dY)

    def pytorch():
        layer.zero_grad(set_to_none=True)
        Xt.grad = None
        Y, _ = layer(Xt, st if extra else st[0])
        Y.backward(dYt)
        return Y.detach().numpy(), {k: getattr(layer, hf).grad.numpy() for k, hf in TENSORS.items()}, Xt.grad.numpy()
    steps["pytorch"] = pytorch
    for name, step in steps.items():
        Y, grads, dX = step()
        results[name] = (Y.copy(), {k: v.copy() for k, v in grads.items()}, dX.copy())
    ref = results["pytorch"]
    for name, (Y, grads, dX) in results.items():
        pairs = [(Y, ref[0]), (dX, ref[2])] + [(grads[k], ref[1][k]) for k in TENSORS]
        worst = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in pairs)
        if worst > 1e-4:
            raise SystemExit(f"{card}: {name} disagrees with PyTorch (relative {worst:.1e}); nothing timed")
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d_x", type=int, default=64)
    ap.add_argument("--d_h", type=int, default=128)
    ap.add_argument("--ell", type=int, default=64)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", action="append", default=[], metavar="REV")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"recurrences, forward + backward, float32: d_x={args.d_x} d_h={args.d_h} ℓ={args.ell} B={args.B}; "
          f"{args.threads} thread(s); torch {torch.__version__} eager; medians of {args.rounds} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(args.threads):
        for card in LAYERS:
            old = {rev: revision_module(rev, card, Path(tmp)) for rev in args.compare}
            steps = contenders(card, args, old)
            times = {name: [] for name in steps}
            for _ in range(2):  # warm-up
                for step in steps.values():
                    step()
            for _ in range(args.rounds):
                for name, step in steps.items():
                    start = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - start)
            med = {name: statistics.median(t) for name, t in times.items()}
            cells = "  ".join(f"{name} {1e3 * t:7.2f} ms" for name, t in med.items())
            ratios = "  ".join(f"{name}/pytorch {t / med['pytorch']:.2f}x" for name, t in med.items()
                               if name != "pytorch")
            print(f"  {card:5s} {cells}   {ratios}")


if __name__ == "__main__":
    main()
