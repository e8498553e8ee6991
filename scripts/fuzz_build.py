"""Mutation fuzzing of `check means it builds`: every card in cards/, mutated at random
(scripts/fuzz.py's mutations), that `cardgen check` accepts must compile and run: gradcheck of its
module raises nothing and stays within tolerance (training and inference cards too: build skips
no card).  Anything else is printed with the input's number and saved, to be replayed.

    python scripts/fuzz_build.py [N] [--seed S] [--out DIR]

Prints: inputs tried, refused by the checker, refused by lowering (check and build alike),
modules that refused gradcheck's small sizes with a documented ValueError (a
sum from 11 on a sequence of 3), compiled and run, and the failures: bugs (an exception that is not
a CardError), other run-time errors of a module, gradients over tolerance.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from fuzz import mutate  # scripts/fuzz.py, beside this script

from cardgen import CardError, parse
from cardgen.cli import raised_by_input_check
from cardgen.compile.gradcheck import TOL, gradcheck
from cardgen.compile.verify import buildable
from cardgen.lang.check import Library, check

ROOT = Path(__file__).resolve().parent.parent


def one(text: str, name: str) -> str:
    """What became of one input: a verdict word, then any detail."""
    lib = Library(folders=[str(ROOT / "cards")])
    try:
        card = parse(text, f"{name}.card")
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
        checked = check(card, lib)
    except CardError:
        return "checker"
    try:
        buildable(checked, lib)
    except CardError:
        return "lowering"
    except Exception as e:  # noqa: BLE001 - the point: anything but a CardError is a bug
        return f"BUG {type(e).__name__}: {e}"
    try:
        worst = gradcheck(checked, lib).worst
    except Exception as e:  # noqa: BLE001
        if raised_by_input_check(e):  # the module refusing gradcheck's small sizes, in the card's terms
            return "input"
        return f"RUN {type(e).__name__}: {e}"
    return "ok" if worst <= TOL else f"GRAD {worst:.1e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz_build_failures", help="Folder for failing inputs.")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    corpus = [(p.stem, p.read_text("utf-8")) for p in sorted((ROOT / "cards").glob("*.card"))]
    counts: dict[str, int] = {}
    start = time.process_time()
    for i in range(args.n):
        name, text = rng.choice(corpus)
        for _ in range(rng.choice((1, 1, 2))):
            text = mutate(text, rng)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            continue  # a lone surrogate: no card file can hold one
        verdict = one(text, name)
        key = verdict.split(" ", 1)[0]
        counts[key] = counts.get(key, 0) + 1
        if key not in ("checker", "lowering", "input", "ok"):
            out = Path(args.out)
            out.mkdir(exist_ok=True)
            (out / f"{args.seed}-{i}.card").write_text(text, "utf-8")
            print(f"input {i}: {verdict[:300]}", flush=True)
    tried = sum(counts.values())
    print(f"{tried} inputs (seed {args.seed}, {time.process_time() - start:.0f} s of CPU): "
          f"{counts.get('checker', 0)} refused by the checker, {counts.get('lowering', 0)} refused by "
          f"lowering, {counts.get('input', 0)} refused gradcheck's "
          f"sizes in the card's terms, {counts.get('ok', 0)} compiled and "
          f"gradchecked; {counts.get('BUG', 0)} bugs, {counts.get('RUN', 0)} run-time errors, "
          f"{counts.get('GRAD', 0)} gradients over tolerance")
    return 1 if any(counts.get(k) for k in ("BUG", "RUN", "GRAD")) else 0


if __name__ == "__main__":
    sys.exit(main())
