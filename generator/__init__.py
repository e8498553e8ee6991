"""cardgen: compile algorithm cards (Phuong & Hutter style pseudocode) into NumPy.

The public API (``load``, ``loads``, ``check``, ``render``, ``build``, ``Card``, …) is ``cardgen.api``'s,
importable from here; it is imported on first use, so ``cardgen --help`` stays quick (and so are
``parse``, ``parse_file`` and ``CardError``: the parser loads lark).
"""

import sys

from .lang.limits import MAX_DEPTH

# Each stage walks an expression recursively, a few frames per level, and cards
# may nest up to MAX_DEPTH levels (a long sum is as deep as it is long).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * MAX_DEPTH))

API = ("Card", "build", "check", "compile_card", "gradcheck", "interpret", "load", "load_all", "loads",
       "render", "search_path", "where")

__all__ = ["CardError", "Sharded", "parse", "parse_file", *API]


def __getattr__(name: str):
    if name in API:
        from . import api
        return getattr(api, name)
    if name == "CardError":
        from .lang.errors import CardError
        return CardError
    if name == "Sharded":
        from .train.shards import Sharded
        return Sharded
    if name in ("parse", "parse_file"):
        from .lang import parse
        return getattr(parse, name)
    raise AttributeError(f"module 'cardgen' has no attribute {name!r}")
