"""Finding and loading cards: the search path a card's calls resolve in, card arguments (files,
folders or bare names) to card files, and one card parsed and checked.

The search path, first match wins (``cardgen check --verbose`` says where each callee came from):

1. the folder of the card being loaded (its neighbours);
2. ``--path DIR`` options, in the order given;
3. ``CARDGEN_PATH``, folders separated by ``os.pathsep`` (``:`` on POSIX);
4. ``path = [...]`` under ``[tool.cardgen]`` in the nearest ``pyproject.toml`` (from the current
   folder upwards), relative to that file;
5. ``./cards``, if the current folder has one;
6. the standard cards that ship with cardgen (GPT2, LayerNorm, the paper's algorithms, …).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .check import Checked, Library, check, check_all
from .errors import CardError
from .ir import Card
from .parse import parse, parse_file, parse_stream

ENV_VAR = "CARDGEN_PATH"

# Folders given with --path on the command line; the CLI sets them once per invocation.
extra_path: list[str] = []


def standard_cards() -> Path | None:
    """The folder of the standard cards: inside the installed package, or the checkout's cards/."""
    spec = importlib.util.find_spec("cardgen.cards")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parents[2] / "cards"  # an editable install maps no data-only package
    return checkout if checkout.is_dir() else None


def project_file(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml from ``start`` (default: the current folder) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file():
            return folder / "pyproject.toml"
    return None


def project_path(pyproject: Path | None) -> list[Path]:
    """``[tool.cardgen] path`` of a pyproject.toml, as folders relative to that file."""
    if pyproject is None:
        return []
    try:
        table = tomllib.loads(pyproject.read_text("utf-8")).get("tool", {}).get("cardgen", {})
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as e:
        raise CardError(f"{pyproject}: cannot read [tool.cardgen]: {e}") from None
    entries = table.get("path", [])
    if isinstance(entries, str) or not all(isinstance(p, str) for p in entries):
        raise CardError(f"{pyproject}: [tool.cardgen] path must be a list of folder names, like [\"cards\"]")
    return [pyproject.parent / p for p in entries]


@dataclass(frozen=True)
class Entry:
    folder: Path
    origin: str  # where this entry comes from: "beside the card", "--path", "CARDGEN_PATH", ...


def search_path(card_path: str | os.PathLike | None = None, extra: list[str] | None = None) -> list[Entry]:
    """The folders a card's calls resolve in, in order (see the module docstring)."""
    entries: list[Entry] = []
    if card_path is not None and str(card_path) != "-":
        entries.append(Entry(Path(card_path).parent, "beside the card"))
    entries += [Entry(Path(p), "--path") for p in (extra_path if extra is None else extra)]
    entries += [Entry(Path(p), ENV_VAR) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    pyproject = project_file()
    entries += [Entry(p, f"{pyproject.name} [tool.cardgen]") for p in project_path(pyproject)]
    if Path("cards").is_dir():
        entries.append(Entry(Path("cards"), "./cards"))
    std = standard_cards()
    if std is not None:
        entries.append(Entry(std, "standard cards"))
    seen, out = set(), []
    for e in entries:  # one folder once, at its first place
        key = os.path.normcase(os.path.abspath(e.folder))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def library_for(path: str | os.PathLike | None = None, extra: list[str] | None = None) -> Library:
    """A Library over the search path of the card at ``path``."""
    entries = search_path(path, extra)
    lib = Library(folders=[str(e.folder) for e in entries])
    lib.origins = {str(e.folder): e.origin for e in entries}
    return lib


def resolve(arg: str, extra: list[str] | None = None) -> str:
    """A card argument as a file: a path as given, or a bare name (``GPT2``) looked up on the path."""
    if arg == "-" or Path(arg).exists() or arg.endswith(".card") or "/" in arg or os.sep in arg:
        return arg
    for e in search_path(None, extra):
        candidate = e.folder / f"{arg}.card"
        if candidate.is_file():
            return str(candidate)
    return arg  # parse_file reports it missing, with the name as given


def card_paths(paths) -> list[Path]:
    """Files as given, folders expanded to their ``*.card`` files, sorted; bare card names resolved."""
    out: list[Path] = []
    for p in map(Path, (resolve(str(a)) for a in paths)):
        if p.is_dir():
            out += sorted(p.glob("*.card"))
        else:
            out.append(p)
    return out


def display_path(path: str | os.PathLike) -> str:
    """How outputs name a card file: relative to the project (the nearest pyproject.toml's folder, or
    the current folder), else ``<standard>/NAME.card`` for a standard card, else the file's name, so
    two machines write the same bytes."""
    p = Path(path)
    if str(p) in ("-", "<stdin>"):
        return "<stdin>"
    full = p.resolve()
    roots = []
    pyproject = project_file()
    if pyproject is not None:
        roots.append(pyproject.parent.resolve())
    roots.append(Path.cwd().resolve())
    for root in roots:
        if full.is_relative_to(root):
            return full.relative_to(root).as_posix()
    std = standard_cards()
    if std is not None and full.is_relative_to(std.resolve()):
        return "<standard>/" + full.relative_to(std.resolve()).as_posix()
    return p.name


def where(lib: Library, name: str) -> str | None:
    """Where the library found the card ``name``: its file and the search-path entry it came from."""
    card = lib.card(name)
    if card is None:
        return None
    origin = lib.origins.get(str(Path(card.path).parent), "given")
    return f"{display_path(card.path)} ({origin})"


def load(path: str, lib: Library | None = None) -> tuple[Card, Checked]:
    """Parse and check one card (``-``: standard input; a bare name: found on the search path)."""
    path = resolve(path)
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
    if text is None:
        path = resolve(path)
    try:
        if text is not None:
            card = parse(text, path)
        elif path == "-":
            card = parse_stream(sys.stdin.buffer, "<stdin>")
        else:
            card = parse_file(path)
    except CardError as e:
        return None, [e.located(path, text or "")]
    lib = lib or library_for(path)
    known = lib.card(card.name) if text is None and path != "-" else None
    if known is None or known.source != card.source:
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
    checked = check_all(card, lib)
    return checked, list(checked.errors)
