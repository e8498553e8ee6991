"""Checking many cards at once and reporting every error of every file (``cardgen check``, the
language server and CI): where :func:`cardgen.load` raises the first error, :func:`check` gathers
them all.

    >>> import cardgen
    >>> report = cardgen.check(["cards/"])
    >>> report.ok, [e.message for e in report.errors]
    (True, [])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..lang.diagnostics import FORMATS
from ..lang.errors import CardError
from ..lang.load import card_paths, diagnose, display_path, library_for, where
from .cards import Card, Paths, _folders, _sources, compiled


@dataclass(frozen=True)
class FileReport:
    """One file's result: the card (checked as far as it went; None if it did not parse) and its
    errors, parse errors, type and shape errors, and what ``build`` would refuse, in source order."""

    path: Path
    card: Card | None
    errors: list[CardError]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def name(self) -> str:
        """The file as outputs name it (relative to the project)."""
        return display_path(self.path)

    def callees(self) -> list[tuple[str, str]]:
        """(name, where it was found on the search path) of each card this card calls."""
        if self.card is None:
            return []
        from ..lang.check_call import callees
        return [(n, w) for n in callees(self.card.ir) if (w := where(self.card.library, n)) is not None]


@dataclass(frozen=True)
class Report:
    files: list[FileReport]

    @property
    def errors(self) -> list[CardError]:
        return [e for f in self.files for e in f.errors]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def format(self, fmt: str = "text") -> str:
        """The errors as ``text`` (file:line:col, the line, a caret, a hint), ``json``, ``github``
        (workflow annotations) or ``sarif`` (code scanning)."""
        if fmt not in FORMATS:
            raise CardError(f"unknown report format {fmt!r}: choose one of {', '.join(FORMATS)}")
        return FORMATS[fmt](self.errors)

    def __str__(self) -> str:
        return self.format()


def check(sources, path: Paths = None) -> Report:
    """Check every card among ``sources`` (files, folders, names on the search path; ``-`` reads
    standard input) as ``cardgen check`` does: parse, types and shapes, and whether it compiles."""
    files, extra = _files(sources), _folders(path)
    libs: dict = {}
    return Report([FileReport(Path(f), *_check_file(f, extra, libs)) for f in files])


def check_errors(sources, path: Paths = None, jobs: int | None = None) -> Report:
    """:func:`check` without the cards (every ``FileReport.card`` is None, whether the file parsed
    or not): the errors of every file, in the same order, for ``cardgen check``. With many files it
    runs on several cores (forked workers, see ``api/parallel.py``; ``jobs``: how many, 1: none)."""
    from .parallel import map_files
    files = _files(sources)
    errors = map_files(_file_errors, files, _folders(path), jobs=jobs)
    return Report([FileReport(Path(f), None, errs) for f, errs in zip(files, errors, strict=True)])


def _files(sources) -> list:
    files = card_paths(_sources(sources))
    if not files:
        raise CardError(f"no .card files in {', '.join(map(str, _sources(sources)))}")
    return files


def _check_file(f, extra, libs: dict) -> tuple[Card | None, list[CardError]]:
    lib = library_for(str(f), extra, shared=libs)
    checked, errs = diagnose(str(f), lib)
    card = Card(checked, lib) if checked is not None else None
    if not errs:
        try:
            compiled(card)  # what build would refuse, check refuses (and the card keeps what it compiled)
        except CardError as e:
            errs = [e]
    return card, errs


def _file_errors(f, extra, libs: dict) -> list[CardError]:
    return _check_file(f, extra, libs)[1]
