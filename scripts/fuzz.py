"""Mutation fuzzing of the front end: every card in cards/, mutated at random
(tokens and lines deleted, duplicated, swapped; random Unicode, huge numbers,
deep nesting inserted), must parse and check or fail with a CardError — never
another exception, never a hang.  Time is CPU time (the machine may be
shared); the slowest input is named so that it can be replayed.

    python scripts/fuzz.py [N] [--seed S] [--build]

With --build, every input that checks is also compiled to its module (as `cardgen build`
would), which must compile as Python and hold no code the card did not put there: imports
only of numpy, math and dataclasses, and no name that runs or reads anything else (exec,
eval, open, __import__, os, system…).
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


ALLOWED_IMPORTS = {"__future__", "math", "dataclasses", "numpy"}
FORBIDDEN_NAMES = {"exec", "eval", "compile", "open", "__import__", "os", "sys", "system", "subprocess",
                   "globals", "locals", "input", "breakpoint", "importlib"}


def build(checked, lib, path) -> str:
    """The module of a card that checks: a CardError (a card cardgen cannot compile), or a module
    that compiles and holds only what cardgen writes; anything else raises."""
    import ast

    from cardgen.compile.emit import module_source
    try:
        src = module_source(checked, lib, str(path))
    except CardError:
        return "not built"
    tree = ast.parse(compile(src, str(path), "exec", ast.PyCF_ONLY_AST))
    imports = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    bad = (imports - ALLOWED_IMPORTS) | (names & FORBIDDEN_NAMES)
    if bad:
        raise AssertionError(f"the module holds {sorted(bad)}")
    return "built"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build", action="store_true", help="also compile what checks, and inspect the module")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    cards = {p: p.read_text("utf-8") for p in sorted((ROOT / "cards").glob("*.card"))}
    paths = list(cards)
    parse(cards[paths[0]])  # builds the Lark parser (half a second, once) before anything is timed
    failures, slowest = 0, (0.0, -1, "")
    outcomes = {"ok": 0, "CardError": 0, "built": 0, "not built": 0}
    for i in range(args.n):
        path = rng.choice(paths)
        text = cards[path]
        for _ in range(rng.randint(1, 3)):
            text = mutate(text, rng)
        start = time.process_time()
        try:
            lib = Library(folders=[str(ROOT / "cards")])
            checked = check(parse(text, str(path)), lib)
            outcomes["ok"] += 1
            if args.build:
                outcomes[build(checked, lib, path)] += 1
        except CardError:
            outcomes["CardError"] += 1
        except Exception:
            failures += 1
            print(f"--- input {i} (from {path.name}) raised:\n{text}\n{traceback.format_exc()}", file=sys.stderr)
        slowest = max(slowest, (time.process_time() - start, i, path.name))
    print(f"{args.n} inputs: {outcomes['ok']} checked, {outcomes['CardError']} CardError, "
          f"{failures} other exceptions; slowest {slowest[0] * 1000:.0f} ms of CPU "
          f"(input {slowest[1]}, from {slowest[2]})"
          + (f"; of those checked, {outcomes['built']} built into safe modules, {outcomes['not built']} "
             "refused with a CardError" if args.build else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
