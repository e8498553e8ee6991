"""cardgen: compile algorithm cards (Phuong & Hutter style pseudocode) into NumPy."""

from .errors import CardError
from .parse import parse, parse_file

__all__ = ["CardError", "parse", "parse_file"]
