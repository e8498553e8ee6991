"""`cardgen check DIR` and `cardgen build` on several cores (api/parallel.py): forked workers each
take files and send back errors and module texts; the report must be the one process's, byte for
byte and in the same order, whatever the number of workers.

Only a process that runs one thread forks (a fork copies the locks other threads hold), and this
test process runs several (NumPy's BLAS has started its own): the workers are exercised in fresh
processes that import cardgen and nothing else, as the `cardgen` command does."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import subprocess
import sys

import pytest

from cardgen.api import check
from cardgen.api.checking import check_errors
from cardgen.api.outputs import build_report
from cardgen.api.parallel import single_threaded, workers

from . import test_errors as te
from .conftest import ROOT
from .test_check_builds import SUPPORTED, UNSUPPORTED, write

pytestmark = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods() or sys.platform != "linux",
                                reason="no fork (or no /proc/self/task) here: nothing runs in parallel")

# Run in a fresh process: records which files were checked in the process itself (not in a worker)
# and prints what the code given as argv[1] leaves in `out`, as JSON.
HARNESS = """
import json, os, sys
from cardgen.api import checking
assert len(os.listdir("/proc/self/task")) == 1, "the harness must run one thread"
here = []
real = checking._file_errors
def spy(f, *args):
    here.append(str(f))
    return real(f, *args)
