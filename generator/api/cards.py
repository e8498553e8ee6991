"""Cards as Python objects: load (from a file, a name on the search path, or a string), render,
compile in memory, and the hyperparameter values a configuration gives.

    >>> import cardgen
    >>> card = cardgen.load("LayerNorm")            # a file, or a name on the search path
    >>> card.name, card.signature
    ('LayerNorm', 'ê ← LayerNorm(e | γ, β)')
    >>> mod = card.compile()                         # an in-memory module: Config, Params, forward, backward

A :class:`Card` is checked when it is loaded, as ``cardgen check`` checks it (a mistake raises
:class:`cardgen.CardError` at the card's line and column, and so does a card cardgen could not
compile), and shows itself as its pseudocode box in Jupyter.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from dataclasses import dataclass, field

from ..lang.check import Checked, Library, check
from ..lang.check_call import callees
from ..lang.configs import chosen_values, settable_names
from ..lang.errors import CardError
from ..lang.ir import Card as CardIR
from ..lang.load import display_path, library_for, resolve
from ..lang.load import load as load_checked
from ..lang.parse import parse
from ..lang.render import card_text, pseudocode, signature
from ..lang.values import check_values

FORMATS = ("text", "md", "tex")
Paths = list[str | os.PathLike] | None  # folders searched before CARDGEN_PATH, [tool.cardgen], the standard cards


@dataclass(frozen=True)
class Card:
    """A parsed and checked card, with the library its calls resolved in."""

    checked: Checked
    library: Library
    modules: dict = field(default_factory=dict, compare=False, repr=False)  # target -> module text
    compiled: dict = field(default_factory=dict, compare=False, repr=False)  # target -> its parts (compiled())

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

    def render(self, format: str = "text", full: bool = False, values: dict | None = None,
               config: str | None = None) -> str:
        """Pseudocode (``text``), Markdown for GitHub (``md``) or a LaTeX algorithm box (``tex``);
        ``full`` adds every sub-algorithm the card calls; a named configuration (``config``) or
        hyperparameter ``values`` (on top of it) add the parameter count."""
        return render(self, format, full, values, config)

    def values(self, config: str | None = None, given: dict | None = None, extra=()) -> dict:
        """Hyperparameter values: the card's configuration ``config`` (``"gpt2"``), then ``given`` on
        top, each checked against the card and the cards it calls (a name it does not have, a
        fraction where it says ℕ, a size below 1, a ``D/H`` that does not divide: a CardError at
        the declaration). ``extra`` names values the caller takes itself (``B``)."""
        return configured(self, config, dict(given or {}), extra=tuple(extra))

    def backward_text(self) -> str:
        """The derived backward pass as numbered steps (``cardgen render --backward``)."""
        from ..docs.derived import backward_text
        return backward_text(self.checked, self.library)

    def memory_text(self, values: dict | None = None, batch: int = 1, itemsize: int = 4) -> str:
        """The activations the forward saves for the backward, with shapes and bytes at ``values``
        (``cardgen render --memory``)."""
        from ..docs.derived import memory_text
        return memory_text(self.checked, self.library, dict(values or {}), batch, itemsize)

    def module_text(self, target: str = "numpy") -> str | None:
        """The module ``cardgen build`` writes for the card (None: a training or inference card, target not numpy)."""
        return module_text(self, target)

    def compile(self, target: str = "numpy") -> types.ModuleType:
        """The generated module, imported from memory: nothing is written."""
        return compile_card(self, target)

    def gradcheck(self, sizes: dict | None = None, seed: int = 0, config: str | None = None):
        """Derived gradients against float64 finite differences (``compile.gradcheck.Result``), at
        small sizes, or at a configuration's and ``sizes`` on top."""
        from ..compile.gradcheck import gradcheck
        return gradcheck(self.checked, self.library, self.values(config, sizes), seed)

    def interpret(self, inputs: dict, params, hypers=None, rng=None, at_gradient: bool = False) -> dict:
        """Run the card with the reference interpreter (see :func:`cardgen.interpret`)."""
        from .interpreting import interpret
        return interpret(self, inputs, params, hypers, rng=rng, at_gradient=at_gradient)

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
        from ..docs.texbox import box
        return box(self.checked)

    def __repr__(self) -> str:
        return f"<cardgen.Card {self.signature} from {display_path(self.path) if self.path else '<string>'}>"

    def __str__(self) -> str:
        return pseudocode(self.ir, self.checked.claims)


def load(source: str | os.PathLike, path: Paths = None, *, compiles: bool = True,
         shared: dict | None = None) -> Card:
    """Load and check the card in the file ``source`` (``-``: standard input), or the card named
    ``source`` on the search path (``path`` adds folders before ``CARDGEN_PATH``, ``[tool.cardgen]``
    and the standard cards). It accepts what ``cardgen check`` accepts: a card cardgen cannot compile
    is refused here, at its step, unless ``compiles=False`` (what ``cardgen fmt`` needs). ``shared``:
    a dict kept across calls, so cards with one search path share one library (each callee parsed and
    checked once)."""
    extra = _folders(path)
    file = resolve(str(source), extra)
    lib = library_for(file, extra, shared=shared)
    _, checked = load_checked(file, lib)
    card = Card(checked, lib)
    if compiles:
        card.module_text()
    return card


def load_all(sources, path: Paths = None, *, compiles: bool = True) -> list[Card]:
    """Every card among ``sources`` (files, folders of ``*.card`` files, names on the search path),
    in order, sharing libraries. Raises at the first card with an error (``cardgen.check`` reports
    them all)."""
    from ..lang.load import card_paths
    shared: dict = {}
    return [load(f, path, compiles=compiles, shared=shared) for f in card_paths(_sources(sources))]


