"""Checkpoints as data: one safetensors file (``tensorfile``) holding the parameters, the AdamW
moments and, in its metadata, everything else a run needs, with nothing that names a path to read:

- tensors ``params/<field>``, and ``m/<field>``, ``v/<field>`` when the optimizer state is kept
  (a checkpoint made by ``import-hf`` has none); fields are the generated module's ``Params``
  fields (``W_qkv``: every block's, stacked on a leading axis);
- ``__metadata__["format"] = "cardgen-checkpoint"`` and ``__metadata__["cardgen"]``, a JSON object:
  ``version``, ``card`` (the model card's name), ``cards`` (name -> {text, sha256}: the model card,
  ``cross_entropy``, ``AdamW`` and every card they call), ``config`` (the model's hyperparameters),
  ``dtype``, ``step``, ``rng`` (the NumPy bit generator's state after the last completed step: it
  also fixes where the next batch is drawn), ``run`` (the settings that shape the trajectory, the
  data's SHA-256 among them) and ``tokens`` (``bytes`` or ``ids``).

Reading checks, in order, before any tensor is read: the header (``tensorfile``), the metadata's
fields and types, each card text against its SHA-256, that the cards check and compile, that every
tensor the card's Params need is there with the declared dtype and shape at the stored config (no
more, no fewer), and that the total is under ``limit`` bytes. Every failure is a CheckpointError in
the user's terms.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from ..lang.errors import CardError
from ..lang.files import atomic_write
from . import cards as tc
from .tensorfile import FormatError, TensorFile, encode

FORMAT = "cardgen-checkpoint"
VERSION = 1
DTYPES = ("float32", "float64")
LIMIT = 16 * 2**30  # bytes of tensors a checkpoint may declare; --max-bytes may lower it
GROUPS = ("params", "m", "v")


class CheckpointError(CardError):
    """A checkpoint that cannot be used, said in the user's terms (never a traceback)."""

    def __str__(self) -> str:
        out = f"{self.path}: error: {self.message}"
        return out + (f"\n  hint: {self.hint}" if self.hint else "")


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint's metadata, checked; its tensors are read by ``load_state``."""

    path: str
    card: str
    cards: dict[str, dict]
    config: dict
    dtype: str
    step: int
    rng: dict | None
    run: dict
    tokens: str
    has_optimizer: bool
    file: TensorFile

    def library(self):
        """The cards it carries, parsed once, in a Library with no folder to search."""
        if "_library" not in self.__dict__:
            self._library = tc.library_from_texts({n: c["text"] for n, c in self.cards.items()},
                                                  f"<checkpoint {self.path}>")
        return self._library

    def close(self) -> None:
        self.file.close()


def save(path, *, card: str, cards: dict[str, dict], config, step: int, params, m=None, v=None,
         rng: np.random.Generator | None = None, run: dict | None = None, tokens: str = "bytes") -> None:
    """Write a checkpoint atomically (the old file or the new one, never half of one)."""
    tensors = {}
    groups = (("params", params),) + ((("m", m), ("v", v)) if m is not None else ())
    for group, obj in groups:
        for f in dataclasses.fields(obj):
            tensors[f"{group}/{f.name}"] = getattr(obj, f.name)
    dtype = str(np.result_type(*tensors.values())) if tensors else "float32"
    meta = {"version": VERSION, "card": card, "cards": cards,
            "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config),
            "dtype": dtype, "step": step, "rng": rng.bit_generator.state if rng is not None else None,
            "run": run or {}, "tokens": tokens}
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=_plain)
    atomic_write(path, encode(tensors, {"format": FORMAT, "cardgen": text}))


