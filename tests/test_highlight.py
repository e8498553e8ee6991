"""Syntax highlighting: the Pygments lexer (cardgen.docs.highlight) on every card and
its rendered pseudocode, spot checks of its token types, its entry point, and
the TextMate grammar (editors/) run through VS Code's own engine."""

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename, guess_lexer
from pygments.token import (
    Comment,
    Error,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from cardgen.cli import main
from cardgen.docs.highlight import CardLexer, textmate_grammar

from .conftest import CARDS, ROOT, require

LEXER = CardLexer()


def lex(text: str) -> list[tuple[object, str]]:
    return [(tok, val) for _, tok, val in LEXER.get_tokens_unprocessed(text)]


def significant(text: str) -> list[tuple[str, object]]:
    """(value, token) of every token but whitespace: what a reader sees coloured."""
    return [(val, tok) for tok, val in lex(text) if tok is not Whitespace]


def assert_clean(text: str) -> None:
    toks = lex(text)
    assert "".join(val for _, val in toks) == text
    errors = [val for tok, val in toks if tok is Error]
    assert not errors, f"error tokens {errors}"
    assert not [val for tok, val in LEXER.get_tokens(text) if tok is Error]  # as pygmentize runs it


def render(card: Path, *flags: str) -> str:
    r = CliRunner().invoke(main, ["render", *flags, str(card)])
    assert r.exit_code == 0, r.output
    return r.output


# ------------------------------------------------------ every card, both forms
def test_card_lexes_cleanly(card_path):
    assert_clean(card_path.read_text("utf-8"))


@pytest.mark.parametrize("flags", [(), ("--full",)], ids=["text", "full"])
def test_rendered_card_lexes_cleanly(card_path, flags):
    assert_clean(render(card_path, *flags))


def test_rendered_parameter_count_line():
    sets = [f"--set={n}=2" for n in ("V", "D", "H", "D_f", "N", "ctx")]
    text = render(ROOT / "cards" / "GPT2.card", *sets)
    assert_clean(text)
    assert any(tok is Generic.Output and val.startswith("Parameter count:") for tok, val in lex(text))


# ------------------------------------------------------------- token types
def test_header_convention_and_declaration():
    assert significant("algorithm ê ← layer_norm(e | γ, β)\n") == [
        ("algorithm", Keyword.Declaration), ("ê", Name), ("←", Operator), ("layer_norm", Name.Function),
        ("(", Punctuation), ("e", Name), ("|", Operator), ("γ", Name), (",", Punctuation), ("β", Name),
        (")", Punctuation)]
    assert significant("  convention rows, 0-based\n") == [
        ("convention", Keyword.Declaration), ("rows", Keyword.Constant), (",", Punctuation),
        ("0-based", Keyword.Constant)]
    assert significant("Input: x ∈ {0..V−1}^T — token IDs\n") == [
        ("Input:", Keyword.Declaration), ("x", Name), ("∈", Operator), ("{", Punctuation),
        ("0", Number.Integer), ("..", Operator), ("V", Name), ("−", Operator), ("1", Number.Integer),
        ("}", Punctuation), ("^", Operator), ("T", Name), ("— token IDs", String)]


def test_ascii_sets_only_after_in():
    """R N Z x are sets and × only in a set; elsewhere they are names (GPT-2's N is its depth)."""
    assert significant("  hyper N in N\n  input X in R^{d x N}*\n  1 for n in [N] : y <- x\n") == [
        ("hyper", Keyword.Declaration), ("N", Name), ("in", Operator.Word), ("N", Keyword.Type),
        ("input", Keyword.Declaration), ("X", Name), ("in", Operator.Word), ("R", Keyword.Type),
        ("^", Operator), ("{", Punctuation), ("d", Name), ("x", Operator.Word), ("N", Name),
        ("}", Punctuation), ("*", Operator),
        ("1", Generic.Prompt), ("for", Keyword), ("n", Name), ("in", Operator.Word), ("[", Punctuation),
        ("N", Name), ("]", Punctuation), (":", Punctuation), ("y", Name), ("<-", Operator), ("x", Name)]
    assert ("{0,1}", Keyword.Type) in significant("  hyper Mask ∈ {0,1}^{ℓ×ℓ}\n")


@pytest.mark.parametrize("word, token", [
    ("for", Keyword), ("do", Keyword), ("end", Keyword), ("while", Keyword), ("if", Keyword),
    ("then", Keyword), ("return", Keyword), ("with", Keyword), ("probability", Keyword),
    ("else", Keyword), ("forall", Keyword), ("∀", Keyword), ("input", Keyword.Declaration),
    ("output", Keyword.Declaration), ("hyper", Keyword.Declaration), ("param", Keyword.Declaration),
    ("softmax", Name.Builtin), ("GELU", Name.Builtin), ("σ", Name.Builtin), ("π", Name.Builtin),
    ("length", Name.Builtin), ("ℝ", Keyword.Type), ("ℕ", Keyword.Type), ("ℤ", Keyword.Type),
    ("1e-5", Number.Float), ("0.9", Number.Float), ("12", Number.Integer),
])
def test_word(word, token):
    assert (word, token) in significant(f"  1 y ← a {word} b\n")


# Each operator in both spellings (README "ASCII spellings"), in a step.
SPELLINGS = [("←", "<-"), ("⊙", "*"), ("·", "@"), ("^⊤", "^T"), ("√", "sqrt"), ("Σ_", "sum_"),
             ("≤", "<="), ("≥", ">="), ("≠", "!="), ("¬", "not"), ("∇", "grad"), ("∼", "~"),
             ("∝", "propto"), ("…", "..."), ("−", "-"), ("∈", "in"), ("=", "≡"), ("ᵀ", "²")]


@pytest.mark.parametrize("symbol, ascii_", SPELLINGS, ids=[a for _, a in SPELLINGS])
def test_operator_in_both_spellings(symbol, ascii_):
    for op in (symbol, ascii_):
        found = [tok for val, tok in significant(f"  1 y ← a {op} b\n") if val == op]
        assert found and found[0] in Operator, (op, found)


def test_infinity_in_both_spellings():
    assert ("∞", Keyword.Constant) in significant("  1 S ← −∞\n")
    assert ("inf", Keyword.Constant) in significant("  1 S <- -inf\n")


@pytest.mark.parametrize("name", ["W_e", "γ^1_ℓ", "e_{ℓ_z}", "𝓦_qkv", "θ′", "e\u0302", "X̃", "W^h_q",
                                  "x_{1:N_data}", "d_attn", "β_1"])
def test_name_with_scripts_is_one_token(name):
    assert significant(f"  1 y ← {name} + 1\n")[3] == (name, Name)


def test_transpose_and_power_are_not_scripts():
    assert significant("  1 y ← W^T x\n")[3:5] == [("W", Name), ("^T", Operator)]
    assert significant("  1 y ← p^{1/τ}\n")[3:5] == [("p", Name), ("^", Operator)]


def test_claim_remark_and_comment():
    assert significant("  1 Q ← W_q X  ▷ Q ∈ ℝ^{d×ℓ}; query\n")[-4:] == [
        ("▷", Comment.Single), (" ", Comment.Single), ("Q ∈ ℝ^{d×ℓ}", Comment.Special), ("; query", Comment.Single)]
    assert significant("  1 Q ← W_q X  # Q in R^{d x l}\n")[-3:] == [
        ("#", Comment.Single), (" ", Comment.Single), ("Q in R^{d x l}", Comment.Special)]
    assert significant("  ▷ just a remark\n") == [("▷ just a remark", Comment.Single)]


def test_strings_with_escaped_quotes():
    assert significant('  "Say \\"hi\\"."\n') == [
        ('"', String.Doc), ("Say ", String.Doc), ('\\"', String.Escape), ("hi", String.Doc),
        ('\\"', String.Escape), (".", String.Doc), ('"', String.Doc)]
    assert significant('  input x ∈ ℝ  "a \\\\ b"\n')[-5:] == [
        ('"', String.Double), ("a ", String.Double), ("\\\\", String.Escape), (" b", String.Double),
        ('"', String.Double)]
    assert ("/* purpose */", String.Doc) in significant("/* purpose */\n")


# ---------------------------------------------------------------- entry point
def test_found_by_name_and_filename():
    assert isinstance(get_lexer_by_name("card"), CardLexer)
    assert isinstance(get_lexer_for_filename("x.card"), CardLexer)
    assert isinstance(guess_lexer((ROOT / "cards" / "GPT2.card").read_text("utf-8")), CardLexer)
    assert isinstance(guess_lexer(render(ROOT / "cards" / "GPT2.card")), CardLexer)
    assert not isinstance(guess_lexer("def f(x):\n    return x\n"), CardLexer)


@pytest.mark.parametrize("args", [["-l", "card"], []], ids=["by-name", "by-filename"])
def test_pygmentize_command(args):
    pygmentize = Path(sys.executable).parent / "pygmentize"
    r = subprocess.run([str(pygmentize), *args, "-f", "raw", "cards/GPT2.card"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Token.Name.Function\t'GPT2'" in r.stdout and "Token.Error" not in r.stdout


# ----------------------------------------------------------- hostile input
TEXTS = [p.read_text("utf-8") for p in CARDS]
PIECES = st.sampled_from(['"', "\\", "▷", "#", "∈", "in ", "^", "{", "}", "[[", "]]", "_", "^{", "/*", "*/",
                          "—", "\n", "  1 ", "ℝ^{", " x ", "\u0302", "′", "Σ_{", "sum_", "─"])
JUNK = st.lists(st.one_of(st.text(max_size=8), PIECES), max_size=12).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(card=st.sampled_from(TEXTS), at=st.integers(0, 10**6), cut=st.integers(0, 40), junk=JUNK)
def test_mutated_cards_never_raise(card, at, cut, junk):
    at %= len(card) + 1
    text = card[:at] + junk + card[at + cut:]
    assert "".join(val for _, val in lex(text)) == text
    list(LEXER.get_tokens(text))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text())
def test_random_text_never_raises(text):
    assert "".join(val for _, val in lex(text)) == text


@pytest.mark.parametrize("line", ["x_" * 20000, "▷ " + "a ∈ " * 5000, '"' + "\\" * 20000, "{" * 20000,
                                  "ℝ^{" * 5000, "  1 " + "W^h_q" * 5000 + "(" * 5000])
def test_long_lines_lex_in_linear_time(line):
    start = time.perf_counter()
    assert "".join(val for _, val in lex(line)) == line
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------ TextMate grammar
EDITORS = ROOT / "editors"

# The scope the TextMate grammar gives where the lexer gives a token (a prefix of it).
SCOPE = {
    Keyword: "keyword.control", Keyword.Declaration: "keyword.other.declaration", Keyword.Type: "storage.type.set",
    Keyword.Constant: "constant.language", Operator: "keyword.operator", Operator.Word: "keyword.operator.word",
    Name: "variable.other", Name.Function: "entity.name.function", Name.Builtin: "support.function.builtin",
    Number.Integer: "constant.numeric.integer", Number.Float: "constant.numeric.float",
    Generic.Prompt: "constant.numeric.integer.step", Generic.Output: "comment.line.parameter-count",
    Comment.Single: "comment.line", Comment.Special: "comment.line.claim",
    String.Doc: ("string.quoted.double.purpose", "string.quoted.other.purpose"), String.Double: "string.quoted.double",
    String.Escape: "constant.character.escape", String: "string.unquoted.description", Punctuation: "punctuation",
    Error: "invalid", Name.Label: "entity.name.label", Keyword.Pseudo: "keyword.other.training",
}
# ASCII spellings and escapes, which no card in cards/ uses.
ASCII_CARD = """algorithm y <- f(x | W)
  "Say \\"hi\\" twice"
  convention rows, 0-based
  input  x in {0..V-1}^T     "ids; \\\\ is a backslash"
  input  X in R^{d x N}*
  hyper  N in N
  param  W in R^{d x N} for h in [H]
  1 y <- sum_{i=1}^{N} sqrt(x[i]) * W^T @ x  # y in R^d; ascii
  2 forall t: if not M[t] then S[t] <- -inf
  3 y ~ q propto p^{1/tau}
  4 while y != 0 do
  5   return y = grad loss(W) <= 1e-5 with probability 0.5 else 1
  6 end
"""


def test_textmate_grammar_is_current():
    committed = json.loads((EDITORS / "card.tmLanguage.json").read_text("utf-8"))
    assert committed == textmate_grammar(), "run: python -m cardgen.docs.highlight > editors/card.tmLanguage.json"
    assert committed["scopeName"] == "source.card"


def test_textmate_regexes_compile():
    """Without node: every regex compiles (the grammar uses only syntax Python and Oniguruma share)."""
    def walk(rule):
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])
        for r in rule.get("patterns", []):
            walk(r)
    grammar = textmate_grammar()
    walk(grammar)
    for r in grammar["repository"].values():
        walk(r)


