"""Sampled text made safe for a terminal: a model can emit any byte, and escape sequences (ESC,
CSI) would move the cursor, change colours or retitle the window. Control characters other than
newline and tab, and the invisible Unicode controls that reorder or split lines, are shown as
``\\xNN`` / ``\\uNNNN`` escapes; everything else is printed as it is."""

from __future__ import annotations

import unicodedata

KEEP = {"\n", "\t"}
BIDI_AND_LINES = {*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A)), "\u200e", "\u200f",
                  "\u061c", "\u2028", "\u2029"}


def escape_controls(text: str) -> str:
    out = []
    for ch in text:
        if ch in KEEP:
            out.append(ch)
        elif unicodedata.category(ch) == "Cc" or ch in BIDI_AND_LINES:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def decode(data: bytes) -> str:
    """Bytes to text for display: invalid UTF-8 becomes U+FFFD, controls are escaped."""
    return escape_controls(data.decode("utf-8", "replace"))
