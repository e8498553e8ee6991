"""Finding and loading cards: files and folders to card paths, the library a card's calls resolve in,
and one card parsed and checked."""

from __future__ import annotations

import sys
from pathlib import Path

from .check import Checked, Library, check, check_all
from .errors import CardError
from .ir import Card
from .parse import parse, parse_file, parse_stream


def card_paths(paths) -> list[Path]:
    """Files as given, folders expanded to their ``*.card`` files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.card"))
        else:
            out.append(p)
    return out


def library_for(path: str | None) -> Library:
    folders = []
    if path and path != "-":
        folders.append(str(Path(path).parent))
    if Path("cards").is_dir():
        folders.append("cards")
    return Library(folders=folders)


def load(path: str, lib: Library | None = None) -> tuple[Card, Checked]:
    """Parse and check one card (``-``: standard input)."""
    if path == "-":
        card = parse_stream(sys.stdin.buffer, "<stdin>")
    else:
        card = parse_file(path)
    lib = lib or library_for(path)
    if path == "-" or lib.card(card.name) is None or lib.card(card.name).source != card.source:
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
    return card, check(card, lib)


def diagnose(path: str, lib: Library | None = None, text: str | None = None) -> tuple[Checked | None, list[CardError]]:
    """Every error of one card (``text``: its unsaved contents, as an editor has them): a parse error
    alone, or all the checker's errors in source order. The card checked as far as it goes, if it parsed."""
    try:
        card = parse(text, path) if text is not None else parse_file(path)
    except CardError as e:
        return None, [e.located(path, text or "")]
    lib = lib or library_for(path)
    known = lib.card(card.name) if text is None else None
    if known is None or known.source != card.source:
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
    checked = check_all(card, lib)
    return checked, list(checked.errors)
