"""The learning rate at each step: linear warmup, then cosine decay to a floor, as GPT-2 recipes
(nanoGPT's ``get_lr``, the GPT-3 paper's schedule) do it.

Steps count from 1 (the first update is step 1): during warmup the rate climbs in equal parts from
``lr / warmup`` to ``lr`` at step ``warmup``; from there it follows half a cosine down to ``lr_min``
at the last step. ``lr_min == lr`` is a constant rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    lr: float
    lr_min: float
    warmup: int
    steps: int

    def __call__(self, step: int) -> float:
        if self.warmup and step <= self.warmup:
            return self.lr * step / self.warmup
        if step >= self.steps:
            return self.lr_min
        progress = (step - self.warmup) / (self.steps - self.warmup)  # 0 at the end of warmup
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * progress))

    @property
    def uses_steps(self) -> bool:
        """Whether the total step count shapes the rate (then it is part of the run)."""
        return self.lr_min != self.lr

    def problems(self) -> list[str]:
        """What is wrong with the settings, in the flags' terms (empty: nothing)."""
        out = []
        if not (math.isfinite(self.lr) and self.lr > 0):
            out.append(f"--lr must be a positive number, not {self.lr}")
        if not (math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            out.append(f"--lr-min must be between 0 and --lr ({self.lr}), not {self.lr_min}")
        if self.warmup < 0:
            out.append(f"--warmup must be 0 or more steps, not {self.warmup}")
        elif self.warmup > self.steps:
            out.append(f"--warmup ({self.warmup}) is longer than the run (--steps {self.steps})")
        return out
