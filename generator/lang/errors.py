"""CardError: a mistake in a card, reported at file:line:col with the source
line, a caret under the offending text, and a hint."""

from __future__ import annotations

from .ir import Pos


class CardError(Exception):
    def __init__(self, message: str, pos: Pos | None = None, hint: str | None = None,
                 path: str = "<card>", source: str = ""):
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint
        self.path = path
        self.source = source

    def __reduce__(self):
        # An exception unpickles by calling its class with its args, which fits no subclass whose
        # __init__ takes others (FollowOnError takes none): rebuilt without __init__ instead, with
        # every attribute, so an error a worker process sends back is the error (api/parallel.py)
        return _rebuild, (type(self), self.args, self.__dict__.copy())

    def located(self, path: str, source: str) -> CardError:
        """Fill in the file, once the error has travelled up to where it is known."""
        if self.path == "<card>":
            self.path, self.source = path, source
        return self

    @property
    def line(self) -> int:
        return self.pos.line if self.pos else 1

    @property
    def col(self) -> int:
        return self.pos.col if self.pos else 1

    def __str__(self) -> str:
        if self.pos is None and self.path == "<card>":  # about no file at all (a command's options)
            out = [f"cardgen: error: {self.message}"]
        else:
            out = [f"{self.path}:{self.line}:{self.col}: error: {self.message}"]
        lines = self.source.split("\n")  # as Lark counts lines (splitlines also splits at U+2028, \f, …)
        if self.pos and 0 < self.line <= len(lines):
            # One printable character per column, so that the caret lands under the column.
            text = "".join(c if c.isprintable() else " " if c == "\t" else "\ufffd"
                           for c in lines[self.line - 1].removesuffix("\r"))
            col = self.col
            width = 1
            if self.pos.end_line == self.pos.line and self.pos.end_col > self.pos.col:
                width = self.pos.end_col - self.pos.col
            if len(text) > 100 and col > 60:  # a long line: show the part around the column
                cut = col - 40
                text, col = "…" + text[cut:cut + 80] + ("…" if len(text) > cut + 80 else ""), 41
            elif len(text) > 100:
                text = text[:100] + "…"
            width = max(1, min(width, len(text) - col + 1, 80))
            out.append("  " + text)
            out.append("  " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


def _rebuild(cls: type, args: tuple, state: dict) -> CardError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err
