"""Many files at once on several cores: ``cardgen check DIR`` and ``cardgen build`` hand each file
to forked worker processes and gather the results in the files' order, so what they print is what
one process prints, byte for byte.

Only where it pays and is safe: at least ``MIN_FILES`` files, more than one core that no other
process is running on (``idle_cores``; ``CARDGEN_JOBS=N`` decides instead), a platform with
``fork`` (the workers start as copies of this process, with cardgen imported and the
parser loaded, instead of importing everything again), and a process that runs one thread: a
lock that another thread holds when the process forks stays locked in the child for good, and
NumPy's BLAS, JAX, torch, a notebook or a language server all run threads of their own. The
``cardgen`` command imports none of them before it checks or builds, so it forks; the API called
from a program that runs threads stays in one process. Each worker keeps its own Libraries (a
callee is checked once per worker, not once per card). What crosses back is pickled: errors
(CardError pickles whole, see ``lang/errors.py``) and text, never a Card.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence

from ..lang.errors import CardError

MIN_FILES = 8  # below this, starting the workers costs about what they save

# The running map's function and arguments: set before the workers fork, so they inherit it
# (nothing about the task is pickled but each file's name).
_task: tuple[Callable, tuple] | None = None
_libs: dict = {}  # a worker's Libraries, shared by the files it is given


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores() -> int:
    """The cores no other process is running on right now (Linux: the running count of
    /proc/loadavg, this process included), at least 1: on a machine that another job keeps busy,
    workers only share its cores and cost their start and their copies of each callee's check."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        running = 1
    return max(1, cores() - max(0, running - 1))


def workers(files: int, jobs: int | None = None) -> int:
    """How many processes to use for ``files`` files (``jobs``: asked for; None: decide)."""
    if jobs is None and os.environ.get("CARDGEN_JOBS", "").strip().isdigit():
        jobs = int(os.environ["CARDGEN_JOBS"])  # 1: one process, whatever the count
    if jobs is None:
        jobs = idle_cores() if files >= MIN_FILES else 1
    jobs = max(1, min(jobs, files))
    if jobs == 1:
        return 1  # without importing multiprocessing (~16 ms): one card is checked in one process
    if not single_threaded():
        return 1  # a fork would copy locks that other threads hold, held forever
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1  # no fork; or a daemonic worker of someone's pool, which may not start processes
    return jobs


def single_threaded() -> bool:
    """Whether this process runs one thread, native ones included (Linux: /proc/self/task has one
    entry; importing NumPy alone starts OpenBLAS's); elsewhere, not known, so no."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def map_files(fn: Callable, files: Sequence, *args, jobs: int | None = None, template: bool = False) -> list:
    """``[fn(f, *args, libs) for f in files]``, where ``libs`` is a dict of Libraries shared by the
    calls in one process; in worker processes when ``workers`` says so. Results come back in the
    order of ``files``. If a worker raises, or a result depends on the order of the checks
    (``_order_dependent``), everything is done again in this process: what it returns or raises
    is always what one process does. ``template``: ``fn`` lays modules out (workers share it)."""
    n = workers(len(files), jobs) if "-" not in map(str, files) else 1  # a worker's stdin is not ours
    if n > 1:
        try:
            out = _in_workers(n, fn, files, args, template)
        except Exception:  # noqa: BLE001 - raised again below, by the first file that raises it
            out = None
        if out is not None and not any(_order_dependent(x) for x in out):
            return out
    libs: dict = {}
    return [fn(f, *args, libs) for f in files]


def _order_dependent(result) -> bool:
    """Whether ``result`` (a file's, as its function returned it) holds an error whose text depends
    on which card a Library checked first: a cycle of calls is named from the card the check entered
    it at (``ping → pong → ping`` or ``pong → ping → pong``), so workers that meet the cycle's cards
    in another order than one process would name it otherwise. Such results are made again in this
    process (a cycle is a rare mistake; the report must not depend on the workers)."""
    if isinstance(result, CardError):
        return "in a cycle" in result.message  # or in what a caller says of its callee's errors
    if isinstance(result, list | tuple):
        return any(_order_dependent(x) for x in result)
    return False


def _in_workers(n: int, fn: Callable, files: Sequence, args: tuple, template: bool) -> list:
    import multiprocessing
    global _task
    _warm(template)
    _task = (fn, args)
    gc.freeze()  # the collector leaves what the workers inherit alone: its pages stay shared
    try:
        with multiprocessing.get_context("fork").Pool(n) as pool:
            return pool.map(_run, files, chunksize=1)  # one file at a time: cards differ in cost
    finally:
        gc.unfreeze()
        _task = None


def _run(f):
    fn, args = _task
    return fn(f, *args, _libs)


def _warm(template: bool) -> None:
    """What every worker would otherwise load for itself, loaded once before they fork: the parser
    (its tables) and, for a build, the module template."""
    from ..lang.parse import _parser
    _parser()
    if template:
        from ..compile.template import _env
        _env().get_template("module.py.j2")
