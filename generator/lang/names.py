"""How a card's names are spelled: a base and its scripts (``W^h_q`` is
``W`` with ``^h`` and ``_q``).  The checker reads a script that names a bound
index variable as an index, every other script as part of the name; this
module only takes names apart and puts them back together.  (``naming.py``
is the other direction: card names as Python identifiers.)
"""

from __future__ import annotations

import re

SCRIPT_RE = re.compile(r"([_^])(\{[^{}]*\}|[^_^{}]+)")


def split_name(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``W^h_q`` -> (``W``, [(``^``, ``h``), (``_``, ``q``)])."""
    m = re.search(r"[_^]", text)
    if not m:
        return text, []
    base, rest = text[: m.start()], text[m.start():]
    found = SCRIPT_RE.findall(rest)
    if "".join(k + v for k, v in found) != rest:  # not a name the grammar makes (IR built by hand):
        return text, []                          # one base, every character kept
    return base, [(k, v[1:-1] if v.startswith("{") else v) for k, v in found]


def join_name(base: str, scripts) -> str:
    return base + "".join(k + (v if len(v) == 1 or v.isalnum() and "_" not in v else "{" + v + "}")
                          if v != "□" else k + "□" for k, v in scripts)

