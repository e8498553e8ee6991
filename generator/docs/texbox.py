"""IR -> a LaTeX algorithm box in the paper's layout (`cardgen render --format
tex`), with the ``algorithm`` and ``algpseudocode`` packages; the math comes
from latex.py, as for Markdown.  The output is ASCII: card text is escaped
for text mode and every other character becomes a macro, so pdflatex can
neither run card text as TeX nor drop a character it has no glyph for."""

from __future__ import annotations

import unicodedata

from .latex import KW, ROLE_MD, TEXT_SYMBOLS, TexSteps, config_head, rule_words, tex_config, tex_decl, tex_signature

PACKAGES = r"\usepackage{algorithm,algpseudocode,amsmath,amssymb}"
COLON = r"\usepackage{caption}\captionsetup[ruled]{labelsep=colon}"  # "Algorithm 1:", as the paper

# Characters that mean something to TeX, as text.
TEXT_ESCAPE = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "%": r"\%", "#": r"\#",
    "&": r"\&", "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "`": r"\`{}",
    "\u00a0": "~",
}
# Typography pdflatex sets in text mode from its default (OT1) fonts: none of
# textcomp's (TS1) symbols, which would need bitmap fonts made on the fly.
TEXT_UNICODE = {"—": "---", "–": "--", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}",
                "ß": r"{\ss}", "æ": r"{\ae}", "ø": r"{\o}", "ı": r"{\i}", "ł": r"{\l}"}
# Symbols and letters only math mode has (in text: \ensuremath{…}): the ones
# latex.py puts in formulas, and more a description may hold.
MATH_UNICODE = TEXT_SYMBOLS | {
    "ℙ": r"\mathbb{P}", "↑": r"\uparrow", "↦": r"\mapsto", "≅": r"\cong", "⊗": r"\otimes", "⊕": r"\oplus",
    "∂": r"\partial", "∏": r"\prod", "∃": r"\exists", "∗": "*", "±": r"\pm", "³": "^{3}", "⟨": r"\langle",
    "⟩": r"\rangle", "∪": r"\cup", "∩": r"\cap", "⋃": r"\bigcup", "⊂": r"\subset", "°": r"^{\circ}",
    "∥": r"\|", "•": r"\bullet", "ϵ": r"\epsilon", "ϕ": r"\phi",
}
# Combining marks: the text accent for a Latin letter, the math accent otherwise.
ACCENT = {"\u0300": ("`", r"\grave"), "\u0301": ("'", r"\acute"), "\u0302": ("^", r"\hat"),
          "\u0303": ("~", r"\tilde"), "\u0304": ("=", r"\bar"), "\u0306": ("u", r"\breve"),
          "\u0307": (".", r"\dot"), "\u0308": ('"', r"\ddot"), "\u030c": ("v", r"\check"),
          "\u030a": ("r", r"\mathring"), "\u0327": ("c", None)}


ENSURE = r"\ensuremath{"


def unknown(ch: str) -> str:
    """A character pdflatex has no glyph for: its code point, visibly."""
    return rf"\texttt{{[U+{ord(ch):04X}]}}"


def tex_text(s: str) -> str:
    """Card text (purpose, description, ▷ note) for LaTeX text mode, literally."""
    out: list[str] = []
    latin: list[bool] = []  # per piece: a plain letter a text accent can sit on
    chars = unicodedata.normalize("NFD", s)
    for i, ch in enumerate(chars):
        nxt = chars[i + 1] if i + 1 < len(chars) else ""
        if ch in ACCENT and out:
            text_acc, math_acc = ACCENT[ch]
            if latin[-1]:
                out[-1] = rf"\{text_acc}{{{out[-1]}}}"
            elif math_acc and out[-1].startswith(ENSURE):
                out[-1] = rf"{ENSURE}{math_acc}{{{out[-1].removeprefix(ENSURE)[:-1]}}}}}"
            else:
                out.append(unknown(ch))
                latin.append(False)
            continue
        if ch in TEXT_ESCAPE:
            piece = TEXT_ESCAPE[ch]
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp"):  # no \par, no ^^M
            piece = " "
        elif ch in "-'" and nxt == ch:  # no -- or '' ligature: the text says two characters
            piece = ch + "{}"
        elif ch == '"':  # OT1 has no straight double quote: typeset quotes, opening after a space
            piece = "``" if not out or out[-1] in (" ", "(", "[") else "''"
        elif ch.isascii():
            piece = ch
        elif ch in TEXT_UNICODE:
            piece = TEXT_UNICODE[ch]
        elif ch in MATH_UNICODE:
            piece = rf"{ENSURE}{MATH_UNICODE[ch]}}}"
        else:
            piece = unknown(ch)
        out.append(piece)
        latin.append(ch.isascii() and ch.isalpha())
    return "".join(out)


