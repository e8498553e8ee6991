"""Pygments lexer for cards: ``pygmentize -l card``, Sphinx and MkDocs find it
by the name ``card`` through the ``pygments.lexers`` entry point.

It lexes both forms the grammar accepts: ``.card`` files and the pseudocode
that ``cardgen render`` prints (``Algorithm:``, ``/* purpose */``,
``— description``).  Only standard token types are used, so every Pygments
style colours a card.  ``editors/card.tmLanguage.json`` mirrors these rules.
"""

import re

from pygments.lexer import RegexLexer, bygroups, default, include
from pygments.token import (
    Comment,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from ..lang.check_call import BUILTINS

__all__ = ["CardLexer"]

# A name, as grammar/card.lark spells it: a letter, then letters, digits, primes
# and combining marks, then _sub / ^sup scripts (W_e, γ^1_ℓ, e_{ℓ_z}, X̃, θ′).
# ^T is the transpose and ^{…} a power, never a script; ᵀ ² ¹ ³ are operators.
_MARK = r"[\u0300-\u036f′]"
_CHAR = rf"(?:(?![ᵀ²³¹])[^\W_]|{_MARK})"
NAME = (rf"(?!sum_|grad\b)(?![ᵀΣℝℕℤ∇²³¹])[^\W\d_]{_CHAR}*"
        rf"(?:_(?:\{{[^{{}}\n]*\}}|{_CHAR}+)|\^(?!T(?![^\W_])){_CHAR}+)*")

# A word ends where its name would: a reserved word followed by a letter, digit,
# prime, mark or script is part of a longer name (in_x, for′, max^h).
_END = rf"(?!{_CHAR}|_|\^(?!T(?![^\W_])){_CHAR})"
SET_BASE = r"[ℝℕℤ]|\{[ \t]*0[ \t]*,[ \t]*1[ \t]*\}"
ASCII_SET = rf"[RNZ]{_END}"  # ℝ ℕ ℤ, but only right after ∈ / in: elsewhere R N Z are names
CLAIM = rf"([▷#])([ \t]*)({NAME}[ \t]+(?:∈|in\b|⊆|subseteq\b)[^;\n]*)([^\n]*)"  # ▷ name ∈ set; text
CONFIG_NAME = r"[A-Za-z][A-Za-z0-9]*(?:[-_.][A-Za-z0-9]+)*"  # config gpt2-medium: as the grammar's CONFIG_NAME
FLOAT = r"\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)"

# What a whole name means when it is a reserved or built-in word; any other name
# is a variable (Name) or, directly before "(", a function or card (Name.Function).
WORDS = {
    **dict.fromkeys([*BUILTINS, "π"], Name.Builtin),  # the checker's own table; sqrt is √'s spelling, below
    **dict.fromkeys("algorithm convention input output hyper param".split(), Keyword.Declaration),
    **dict.fromkeys("for For do end while if then return with probability else forall".split(), Keyword),
    **dict.fromkeys("not propto sqrt mod floor".split(), Operator.Word),  # ASCII spellings of ¬ ∝ √ ⌊⌋
    "inf": Keyword.Constant,
}

# Symbols, longest first where one is a prefix of another (<- before <, ... before ..).
OPERATORS = (r"←|<-|∈|×|⊙|·|@|\^⊤|\^T(?![^\W_])|ᵀ|²|√|⌊|⌋|%|Σ_?|sum_|≤|<=|≥|>=|≠|!=|==|¬|∇|∼|~|∝|"
             r"…|\.\.\.|\.\.|−|-|\+|\*|/|≡|=|<|>|\||\^")


def _word(default_token):
    """Callback: a reserved or built-in word gets its own token, any other name ``default_token``."""
    def callback(lexer, match):
        yield match.start(), WORDS.get(match.group(), default_token), match.group()
    return callback


class CardLexer(RegexLexer):
    """Phuong–Hutter algorithm cards (cardgen), and their rendered pseudocode."""

    name = "Card"
    aliases = ["card"]
    filenames = ["*.card"]
    mimetypes = ["text/x-card"]
    url = "https://arxiv.org/abs/2207.09238"

    def analyse_text(text):  # noqa: N805 (Pygments makes it a static method)
        """A card's first line is its header, for ``pygmentize -g`` and guess_lexer."""
        return 1.0 if re.match(r"\s*(?:algorithm[ \t]|Algorithm:)[^\n]*(?:←|<-)", text) else 0.0

    tokens = {
        "root": [
            # Whole-line forms first: they are anchored at a line's start.
            (r'^([ \t]*)(")', bygroups(Whitespace, String.Doc), "purpose"),
            (r"^([ \t]*)(/\*[^\n]*?\*/)", bygroups(Whitespace, String.Doc)),
            (r"^([ \t]*)(Parameter count:[^\n]*)", bygroups(Whitespace, Generic.Output)),
            (r"^─+[ \t]*$", Comment.Single),  # `render --full` puts a rule between cards
            (r"^([ \t]*)(convention\b|Convention:)", bygroups(Whitespace, Keyword.Declaration), "convention"),
            # config gpt2-medium (training): a named configuration, its name a label
            (rf"^([ \t]*)(config\b|Configuration\b)([ \t]+)({CONFIG_NAME})(?:([ \t]*)(\(training\)))?",
             bygroups(Whitespace, Keyword.Declaration, Whitespace, Name.Label, Whitespace, Keyword.Pseudo)),
            # backward straight-through: the card's own backward rule (and its estimator mark)
            (r"^([ \t]*)(backward\b|Backward:)(?:([ \t]+)(straight-through\b|\(straight-through\)))?",
             bygroups(Whitespace, Keyword.Declaration, Whitespace, Keyword.Declaration)),
            (r"^([ \t]*)(\d+)(?=[ \t])", bygroups(Whitespace, Generic.Prompt)),  # step number
            (r"(?:Algorithm|Input|Output|Hyperparameters|Parameters):", Keyword.Declaration),
            (r"\n", Whitespace),
            include("line"),
        ],
        "line": [
            (r"[ \t\r\f\v]+", Whitespace),  # no rule for "\n": it resets every state to "root"
            (r"\\(?=\r?\n)", Punctuation),  # line continuation
            # ▷ name ∈ set; text — a claim the checker verifies — else a plain comment.
            (CLAIM, bygroups(Comment.Single, Comment.Single, Comment.Special, Comment.Single)),
            (r"[▷#][^\n]*", Comment.Single),
            (r'"', String.Double, "string"),
            (r"—[^\n]*", String),  # a rendered description
            (r"∈", Operator, "set"),
            (rf"in{_END}", Operator.Word, "set"),
            (r"grad\b", Operator.Word),  # a name never starts with grad (nor sum_), as in the grammar
            (SET_BASE, Keyword.Type, "set_tail"),
            (r"∞", Keyword.Constant),
            (r"∀", Keyword),
            (OPERATORS, Operator),
            (r"\[\[|\]\]|[()\[\]{},;:]", Punctuation),
            (FLOAT, Number.Float),
            (r"\d+", Number.Integer),
            (rf"{NAME}(?=\()", _word(Name.Function)),
            (NAME, _word(Name)),
        ],
        "purpose": [
            (r'[^"\\\n]+', String.Doc),
            (r"\\.", String.Escape),
            (r'"', String.Doc, "#pop"),
            default("#pop"),  # unterminated: the line ends the string
        ],
        "string": [
            (r'[^"\\\n]+', String.Double),
            (r"\\.", String.Escape),
            (r'"', String.Double, "#pop"),
            default("#pop"),
        ],
        "convention": [
            (r"columns\b|rows\b|[01]-based\b", Keyword.Constant),
            include("line"),
        ],
        # Right after ∈ / in: a set, where R N Z are ℝ ℕ ℤ (elsewhere they are names),
        # ^T raises to a length T (elsewhere it transposes) and x in ^{…} is ×.
        # A newline, which these states have no rule for, resets Pygments to "root".
        "set": [
            (r"[ \t]+", Whitespace),
            (rf"{ASCII_SET}|{SET_BASE}", Keyword.Type, ("#pop", "set_tail")),
            (r"[\[({]", Punctuation, ("#pop", "set_tail", "brackets")),
            default("#pop"),
        ],
        "brackets": [
            (r"[\])}]", Punctuation, "#pop"),
            (r"[\[({]", Punctuation, "#push"),
            include("line"),
        ],
        "set_tail": [
            (r"(\^)(\{)", bygroups(Operator, Punctuation), ("#pop", "shape")),
            (r"(\^)(\d+)", bygroups(Operator, Number.Integer), "#pop"),
            (rf"(\^)({NAME})", bygroups(Operator, Name), "#pop"),
            (r"\*", Operator, "#pop"),
            default("#pop"),
        ],
        "shape": [
            (r"\}", Punctuation, "#pop"),
            (r"\{", Punctuation, "#push"),
            (rf"x{_END}", Operator.Word),
            include("line"),
        ],
    }


# ------------------------------------------------------------------ TextMate
def _words(token) -> str:
    """The WORDS of one token type as a regex: whole names only, as the lexer looks them up."""
    return "(?:" + "|".join(sorted((w for w, t in WORDS.items() if t is token), key=len, reverse=True)) + ")" + _END


def textmate_grammar() -> dict:
    """The TextMate grammar (editors/card.tmLanguage.json): the lexer's rules and
    regexes, with one scope for each of its token types.  Where the lexer keeps a
    state (after ∈, in a string) the grammar has a begin/end region.  Print it with
    ``python -m cardgen.docs.highlight``."""

    def rule(regex, scope):
        return {"match": regex, "name": f"{scope}.card"}

    def groups(regex, *scopes, name=None):  # one scope per capture group, None for none
        r = {"match": regex, "captures": {str(i): {"name": f"{s}.card"} for i, s in enumerate(scopes, 1) if s}}
        return r | ({"name": f"{name}.card"} if name else {})

    def region(begin, end, scope, patterns, begin_scopes=(), end_scopes=()):
        r = {"begin": begin, "end": end, "patterns": patterns}
        if scope:
            r["name"] = f"{scope}.card"
        for key, scopes in (("beginCaptures", begin_scopes), ("endCaptures", end_scopes)):
            if scopes:
                r[key] = {str(i): {"name": f"{s}.card"} for i, s in enumerate(scopes) if s}
        return r

    def brackets(patterns):
        return [region(rf"\{o}", rf"\{c}", None, patterns, ["punctuation.section.brackets"],
                       ["punctuation.section.brackets"]) for o, c in ("[]", "()", "{}")]

    escape = rule(r"\\.", "constant.character.escape")
    shape = region(r"(\^)(\{)", r"\}", "meta.shape", [{"include": "#shape"}],
                   [None, "keyword.operator", "punctuation.section.brackets"], ["punctuation.section.brackets"])
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "Card",
        "scopeName": "source.card",
        "fileTypes": ["card"],
        "comment": ("Generated by `python -m cardgen.docs.highlight` from generator/docs/highlight.py: "
                    "edit that, not this."),
        "patterns": [
            {"include": "#comment"},
            region(r'^[ \t]*(")', r'"|$', "string.quoted.double.purpose", [escape],
                   [None, "punctuation.definition.string.begin"], ["punctuation.definition.string.end"]),
            groups(r"^[ \t]*(/\*[^\n]*?\*/)", "string.quoted.other.purpose"),
            groups(r"^[ \t]*(Parameter count:.*)", "comment.line.parameter-count"),
            rule(r"^─+[ \t]*$", "comment.line.separator"),
            region(r"^[ \t]*(convention\b|Convention:)", "$", "meta.convention",
                   [rule(r"columns\b|rows\b|[01]-based\b", "constant.language.convention"), {"include": "#line"}],
                   [None, "keyword.other.declaration"]),
            groups(rf"^[ \t]*(config\b|Configuration\b)[ \t]+({CONFIG_NAME})(?:[ \t]*(\(training\)))?",
                   "keyword.other.declaration", "entity.name.label",
                   "keyword.other.training"),
            groups(r"^[ \t]*(backward\b|Backward:)(?:[ \t]+(straight-through\b|\(straight-through\)))?",
                   "keyword.other.declaration", "keyword.other.declaration"),
            groups(r"^[ \t]*(\d+)(?=[ \t])", "constant.numeric.integer.step"),
            rule(r"(?:Algorithm|Input|Output|Hyperparameters|Parameters):", "keyword.other.declaration"),
            {"include": "#line"},
        ],
        "repository": {
            "comment": {"patterns": [
                groups(CLAIM, "punctuation.definition.comment", None, "comment.line.claim", None,
                       name="comment.line"),
                groups(r"([▷#]).*", "punctuation.definition.comment", name="comment.line"),
            ]},
            "line": {"patterns": [
                {"include": "#comment"},
                region('"', '"|$', "string.quoted.double", [escape], ["punctuation.definition.string.begin"],
                       ["punctuation.definition.string.end"]),
                rule(r"—.*", "string.unquoted.description"),
                {"include": "#set"},
                region(rf"({SET_BASE})(\^)(\{{)", r"\}", "meta.shape", [{"include": "#shape"}],
                       [None, "storage.type.set", "keyword.operator", "punctuation.section.brackets"],
                       ["punctuation.section.brackets"]),
                rule(SET_BASE, "storage.type.set"),
                rule(rf"∞|inf{_END}", "constant.language.infinity"),
                rule(rf"∀|{_words(Keyword)}", "keyword.control"),
                rule(_words(Keyword.Declaration), "keyword.other.declaration"),
                rule(rf"grad\b|{_words(Operator.Word)}", "keyword.operator.word"),
                rule(OPERATORS, "keyword.operator"),
                rule(r"\[\[|\]\]|[()\[\]{}]", "punctuation.section.brackets"),
                rule(r"[,;:]", "punctuation.separator"),
                rule(FLOAT, "constant.numeric.float"),
                rule(r"\d+", "constant.numeric.integer"),
                rule(_words(Name.Builtin), "support.function.builtin"),
                rule(rf"{NAME}(?=\()", "entity.name.function"),
                rule(NAME, "variable.other"),
                rule(r"\\$", "punctuation.separator.continuation"),
                rule(r"\S", "invalid.illegal"),
            ]},
            # After ∈ / in, up to a space or a closing bracket: a set (the lexer's "set" state).
            "set": {"patterns": [region(rf"(?:(∈)|(in){_END})[ \t]*", r"(?=[\s\])},;:=|]|$)", "meta.set", [
                shape,
                groups(r"(\^)(\d+)", "keyword.operator", "constant.numeric.integer"),
                groups(rf"(\^)({NAME})", "keyword.operator", "variable.other"),
                rule(rf"{ASCII_SET}|{SET_BASE}", "storage.type.set"),
                *brackets([{"include": "#line"}]),
                {"include": "#line"},
            ], [None, "keyword.operator", "keyword.operator.word"])]},
            "shape": {"patterns": [
                rule(rf"x{_END}", "keyword.operator.word"),
                *brackets([{"include": "#shape"}])[2:],
                {"include": "#line"},
            ]},
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(textmate_grammar(), ensure_ascii=False, indent=2))
