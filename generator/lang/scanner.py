"""A contextual lexer that compiles each terminal's pattern once, not once per parser state.

Lark's contextual lexer gives every parser state its own scanner: one regular expression, the
alternation of the terminals that state accepts. Compiling those alternations was most of a
`cardgen check` (39 of them for LayerNorm, 73 for GPT-2 and its callees; ~2 ms each, since every
one holds the large name patterns again). Here each terminal is compiled once per process, and a
state's scanner tries its terminals one by one in Lark's order.

The answer is the same: an alternation ``(?P<A>a)|(?P<B>b)`` matches at a position with its first
alternative that matches there, which is what trying ``a`` and then ``b`` finds. Plugged in through
Lark's ``_plugins`` option (the hook lark-cython uses), so the parse tables and their cache are
untouched.
"""

from __future__ import annotations

import re
from functools import cache

from lark.lexer import BasicLexer, ContextualLexer, Scanner, _create_unless


@cache
def _compiled(regexp: str, flags: int) -> re.Pattern:
    return re.compile(regexp, flags)


class TerminalScanner(Scanner):
    """Lark's ``Scanner``, one compiled pattern per terminal instead of one alternation."""

    def __init__(self, terminals, g_regex_flags, re_, use_bytes):
        if re_ is not re or use_bytes:  # never so for cards; keep Lark's own way if it were
            raise ValueError("TerminalScanner matches str with the re module only")
        self.terminals = terminals
        self.g_regex_flags = g_regex_flags
        self.re_ = re_
        self.use_bytes = use_bytes
        self.allowed_types = {t.name for t in terminals}
        self._patterns = [(_compiled(t.pattern.to_regexp(), g_regex_flags), t.name) for t in terminals]

    def match(self, text, pos):
        source, end = text.text, text.end
        for pattern, name in self._patterns:
            m = pattern.match(source, pos, end)
            if m:
                return m.group(0), name
        return None

    def fullmatch(self, text: str):
        for pattern, name in self._patterns:
            if pattern.fullmatch(text):
                return name
        return None


class TerminalBasicLexer(BasicLexer):
    def _build_scanner(self) -> Scanner:
        # As Lark's, less the user callbacks, which cards do not use. The "unless" callbacks
        # (a keyword the name pattern also matches becomes the keyword) stay Lark's own.
        if self.user_callbacks:
            raise ValueError("TerminalBasicLexer takes no lexer callbacks")
        terminals, self.callback = _create_unless(self.terminals, self.g_regex_flags, self.re, self.use_bytes)
        return TerminalScanner(terminals, self.g_regex_flags, self.re, self.use_bytes)


class TerminalContextualLexer(ContextualLexer):
    BasicLexer = TerminalBasicLexer
