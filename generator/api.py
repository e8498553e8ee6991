"""cardgen's public API: what a notebook, a script or another tool calls; the CLI is a thin layer
over it.

    >>> import cardgen
    >>> card = cardgen.load("LayerNorm")            # a file, or a name on the search path
    >>> card.name, card.signature
    ('LayerNorm', 'ê ← LayerNorm(e | γ, β)')
    >>> mod = card.compile()                         # an in-memory module: Config, Params, forward, backward

A :class:`Card` is checked when it is loaded (a mistake raises :class:`cardgen.CardError` at the card's
line and column) and shows itself as its pseudocode box in Jupyter.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from .lang.check import Checked, Library, check
from .lang.check_call import callees
from .lang.errors import CardError
from .lang.ir import Card as CardIR
from .lang.load import card_paths, display_path, library_for, resolve, search_path, where
from .lang.load import load as load_checked
from .lang.parse import parse
from .lang.render import card_text, pseudocode, signature

__all__ = ["Card", "CardError", "build", "card_paths", "compile_card", "library_for", "load", "loads", "render",
           "search_path", "sub_algorithms", "where"]

FORMATS = ("text", "md", "tex")


@dataclass(frozen=True)
class Card:
    """A parsed and checked card, with the library its calls resolved in."""

    checked: Checked
    library: Library

    @property
    def ir(self) -> CardIR:
        return self.checked.card

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def signature(self) -> str:
        return signature(self.ir)

    @property
    def path(self) -> str:
        return self.ir.path

    def text(self) -> str:
        """The card in canonical form (what ``cardgen fmt`` writes)."""
        return card_text(self.ir, self.checked.claims)

    def render(self, format: str = "text", full: bool = False, values: dict | None = None) -> str:
        """Pseudocode (``text``), Markdown for GitHub (``md``) or a LaTeX algorithm box (``tex``);
        ``full`` adds every sub-algorithm the card calls; ``values`` (hyperparameters) add the
        parameter count."""
        return render(self, format, full, values)

    def compile(self, target: str = "numpy") -> types.ModuleType:
        """The generated module, imported from memory: nothing is written."""
        return compile_card(self, target)

    def gradcheck(self, sizes: dict | None = None, seed: int = 0):
        """Derived gradients against float64 finite differences (``compile.gradcheck.Result``)."""
        from .compile.gradcheck import gradcheck
        return gradcheck(self.checked, self.library, sizes or {}, seed)

    def callees(self) -> list[Card]:
        """The cards this card calls, directly, in first-use order."""
        out = []
        for n in callees(self.ir):
            sub = self.library.checked(n)
            if sub is not None:
                out.append(Card(sub, self.library))
        return out

    def _repr_markdown_(self) -> str:
        return self.render("md")

    def _repr_latex_(self) -> str:
        from .docs.texbox import box
        return box(self.checked)

    def __repr__(self) -> str:
        return f"<cardgen.Card {self.signature} from {display_path(self.path) if self.path else '<string>'}>"

    def __str__(self) -> str:
        return pseudocode(self.ir, self.checked.claims)


def load(source: str | os.PathLike, path: list[str | os.PathLike] | None = None) -> Card:
    """Load and check the card in the file ``source``, or the card named ``source`` on the search path
    (``path`` adds folders before ``CARDGEN_PATH``, ``[tool.cardgen]`` and the standard cards)."""
    extra = [str(p) for p in path] if path is not None else None
    file = resolve(str(source), extra)
    lib = library_for(file, extra)
    _, checked = load_checked(file, lib)
    return Card(checked, lib)


def loads(text: str, path: list[str | os.PathLike] | None = None, name: str = "<string>") -> Card:
    """Load and check a card from its text (card syntax or rendered pseudocode); its calls resolve on
    the search path, with ``path`` first."""
    card = parse(text, name)
    lib = library_for(None, [str(p) for p in path] if path is not None else None)
    lib.cards[card.name] = card
    lib.done.pop(card.name, None)
    return Card(check(card, lib), lib)


def sub_algorithms(root: Checked, lib: Library) -> list[Checked]:
    """The card and every card it calls, recursively, each once (depth first)."""
    seen: dict[str, Checked] = {}

    def visit(ch: Checked):
        if ch.card.name in seen:
            return
        seen[ch.card.name] = ch
        for name in callees(ch.card):
            sub = lib.checked(name)
            if sub is not None:
                visit(sub)
    visit(root)
    return list(seen.values())


def render(card: Card, format: str = "text", full: bool = False, values: dict | None = None) -> str:
    from .docs.report import param_count_line, render_card
    if format not in FORMATS:
        raise CardError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    parts = [render_card(ch, format, param_count_line(ch, card.library, dict(values or {})))
             for ch in (sub_algorithms(card.checked, card.library) if full else [card.checked])]
    if format == "tex":
        from .docs.texbox import fragment
        return fragment(parts)
    return ("\n" if format == "md" else "\n" + "─" * 72 + "\n\n").join(parts)


def module_text(card: Card, target: str = "numpy") -> str:
    """The generated module's source, as ``cardgen build`` writes it."""
    from .compile.emit import module_source
    if target != "numpy":
        raise CardError(f"unknown target {target!r}: this cardgen emits numpy")
    return module_source(card.checked, card.library, display_path(card.path) if card.path else "<string>")


def compile_card(card: Card, target: str = "numpy") -> types.ModuleType:
    """Generate ``card``'s module and import it from memory. Its name carries a hash of its source,
    so two cards of one name (or two versions of one card) never replace each other."""
    src = module_text(card, target)
    from .compile.naming import ascii_name
    digest = hashlib.sha256(src.encode("utf-8")).hexdigest()[:12]
    name = f"cardgen_generated_{ascii_name(card.name)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    mod = types.ModuleType(name, f"{card.name}, compiled by cardgen")
    mod.__file__ = f"<cardgen:{card.name}:{digest}>"
    sys.modules[name] = mod  # dataclasses look their module up here
    try:
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    mod.card = card
    mod._repr_markdown_ = card._repr_markdown_
    mod._repr_latex_ = card._repr_latex_
    return mod


def build(sources, out_dir: str | os.PathLike = "generated") -> list[Path]:
    """Write the module of every model card among ``sources`` (files, folders or names) into
    ``out_dir``; returns the files written or already current. Wrapper cards that have no module
    (training and inference loops cardgen does not compile) are left out."""
    from .compile.lower import LoweringError, wrapper_kind
    from .lang.files import atomic_write
    out = Path(out_dir)
    done = []
    for f in card_paths([sources] if isinstance(sources, str | os.PathLike) else sources):
        card = load(f)
        try:
            text = module_text(card)
        except LoweringError:
            if wrapper_kind(card.ir) is not None:
                continue
            raise
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{card.name}.py"
        if not target.exists() or target.read_text("utf-8") != text:
            atomic_write(target, text)
        done.append(target)
    return done