checking._file_errors = spy
out = {}
exec(sys.argv[1])
out["here"] = here
print(json.dumps(out))
"""


def isolated(code: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", HARNESS, code, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={k: v for k, v in os.environ.items() if k != "CARDGEN_JOBS"})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def cardgen(*args: str, jobs: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cardgen.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=300, env=dict(os.environ, CARDGEN_JOBS=jobs))


def cards_folder(d, cycles: bool):
    """Cards that check, build, and fail in each stage: parse, names, calls, lowering (and, with
    ``cycles``, cards that call each other)."""
    for key in ("elman", "join-of-two-arrays", "iverson-arithmetic", "corpus-gru"):
        text = SUPPORTED[key]
        write(d, text, text.split("←", 1)[1].split("(", 1)[0].strip())
    for key in ("write-into-part-of-an-array", "recurrence-reads-what-it-writes"):
        text = UNSUPPORTED[key][0]
        write(d, text, text.split("←", 1)[1].split("(", 1)[0].strip())
    for name, text in [("double", te.DOUBLE_BROKEN), ("usesdouble", te.ret_vector("usesdouble", "double(x)")),
                       ("unparsed", te.ret_vector("unparsed", "x +* x")), ("proj", te.PROJ_OK)]:
        write(d, text, name)
    if cycles:
        for name, text in [("ping", te.PING), ("pong", te.PONG), ("selfie", te.SELFIE)]:
            write(d, text, name)
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return cards_folder(tmp_path_factory.mktemp("mixed"), cycles=False)


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_in_workers_reports_what_one_process_does(folder, fmt):
    parallel = isolated("from cardgen.api.checking import check_errors\n"
                        "report = check_errors([sys.argv[2]], jobs=3)\n"
                        "out['report'] = report.format(sys.argv[3])\n"
                        "out['files'] = [str(f.path) for f in report.files]",
                        str(folder), fmt)
    assert parallel["here"] == []  # all in the workers
    serial = check_errors([folder], jobs=1)
    assert parallel["files"] == [str(f.path) for f in serial.files] == [str(f) for f in sorted(folder.glob("*.card"))]
    assert len(serial.errors) >= 5  # the folder's broken cards, each refused
    assert parallel["report"] == serial.format(fmt)
    assert serial.format(fmt) == check([folder]).format(fmt)  # and what the API with its cards says


def test_cycles_are_named_as_one_process_names_them(tmp_path):
    """Which card of a cycle is checked first names the cycle; workers would meet them in another
    order, so a report with a cycle is made again in one process."""
    d = cards_folder(tmp_path, cycles=True)
    parallel = isolated("from cardgen.api.checking import check_errors\n"
                        "out['report'] = check_errors([sys.argv[2]], jobs=2).format()", str(d))
    assert parallel["here"] == [str(f) for f in sorted(d.glob("*.card"))]  # done again in the process itself
    assert parallel["report"] == check([d]).format()
    assert "in a cycle: ping → pong → ping" in parallel["report"]


def test_a_process_that_runs_threads_does_not_fork(folder, monkeypatch):
    """This process runs several threads (NumPy's BLAS): asked for workers, it checks every file
    itself, with the same report."""
    import numpy  # noqa: F401 - its BLAS threads, if nothing else had started any
    assert not single_threaded() and workers(20, 4) == 1
    from cardgen.api import checking
    here = []
    real = checking._file_errors
    monkeypatch.setattr(checking, "_file_errors", lambda f, *a: here.append(f) or real(f, *a))
    report = check_errors([folder], jobs=3)
    assert here == sorted(folder.glob("*.card"))
    assert report.format() == check([folder]).format()


def test_the_cli_prints_the_same_with_workers_or_without(folder):
    runs = [cardgen("check", str(folder), jobs=j) for j in ("1", "2")]
    assert runs[0].returncode == runs[1].returncode == 1
    assert (runs[0].stdout, runs[0].stderr) == (runs[1].stdout, runs[1].stderr)
    assert "failed" in runs[0].stdout + runs[0].stderr


def test_standard_input_is_read_in_this_process(folder):
    """A forked worker's standard input is not the command's: with `-` among the files, no workers."""
    run = cardgen("check", "-", str(folder), jobs="2", stdin=te.PROJ_OK)
    serial = cardgen("check", "-", str(folder), jobs="1", stdin=te.PROJ_OK)
    assert (run.stdout, run.stderr) == (serial.stdout, serial.stderr)
    assert "<stdin>" not in run.stdout + run.stderr  # the card on standard input checks


def test_build_in_workers_makes_the_same_modules(folder, tmp_path):
    serial = build_report([folder], tmp_path / "a", check_only=True, jobs=1)
    parallel = isolated("from cardgen.api.outputs import build_report\n"
                        "r = build_report([sys.argv[2]], sys.argv[3], check_only=True, jobs=2)\n"
                        "out.update(errors=[str(e) for e in r.errors], modules=[str(m) for m in r.modules], "
                        "changed=[[str(f), old, new] for f, old, new in r.changed])", str(folder), str(tmp_path / "a"))
    assert parallel["errors"] == [str(e) for e in serial.errors]
    assert len(serial.errors) >= 5 and len(serial.changed) >= 4
    assert parallel["changed"] == [[str(f), old, new] for f, old, new in serial.changed]
    assert parallel["modules"] == [str(m) for m in serial.modules]


def test_an_error_in_a_worker_is_raised_here():
    out = isolated("from cardgen.api.parallel import map_files\n"
                   "divide = lambda n, libs: 12 // n\n"
                   "try:\n    map_files(divide, [1, 2, 0, 4], jobs=2)\nexcept ZeroDivisionError:\n"
                   "    out['raised'] = True\n"
                   "out['values'] = map_files(divide, [1, 2, 4], jobs=2)")
    assert out["raised"] and out["values"] == [12, 6, 3]


def test_a_card_error_pickles_whole():
    from cardgen.compile.lower import LoweringError
    from cardgen.lang.check import FollowOnError
    from cardgen.lang.ir import Pos
    err = LoweringError("no such thing", Pos(2, 3, 2, 7), hint="try another").located("a.card", "x\nab = cdefgh\n")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is LoweringError and str(back) == str(err)
    assert (back.message, back.pos, back.hint, back.path) == (err.message, err.pos, err.hint, err.path)
    assert "^^^^" in str(back) and "hint: try another" in str(back)
    follow = pickle.loads(pickle.dumps(FollowOnError().located("a.card", "x\n")))  # __init__ takes no message
    assert type(follow) is FollowOnError and str(follow) == str(FollowOnError().located("a.card", "x\n"))
