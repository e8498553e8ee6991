"""What a card means: the reference interpreter.  Takes a checked card (``lang.check``) and
values in card terms, gives the card's outputs, computed step by step the way the paper reads
it: loops as Python loops, ``∀`` and ``Σ`` element by element, families as dicts of arrays,
calls by running the callee's card.  Float64, slow on purpose, and sharing nothing with
``compile/`` (no lowering, layout, AD or emitter), so the two can be tested against each other.
"""

from .interp import InterpretError, interpret_checked

__all__ = ["InterpretError", "interpret_checked"]
