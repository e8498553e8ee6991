"""Time the front end as a person (or an editor on every keystroke) meets it: each command in a new
process, as the `cardgen` on PATH runs it, medians of several runs.

    python benchmarks/frontend.py [--runs 5] [--cardgen PATH]

Rows: `cardgen --help`, `cardgen check` of one card and of the corpus, `cardgen build --check` and
`cardgen build` of the corpus (into a temporary folder). Each command runs once untimed first, so
the parser cache (see `cardgen.lang.parse.cache_dir`) holds the current grammar's parser, as it
does after any first run; `--no-cache` times every run without it (CARDGEN_CACHE_DIR=off). The
same untimed run writes cardgen's bytecode (`__pycache__`), as installing a wheel does: the
children run without PYTHONDONTWRITEBYTECODE unless `--no-bytecode` is given.

Wall time is what a person waits; CPU time (user + system, from the child's rusage) is what the
process itself spent, and moves less when other work shares the machine. The targets are the
issue's (wall, cold, median): --help < 0.2 s, one card < 0.3 s, the corpus < 1 s, build < 3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_once(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv`` in a new process; it must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}:\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per command (default 5)")
    ap.add_argument("--cardgen", default=shutil.which("cardgen") or "cardgen", help="the cardgen to run")
    ap.add_argument("--no-cache", action="store_true", help="run without the parser cache")
    ap.add_argument("--no-bytecode", action="store_true", help="compile cardgen's sources in every run")
    args = ap.parse_args()

    env = dict(os.environ)
    if args.no_cache:
        env["CARDGEN_CACHE_DIR"] = "off"
    if not args.no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = tempfile.mkdtemp(prefix="cardgen-bench-")
    rows = [
        ("cardgen --help", [args.cardgen, "--help"], 0.2),
        ("cardgen check cards/GPT2.card", [args.cardgen, "check", "cards/GPT2.card"], 0.3),
        ("cardgen check cards/LayerNorm.card", [args.cardgen, "check", "cards/LayerNorm.card"], 0.3),
        ("cardgen check cards/", [args.cardgen, "check", "cards/"], 1.0),
        ("cardgen build --check", [args.cardgen, "build", "--check"], 3.0),
        ("cardgen build -o TMP", [args.cardgen, "build", "-o", out], 3.0),
    ]
    print(f"{args.runs} runs each, new process per run; parser cache {'off' if args.no_cache else 'on'}; "
          f"bytecode {'off' if args.no_bytecode else 'on'}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'command':36} {'wall median':>12} {'min':>8} {'CPU median':>11} {'target':>8}")
    try:
        for label, argv, target in rows:
            run_once(argv, env)  # untimed: fills the parser cache; the build writes its modules
            if label.startswith("cardgen build -o"):
                shutil.rmtree(out)  # so each timed build writes every module
            times = []
            for _ in range(args.runs):
                times.append(run_once(argv, env))
                if label.startswith("cardgen build -o"):
                    shutil.rmtree(out)
            walls = [w for w, _ in times]
            cpus = [c for _, c in times]
            wall = statistics.median(walls)
            verdict = "ok" if wall < target else "OVER"
            print(f"{label:36} {wall:10.3f} s {min(walls):6.3f} s {statistics.median(cpus):9.3f} s "
                  f"{'< ' + format(target, 'g'):>6} s {verdict}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
