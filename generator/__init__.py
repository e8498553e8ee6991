"""cardgen: compile algorithm cards (Phuong & Hutter style pseudocode) into NumPy."""

import sys

from .lang.limits import MAX_DEPTH

# Each stage walks an expression recursively, a few frames per level, and cards
# may nest up to MAX_DEPTH levels (a long sum is as deep as it is long).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * MAX_DEPTH))

__all__ = ["CardError", "parse", "parse_file"]


def __getattr__(name: str):
    """``cardgen.parse`` and friends load the parser (and lark) on first use, not on import, so
    the command line answers ``--help`` at once."""
    if name == "CardError":
        from .lang.errors import CardError
        return CardError
    if name in ("parse", "parse_file"):
        from .lang import parse
        return getattr(parse, name)
    raise AttributeError(f"module 'cardgen' has no attribute {name!r}")
