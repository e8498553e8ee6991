"""Finding and loading cards: files and folders to card paths, the library a card's calls resolve in,
and one card parsed and checked."""

from __future__ import annotations

import sys
from pathlib import Path

from .check import Checked, Library, check
from .ir import Card
from .parse import parse_file, parse_stream


def card_paths(paths) -> list[Path]:
    """Files as given, folders expanded to their ``*.card`` files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.card"))
        else:
            out.append(p)
    return out


def library_for(path: str | None, shared: dict | None = None) -> Library:
    """The library ``path``'s calls resolve in: its own folder, then ``./cards``. With ``shared``
    (a dict kept for one invocation), cards in the same folders share one Library, so each
    callee is parsed and checked once, not once per card that calls it."""
    folders = []
    if path and path != "-":
        folders.append(str(Path(path).parent))
    if Path("cards").is_dir():
        folders.append("cards")
    if shared is None:
        return Library(folders=folders)
    key = tuple(str(Path(f).resolve()) for f in folders)
    return shared.setdefault(key, Library(folders=folders))


def load(path: str, lib: Library | None = None) -> tuple[Card, Checked]:
    """Parse and check one card (``-``: standard input)."""
    lib = lib or library_for(path)
    if path == "-":
        card = parse_stream(sys.stdin.buffer, "<stdin>")
    else:
        known = lib.cards.get(Path(path).stem)  # parsed already as a callee of an earlier card
        card = known if known is not None and known.path == str(Path(path)) else parse_file(path)
    old = lib.cards.get(card.name)
    if old is None or old.source != card.source:
        lib.cards[card.name] = card
        if old is not None:  # cards checked against the old text may differ now
            lib.done.clear()
    return card, check(card, lib)
