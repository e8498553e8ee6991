"""The files ``build`` writes, decided before any is written: each module's file name comes from
its card's identifier (never from card text), two cards on one file (the same name, or names that
differ only in case, as macOS and Windows see them) are an error naming both, and every module
must compile as Python."""

from __future__ import annotations

from pathlib import Path

from ..lang.errors import CardError
from .naming import file_stem


def add_module(modules: dict[str, tuple[str, str]], card_name: str, source: str, text: str, out: Path) -> None:
    """Record ``text`` (the module of ``card_name``, from the card file ``source``) under its file name."""
    name = file_stem(card_name) + ".py"
    same = next((n for n in modules if n.casefold() == name.casefold()), None)
    if same is not None:  # neither may win
        raise CardError(f"{modules[same][0]} and {source} would both be written to {Path(out) / same}",
                        hint="two cards of one algorithm name (or names that differ only in case); "
                             "rename one, or build them into different folders")
    modules[name] = (source, text)


def check_compiles(modules: dict[str, tuple[str, str]], out: Path) -> None:
    """Every module compiles, or nothing is written (a module that does not is cardgen's bug)."""
    for name, (source, text) in modules.items():
        try:
            compile(text, str(Path(out) / name), "exec")
        except (SyntaxError, ValueError) as e:
            raise RuntimeError(f"the module generated from {source} does not compile ({e}); "
                               "nothing was written") from None