def test_vscode_extension_folder():
    """editors/vscode is a VS Code extension: the card language, its grammar (a link to
    editors/card.tmLanguage.json) and its comment and bracket characters."""
    folder = EDITORS / "vscode"
    manifest = json.loads((folder / "package.json").read_text("utf-8"))
    [language] = manifest["contributes"]["languages"]
    [grammar] = manifest["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "card" and language["extensions"] == [".card"]
    assert (folder / grammar["path"]).resolve() == (EDITORS / "card.tmLanguage.json").resolve()
    assert grammar["scopeName"] == textmate_grammar()["scopeName"]
    config = json.loads((folder / language["configuration"]).read_text("utf-8"))
    assert config["comments"]["lineComment"] == "▷" and ["[", "]"] in config["brackets"]


@pytest.fixture(scope="module")
def textmate(tmp_path_factory):
    """Every card, its rendered pseudocode and ASCII_CARD, each as (text, tokens by line) from
    VS Code's TextMate engine (editors/test/tokenize.mjs; .ci/run installs it with npm ci)."""
    node = shutil.which("node")
    require(node is not None and (EDITORS / "test" / "node_modules").is_dir(),
            "needs node and `npm ci --prefix editors/test`")
    folder = tmp_path_factory.mktemp("textmate")
    texts = {"ascii": ASCII_CARD}
    for card in CARDS:
        texts[card.stem] = card.read_text("utf-8")
        texts[card.stem + ".text"] = render(card)
        texts[card.stem + ".full"] = render(card, "--full")
    for name, text in texts.items():
        (folder / name).write_text(text, "utf-8")
    r = subprocess.run([node, str(EDITORS / "test" / "tokenize.mjs"), *(str(folder / n) for n in texts)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = json.loads(r.stdout)
    return {name: (text, lines[str(folder / name)]) for name, text in texts.items()}


def scopes_by_char(lines) -> list[list[str]]:
    """The scopes of every character of the text (a newline gets none)."""
    out = []
    for line in lines:
        for text, scopes in line:
            out += [scopes] * len(text)
        out.append([])
    return out[:-1]


def test_textmate_tokenizes_every_card_without_invalid(textmate):
    for name, (text, lines) in textmate.items():
        assert "\n".join("".join(t for t, _ in line) for line in lines) == text, name
        invalid = [t for line in lines for t, scopes in line if any("invalid" in s for s in scopes)]
        assert not invalid, (name, invalid)


def test_textmate_agrees_with_the_lexer(textmate):
    """Every character the lexer colours gets the matching scope from the TextMate grammar."""
    wrong = []
    for name, (text, lines) in textmate.items():
        scopes = scopes_by_char(lines)
        for pos, tok, val in LEXER.get_tokens_unprocessed(text):
            want = SCOPE.get(tok, "?")
            for i, ch in enumerate(val, pos):
                if ch.isspace():
                    continue
                inner = [s for s in scopes[i] if not s.startswith("meta.")]
                if want != "punctuation":
                    inner = [s for s in inner if not s.startswith("punctuation.")]
                if not (inner and inner[-1].startswith(want)):
                    wrong.append((name, text[max(0, i - 20):i + 5], ch, str(tok), scopes[i]))
                    break
    assert not wrong, "\n".join(map(str, wrong[:20]))


def test_textmate_scopes_in_both_spellings(textmate):
    text, lines = textmate["ascii"]
    seen = {(t, scopes[-1]) for line in lines for t, scopes in line}
    for token, scope in [("algorithm", "keyword.other.declaration.card"), ("<-", "keyword.operator.card"),
                         ("in", "keyword.operator.word.card"), ("R", "storage.type.set.card"),
                         ("x", "keyword.operator.word.card"), ("sum_", "keyword.operator.card"),
                         ("sqrt", "keyword.operator.word.card"), ("forall", "keyword.control.card"),
                         ("propto", "keyword.operator.word.card"), ("grad", "keyword.operator.word.card"),
                         ("inf", "constant.language.infinity.card"), ('\\"', "constant.character.escape.card"),
                         ("y in R^d", "comment.line.claim.card"), ("1e-5", "constant.numeric.float.card"),
                         ("f", "entity.name.function.card"), ("with", "keyword.control.card")]:
        assert (token, scope) in seen, (token, scope)
