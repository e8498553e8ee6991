"""Bounds on what the front end accepts, in one place: each keeps a later stage (which recurses,
or allocates by size) within reach of a hostile or mistaken card."""

MAX_DEPTH = 2000  # parse trees deeper than this are refused (later stages recurse)
