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

import dataclasses
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
from .lang.ir import Group
from .lang.load import card_paths, display_path, library_for, resolve, search_path, where
from .lang.load import load as load_checked
from .lang.parse import parse
from .lang.render import card_text, pseudocode, signature

__all__ = ["Card", "CardError", "build", "card_paths", "compile_card", "interpret", "library_for", "load", "loads",
           "render", "search_path", "sub_algorithms", "where"]

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

    def interpret(self, inputs: dict, params, hypers=None, rng=None, at_gradient: bool = False) -> dict:
        """Run the card with the reference interpreter (see :func:`interpret`)."""
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
    from .compile.targets import TARGETS
    if target not in TARGETS:
        raise CardError(f"unknown target {target!r}: cardgen emits {' or '.join(TARGETS)}")
    return module_source(card.checked, card.library, display_path(card.path) if card.path else "<string>",
                         target=target)


def compile_card(card: Card, target: str = "numpy") -> types.ModuleType:
    """Generate ``card``'s module and import it from memory. Its name carries a hash of its source,
    so two cards of one name (or two versions of one card) never replace each other."""
    src = module_text(card, target)
    from .compile.naming import ascii_name
    digest = hashlib.sha256(src.encode("utf-8")).hexdigest()[:12]
    name = f"cardgen_generated_{ascii_name(card.name)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    from .compile.gradcheck import import_source
    mod = import_source(name, src, f"<cardgen:{card.name}:{digest}>")
    mod.card = card
    mod._repr_markdown_ = card._repr_markdown_
    mod._repr_latex_ = card._repr_latex_
    return mod


def build(sources, out_dir: str | os.PathLike = "generated", target: str = "numpy") -> list[Path]:
    """Write the module of every model card among ``sources`` (files, folders or names) into
    ``out_dir``; returns the files written or already current. Every card has a module (a training
    or inference card: its loss or model call, and its loop, for the numpy target only); one cardgen
    cannot compile raises."""
    from .compile.lower import wrapper_kind
    from .compile.outputs import add_module, check_compiles
    from .lang.files import atomic_write, holds, inside
    out, kind = Path(out_dir), target  # (the loop names each file it writes `target`)
    modules: dict[str, tuple[str, str]] = {}
    for f in card_paths([sources] if isinstance(sources, str | os.PathLike) else sources):
        card = load(f)
        if kind != "numpy" and wrapper_kind(card.ir) is not None:
            continue  # a training or inference card's loops are NumPy's: left out of another target
        text = module_text(card, kind)
        add_module(modules, card.name, str(f), text, out)
    check_compiles(modules, out)
    done = []
    for name, (_, text) in modules.items():
        out.mkdir(parents=True, exist_ok=True)
        target = inside(out, name)
        if not holds(target, text.encode("utf-8")):
            atomic_write(target, text)
        done.append(out / name)
    return done


def interpret(card, inputs: dict, params, hypers=None, *, lib: Library | None = None, rng=None,
              at_gradient: bool = False) -> dict:
    """Run a card with the reference interpreter (``cardgen.semantics``): step by step, as the
    paper reads it, in float64; returns ``{output name: array}``.

    ``card``: a ``Card`` (``cardgen.load``), a path or a name on the search path, or the card IR
    (parsed or checked).  ``inputs``: the card's inputs and
    array hyperparameters (``Mask``), by card name (``X̃``) or by the generated module's
    argument name (``X_tilde``), with any leading batch axes.  ``params``: the generated module's
    ``Params`` (or a dict of its fields), or a dict in card terms (``{"W^h_q": (H, …) array,
    "θ_ℓ": {…}}``).  ``hypers``: the module's ``Config`` or a dict by card name; sizes it leaves
    out are read from the arrays' shapes.  ``rng`` is for cards that sample.  ``at_gradient``: a
    training card (DTraining) stops at its first ``∇loss(θ)`` and gives ``{"loss": loss(θ)}``, what
    its compiled module's ``forward`` computes.
    """
    from .semantics import interpret_checked
    checked, lib = _checked(card, lib)
    ins, hyp = _route(checked, inputs, hypers)
    return interpret_checked(checked, lib, ins, _card_params(checked, lib, params), hyp, rng, at_gradient)


def _checked(card, lib: Library | None) -> tuple[Checked, Library]:
    if isinstance(card, Card):
        return card.checked, lib or card.library
    if isinstance(card, Checked):
        return card, lib or library_for(card.card.path)
    if isinstance(card, CardIR):
        lib = lib or library_for(card.path if card.path != "<card>" else None)
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
        return check(card, lib), lib
    if lib is not None:
        return load_checked(str(card), lib)[1], lib
    loaded = load(card)
    return loaded.checked, loaded.library


def _route(checked: Checked, inputs: dict, hypers) -> tuple[dict, dict]:
    """Inputs and hyperparameters by card name, from card names or module (ASCII) names."""
    from .compile.naming import ascii_name
    if dataclasses.is_dataclass(hypers):
        hypers = dataclasses.asdict(hypers)
    hypers = dict(hypers or {})
    ins, hyp = {}, {}
    for d in checked.card.decls:
        for n in d.names:
            for source in (inputs, hypers):
                for k in (n, ascii_name(n)):
                    if k in source:
                        (ins if d.role == "input" else hyp)[n] = source[k]
                        break
                else:
                    continue
                break
    return ins, {k: v for k, v in hyp.items() if checked.card.decl_of(k).role == "hyper"}


def _card_params(checked: Checked, lib: Library, params) -> dict:
    """A generated module's ``Params`` as a dict in card terms: each field goes to its card path
    (``theta.theta_attn.W_qkv`` -> ``{"θ_ℓ": {"θ_attn": {"W_qkv": …}}}``), stacking kept."""
    if not dataclasses.is_dataclass(params) and not _module_fields(checked, params):
        return params
    from .compile.lower import ascii_path, lower
    fields = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)
    prog = lower(checked, lib)
    tree: dict = {}
    for value in prog.params:
        node, here = tree, checked
        path = prog.param_paths[value.name]
        for depth, step in enumerate(path):
            decl, name = _decl_at(here, step, ascii_path)
            if depth == len(path) - 1:
                node[name] = fields[value.name]
            else:
                node = node.setdefault(name, {})
                here = lib.checked(decl.set.card)
    return tree


def _decl_at(checked: Checked, step: str, ascii_path):
    from .semantics.values import decl_key
    for d in checked.card.decls:
        if d.role == "param" or d.role == "input" and isinstance(d.set, Group):
            for n in d.names:
                if ascii_path(decl_key(n, d)) == step:
                    return d, n
    raise KeyError(f"{checked.card.name} has no parameter {step}")


def _module_fields(checked: Checked, params) -> bool:
    """A dict keyed by the module's field names rather than card names."""
    if not isinstance(params, dict):
        return False
    names = {n for d in checked.card.decls if d.role == "param" for n in d.names}
    return bool(params) and not any(k in names for k in params)
