"""Pygments lexer for cards: ``pygmentize -l card``, Sphinx and MkDocs find it
by the name ``card`` through the ``pygments.lexers`` entry point.

It lexes both forms the grammar accepts: ``.card`` files and the pseudocode
that ``cardgen render`` prints (``Algorithm:``, ``/* purpose */``,
``— description``).  Only standard token types are used, so every Pygments
style colours a card.  ``editors/card.tmLanguage.json`` mirrors these rules.
"""

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

__all__ = ["CardLexer"]

# A name, as grammar/card.lark spells it: a letter, then letters, digits, primes
# and combining marks, then _sub / ^sup scripts (W_e, γ^1_ℓ, e_{ℓ_z}, X̃, θ′).
# ^T is the transpose and ^{…} a power, never a script; ᵀ ² ¹ ³ are operators.
_MARK = r"[\u0300-\u036f′]"
_CHAR = rf"(?:(?![ᵀ²³¹])[^\W_]|{_MARK})"
NAME = (rf"(?!sum_|grad\b)(?![ᵀΣℝℕℤ∇²³¹])[^\W\d_]{_CHAR}*"
        rf"(?:_(?:\{{[^{{}}\n]*\}}|{_CHAR}+)|\^(?!T(?![^\W_])){_CHAR}+)*")

_END = r"(?![\w′\u0300-\u036f])"  # a word ends: no letter, digit, _, prime or mark follows
SET_BASE = r"[ℝℕℤ]|\{[ \t]*0[ \t]*,[ \t]*1[ \t]*\}"

# What a whole name means when it is a reserved or built-in word; any other name
# is a variable (Name) or, directly before "(", a function or card (Name.Function).
WORDS = {
    **dict.fromkeys("algorithm convention input output hyper param".split(), Keyword.Declaration),
    **dict.fromkeys("for For do end while if then return with probability else forall".split(), Keyword),
    **dict.fromkeys("not propto sqrt".split(), Operator.Word),  # ASCII spellings of ¬ ∝ √
    "inf": Keyword.Constant,
    **dict.fromkeys("exp log tanh sin cos softmax GELU ReLU SiLU σ max length π".split(), Name.Builtin),
}

# Symbols, longest first where one is a prefix of another (<- before <, ... before ..).
OPERATORS = (r"←|<-|∈|×|⊙|·|@|\^⊤|\^T(?![^\W_])|ᵀ|²|√|Σ_?|sum_|≤|<=|≥|>=|≠|!=|==|¬|∇|∼|~|∝|"
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

    tokens = {
        "root": [
            # Whole-line forms first: they are anchored at a line's start.
            (r'^([ \t]*)(")', bygroups(Whitespace, String.Doc), "purpose"),
            (r"^([ \t]*)(/\*[^\n]*?\*/)", bygroups(Whitespace, String.Doc)),
            (r"^([ \t]*)(Parameter count:[^\n]*)", bygroups(Whitespace, Generic.Output)),
            (r"^─+[ \t]*$", Comment.Single),  # `render --full` puts a rule between cards
            (r"^([ \t]*)(convention\b|Convention:)", bygroups(Whitespace, Keyword.Declaration), "convention"),
            (r"^([ \t]*)(\d+)(?=[ \t])", bygroups(Whitespace, Generic.Prompt)),  # step number
            (r"(?:Algorithm|Input|Output|Hyperparameters|Parameters):", Keyword.Declaration),
            (r"\n", Whitespace),
            include("line"),
        ],
        "line": [
            (r"[ \t\r\f\v]+", Whitespace),  # no rule for "\n": it resets every state to "root"
            (r"\\(?=\r?\n)", Punctuation),  # line continuation
            # ▷ name ∈ set; text — a claim the checker verifies — else a plain comment.
            (rf"([▷#])([ \t]*)({NAME}[ \t]+(?:∈|in\b)[^;\n]*)([^\n]*)",
             bygroups(Comment.Single, Comment.Single, Comment.Special, Comment.Single)),
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
            (r"\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)", Number.Float),
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
            (rf"[RNZ]{_END}|{SET_BASE}", Keyword.Type, ("#pop", "set_tail")),
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
