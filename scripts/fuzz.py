"""Mutation fuzzing of the front end: every card in cards/, mutated at random
(tokens and lines deleted, duplicated, swapped; random Unicode, huge numbers,
deep nesting inserted), must parse and check or fail with a CardError — never
another exception, never a hang.  Time is CPU time (the machine may be
shared); the slowest input is named so that it can be replayed.

    python scripts/fuzz.py [N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import traceback
from pathlib import Path

from cardgen import CardError, parse
from cardgen.lang.check import Library, check

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"\s+|\w+|.", re.S)
JUNK = ["∈", "←", "(", ")", "[", "]", "{", "}", "|", "^", "_", "Σ", "√", "·", "⊙", "−", "∞", "ℝ", "for",
        "do", "end", "return", "if", "then", "∀", ":", ",", ";", "…", "[[", "]]", "1^⊤", "▷ x ∈ ℝ",
        "\n", "99999999999999999999999", "1e309", "ℓ", "𝓦", "\x00", "\u2028", '"', "\\", "#"]


def mutate(text: str, rng: random.Random) -> str:
    toks = TOKEN.findall(text)
    lines = text.splitlines(keepends=True)
    kind = rng.randrange(8)
    if kind == 0 and toks:
        del toks[rng.randrange(len(toks))]
    elif kind == 1 and toks:
        i = rng.randrange(len(toks))
        toks.insert(i, toks[i])
    elif kind == 2 and len(toks) > 1:
        i, j = rng.randrange(len(toks)), rng.randrange(len(toks))
        toks[i], toks[j] = toks[j], toks[i]
    elif kind == 3:
        toks.insert(rng.randrange(len(toks) + 1), rng.choice(JUNK))
    elif kind == 4:
        toks.insert(rng.randrange(len(toks) + 1), chr(rng.randrange(0x20, 0x2FFFF)))
    elif kind == 5 and lines:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    elif kind == 6 and lines:
        del lines[rng.randrange(len(lines))]
        return "".join(lines)
    else:
        depth = rng.choice([5, 50, 500])
        toks.insert(rng.randrange(len(toks) + 1), "(" * depth + "x" + ")" * depth)
    return "".join(toks)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    cards = {p: p.read_text("utf-8") for p in sorted((ROOT / "cards").glob("*.card"))}
    paths = list(cards)
    parse(cards[paths[0]])  # builds the Lark parser (half a second, once) before anything is timed
    failures, slowest, outcomes = 0, (0.0, -1, ""), {"ok": 0, "CardError": 0}
    for i in range(args.n):
        path = rng.choice(paths)
        text = cards[path]
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        start = time.process_time()
        try:
            check(parse(text, str(path)), Library(folders=[str(ROOT / "cards")]))
            outcomes["ok"] += 1
        except CardError:
            outcomes["CardError"] += 1
        except Exception:
            failures += 1
            print(f"--- input {i} (from {path.name}) raised:\n{text}\n{traceback.format_exc()}", file=sys.stderr)
        slowest = max(slowest, (time.process_time() - start, i, path.name))
    print(f"{args.n} inputs: {outcomes['ok']} checked, {outcomes['CardError']} CardError, "
          f"{failures} other exceptions; slowest {slowest[0] * 1000:.0f} ms of CPU "
          f"(input {slowest[1]}, from {slowest[2]})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
