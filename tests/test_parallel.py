"""`cardgen check DIR` and `cardgen build` on several cores (api/parallel.py): forked workers each
take files and send back errors and module texts; the report must be the one process's, byte for
byte and in the same order, whatever the number of workers."""

from __future__ import annotations

import pickle

import pytest
from click.testing import CliRunner

from cardgen.api import check, checking
from cardgen.api.checking import check_errors
from cardgen.api.outputs import build_report
from cardgen.api.parallel import map_files, workers
from cardgen.cli import main

from . import test_errors as te
from .test_check_builds import SUPPORTED, UNSUPPORTED, write

pytestmark = pytest.mark.skipif(workers(8, 2) < 2, reason="no fork on this platform: nothing runs in parallel")


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


@pytest.fixture
def in_this_process(monkeypatch):
    """The files checked in this process (not in a worker)."""
    seen = []
    real = checking._file_errors

    def spy(f, *args):
        seen.append(f)
        return real(f, *args)
    monkeypatch.setattr(checking, "_file_errors", spy)
    return seen


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_in_workers_reports_what_one_process_does(folder, fmt, in_this_process):
    parallel = check_errors([folder], jobs=3)
    assert in_this_process == []  # all in the workers
    serial = check_errors([folder], jobs=1)
    assert in_this_process == sorted(folder.glob("*.card"))
    assert [f.path for f in parallel.files] == [f.path for f in serial.files] == sorted(folder.glob("*.card"))
    assert len(serial.errors) >= 5  # the folder's broken cards, each refused
    assert parallel.format(fmt) == serial.format(fmt)
    assert serial.format(fmt) == check([folder]).format(fmt)  # and what the API with its cards says
    assert [f.ok for f in parallel.files] == [f.ok for f in check([folder]).files]


def test_cycles_are_named_as_one_process_names_them(tmp_path, in_this_process):
    """Which card of a cycle is checked first names the cycle; workers would meet them in another
    order, so a report with a cycle is made again in one process."""
    d = cards_folder(tmp_path, cycles=True)
    parallel = check_errors([d], jobs=2)
    assert in_this_process == sorted(d.glob("*.card"))  # done again here
    assert parallel.format() == check([d]).format()
    assert "in a cycle: ping → pong → ping" in parallel.format()


def test_the_cli_prints_the_same_with_workers_or_without(folder):
    runs = [CliRunner().invoke(main, ["check", str(folder)], env={"CARDGEN_JOBS": j}) for j in ("1", "2")]
    assert runs[0].exit_code == runs[1].exit_code == 1
    assert runs[0].output == runs[1].output
    assert "failed" in runs[0].output


def test_standard_input_is_read_in_this_process(folder):
    """A forked worker's standard input is not the command's: with `-` among the files, no workers."""
    run = CliRunner().invoke(main, ["check", "-", str(folder)], input=te.PROJ_OK, env={"CARDGEN_JOBS": "2"})
    serial = CliRunner().invoke(main, ["check", "-", str(folder)], input=te.PROJ_OK, env={"CARDGEN_JOBS": "1"})
    assert run.output == serial.output
    assert "<stdin>" not in run.output  # the card on standard input checks


def test_build_in_workers_makes_the_same_modules(folder, tmp_path):
    serial = build_report([folder], tmp_path / "a", check_only=True, jobs=1)
    parallel = build_report([folder], tmp_path / "a", check_only=True, jobs=2)
    assert [str(e) for e in parallel.errors] == [str(e) for e in serial.errors]
    assert len(serial.errors) >= 5 and len(serial.changed) >= 4
    assert parallel.changed == serial.changed and parallel.modules == serial.modules


def test_an_error_in_a_worker_is_raised_here():
    with pytest.raises(ZeroDivisionError):
        map_files(_divide, [1, 2, 0, 4], jobs=2)
    assert map_files(_divide, [1, 2, 4], jobs=2) == [12, 6, 3]


def _divide(n, libs):
    return 12 // n


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
