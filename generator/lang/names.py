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


def rename_indices(text: str, to: dict[str, str]) -> str:
    """``text`` with the scripts that name an index in ``to`` renamed, all at once: a group member
    ``W^h_q_ℓ`` of ``𝓦^h_ℓ``, read as ``𝓦^j_m``, is ``W^j_q_m``."""
    base, scripts = split_name(text)
    if not any(v in to for _, v in scripts):
        return text
    return join_name(base, [(k, to.get(v, v)) for k, v in scripts])


def list_family(text: str, bound, env) -> tuple[str, list[str]]:
    """The family a list item belongs to (``[Y^g_0, …, Y^g_{J−1}]``: ``Y^□_□``), and the scripts
    that pick its member by every index but the last, which the list runs over: indices bound
    outside the list (``bound``), or, where no family is named so, whole numbers (``Y^0_j``)."""
    base, scripts = split_name(text)

    def key(fixed):
        head = [(k, "□" if fixed(v) else v) for k, v in scripts[:-1]]
        return join_name(base, head + [(scripts[-1][0], "□")]), [v for _, v in scripts[:-1] if fixed(v)]

    first = key(bound)
    if first[0] in env:
        return first
    second = key(lambda v: bound(v) or v.isdigit())
    return second if second[0] in env else first
