"""Stop a training run at random moments, over and over, and check it ends bit-identical.

    python scripts/kill_resume.py [STOPS] [--card GPT2] [--seed S]

Trains a small model once straight through, then again in forked children that are stopped by
SIGINT, SIGTERM or SIGKILL at random moments (uniform over a twelfth of the straight run's time)
and resumed from the folder's checkpoint each time, until STOPS stops have landed and the run has
finished; then compares every tensor, the RNG state and the log (but for tokens/s) bit for bit.
The short version of this runs in CI (tests/test_train_runs.py); this one runs as long as asked.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cardgen.lang.load import library_for, load  # noqa: E402
from cardgen.train import cards as tc  # noqa: E402
from cardgen.train import checkpoint as ckpt  # noqa: E402
from cardgen.train import run as rn  # noqa: E402
from cardgen.train.trainer import split  # noqa: E402

SIZES = {"GPT2": {"D": 16, "H": 2, "D_f": 32, "N": 2, "ctx": 16}, "Bigram": {}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stops", nargs="?", type=int, default=100)
    ap.add_argument("--card", default="GPT2", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    lib = library_for(str(ROOT / "cards" / f"{args.card}.card"))
    card, _ = load(str(ROOT / "cards" / f"{args.card}.card"), lib)
    checked = tc.check_model(lib, card.name)
    mods, texts = tc.compile_modules(checked, lib, SIZES[args.card]), tc.card_texts(checked, lib)
    data = (ROOT / "generator" / "lang" / "check.py").read_bytes()
    train, val = split(data)
    settings = rn.Settings(steps=args.steps, batch=2, seq=8, lr=1e-2, lr_min=1e-3, warmup=20, weight_decay=0.1,
                           clip=1.0, accumulate=2, seed=args.seed, dtype="float32",
                           data=rn.data_identity("check.py", data), eval_every=7, save_every=5)

    def life(folder: Path) -> int:
        run = rn.Run(folder, mods, texts, settings, train, val)
        if (folder / rn.CHECKPOINT).exists():
            ck = ckpt.open_checkpoint(folder / rn.CHECKPOINT)
            run.resume(ck)
            ck.close()
        else:
            run.start()
        stopped = run.train()
        return 0 if stopped is None else 128 + stopped

    def forked(folder: Path) -> int:
        pid = os.fork()
        if pid == 0:
            status = 97
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                status = life(folder)
            except KeyboardInterrupt:
                status = 130
            finally:
                os._exit(status)
        return pid

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        life(Path(tmp) / "straight")
        whole = time.perf_counter() - began
        rand = random.Random(args.seed)
        counts = {s.name: 0 for s in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)}
        finished, runs = 0, 0
        while True:
            folder = Path(tmp) / f"stopped-{runs}"
            while True:
                pid = forked(folder)
                time.sleep(rand.uniform(0, whole / 12))
                sig = rand.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
                os.kill(pid, sig)
                _, status = os.waitpid(pid, 0)
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                    break
                counts[sig.name] += 1
            runs += 1
            want, got = final(Path(tmp) / "straight"), final(folder)
            same = want[:2] == got[:2] and all(np.array_equal(want[2][k], got[2][k]) for k in want[2]) \
                and want[2].keys() == got[2].keys()
            finished += same
            print(f"run {runs}: {'bit-identical' if same else 'DIFFERENT'}; stops so far {counts}", flush=True)
            if not same:
                return 1
            if sum(counts.values()) >= args.stops:
                break
    print(f"{runs} runs, {sum(counts.values())} stops ({counts}), all bit-identical to the straight run "
          f"({args.card}, {args.steps} steps)")
    return 0


def final(folder: Path):
    ck = ckpt.open_checkpoint(folder / rn.CHECKPOINT)
    try:
        return ck.step, ck.rng, {k: ck.file.tensor(k) for k in ck.file.entries}
    finally:
        ck.close()


if __name__ == "__main__":
    sys.exit(main())
