"""Differential fuzzing, the long run: N random well-formed cards (tests/randomcards.py), each
checked, compiled and compared with the reference interpreter (tests/differential.py).

    python scripts/difffuzz.py 2000 --seed 1 [--constructs all|name,name,…] [--save DIR]
    python scripts/difffuzz.py --cards tests/differential_open    # one outcome per card given

Prints how many cards were tried, refused by check, refused by build, crashed the compiler or
the generated module, mismatched the interpreter (forward ≤ 1e-12, gradients ≤ 1e-6), and
agreed; each failure once per kind with its card (``--save`` writes the cards).  By default the
constructs with open bugs (randomcards.OPEN) are left out; ``--constructs all`` draws them too.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cardgen.lang.check import Library, check  # noqa: E402
from cardgen.lang.errors import CardError  # noqa: E402
from cardgen.lang.load import card_paths  # noqa: E402
from cardgen.lang.parse import parse  # noqa: E402
from tests.differential import compare  # noqa: E402
from tests.randomcards import CONSTRUCTS, OPEN, SeededChooser, random_card  # noqa: E402


def one(text: str, seed: int, path: str = "Random.card") -> tuple[str, str]:
    """(outcome, detail) for one card's text."""
    lib = Library(folders=[str(Path(path).parent), str(ROOT / "cards")])
    try:
        card = parse(text, path)
        lib.cards[card.name] = card
        checked = check(card, lib)
    except CardError as e:
        return "refused by check", str(e).splitlines()[0]
    try:
        report = compare(checked, lib, seed=seed)
    except CardError as e:
        return "refused by build", str(e).splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a crash of the compiler or the generated code is a finding
        where = traceback.extract_tb(e.__traceback__)[-1]
        return "crashed", f"{type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
    problems = report.problems()
    return ("mismatch", "; ".join(problems)) if problems else ("agreed", "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, nargs="?", default=0)
    ap.add_argument("--cards", nargs="+", help="compare these card files (or folders) instead of random ones")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--constructs", default="", help="all, or a comma-separated list (default: all but OPEN)")
    ap.add_argument("--save", type=Path, help="write each failing card here")
    args = ap.parse_args(argv)
    if args.constructs == "all":
        constructs = list(CONSTRUCTS)
    elif args.constructs:
        constructs = args.constructs.split(",")
        unknown = [c for c in constructs if c not in CONSTRUCTS]
        if unknown:
            ap.error(f"unknown constructs {unknown}; known: {', '.join(CONSTRUCTS)}")
    else:
        constructs = [c for c in CONSTRUCTS if c not in OPEN]
    if args.cards:
        failed = 0
        for path in card_paths(args.cards):
            outcome, detail = one(path.read_text("utf-8"), args.seed, str(path))
            failed += outcome != "agreed"
            print(f"{path}: {outcome}" + (f": {detail}" if detail else ""))
        return 1 if failed else 0
    counts: collections.Counter = collections.Counter()
    shown: set[str] = set()
    start = time.process_time()
    for i in range(args.n):
        seed = args.seed * 1_000_000 + i
        text = random_card(SeededChooser(seed), constructs=constructs)
        outcome, detail = one(text, seed)
        counts[outcome] += 1
        if outcome != "agreed":
            key = outcome + ": " + re.sub(r"^.*?error: |\d\.\d+e[-+]\d+", "", detail)[:120]
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{outcome.split()[0]}-{seed}.card").write_text(text, "utf-8")
            if key not in shown:
                shown.add(key)
                print(f"--- card {seed}: {outcome}: {detail}\n{text}", flush=True)
    print(f"{args.n} cards tried (seed {args.seed}): " + ", ".join(
        f"{counts[k]} {k}" for k in ("agreed", "mismatch", "crashed", "refused by build", "refused by check"))
        + f"; {time.process_time() - start:.0f} s of CPU")
    return 1 if counts["mismatch"] or counts["crashed"] else 0


if __name__ == "__main__":
    sys.exit(main())
