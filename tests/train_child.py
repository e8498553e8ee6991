"""The training run that tests/test_train_runs.py stops and resumes, importable on its own.

The test's children are forked from a multiprocessing *forkserver*: a fresh interpreter that
imports this module (compiling the Bigram card once, so a child starts training at once) and
nothing else. Forking pytest itself is not safe: by the time the run's tests come, the suite has
started the thread pools of PyTorch and JAX, and a child forked from a threaded process can crash
(it did: SIGSEGV in a full-suite run). This module imports neither pytest nor the tests' conftest.
"""

import os
import signal
from pathlib import Path

from cardgen.lang.load import library_for, load
from cardgen.train import cards as tc
from cardgen.train import checkpoint as ckpt
from cardgen.train import run as rn

ROOT = Path(__file__).resolve().parent.parent
DATA = (ROOT / "generator" / "lang" / "check.py").read_bytes()[:40_000]


def bigram():
    lib = library_for(str(ROOT / "cards" / "Bigram.card"))
    card, _ = load(str(ROOT / "cards" / "Bigram.card"), lib)
    checked = tc.check_model(lib, card.name)
    return tc.compile_modules(checked, lib, {}), tc.card_texts(checked, lib)


def settings(steps=400):
    return rn.Settings(steps=steps, batch=2, seq=8, lr=1e-2, lr_min=1e-3, warmup=20, weight_decay=0.1, clip=1.0,
                       accumulate=2, seed=3, dtype="float32", data=rn.data_identity("check.py", DATA), eval_every=7,
                       save_every=5)


def life(folder, mods, texts) -> int:
    """One process's life: resume the folder's run if it has one, else start it; train to the end."""
    from cardgen.train.trainer import split
    train, val = split(DATA)
    run = rn.Run(folder, mods, texts, settings(), train, val)
    path = folder / rn.CHECKPOINT
    if path.exists():
        ck = ckpt.open_checkpoint(path)
        run.resume(ck)
        ck.close()
    else:
        run.start()
    stopped = run.train()
    return 0 if stopped is None else 128 + stopped


_COMPILED = None


def child(folder: str) -> None:
    """A child's whole life (run by the forkserver): train, then exit with life()'s status; 130 for
    a SIGINT that came before the run installed its handlers (nothing saved yet)."""
    global _COMPILED
    status = 97
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if _COMPILED is None:
            _COMPILED = bigram()
        status = life(Path(folder), *_COMPILED)
    except KeyboardInterrupt:
        status = 130
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        os._exit(status)


if os.environ.get("CARDGEN_TRAIN_CHILD_PRELOAD"):  # in the forkserver: compile once, before any fork
    _COMPILED = bigram()
