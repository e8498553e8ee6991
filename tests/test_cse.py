"""Common subexpressions are computed once (issue 13, point 2): the compiler drops an op that
repeats an earlier one (the causal mask's two ranges of T, √d computed by each callee), and
the module still computes what the card says (the differential tests run every card)."""

from __future__ import annotations

from cardgen.compile.core import Loop
from cardgen.compile.lower import lower
from cardgen.lang.errors import CardError

from .conftest import CARDS, ROOT


def repeats(body, seen=None) -> list[str]:
    """Ops of ``body`` (loops included) that compute what an op before them computed."""
    seen = dict(seen or {})
    found = []
    for item in body:
        if isinstance(item, Loop):
            found += repeats(item.body, seen)
            continue
        key = (item.prim, item.args, repr(item.attr), repr(item.shape), item.batched, item.kind)
        if key in seen and item.out.startswith("_"):
            found.append(f"{item.out} = {seen[key]} ({item.prim})")
        seen.setdefault(key, item.out)
    return found


def test_no_card_computes_a_value_twice(library):
    checked = 0
    for card in CARDS:
        try:
            prog = lower(library.checked(card.stem), library)
        except CardError:  # a card the compiler does not take yet (ETraining) has no program
            continue
        assert repeats(prog.body) == [], card.stem
        checked += 1
    assert checked >= 25


def test_gpt2s_causal_mask_counts_positions_once():
    """The mask compares two ranges of T: one arange, read twice."""
    text = (ROOT / "generated" / "GPT2.py").read_text("utf-8")
    assert text.count("np.arange(") == 1
