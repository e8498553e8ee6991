"""Hostile cards: nothing written in a card (names, descriptions, purpose lines,
numbers, comments, its file name) can put code into a generated module or make
cardgen write outside its output folder, and no planted link is followed."""

import ast
import contextlib
import io
import os
import re
import tokenize

import numpy as np
import pytest
from click.testing import CliRunner

from cardgen import parse
from cardgen.cli import main
from cardgen.compile.emit import module_source
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check
from cardgen.lang.errors import CardError

from .conftest import ROOT, module_card, swap

EVIL = r"""algorithm y ← evil(x | np, config, print, l, ℓ, γ, gamma)
  "Purpose with \"\"\" quotes, a \\ backslash, \\n, TRIPLE and */, and a line separator:LSEP done"
  convention rows, 0-based
  input  x ∈ ℝ^{n}              "\"\"\"; import os; os.system('echo pwned') #"
  output y ∈ ℝ^{n}              "ends with a backslash \\"
  hyper  n ∈ ℕ                  "\"\"\""
  param  np, config, print ∈ ℝ^{n}  "names generated code uses itself"
  param  l, ℓ ∈ ℝ^{n}           "l and ℓ are one name once Python folds them (NFKC)"
  param  γ, gamma ∈ ℝ^{n}       "γ is spelled gamma in ASCII"
  1 y ← x ⊙ np + config ⊙ l − ℓ ⊙ γ + gamma ⊙ print   ▷ y ∈ ℝ^n; a comment with \"\"\" and \\
  2 return y
""".replace("TRIPLE", "'" * 3).replace("LSEP", "\u2028")


def evil_module(tmp_path):
    card = parse(EVIL, str(tmp_path / "evil.card"))
    lib = Library(cards={"evil": card})
    checked = check(card, lib)
    return checked, lib, module_source(checked, lib, "cards/evil.card")


def test_hostile_text_stays_text(tmp_path):
    import ast
    _, _, src = evil_module(tmp_path)
    tree = ast.parse(src)  # a valid module
    imports = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    # os and concurrent.futures: the element-wise helpers' thread count (CARDGEN_THREADS) and pool
    assert imports <= {"annotations", "__future__", "math", "dataclass", "dataclasses", "numpy", "os",
                       "concurrent.futures"}
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not any("system" in c or "exec" in c or "eval" in c for c in calls)
    docstring = ast.get_docstring(tree)
    assert "os.system('echo pwned')" in docstring  # the description, as text, where it belongs


