"""The cards a training run needs, compiled in memory: the model card, the ``cross_entropy`` and
``AdamW`` cards, and the texts of all of them (and of every card they call) that a checkpoint carries.

A checkpoint's cards are compiled from its own texts through a Library filled from strings, with
no search folder: nothing on disk, and no path the checkpoint names, is ever read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types

from ..compile.core import walk
from ..compile.emit import module_source
from ..compile.gradcheck import import_source
from ..compile.lower import lower
from ..compile.naming import ascii_name
from ..lang.check import Checked, Library, check
from ..lang.check_call import callees
from ..lang.errors import CardError
from ..lang.parse import parse

TRAINING_CARDS = ("cross_entropy", "AdamW")  # the loss and the update every run uses
BYTE_VOCAB = 256


@dataclasses.dataclass
class Modules:
    card: Checked
    model: types.ModuleType
    loss: types.ModuleType
    adamw: types.ModuleType
    config: object


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def card_texts(checked: Checked, lib: Library, names=TRAINING_CARDS) -> dict[str, dict]:
    """The model card, the training cards and every card any of them calls, each once:
    name -> {"text", "sha256"}."""
    out: dict[str, dict] = {}

    def visit(name: str):
        if name in out:
            return
        card = lib.card(name)
        if card is None:
            return  # a built-in, not a card
        out[name] = {"text": card.source, "sha256": sha256(card.source)}
        for sub in callees(card):
            visit(sub)
    visit(checked.card.name)
    for name in names:
        if lib.card(name) is None:
            raise CardError(f"training needs the card {name}.card beside {checked.card.path} or in ./cards")
        visit(name)
    return out


def library_from_texts(texts: dict[str, str], origin: str) -> Library:
    """A Library holding exactly these cards (name -> text), with no folder to search."""
    cards = {}
    for name, text in texts.items():
        card = parse(text, f"{origin}:{name}.card")
        if card.name != name:
            raise CardError(f"the card stored as {name} is named {card.name}", path=card.path, source=text)
        cards[name] = card
    return Library(cards=cards)


def check_model(lib: Library, name: str) -> Checked:
    card = lib.card(name)
    if card is None:
        raise CardError(f"no card {name}")
    checked = check(card, lib)
    out = checked.env[card.outputs[0]].type if len(card.outputs) == 1 else None
    if card.convention.axes != "rows" or out is None or len(out.shape) != 2:
        raise CardError(f"cardgen train trains a language model whose output is logits, one row per position "
                        f"(T×V, as GPT2 and Bigram); {card.name} is not one",
                        hint="the paper's DTransformer trains with its own card: generated/DTraining.py, train()")
    return checked


def compile_modules(checked: Checked, lib: Library, values: dict, vocab: int | None = BYTE_VOCAB) -> Modules:
    """The model's module with a Config from ``values`` (card names or identifiers), and the loss and
    AdamW modules. ``vocab``: the vocabulary size the data needs (256 for bytes), or None for any."""
    mods = {}
    for name in TRAINING_CARDS:
        sub = lib.checked(name)
        if sub is None:
            raise CardError(f"training needs the card {name}.card beside {checked.card.path} or in ./cards")
        mods[name] = load_module(sub, lib)
    model = load_module(checked, lib)
    fields = {f.name: f for f in dataclasses.fields(model.Config)}
    given = {ascii_name(k): v for k, v in values.items()}
    for f in (f for f in fields if f in ("V", "N_V")):
        if vocab is not None and given.setdefault(f, vocab) != vocab:
            raise CardError(f"byte-level training needs {f} = {vocab}, not {given[f]}")
    missing = [f for f, spec in fields.items() if f not in given and spec.default is dataclasses.MISSING]
    if missing:
        raise CardError(f"{checked.card.name} needs values for {', '.join(missing)}: --set NAME=VALUE",
                        hint="for example --set D=64 --set H=4 --set D_f=256 --set N=2 --set ctx=64")
    unknown = [k for k in given if k not in fields]
    if unknown:
        raise CardError(f"{checked.card.name} has no hyperparameter {', '.join(unknown)}",
                        hint=f"its hyperparameters: {', '.join(fields)}")
    for name, spec in fields.items():
        if name in given:
            given[name] = _config_value(checked.card.name, name, given[name], str(spec.type))
    config = model.Config(**given)
    check_sizes(checked, lib, config)
    return Modules(checked, model, mods["cross_entropy"], mods["AdamW"], config)


def _config_value(card: str, name: str, value, kind: str):
    """A hyperparameter as its Config field wants it: sizes whole and at least 1, reals finite."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() \
                or value < 1:
            raise CardError(f"{card}: {name} = {value} is not a size (a whole number, at least 1)")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardError(f"{card}: {name} = {value} is not a finite number")
    return value