def loads(text: str, path: Paths = None, name: str = "<string>", *, compiles: bool = True) -> Card:
    """Load and check a card from its text (card syntax or rendered pseudocode); its calls resolve on
    the search path, with ``path`` first."""
    ir = parse(text, name)
    lib = library_for(None, _folders(path))
    lib.cards[ir.name] = ir
    lib.done.pop(ir.name, None)
    card = Card(check(ir, lib), lib)
    if compiles:
        card.module_text()
    return card


def _folders(path: Paths) -> list[str] | None:
    return [str(p) for p in path] if path is not None else None


def _sources(sources) -> list:
    return [sources] if isinstance(sources, str | os.PathLike) else list(sources)


def configured(card: Card, config: str | None, given: dict, extra: tuple = (), cards=None) -> dict:
    """``config``'s values with ``given`` on top, checked against ``card``; ``cards`` (default: the
    card and what it calls) are those whose names ``given`` may use (a command's other cards)."""
    known = [n for c in (cards or [card]) for n in settable_names(c.checked, c.library)]
    values = chosen_values(card.ir, config, given, known, extra)
    mine = set(settable_names(card.checked, card.library))
    others = tuple(n for n in values if n not in mine)  # another card of the command checks those
    check_values(card.checked, values, extra=tuple(extra) + others, lib=card.library)
    return values


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


def render(card: Card, format: str = "text", full: bool = False, values: dict | None = None,
           config: str | None = None, standalone: bool = False) -> str:
    """The card as pseudocode (``text``), Markdown (``md``) or LaTeX (``tex``; ``standalone``: a
    document for pdflatex); ``full`` appends each card it calls once; ``config`` and ``values``
    (checked) add the parameter count."""
    from ..docs.report import param_count_line, render_card
    if format not in FORMATS:
        raise CardError(f"unknown format {format!r}: choose one of {', '.join(FORMATS)}")
    if standalone and format != "tex":
        raise CardError("standalone makes a LaTeX document: use it with the tex format")
    order = sub_algorithms(card.checked, card.library) if full else [card.checked]
    chosen = configured(card, config, dict(values or {}), cards=[Card(ch, card.library) for ch in order])
    parts = [render_card(ch, format, param_count_line(ch, card.library, chosen, config if ch is card.checked else None))
             for ch in order]
    if format == "tex":
        from ..docs.texbox import document, fragment
        return (document if standalone else fragment)(parts)
    return ("\n" if format == "md" else "\n" + "─" * 72 + "\n\n").join(parts)


def module_text(card: Card, target: str = "numpy") -> str | None:
    """The generated module's source, as ``cardgen build`` writes it.  Every card compiles for the
    numpy target, the paper's training and inference cards too, or raises; None for a training or
    inference card and another target, whose loops are NumPy's (``build`` skips it, saying why:
    :func:`no_module_reason`)."""
    if target not in card.modules:
        parts = compiled(card, target)
        if parts is not None:
            from ..compile.verify import render_module
            parts = render_module(parts)
        card.modules[target] = parts
    return card.modules[target]


def compiled(card: Card, target: str = "numpy") -> dict | None:
    """All of :func:`module_text` but laying the text out (``emit.module_parts``): raises what
    ``build`` would refuse, so ``cardgen check`` stops here; None where ``module_text`` is None."""
    from ..compile.lower import LoweringError, wrapper_kind
    from ..compile.targets import TARGETS
    from ..compile.verify import compiled as compile_parts
    if target not in TARGETS:
        raise CardError(f"unknown target {target!r}: cardgen emits {' or '.join(TARGETS)}")
    if target not in card.compiled:
        try:
            card.compiled[target] = compile_parts(card.checked, card.library, source_name(card), target=target)
        except LoweringError as e:
            if wrapper_kind(card.ir) is None or target == "numpy":
                raise
            card.compiled[target] = e
    made = card.compiled[target]
    return None if isinstance(made, LoweringError) else made


def no_module_reason(card: Card, target: str = "numpy") -> str | None:
    """Why a training or inference card has no module (the lowering's refusal, in one line)."""
    compiled(card, target)
    made = card.compiled[target]
    return made.message.split("error: ")[-1] if isinstance(made, CardError) else None


def source_name(card: Card) -> str:
    """How outputs name the card's file (relative to the project; see ``display_path``)."""
    return display_path(card.path) if card.path and card.path != "<string>" else "<string>"


def compile_card(card: Card, target: str = "numpy") -> types.ModuleType:
    """Generate ``card``'s module and import it from memory. Its name carries a hash of its source,
    so two cards of one name (or two versions of one card) never replace each other."""
    src = module_text(card, target)
    if src is None:
        from ..compile.lower import wrapper_kind
        raise CardError(f"{card.name} is a {wrapper_kind(card.ir)} card: the {target} target compiles model cards "
                        "(build it for numpy)")
    from ..compile.naming import ascii_name
    digest = hashlib.sha256(src.encode("utf-8")).hexdigest()[:12]
    name = f"cardgen_generated_{ascii_name(card.name)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    from ..compile.gradcheck import import_source
    mod = import_source(name, src, f"<cardgen:{card.name}:{digest}>")
    mod.card = card
    mod._repr_markdown_ = card._repr_markdown_
    mod._repr_latex_ = card._repr_latex_
    return mod