def tex_math(s: str) -> str:
    """Math from latex.py with any character left that is not ASCII made a macro."""
    if s.isascii():
        return s
    return "".join(ch if ch.isascii() else " " + MATH_UNICODE[ch] + " " if ch in MATH_UNICODE
                   else r"\text{" + unknown(ch) + "}" for ch in s)


class BoxSteps(TexSteps):
    """Steps as algpseudocode lines; ``algorithmic`` numbers them (``end`` too,
    as the text render does)."""

    kw = {k: rf"\algorithmic{k}" for k in KW}  # the package's keywords, as the user set them

    def __init__(self, claims):
        super().__init__(claims)
        self.lines: list[str] = []

    def comment(self, claim, note) -> str:
        parts = [f"${tex_math(claim)}$"] if claim else []
        if note:
            parts.append(tex_text(note))
        return r" \Comment{" + "; ".join(parts) + "}" if parts else ""

    def line(self, depth, body, claim, note):
        self.lines.append("  " * depth + rf"\State ${tex_math(body)}$" + self.comment(claim, note))

    def remark(self, depth, note):
        # \Statex starts at the left margin: indent it to its block
        pad = r"\hspace*{\algorithmicindent}" * depth
        self.lines.append("  " * depth + rf"\Statex {pad}$\triangleright$ {tex_text(note)}")

    def open(self, depth, kind, cond, note):
        macro = r"\For" if kind == "for" else r"\While"
        self.lines.append("  " * depth + f"{macro}{{${tex_math(cond)}$}}" + self.comment(None, note))

    def close(self, depth, kind):
        self.lines.append("  " * depth + (r"\EndFor" if kind == "for" else r"\EndWhile"))


# a description that wraps goes on indented, as in the paper
HANG = (r"\parbox[t]{\linewidth}{\hangindent=3em ", "}")


def decl_lines(card) -> list[str]:
    """**Input:** x ∈ …, description — the role word once per run of one role."""
    lines, prev = [], None
    for d in card.decls:
        word = rf"\textbf{{{ROLE_MD[d.role]}:}}"
        head = word if d.role != prev else rf"\hphantom{{{word}}}"
        prev = d.role
        desc = f", {tex_text(d.desc)}" if d.desc else ""
        lines.append(rf"\Statex {HANG[0]}{head} ${tex_math(tex_decl(d))}${desc}{HANG[1]}")
    for c in card.configs:
        desc = f", {tex_text(c.desc)}" if c.desc else ""
        lines.append(rf"\Statex {HANG[0]}\textbf{{Configuration}} {tex_text(config_head(c))}: "
                     rf"${tex_math(tex_config(c))}${desc}{HANG[1]}")
    return lines


def box(checked, count_line: str | None = None) -> str:
    """One card as an ``algorithm`` float."""
    card = checked.card
    out = [r"\begin{algorithm}", rf"\caption{{${tex_math(tex_signature(card))}$}}",
           r"\begin{algorithmic}[1]",
           # "end", as the paper and the text render (local to this box)
           r"\algrenewtext{EndFor}{\algorithmicend}\algrenewtext{EndWhile}{\algorithmicend}"]
    if card.purpose:
        out.append(rf"\Statex /* {tex_text(card.purpose)} */")
    conv = card.convention
    out.append(rf"\Statex \textbf{{Convention:}} {conv.axes}, {conv.base}-based")
    out += decl_lines(card)
    if count_line:
        out.append(rf"\Statex {tex_text(count_line)}")
    steps = BoxSteps(checked.claims).steps(card.steps)
    if card.rule is not None:  # algorithmic numbers the rule's steps on from the forward's
        steps.lines.append(rf"\Statex \textbf{{Backward:}}{rule_words(card.rule, tex_text)}")
        steps.steps(card.rule.steps)
    out += steps.lines
    out += [r"\end{algorithmic}", r"\end{algorithm}"]
    return "\n".join(out) + "\n"


def fragment(boxes: list[str]) -> str:
    """Boxes to paste into a document, with a header saying what it needs."""
    head = ("% Algorithm boxes written by cardgen (cardgen render --format tex).\n"
            f"% The preamble needs {PACKAGES};\n"
            f"% {COLON} gives the paper's \"Algorithm 1:\" captions.\n")
    return head + "\n".join(boxes)


def document(boxes: list[str]) -> str:
    """A complete document (``--standalone``) that pdflatex compiles as it is."""
    return "\n".join([
        r"\documentclass{article}",
        PACKAGES,
        COLON,
        r"\usepackage[margin=2cm]{geometry}",
        r"\floatplacement{algorithm}{H}  % one box after another, in order",
        r"\pagestyle{empty}",
        r"\begin{document}",
        "\n".join(boxes) + r"\end{document}",
        "",
    ])
