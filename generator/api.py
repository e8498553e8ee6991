"""cardgen's public API: what a notebook or another tool calls; the CLI is a thin layer over it."""

from __future__ import annotations

from .lang.load import card_paths, diagnose, library_for, load

__all__ = ["card_paths", "diagnose", "library_for", "load"]
