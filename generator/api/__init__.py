"""cardgen's public API: what a notebook, a script or another tool calls; the ``cardgen`` command
is a thin layer over it (each command parses its options, calls one function here, prints).

- ``cards``: :class:`Card`, :func:`load` / :func:`loads` / :func:`load_all`, :func:`render`,
  :func:`compile_card` (in memory), configurations (``Card.values``);
- ``checking``: :func:`check`, every error of every file, as a :class:`Report` (:func:`check_errors`:
  the same report without the cards, on several cores for many files);
- ``outputs``: :func:`build` / :func:`build_report` (modules), :func:`docs` (the HTML book),
  :func:`fmt` (canonical form), :func:`primitives` (the built-ins' table);
- ``interpreting``: the reference interpreter;
- ``running``: :func:`gradcheck` of many cards, :func:`train`, :func:`sample`, :func:`import_hf`,
  :func:`export_hf`.
"""

from ..lang.errors import CardError
from ..lang.load import card_paths, library_for, search_path, where
from .cards import Card, compile_card, configured, load, load_all, loads, module_text, no_module_reason, render
from .cards import sub_algorithms as sub_algorithms
from .checking import FileReport, Report, check, check_errors
from .interpreting import interpret
from .outputs import Built, build, build_report, docs, fmt, primitives
from .running import export_hf, gradcheck, import_hf, sample, train, train_torch


def __getattr__(name: str):  # imported on first use (see running.py)
    if name in ("GRADCHECK_TOLERANCE", "Settings"):
        from . import running
        return getattr(running, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["GRADCHECK_TOLERANCE", "Built", "Card", "CardError", "FileReport", "Report", "Settings", "build",
           "build_report", "card_paths", "check", "check_errors", "compile_card", "configured", "docs", "export_hf",
           "fmt", "gradcheck", "import_hf", "interpret", "library_for", "load", "load_all", "loads", "module_text",
           "no_module_reason", "primitives", "render", "sample", "search_path", "sub_algorithms", "train",
           "train_torch", "where"]
