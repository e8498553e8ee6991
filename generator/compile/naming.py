"""All naming conventions for generated code in one place: card names become
readable ASCII identifiers (``γ`` -> ``gamma``, ``X̃`` -> ``X_tilde``,
``W^h_q`` -> ``W_q``), never a keyword, a builtin or ``np``, and never two
card names on one identifier (Python folds ``ℓ`` and ``l`` together)."""

from __future__ import annotations

import builtins
import keyword
import re
import unicodedata
from functools import lru_cache

GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "eps", "ζ": "zeta", "η": "eta",
    "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lam", "μ": "mu", "ν": "nu", "ξ": "xi",
    "π": "pi", "ρ": "rho", "σ": "sigma", "τ": "tau", "υ": "upsilon", "φ": "phi", "χ": "chi",
    "ψ": "psi", "ω": "omega", "Γ": "Gamma", "Δ": "Delta", "Θ": "Theta", "Λ": "Lambda",
    "Ξ": "Xi", "Π": "Pi", "Σ": "Sigma", "Φ": "Phi", "Ψ": "Psi", "Ω": "Omega", "ℓ": "ell",
    "𝓦": "Wc", "′": "_prime", "□": "",
}
MARKS = {"\u0302": "_hat", "\u0303": "_tilde", "\u0304": "_bar", "\u0307": "_dot"}
RESERVED = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | {
    "np", "config", "params", "cache", "self", "Config", "Params", "Cache",
    "batch", "dtype", "workspace", "grads", "math", "dataclass"}  # the generated functions' own locals
GRAD_PREFIX = "d_"
_UNDERSCORES = re.compile(r"_+")


@lru_cache(maxsize=4096)  # a pure function of a string; a module asks for the same few names often
def ascii_name(text: str) -> str:
    """A card name as an ASCII identifier (not yet made unique)."""
    out = []
    for ch in unicodedata.normalize("NFD", text):
        if ch in MARKS:
            out.append(MARKS[ch])
        elif ch in GREEK:
            word = GREEK[ch]
            if out and out[-1] and out[-1][-1].isalnum() and word and not word.startswith("_"):
                word = "_" + word
            out.append(word)
        elif ch in "^{}":  # a script's marks: e_{ℓ_z} -> e_ell_z
            continue
        elif ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        elif unicodedata.category(ch) == "Mn":
            continue
        else:
            out.append(f"u{ord(ch):04x}")
    s = _UNDERSCORES.sub("_", "".join(out)).strip("_") or "v"
    if s[0].isdigit():
        s = "v" + s
    return {"l": "l_", "O": "O_", "I": "I_"}.get(s, s)  # PEP 8's ambiguous single letters


class Names:
    """Hands out unique identifiers, deterministically, first come first served."""

    def __init__(self):
        self.taken: set[str] = set(RESERVED)
        self.count = 0

    def fresh(self, text: str) -> str:
        base = ascii_name(text)
        if base in RESERVED:
            base += "_"
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def temp(self) -> str:
        self.count += 1
        name = f"_{self.count}"
        self.taken.add(name)
        return name


def grad_name(value: str) -> str:
    return GRAD_PREFIX + value.lstrip("_") if not value.startswith("_") else "d" + value


# Names Windows keeps for devices, in any case and with any extension.
DEVICES = {"con", "prn", "aux", "nul"} | {f"{k}{i}" for k in ("com", "lpt") for i in range(1, 10)}


def file_stem(card_name: str) -> str:
    """The file name (without extension) of a card's outputs: its ASCII identifier, so never a
    path, a dot name or a device; two cards on one stem are the caller's to refuse."""
    stem = ascii_name(card_name)
    return stem + "_" if stem.casefold() in DEVICES else stem