def test_importing_it_has_no_side_effects_and_it_computes_the_card(tmp_path):
    checked, lib, _ = evil_module(tmp_path)
    before = sorted(os.listdir(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        mod = load_module(checked, lib)
    assert out.getvalue() == "" and sorted(os.listdir(tmp_path)) == before
    fields = [f for f in mod.Params.__dataclass_fields__]
    # Python names: none is np, config, params, print or l, and the folded pairs stay apart
    assert len(set(fields)) == 7 and not {"np", "config", "print", "l"} & set(fields)
    cfg = mod.Config(n=3)
    p = mod.init_params(cfg, np.random.default_rng(0), np.float64)
    vals = {f: np.random.default_rng(i).standard_normal(3) for i, f in enumerate(fields)}
    p = mod.Params(**vals)
    x = np.arange(3.0)
    y, _ = mod.forward(cfg, p, x)
    named = dict(zip(["np", "config", "print", "l", "ℓ", "γ", "gamma"], fields, strict=True))
    v = {k: vals[f] for k, f in named.items()}
    np.testing.assert_allclose(y, x * v["np"] + v["config"] * v["l"] - v["ℓ"] * v["γ"] + v["gamma"] * v["print"])
    assert gradcheck(checked, lib).worst <= 1e-6


def test_the_module_is_the_same_every_time(tmp_path):
    assert evil_module(tmp_path)[2] == evil_module(tmp_path)[2]


# ------------------------------------------------ names: restricted by the grammar

RUN_ID = 'y_{"""; __import__("os").system("id > pwned"); """}'
ISSUE_CARD = f"algorithm {RUN_ID} ← E(x)\n  input  x ∈ ℝ^D\n  output {RUN_ID} ∈ ℝ^D\n  hyper  D ∈ ℕ\n" \
             f"  1 return {RUN_ID} = x\n"
# What a name may not hold: quotes, backslash, slash, braces, every line break (a lone CR,
# U+0085, U+2028, U+2029, VT, FF), control and invisible characters, other formats' specials.
NOT_IN_NAMES = ['"', "'", "\\", "/", "{", "\r", "\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1b",
                "\u202e", "\u200b", "`", "$", "<", "&", "%", "#", "*", "!", "~"]
PLACES = {  # where a name stands: its line, and the text before the bad character
    "card name": ("algorithm y ← E_{aX}(x)\n  input  x ∈ ℝ^D\n  output y ∈ ℝ^D\n  hyper  D ∈ ℕ\n"
                  "  1 return y = x\n", 1, "algorithm y ← E_{a"),
    "output": ("algorithm y_{aX} ← E(x)\n  input  x ∈ ℝ^D\n  output y_{aX} ∈ ℝ^D\n  hyper  D ∈ ℕ\n"
               "  1 return y_{aX} = x\n", 1, "algorithm y_{a"),
    "dimension": ("algorithm y ← E(x)\n  input  x ∈ ℝ^{D_{aX}}\n  output y ∈ ℝ^{D_{aX}}\n"
                  "  hyper  D_{aX} ∈ ℕ\n  1 return y = x\n", 2, "  input  x ∈ ℝ^{D_{a"),
}


@pytest.mark.parametrize("ch", NOT_IN_NAMES, ids=[f"U+{ord(c):04X}" for c in NOT_IN_NAMES])
@pytest.mark.parametrize("place", PLACES)
def test_a_name_cannot_hold_it_and_the_error_points_at_it(place, ch):
    text, line, before = PLACES[place]
    with pytest.raises(CardError) as e:
        parse(text.replace("X", ch), "e.card")
    err = e.value
    assert (err.line, err.col) == (line, len(before) + 1), str(err)
    if ch != "{":
        assert "a name cannot hold" in err.message
    assert "Traceback" not in str(err) and err.hint


def test_the_issues_card_is_refused_at_the_quote():
    r = CliRunner().invoke(main, ["check", "-"], input=ISSUE_CARD)
    assert r.exit_code == 1 and "<stdin>:1:14: error: a name cannot hold '\"'" in r.output \
        or ":1:14: error: a name cannot hold" in r.output, r.output


def test_names_keep_what_the_papers_cards_need():
    for name in ["W_e", "e_{ℓ_z}", "x_{1:N_data}", "Y_{H−1}", "γ^1_ℓ", "X̃", "t′", "d_{out, 2}", "θ_{a=1}"]:
        card = parse(f"algorithm y ← E(x | {name})\n  input x ∈ ℝ^D\n  output y ∈ ℝ^D\n  hyper D ∈ ℕ\n"
                     f"  param {name} ∈ ℝ^D\n  1 return y = x ⊙ {name}\n")
        assert name in [n for d in card.decls if d.role == "param" for n in d.names], name


# -------------------------------- the emitter escapes without the grammar's help
PLACEHOLDER_CARD = """algorithm y_{QQ} ← E_{QQ}(x | W_{QQ})
  "purpose QQ"
  convention rows, 0-based
  input  x ∈ ℝ^{D_{QQ}}       "input QQ"
  output y_{QQ} ∈ ℝ^{D_{QQ}}  "output QQ"
  hyper  D_{QQ} ∈ ℕ           "size QQ"
  param  W_{QQ} ∈ ℝ^{D_{QQ}}  "weights QQ"
  1 y_{QQ} ← x ⊙ W_{QQ}       ▷ note QQ
  2 return y_{QQ}
"""
PAYLOADS = {
    "triple quote": '"""; __import__("os").system("touch pwned"); """',
    "ends in a quote": 'x"',
    "carriage return": '\r__import__("os").system("touch pwned")\r#',
    "line separators": '\u2028__import__("os").system("touch pwned")\x85\u2029\x0c\x0b\x1c',
    "escapes": '\\N{\\x\\u\\U\\0\\',
    "NUL and bidi": "\x00\u202e\u200b",
    "coding": "coding: unicode_escape -*- coding=latin-1",
}


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=list(PAYLOADS))
def test_text_that_bypasses_the_grammar_stays_text(payload, tmp_path):
    card = swap(parse(PLACEHOLDER_CARD, "e.card"), "QQ", payload)
    lib = Library(cards={card.name: card})
    checked = check(card, lib)
    src = module_source(checked, lib, f"cards/e\n# coding: unicode_escape {payload}.card")
    compile(src, "e.py", "exec")
    lines = src.split("\n")
    assert lines[0].startswith("# Code generated by cardgen from ") and lines[1].startswith("# Card SHA-256: ")
    assert not re.search(r"coding[:=]", lines[0] + lines[1])  # PEP 263 reads these two lines
    # The payload is in comments, docstrings and repr()'d string literals only: never code.
    tokens = list(tokenize.generate_tokens(io.StringIO(src).readline))
    docstrings = {(n.value.lineno, n.value.col_offset) for n in ast.walk(ast.parse(src))
                  if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
    for tok in tokens:
        if tok.type == tokenize.NAME:
            assert tok.string not in ("__import__", "system", "touch"), tok
        if tok.type == tokenize.STRING and tok.start not in docstrings and "pwned" in tok.string:
            assert tok.string[1:-1] == repr(ast.literal_eval(tok.string))[1:-1], tok  # written by repr()
    # The module docstring is the text, character for character (the card's steps keep every one).
    doc = ast.get_docstring(ast.parse(src), clean=False)
    assert payload.replace("\x00", "") in doc.replace("\x00", "") or payload in doc
    before = sorted(os.listdir(tmp_path))
    os.chdir(tmp_path)
    try:
        load_module(checked, lib)
    finally:
        os.chdir(ROOT)
    assert sorted(os.listdir(tmp_path)) == before  # nothing ran


def test_a_number_that_bypasses_the_grammar_is_refused(tmp_path):
    card = parse(PLACEHOLDER_CARD.replace('hyper  D_{QQ} ∈ ℕ ', 'hyper  D_{QQ} ∈ ℕ = 7'), "e.card")
    card = swap(card, "7", "__import__('os')")
    lib = Library(cards={card.name: card})
    with pytest.raises(Exception) as e:
        module_source(check(card, lib), lib, "cards/e.card")
    assert "__import__" not in str(type(e.value))  # refused: an error, never code


def test_a_card_file_name_never_reaches_code(tmp_path):
    """git allows newlines in file names: the header holds the path on one escaped line, never a
    second line of code or a PEP 263 coding declaration."""
    import subprocess
    import sys
    folder = tmp_path / 'x\n__import__("os").system("touch pwned")\n# coding: unicode_escape'
    folder.mkdir()
    card = folder / "n.card"
    card.write_text(module_card("Net").replace("  convention", '  "a \\\\n description"\n  convention'), "utf-8")
    out = tmp_path / "gen"
    r = subprocess.run([sys.executable, "-m", "cardgen.cli", "build", str(card), "-o", str(out)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = (out / "Net.py").read_text("utf-8")
    first, second = src.split("\n")[:2]
    assert first.startswith("# Code generated by cardgen from ") and "coding" in first
    assert not re.search(r"coding[:=]", first + second) and second.startswith("# Card SHA-256:")
    subprocess.run([sys.executable, "-c", "import Net"], cwd=out, check=True)
    assert not (out / "pwned").exists() and not (tmp_path / "pwned").exists()


# ------------------------------------------------------------ highlighted card text
HTML_SPECIALS = '"\\\\input{/etc/passwd} </pre><script>alert(1)</script> &amp; <!-- \\" ]]> {{ x }} `$\\\\`"'


@pytest.mark.parametrize("formatter", ["html", "latex"])
def test_highlighted_card_text_is_escaped_by_the_formatter(formatter):
    """The card lexer's tokens go through Pygments' formatters, which escape for their format: the
    HTML, parsed back by html.parser, holds no element the card wrote and shows every character;
    the LaTeX keeps TeX's specials inside its escapes."""
    from html.parser import HTMLParser

    from pygments import highlight
    from pygments.formatters import HtmlFormatter, LatexFormatter

    from cardgen.docs.highlight import CardLexer
    text = module_card("Net").replace("  convention", f"  {HTML_SPECIALS}\n  convention")
    if formatter == "latex":
        out = highlight(text, CardLexer(), LatexFormatter())
        assert "\\input" not in out and "</script>" in out.replace("\\PYZlt{}", "<").replace("\\PYZgt{}", ">")
        return
    out = highlight(text, CardLexer(), HtmlFormatter())

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text = set(), []

        def handle_starttag(self, tag, attrs):
            self.tags.add(tag)

        def handle_data(self, data):
            self.text.append(data)
    p = Collect()
    p.feed(out)
    assert p.tags <= {"div", "pre", "span"}, p.tags
    assert "".join(p.text).replace("\n", "") == text.replace("\n", "")
