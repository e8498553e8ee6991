"""``cardgen check`` means it builds.

``check`` compiles each card in memory the way ``build`` does (lowering, the
derived backward, the module text), so whatever ``build`` would refuse,
``check`` refuses first, at the card's line and column.  A card cardgen cannot
compile is a ``CardError`` (a ``LoweringError`` from a lowering rule, located
at its step); any other exception is a bug in cardgen, reported as
``InternalError`` with the step it happened at.
"""

from __future__ import annotations

from ..lang.check import Checked, Library
from ..lang.errors import CardError
from .emit import module_parts, render_module


class InternalError(Exception):
    """An exception that is not a refusal, raised while compiling a card's step."""


def module_text(checked: Checked, lib: Library, source_path: str, target: str = "numpy") -> str:
    """``emit.module_source``, with a bug located at the card step it happened in."""
    return render_module(compiled(checked, lib, source_path, target))


def compiled(checked: Checked, lib: Library, source_path: str, target: str = "numpy") -> dict:
    """``emit.module_parts`` (all of a build but laying the text out), with a bug located at the
    card step it happened in."""
    try:
        return module_parts(checked, lib, source_path, target=target)
    except (CardError, RecursionError):
        raise
    except Exception as e:
        where = getattr(e, "cardgen_step", None)
        if where is None or where[1] is None:
            raise
        path, pos = where
        raise InternalError(f"{path}:{pos.line}:{pos.col}: {type(e).__name__}: {e} (while compiling this step)") \
            from e


def buildable(checked: Checked, lib: Library) -> str:
    """The module ``cardgen build`` would write for the card, made in memory.  Raises the
    ``CardError`` ``build`` would (every card compiles, the paper's wrappers too, or is refused)."""
    return module_text(checked, lib, checked.card.path)
