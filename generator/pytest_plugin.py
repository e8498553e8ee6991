"""A pytest plugin for any repository of cards: ``pytest --cardgen`` (or ``cardgen = true`` in the
ini file) collects every ``*.card`` file under the paths pytest is given and runs, for each, four
test items with a readable failure (the error at file:line:col, its source line and hint):

- ``roundtrip``: the card text and its rendered pseudocode parse back to the same IR;
- ``fmt``: formatting is idempotent (``fmt`` of the ``fmt`` output changes nothing);
- ``build``: the module in the generated folder (ini ``cardgen_generated``, default ``generated``)
  is what ``cardgen build`` writes now;
- ``gradcheck``: the derived gradients agree with float64 finite differences (10⁻⁶).

Installed with cardgen (entry point ``pytest11``), it stays off until asked for, so a repository's
own tests never collect its cards twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .lang.check import Checked, Library, check, check_all
from .lang.errors import CardError
from .lang.load import library_for
from .lang.parse import parse, parse_file
from .lang.render import card_text, pseudocode

CHECKS = ("roundtrip", "fmt", "build", "gradcheck")


def pytest_addoption(parser):
    group = parser.getgroup("cardgen")
    group.addoption("--cardgen", action="store_true", help="collect *.card files and check each (cardgen)")
    parser.addini("cardgen", "collect *.card files and check each (cardgen)", type="bool", default=False)
    parser.addini("cardgen_generated", "the folder of generated modules that `build` compares against",
                  default="generated")


def pytest_collect_file(file_path: Path, parent):
    config = parent.config
    if file_path.suffix == ".card" and (config.getoption("cardgen") or config.getini("cardgen")):
        return CardFile.from_parent(parent, path=file_path)
    return None


class CardCheckError(Exception):
    """A check that found a problem: its message is the whole report."""


class CardFile(pytest.File):
    def collect(self):
        for name in CHECKS:
            yield CardItem.from_parent(self, name=name)


class CardItem(pytest.Item):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.check = self.name
        self.funcargs = {}  # no fixtures; but pytest-lsp's runtest wrapper fails on items without it

    def source_name(self) -> str:
        try:
            return self.path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return self.path.as_posix()

    def load(self) -> tuple[Checked, Library]:
        libraries = self.config.stash.setdefault(LIBRARIES, {})
        lib = libraries.setdefault(str(self.path.parent), library_for(str(self.path)))
        card = parse(parse_file(self.path).source, self.source_name())  # errors name the file as in the repo
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
        checked = check_all(card, lib)
        if checked.errors:
            raise CardCheckError("\n".join(map(str, checked.errors)))
        return checked, lib

    def runtest(self):
        try:
            getattr(self, "check_" + self.check)()
        except CardError as e:
            raise CardCheckError(str(e)) from None

    def check_roundtrip(self):
        checked, _ = self.load()
        card = checked.card
        for form, text in (("card text", card_text(card, checked.claims)),
                           ("rendered pseudocode", pseudocode(card, checked.claims))):
            if parse(text, f"{self.source_name()} ({form})") != card:
                raise CardCheckError(f"{self.source_name()}: its {form} does not parse back to the same card")

    def check_fmt(self):
        checked, _ = self.load()
        once = card_text(checked.card, checked.claims)
        again = parse(once, self.source_name())
        twice = card_text(again, check(again, Library(cards={}, folders=[str(self.path.parent)])).claims)
        if once != twice:
            raise CardCheckError(f"{self.source_name()}: formatting is not idempotent:\n" + _diff(once, twice))

    def check_build(self):
        from .compile.emit import module_source
        checked, lib = self.load()
        text = self.compiled(lambda: module_source(checked, lib, self.source_name()))
        target = self.config.rootpath / self.config.getini("cardgen_generated") / f"{checked.card.name}.py"
        if not target.is_file():
            raise CardCheckError(f"{self.source_name()}: no generated module {target}: run `cardgen build`")
        old = target.read_text("utf-8")
        if old != text:
            raise CardCheckError(f"{self.source_name()}: {target} is stale: run `cardgen build`\n" + _diff(old, text))

    def check_gradcheck(self):
        from .compile.gradcheck import TOL, gradcheck
        checked, lib = self.load()
        res = self.compiled(lambda: gradcheck(checked, lib))
        bad = {k: v for k, v in res.errors.items() if res.status(k) == "FAIL"}  # not an estimator's, by design
        if bad:
            rows = "\n".join(f"  {k:20} {v:.1e}" + (res.note(k) if res.straight_through else "")
                             for k, v in bad.items())
            raise CardCheckError(f"{self.source_name()}: derived gradients differ from finite differences "
                                  f"by more than {TOL:g} (relative):\n{rows}")

    def compiled(self, make):
        return make()

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CardCheckError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.source_name()}::{self.check}"


LIBRARIES = pytest.StashKey[dict]()


def _diff(old: str, new: str) -> str:
    import difflib
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        "now", "expected"))
