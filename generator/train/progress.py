"""Progress of a training run: a tqdm bar (steps, elapsed, ETA, loss) on a terminal, plain lines
with the same facts when stderr is a file or a pipe (CI logs, ``nohup``)."""

from __future__ import annotations

import io
import os
import sys
import time


def clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return (f"{h}:" if h else "") + f"{rest // 60:02d}:{rest % 60:02d}"


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 80  # a terminal we cannot ask (a test's stand-in): assume the usual width


class Progress:
    def __init__(self, total: int, start: int, every: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.start, self.every = total, start, every
        self.began = time.perf_counter()
        self.bar = None
        if self.stream.isatty() and _columns(self.stream) > 0:  # a pty of width 0 (`script`) shows no bar
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", file=self.stream, dynamic_ncols=True)

    def update(self, step: int, loss: float, val: float | None, rate: float) -> None:
        facts = f"loss {loss:.4f}" + ("" if val is None else f"  val {val:.4f}") + f"  {rate:,.0f} tokens/s"
        if self.bar is not None:
            self.bar.set_postfix_str(facts, refresh=False)
            self.bar.update(step - self.bar.n)
            return
        if step % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.began
        done = step - self.start
        eta = elapsed / done * (self.total - step) if done else 0.0
        print(f"step {step}/{self.total}  {facts}  elapsed {clock(elapsed)}  eta {clock(eta)}",
              file=self.stream, flush=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
