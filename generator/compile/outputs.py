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
    name = module_file(card_name)
    same = next((n for n in modules if n.casefold() == name.casefold()), None)
    if same is not None:  # neither may win
        raise CardError(f"{modules[same][0]} and {source} would both be written to {Path(out) / same}",
                        hint="two cards of one algorithm name (or names that differ only in case); "
                             "rename one, or build them into different folders")
    modules[name] = (source, text)


def check_compiles(modules: dict[str, tuple[str, str]], out: Path,
                   compiled: dict[str, str | None] | None = None) -> None:
    """Every module compiles, or nothing is written (a module that does not is cardgen's bug).
    ``compiled``: file name -> :func:`compile_error` of modules already compiled (by a worker)."""
    for name, (source, text) in modules.items():
        file = str(Path(out) / name)
        err = compiled[name] if compiled is not None and name in compiled else compile_error(text, file)
        if err is not None:
            raise RuntimeError(f"the module generated from {source} does not compile ({err}); "
                               "nothing was written")


def module_file(card_name: str) -> str:
    """The file name of ``card_name``'s module (``add_module`` keeps it there, or refuses)."""
    return file_stem(card_name) + ".py"


def compile_error(text: str, file: str) -> str | None:
    """Why ``text`` does not compile as Python (as ``file``), or None if it does."""
    try:
        compile(text, file, "exec")
    except (SyntaxError, ValueError) as e:
        return str(e)
    return None
