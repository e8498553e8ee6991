"""Bounds on what the front end accepts, in one place: each keeps a later stage (which recurses,
or allocates by size) within reach of a hostile or mistaken card."""

MAX_DEPTH = 2000  # parse trees deeper than this are refused (later stages recurse)
# The stages that recurse over an expression collect their parts in lists, not generators
# (`a, b = [f(x) for x in e.args]`): Python 3.12 counts each generator resumed from C against a
# fixed C recursion limit that sys.setrecursionlimit does not raise (a 1000-deep claim failed there).
