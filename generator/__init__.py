"""cardgen: compile algorithm cards (Phuong & Hutter style pseudocode) into NumPy."""

import sys

from .lang.errors import CardError
from .lang.parse import MAX_DEPTH, parse, parse_file

# Each stage walks an expression recursively, a few frames per level, and cards
# may nest up to MAX_DEPTH levels (a long sum is as deep as it is long).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * MAX_DEPTH))

__all__ = ["CardError", "interpret", "parse", "parse_file"]


def __getattr__(name: str):
    """``cardgen.interpret``: the reference interpreter, imported when first used."""
    if name == "interpret":
        from .api import interpret
        return interpret
    raise AttributeError(f"module 'cardgen' has no attribute {name!r}")
