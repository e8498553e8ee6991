"""What ``cardgen train``, ``sample``, ``import-hf`` and ``export-hf`` do, below the command line:
plain arguments in, messages out through ``say`` (the CLI passes click.echo to stderr)."""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..compile.naming import ascii_name
from ..lang.configs import chosen_values, settable_names, training_config
from ..lang.errors import CardError
from ..lang.load import library_for, load, resolve
from . import cards as tc
from . import checkpoint as ckpt
from . import hf
from . import run as rn
from . import trainer as tr
from .plot import write_png
from .progress import Progress
from .text import decode

Say = Callable[[str], None]


def read_data(data: str | None) -> tuple[bytes, dict]:
    if data is None:
        text = tr.stdlib_text()
        return text, rn.data_identity("the standard library's sources", text)
    text = Path(data).read_bytes()
    return text, rn.data_identity(Path(data).name, text)


def training_values(checked, lib, config: str | None, given: dict) -> dict:
    """The sizes a new run trains at: the card's configuration ``config`` (by default the one marked
    ``(training)``), then ``given`` (``--set``, whose names must be the card's)."""
    if config is None and training_config(checked.card) is not None:
        config = training_config(checked.card).name
    names = settable_names(checked, lib)
    return chosen_values(checked.card, config, given, [*names, *map(ascii_name, names)])


def train(card: str, values: dict, settings: rn.Settings, given: dict, out_dir: str | None, resume: bool,
          force: bool, data: str | None, log_scale: bool, say: Say, out: Say, config: str | None = None) -> int:
    """Start or resume a run; the exit status (0, or 128 + the signal that stopped it).  A new run takes
    the card's named configuration ``config`` (by default the one marked ``(training)``), ``values`` on top."""
    if resume and force:
        raise CardError("--resume continues the run in the folder, --force replaces it: give one")
    card = resolve(card)  # a file, or a name on the search path
    disk_lib = library_for(card)
    if resume:
        folder = Path(out_dir) if out_dir else None
        if folder is None:
            c, _ = load(card, disk_lib)
            folder = Path(f"runs/{c.name}")
        path = folder / rn.CHECKPOINT
        if not path.exists():
            old = folder / "checkpoint.npz"
            raise CardError(f"--resume: no checkpoint at {path}",
                            hint=f"{old} is the old format, which named its card by path; cardgen no longer reads "
                                 "it: train again" if old.exists() else None)
        ck = ckpt.open_checkpoint(path)
        try:
            return _resume(ck, folder, card, disk_lib, values, settings, given, data, log_scale, say, out)
        finally:
            ck.close()
    c, _ = load(card, disk_lib)
    folder = Path(out_dir or f"runs/{c.name}")
    if rn.holds_run(folder) and not force:
        raise CardError(f"{folder} already holds a training run",
                        hint="--resume continues it, --force starts over and replaces it, --out picks another folder")
    checked = tc.check_model(disk_lib, c.name)
    mods = tc.compile_modules(checked, disk_lib, training_values(checked, disk_lib, config, values))
    texts = tc.card_texts(mods.card, disk_lib)
    text, settings.data = read_data(data)
    run = _run(folder, mods, texts, settings, text)
    run.start()
    run.save()  # step 0 at once: the folder holds this run (with --force: no longer the old one)
    return _go(run, log_scale, say, out)


def _resume(ck, folder, card, disk_lib, values, settings, given, data, log_scale, say, out) -> int:
    if not ck.has_optimizer:
        raise ckpt.CheckpointError("it holds weights only (no optimizer state), so training cannot resume "
                                   "exactly", path=ck.path, hint="start a new run instead")
    mods = ckpt.compile_checkpoint(ck)
    changed = ckpt.disk_differences(ck, disk_lib)
    if changed:
        say(f"note: the checkpoint's copy of {', '.join(changed)} differs from the card on disk; "
            "resuming with the checkpoint's copy")
    saved = dict(ck.run)
    text, data_id = read_data(data)
    wanted = {k: v for k, v in given.items() if k in rn.Settings.SHAPING or k == "steps"}
    wanted["data"] = data_id
    # Left out: as saved; given: as given (then compared, if it shapes the trajectory).
    merged = {**dataclasses.asdict(settings), **{k: v for k, v in saved.items() if k in rn.Settings.__annotations__},
              **given, "data": data_id}
    new = rn.Settings(**{k: merged[k] for k in rn.Settings.__annotations__ if k in merged})
    diffs = rn.differences(saved, {k: v for k, v in new.trajectory().items() if k in wanted})
    diffs += [f"--set {k}: {ck.config.get(k)} in the checkpoint, {v} now" for k, v in
              ((ascii_name(k), v) for k, v in values.items()) if ck.config.get(k) != v]
    if diffs:
        raise CardError("--resume with settings that change the run:\n    " + "\n    ".join(diffs),
                        hint="leave them out to continue as saved, or start a new run with --force or --out")
    run = _run(folder, mods, ck.cards, new, text)
    run.resume(ck)
    say(f"resuming {ck.card} at step {ck.step} from {ck.path}")
    return _go(run, log_scale, say, out)


def _run(folder: Path, mods: tc.Modules, texts: dict, settings: rn.Settings, text: bytes) -> rn.Run:
    train_tokens, val_tokens = tr.split(text)
    context = getattr(mods.config, "ctx", None) or getattr(mods.config, "ell_max", None)
    settings.seq = settings.seq or min(context or 64, 64)  # 0: not given
    rn.check_settings(settings, context, len(train_tokens), len(val_tokens))
    return rn.Run(folder, mods, texts, settings, train_tokens, val_tokens)