def check_sizes(checked: Checked, lib: Library, config) -> None:
    """Every dimension the card computes from the config (D/H, 3·D, …) is a whole number of at least 1:
    otherwise an error in the card's terms, before any array is made."""
    prog = lower(checked, lib)
    values = _dim_values(prog, config)
    shapes = [v.shape for v in prog.params + prog.inputs] + [op.shape for op in walk(prog.body)]
    for shape in shapes:
        for d in shape:
            v = d.evaluate(values)
            if v is not None and (v.denominator != 1 or v < 1):
                given = ", ".join(f"{s}={values[s]}" for s in d.symbols() if s in values)
                raise CardError(f"{checked.card.name}: the dimension {d} is {v} at {given}, not a whole number "
                                "of at least 1", hint="choose sizes that divide evenly (H must divide D, for example)")


def _dim_values(prog, config) -> dict:
    return {s: getattr(config, how.removeprefix("config.")) for s, how in prog.dims.items()
            if how.startswith("config.") and hasattr(config, how.removeprefix("config."))}


def closure(name: str, lib: Library) -> dict[str, str]:
    """The texts of a card and of every card it calls, recursively: name -> text."""
    out: dict[str, str] = {}

    def visit(n: str):
        card = lib.card(n)
        if n in out or card is None:
            return
        out[n] = card.source
        for sub in callees(card):
            visit(sub)
    visit(name)
    return out


_MODULES: dict[str, types.ModuleType] = {}


def load_module(checked: Checked, lib: Library) -> types.ModuleType:
    """The card's generated module, imported from memory, once per process for the same card texts.
    Its name carries a hash of those texts, so a checkpoint's GPT2 and the GPT2 on disk (or two
    versions of one card) never replace each other."""
    texts = closure(checked.card.name, lib)
    key = sha256("".join(f"{n}\0{t}\0" for n, t in sorted(texts.items())))
    if key not in _MODULES:
        name = f"cardgen_train_{ascii_name(checked.card.name)}_{key[:16]}"
        src = module_source(checked, lib, f"{checked.card.name}.card")
        _MODULES[key] = import_source(name, src, f"<cardgen:{checked.card.name}:{key[:16]}>")
    return _MODULES[key]


def param_shapes(checked: Checked, lib: Library, config) -> dict[str, tuple[int, ...]]:
    """Every Params field's shape at this config, computed from the card (nothing allocated), so a
    checkpoint's arrays can be checked before they are read."""
    prog = lower(checked, lib)
    values = _dim_values(prog, config)
    shapes = {}
    for p in prog.params:
        dims = [d.evaluate(values) for d in p.shape]
        if any(d is None or d.denominator != 1 or d < 0 for d in dims):
            raise CardError(f"{checked.card.name}: the configuration does not give {p.name} a whole shape "
                            f"({', '.join(str(d) for d in p.shape)})")
        shapes[p.name] = tuple(int(d) for d in dims)
    return shapes


def nbytes(shapes: dict[str, tuple[int, ...]], itemsize: int) -> int:
    return sum(math.prod(s) for s in shapes.values()) * itemsize