def _plain(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    raise TypeError(type(x).__name__)


# Each setting's kind, to check what a checkpoint says before using it: (type, least value).
KINDS = {"steps": (int, 1), "batch": (int, 1), "seq": (int, 1), "warmup": (int, 0), "accumulate": (int, 1),
         "seed": (int, 0), "eval_every": (int, 1), "save_every": (int, 1), "lr": (float, 0.0),
         "lr_min": (float, 0.0), "weight_decay": (float, 0.0), "clip": (float, 0.0), "dtype": (str, None),
         "data": (dict, None)}


def run_problems(saved: dict) -> list[str]:
    """What is wrong with a checkpoint's run settings (empty: nothing)."""
    out = []
    for k, (kind, least) in KINDS.items():
        if k not in saved:
            out.append(f"{k} is missing")
            continue
        v = saved[k]
        ok = isinstance(v, kind if kind is not float else (int, float)) and not isinstance(v, bool)
        if ok and least is not None:
            ok = math.isfinite(v) and v >= least
        if not ok:
            out.append(f"{k} = {str(v)[:40]} is not a valid setting")
    if isinstance(saved.get("dtype"), str) and saved["dtype"] not in ("float32", "float64"):
        out.append(f"dtype {saved['dtype'][:20]!r} is not float32 or float64")
    return out


# The metadata's fields: name -> (the type it must have, what it is, for the message).
FIELDS = {
    "version": (int, "a format version"), "card": (str, "the model card's name"),
    "cards": (dict, "the card texts"), "config": (dict, "the hyperparameters"), "dtype": (str, "a dtype"),
    "step": (int, "a step count"), "run": (dict, "the run's settings"), "tokens": (str, "a tokenizer name"),
}


def open_checkpoint(path) -> Checkpoint:
    """Read and check a checkpoint's header and metadata (not its tensors)."""
    path = str(path)
    try:
        f = TensorFile(path)
    except FormatError as e:
        raise CheckpointError(f"not a cardgen checkpoint: {e}", path=path) from None
    try:
        return _checked(path, f)
    except BaseException:
        f.close()
        raise


def _checked(path: str, f: TensorFile) -> Checkpoint:
    def bad(msg, hint=None):
        return CheckpointError(msg, path=path, hint=hint)
    if f.metadata.get("format") != FORMAT or "cardgen" not in f.metadata:
        raise bad("a safetensors file, but not a cardgen checkpoint (no cardgen metadata)",
                  hint="a Hugging Face GPT-2 folder becomes one with `cardgen import-hf DIR`")
    try:
        meta = json.loads(f.metadata["cardgen"])
    except (json.JSONDecodeError, RecursionError):
        raise bad("its cardgen metadata is not JSON") from None
    if not isinstance(meta, dict):
        raise bad("its cardgen metadata is not a JSON object")
    for name, (kind, what) in FIELDS.items():
        if name not in meta:
            raise bad(f"its metadata has no {name} ({what})")
        if not isinstance(meta[name], kind) or isinstance(meta[name], bool):
            raise bad(f"its metadata's {name} should be {what}, not {type(meta[name]).__name__}")
    if meta["version"] != VERSION:
        raise bad(f"format version {meta['version']}; this cardgen reads version {VERSION}",
                  hint="use the cardgen that wrote it")
    if meta["dtype"] not in DTYPES:
        raise bad(f"dtype {meta['dtype'][:20]!r}: checkpoints hold float32 or float64")
    if meta["step"] < 0:
        raise bad(f"step {meta['step']} is negative")
    if meta["tokens"] not in ("bytes", "ids"):
        raise bad(f"tokens {meta['tokens'][:20]!r}: expected bytes or ids")
    cards = meta["cards"]
    for name, entry in cards.items():
        if not name or name.startswith(".") or any(c in name for c in "/\\\0") or not name.isprintable():
            raise bad(f"card name {name[:40]!r} is not a card's name")
        if not (isinstance(entry, dict) and isinstance(entry.get("text"), str)
                and isinstance(entry.get("sha256"), str)):
            raise bad(f"card {name[:40]!r}: expected its text and sha256")
        if tc.sha256(entry["text"]) != entry["sha256"]:
            raise bad(f"card {name[:40]}: its text does not match its SHA-256 (the file was altered or damaged)")
    if meta["card"] not in cards:
        raise bad(f"the model card {meta['card'][:40]!r} is not among the cards it carries")
    for k, v in meta["config"].items():
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or v >= 2**40:
            raise bad(f"config {k[:40]} = {json.dumps(v)[:40]}: not a size or a number cardgen can use")
    rng = meta.get("rng")
    if rng is not None and not (isinstance(rng, dict) and rng.get("bit_generator") == "PCG64"):
        raise bad("its random-number state is not NumPy's PCG64 state")
    if rng is not None:
        _generator(rng, path)
    groups = {k.split("/", 1)[0] for k in f.entries}
    if not groups <= set(GROUPS) or "params" not in groups:
        extra = sorted(groups - set(GROUPS))
        raise bad("tensors " + (f"of unknown groups {', '.join(extra)[:80]}" if extra else "params/… missing"))
    has_opt = {"m", "v"} <= groups
    if not has_opt and groups != {"params"}:
        raise bad("it holds only one of the AdamW moments m and v")
    problems = run_problems(meta["run"]) if has_opt else []  # a training checkpoint: its run must be whole
    if problems:
        raise bad("its run settings are damaged: " + "; ".join(problems[:4]))
    return Checkpoint(path, meta["card"], cards, meta["config"], meta["dtype"], meta["step"], rng, meta["run"],
                      meta["tokens"], has_opt, f)


def compile_checkpoint(ck: Checkpoint, vocab_check: bool = True) -> tc.Modules:
    """The checkpoint's own cards, compiled from its texts, with its config."""
    lib = ck.library()
    checked = tc.check_model(lib, ck.card)
    try:
        return tc.compile_modules(checked, lib, ck.config, vocab=tc.BYTE_VOCAB if ck.tokens == "bytes" else None)
    except CardError as e:
        if e.pos is not None or e.path != "<card>":
            raise  # about a card's text: it says where
        raise CheckpointError(f"its config does not fit card {ck.card}: {e.message}", path=ck.path,
                              hint=e.hint) from None


def load_state(ck: Checkpoint, mods: tc.Modules, limit: int = LIMIT):
    """(params, m, v) as the model's Params (m and v None without optimizer state), every tensor
    checked against the card's shapes at the stored config and the dtype before it is read."""
    try:
        shapes = tc.param_shapes(mods.card, ck.library(), mods.config)
    except CardError as e:
        raise CheckpointError(f"its config does not fit card {ck.card}: {e.message}", path=ck.path) from None
    dtype = np.dtype(ck.dtype)
    total = tc.nbytes(shapes, dtype.itemsize) * (3 if ck.has_optimizer else 1)
    if total > limit:
        raise CheckpointError(f"its config declares {total:,} bytes of tensors, more than the limit {limit:,}",
                              path=ck.path, hint="sample --max-bytes raises the limit for a model that big")
    groups = GROUPS if ck.has_optimizer else ("params",)
    want = {f"{g}/{name}": shape for g in groups for name, shape in shapes.items()}
    have = ck.file.entries
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    if missing or extra:
        raise CheckpointError("its tensors do not match card " + ck.card + ": "
                              + "; ".join(p for p in (_names("missing", missing), _names("unexpected", extra)) if p),
                              path=ck.path)
    for k, shape in want.items():
        if ck.file.shape(k) != shape:
            raise CheckpointError(f"tensor {k} has shape {ck.file.shape(k)}, but card {ck.card} at its config "
                                  f"needs {shape}", path=ck.path)
        if ck.file.dtype(k) != dtype:
            raise CheckpointError(f"tensor {k} is {ck.file.dtype(k)}, the checkpoint says {ck.dtype}", path=ck.path)
    out = []
    for g in GROUPS:
        if g not in groups:
            out.append(None)
            continue
        try:
            out.append(mods.model.Params(**{name: ck.file.tensor(f"{g}/{name}") for name in shapes}))
        except FormatError as e:
            raise CheckpointError(str(e), path=ck.path) from None
    return tuple(out)


def restore_rng(ck: Checkpoint) -> np.random.Generator:
    return _generator(ck.rng, ck.path)


def _generator(state: dict, path: str) -> np.random.Generator:
    rng = np.random.Generator(np.random.PCG64())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise CheckpointError("its random-number state is damaged", path=path) from None
    return rng


def _names(what: str, names: list[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"{what} {shown}"


def disk_differences(ck: Checkpoint, lib_on_disk) -> list[str]:
    """Names of the checkpoint's cards whose text on disk (where the library finds them) differs."""
    out = []
    for name, entry in ck.cards.items():
        try:
            card = lib_on_disk.card(name)
        except (CardError, OSError, UnicodeError):
            card = None
        if card is not None and card.source != entry["text"]:
            out.append(f"{name} ({card.path})")
    return out