def _go(run: rn.Run, log_scale: bool, say: Say, out: Say) -> int:
    s = run.settings
    progress = Progress(s.steps, run.state.step, s.eval_every)
    try:
        stopped = run.train(progress)
    finally:
        progress.close()
    path = run.folder / rn.CHECKPOINT
    if stopped is not None:
        say(f"stopped at step {run.state.step} by {signal.Signals(stopped).name}: saved {path}; --resume continues")
        return 128 + stopped
    plotted = write_png(run.folder / "loss.png", run.curves(), run.mods.card.card.name, log_scale)
    saved = [str(path), str(run.folder / rn.LOG)] + ([str(run.folder / "loss.png")] if plotted else [])
    say("saved " + ", ".join(saved) + ("" if plotted else " (no loss.png: pip install 'cardgen[plot]')"))
    prompt = b"def "
    sample = run.trainer.generate(run.state.params, np.frombuffer(prompt, np.uint8), 120, 0.8,
                                  np.random.default_rng(s.seed), context=s.seq)
    out("sample: " + decode(prompt + bytes(sample.astype(np.uint8))))
    return 0


def sample(path: str, prompt: str, tokens: int, temperature: float, seed: int, card_hint: str | None,
           say: Say, out: Say, limit: int = ckpt.LIMIT) -> None:
    ck = ckpt.open_checkpoint(path)
    try:
        mods = ckpt.compile_checkpoint(ck)
        if card_hint:
            changed = ckpt.disk_differences(ck, library_for(resolve(card_hint)))
            if changed:
                say(f"note: the checkpoint's copy of {', '.join(changed)} differs from the card on disk; "
                    "sampling with the checkpoint's copy")
        params, _, _ = ckpt.load_state(ck, mods, limit)
    finally:
        ck.close()
    if not math.isfinite(temperature):
        raise CardError(f"--temperature must be a finite number of at least 0, not {temperature}")
    trainer = tr.Trainer(mods.model, mods.loss, mods.adamw, mods.config)
    context = getattr(mods.config, "ctx", None)
    seq = ck.run.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= (context or seq):
        context = seq  # the window the model was trained on
    if ck.tokens == "bytes":
        x = np.frombuffer(prompt.encode("utf-8"), np.uint8).astype(np.int64)
    else:
        x = _ids(prompt, _vocab(mods.config))
    if x.size == 0:
        example = "'def '" if ck.tokens == "bytes" else "'464 198'"
        raise CardError("--prompt is empty: the model needs at least one token to continue",
                        hint=f"for example --prompt {example}")
    y = trainer.generate(params, x, tokens, temperature, np.random.default_rng(seed), context=context)
    if ck.tokens == "bytes":
        out(decode(prompt.encode("utf-8") + bytes(y.astype(np.uint8))))
    else:
        out(" ".join(str(int(t)) for t in np.concatenate([x, y])))


def _vocab(config) -> int:
    return getattr(config, "V", None) or getattr(config, "N_V", 0)


def _ids(prompt: str, vocab: int) -> np.ndarray:
    try:
        ids = np.array([int(t) for t in prompt.split()], dtype=np.int64)
    except ValueError:
        raise CardError("this checkpoint has no tokenizer: --prompt takes token ids separated by spaces "
                        f"(0..{vocab - 1})", hint="encode text with the model's own tokenizer") from None
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise CardError(f"--prompt holds token ids outside 0..{vocab - 1}")
    return ids


def import_hf(folder: str, card: str, out: str, limit: int) -> str:
    src = Path(folder)
    if not src.is_dir():
        raise CardError(f"{folder} is not a folder (import-hf reads a folder written by save_pretrained)")
    values = hf.read_config(src)
    card = resolve(card)
    lib = library_for(card)
    c, _ = load(card, lib)
    checked = tc.check_model(lib, c.name)
    absent = [n for n in hf.CONFIG.values() if n not in checked.env] + (["D_f"] if "D_f" not in checked.env else [])
    if absent:
        raise CardError(f"{card} is not the GPT2 card: it has no {', '.join(absent)}")
    mods = tc.compile_modules(checked, lib, values, vocab=None)
    shapes = tc.param_shapes(checked, lib, mods.config)
    if set(shapes) != set(hf.MODEL_TENSORS) | set(hf.BLOCK_TENSORS):
        raise CardError(f"{card}'s parameters are not GPT-2's: {', '.join(sorted(shapes))}")
    arrays = hf.import_weights(src, shapes, limit)
    params = mods.model.Params(**arrays)
    ckpt.save(out, card=c.name, cards=tc.card_texts(checked, lib), config=mods.config, step=0, params=params,
              run={"seq": mods.config.ctx, "source": "Hugging Face GPT-2"}, tokens="ids")
    return out


def export_hf(path: str, folder: str, limit: int) -> list[Path]:
    ck = ckpt.open_checkpoint(path)
    try:
        mods = ckpt.compile_checkpoint(ck)
        if {f.name for f in dataclasses.fields(mods.model.Params)} != set(hf.MODEL_TENSORS) | set(hf.BLOCK_TENSORS):
            raise CardError(f"{path} holds a {ck.card} model, not a GPT-2: export-hf writes GPT-2 only")
        params, _, _ = ckpt.load_state(ck, mods, limit)
    finally:
        ck.close()
    return hf.export(Path(folder), mods.config, params)
