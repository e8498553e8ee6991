"""A training run in a folder: start, stop, resume, never lost or torn.

The folder holds ``checkpoint.safetensors`` (``checkpoint``), ``log.csv`` (step, train loss,
validation loss, learning rate, tokens/s) and, with matplotlib installed, ``loss.png``. Both the
checkpoint and the log are written whole (``atomic_write``) every ``save_every`` steps and when the
run ends, so they always agree, and ``kill -9`` loses at most ``save_every`` steps.

SIGINT and SIGTERM only set a flag: the step in progress completes, then the last completed state
is saved and the run ends (exit 130 / 143); a second signal ends it at once, keeping the last
saved checkpoint. Resuming draws the next batch from the saved RNG state with the saved moments and
step count, so a run stopped at any moment and resumed ends bit-identical to one never stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from ..lang.errors import CardError
from ..lang.files import atomic_write, remove_leftovers
from . import checkpoint as ckpt
from . import trainer as tr
from .cards import Modules
from .progress import Progress
from .schedule import Schedule

CHECKPOINT, LOG = "checkpoint.safetensors", "log.csv"
RUN_FILES = (CHECKPOINT, LOG, "checkpoint.npz")  # a folder with any of them holds a run
LOG_HEADER = "step,train_loss,val_loss,lr,tokens_per_s"


@dataclasses.dataclass
class Settings:
    """Everything that shapes the trajectory (compared on --resume), then what does not."""

    steps: int
    batch: int
    seq: int
    lr: float
    lr_min: float
    warmup: int
    weight_decay: float
    clip: float
    accumulate: int
    seed: int
    dtype: str
    data: dict  # name, bytes, sha256 of the training text
    eval_every: int = 100
    save_every: int = 100
    threads: int = 1  # shards of each batch on threads of their own: the sum's rounding depends on it

    SHAPING = ("batch", "seq", "lr", "lr_min", "warmup", "weight_decay", "clip", "accumulate", "seed", "dtype",
               "data", "threads")

    def schedule(self) -> Schedule:
        return Schedule(self.lr, self.lr_min, self.warmup, self.steps)

    def trajectory(self) -> dict:
        out = {k: getattr(self, k) for k in self.SHAPING}
        if self.schedule().uses_steps:
            out["steps"] = self.steps
        return out


def data_identity(name: str, text: bytes) -> dict:
    return {"name": name, "bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}


def holds_run(folder: Path) -> bool:
    return any((folder / f).exists() for f in RUN_FILES)


def differences(saved: dict, wanted: dict) -> list[str]:
    """``--flag: saved in the checkpoint, wanted now`` for every setting that differs (only those
    both sides have)."""
    out = []
    for k in wanted:
        if k in saved and saved[k] != wanted[k]:
            a, b = saved[k], wanted[k]
            if isinstance(a, dict) and isinstance(b, dict):  # the data: say which text, not its hash
                a, b = f"{a.get('name')} ({a.get('bytes')} bytes)", f"{b.get('name')} ({b.get('bytes')} bytes)"
                if a == b:
                    a, b = a + " sha256 " + str(saved[k].get("sha256"))[:12], b + " sha256 " + wanted[k]["sha256"][:12]
            out.append(f"--{k.replace('_', '-')}: {a} in the checkpoint, {b} now")
    return out


class Signals:
    """SIGINT and SIGTERM set ``received``; a second one ends the process at once."""

    def __init__(self):
        self.received: int | None = None
        self.old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only there can Python take signals
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)

    def _handle(self, signum, frame):
        if self.received is not None:
            os.write(2, b"\nsecond signal: stopping now; the last saved checkpoint stands\n")
            os._exit(128 + signum)
        self.received = signum


@dataclasses.dataclass
class Run:
    folder: Path
    mods: Modules
    cards: dict
    settings: Settings
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    state: tr.TrainState | None = None
    rng: np.random.Generator | None = None
    rows: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        s = self.settings
        self.trainer = tr.Trainer(self.mods.model, self.mods.loss, self.mods.adamw, self.mods.config,
                                  tr.AdamWSettings(lr=s.lr, weight_decay=s.weight_decay, clip_norm=s.clip or None,
                                                   accumulate=s.accumulate), threads=s.threads)

    def start(self) -> None:
        self.rng = np.random.default_rng(self.settings.seed)
        self.state = self.trainer.init(self.rng, np.dtype(self.settings.dtype))
        self.rows = []

    def resume(self, ck: ckpt.Checkpoint) -> None:
        params, m, v = ckpt.load_state(ck, self.mods)
        if m is None:
            raise ckpt.CheckpointError("it holds weights only (no optimizer state)", path=ck.path)
        self.state = self.trainer.state(params, m, v, ck.step)
        self.rng = ckpt.restore_rng(ck)
        self.rows = read_log(self.folder / LOG, ck.step)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        s = self.state
        # The log first: killed between the two writes, the log may run ahead of the checkpoint
        # (resume drops those rows), never behind it.
        atomic_write(self.folder / LOG, "\n".join([LOG_HEADER, *(",".join(r) for r in self.rows)]) + "\n")
        ckpt.save(self.folder / CHECKPOINT, card=self.mods.card.card.name, cards=self.cards, config=self.mods.config,
                  step=s.step, params=s.params, m=s.m, v=s.v, rng=self.rng,
                  run={**dataclasses.asdict(self.settings)}, tokens="bytes")

    def evaluate(self, step: int) -> float:
        # Its own RNG per step: evaluation never moves the training trajectory.
        s = self.settings
        vb = tr.batches(self.val_tokens, s.batch, s.seq, np.random.default_rng([s.seed, step]))
        return self.trainer.evaluate(self.state.params, vb)

    def train(self, progress: Progress | None = None) -> int | None:
        """Steps until the end or a signal; returns the signal that stopped it (None: finished)."""
        s, state = self.settings, self.state
        schedule = s.schedule()
        remove_leftovers(self.folder)
        began, tokens = time.perf_counter(), 0
        with Signals() as signals:
            while state.step < s.steps and signals.received is None:
                micro = [tr.batches(self.train_tokens, s.batch, s.seq, self.rng) for _ in range(s.accumulate)]
                lr = schedule(state.step + 1)
                loss = self.trainer.step(state, micro, lr=lr)
                tokens += s.batch * s.seq * s.accumulate
                rate = tokens / max(time.perf_counter() - began, 1e-9)
                val = self.evaluate(state.step) if state.step % s.eval_every == 0 or state.step == s.steps else None
                self.rows.append([str(state.step), f"{loss:.6f}", "" if val is None else f"{val:.6f}", f"{lr:.6g}",
                                  f"{rate:.1f}"])
                if progress is not None:
                    progress.update(state.step, loss, val, rate)
                if state.step % s.save_every == 0 and state.step < s.steps:
                    self.save()
            self.save()
            return signals.received

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        train = ([int(r[0]) for r in self.rows], [float(r[1]) for r in self.rows])
        val = [(int(r[0]), float(r[2])) for r in self.rows if r[2]]
        return {"train": train, "validation": ([a for a, _ in val], [b for _, b in val])}


def read_log(path: Path, upto: int) -> list[list[str]]:
    """The log's rows up to the checkpoint's step (a row written after it is dropped); a log that is
    missing or not ours starts afresh."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeError):
        return []
    if not lines or lines[0] != LOG_HEADER:
        return []
    rows = []
    for line in lines[1:]:
        r = line.split(",")
        if len(r) == 5 and r[0].isdigit() and int(r[0]) <= upto:
            rows.append(r)
    return rows


def check_settings(s: Settings, context: int | None, n_train: int, n_val: int) -> None:
    """Values that would train on nothing or on garbage: an error naming the flag."""
    problems = s.schedule().problems()
    if context is not None and s.seq > context:
        problems.append(f"--seq {s.seq} is longer than the model's {context} positions (ctx)")
    if n_train < s.seq + 2:
        problems.append(f"the training text has {n_train} tokens: --seq {s.seq} needs at least {s.seq + 2}")
    if n_val < s.seq + 2:
        problems.append(f"the held-out text has {n_val} tokens: --seq {s.seq} needs at least {s.seq + 2} "
                        "(give a longer --data file)")
    if not math.isfinite(s.weight_decay) or s.weight_decay < 0:
        problems.append(f"--weight-decay must be 0 or more, not {s.weight_decay}")
    if not math.isfinite(s.clip) or s.clip < 0:
        problems.append(f"--clip must be 0 (off) or more, not {s.clip}")
    if problems:
        raise CardError("; ".join(problems))
