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

from .conftest import ROOT, swap

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
    assert imports <= {"annotations", "__future__", "math", "dataclass", "dataclasses", "numpy"}
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


# ---------------------------------------------------------------------- build
def _module_card(name: str) -> str:
    return (f"algorithm y ← {name}(x | W)\n  convention rows, 0-based\n  input  x ∈ ℝ^{{n}}\n  output y ∈ ℝ^{{n}}\n"
            f"  hyper  n ∈ ℕ\n  param  W ∈ ℝ^{{n}}\n  1 return y = x ⊙ W\n")


def test_build_writes_nothing_when_a_module_does_not_compile(tmp_path, monkeypatch):
    import cardgen.compile.emit as emit
    (tmp_path / "a.card").write_text(_module_card("A"), "utf-8")
    (tmp_path / "b.card").write_text(_module_card("B"), "utf-8")
    real = emit.module_source

    def broken(checked, lib, path):
        src = real(checked, lib, path)
        return src + ('\n"""\n' if checked.card.name == "B" else "")
    monkeypatch.setattr(emit, "module_source", broken)
    r = CliRunner().invoke(main, ["build", str(tmp_path / "a.card"), str(tmp_path / "b.card"), "-o",
                                  str(tmp_path / "out")])
    assert r.exit_code == 2 and "does not compile" in r.output and "b.card" in r.output, r.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("names", [("Net", "Net"), ("Net", "NET")], ids=["same name", "same but for case"])
def test_two_cards_on_one_file_are_an_error_naming_both(tmp_path, names):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a, b = tmp_path / "one" / "a.card", tmp_path / "two" / "b.card"
    a.write_text(_module_card(names[0]), "utf-8")
    b.write_text(_module_card(names[1]), "utf-8")
    for cmd in ("build", "docs"):
        out = tmp_path / f"out-{cmd}"
        r = CliRunner().invoke(main, [cmd, str(a), str(b), "-o", str(out)])
        assert r.exit_code == 1 and str(a) in r.output and str(b) in r.output, r.output
        assert "Traceback" not in r.output and not out.exists()


def test_output_files_are_named_from_identifiers(tmp_path):
    (tmp_path / "g.card").write_text(_module_card("γ_{ℓ}"), "utf-8")
    r = CliRunner().invoke(main, ["build", str(tmp_path / "g.card"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["gamma_ell.py"]
    r = CliRunner().invoke(main, ["docs", str(tmp_path / "g.card"), "-o", str(tmp_path / "book")])
    assert r.exit_code == 0 and (tmp_path / "book" / "cards" / "gamma_ell.html").is_file(), r.output


def test_the_issues_path_card_writes_nothing_anywhere(tmp_path):
    card = tmp_path / "x.card"
    card.write_text(_module_card("B_{/../../../x}"), "utf-8")
    (tmp_path / "out" / "B_{").mkdir(parents=True)
    for cmd in ("build", "docs"):
        r = CliRunner().invoke(main, [cmd, str(card), "-o", str(tmp_path / "out" / cmd)])
        assert r.exit_code == 1 and "a name cannot hold '/'" in r.output, r.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["out", "out/B_{", "x.card"]


# ------------------------------------------------------ writes never follow links
def test_links_planted_at_the_old_temporary_names_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    work = tmp_path / "repo"
    (work / "gen").mkdir(parents=True)
    (work / "book" / "cards").mkdir(parents=True)
    card = work / "n.card"
    card.write_text(_module_card("Net").replace("⊙", "*"), "utf-8")  # fmt will rewrite it
    for link in [work / ".n.card.tmp", work / "gen" / ".Net.py.tmp", work / "book" / ".index.html.tmp",
                 work / "book" / "cards" / ".Net.html.tmp", work / "gen" / ".cardgen-planted.tmp"]:
        link.symlink_to(victim)
    (work / "book" / "index.html").write_text('<meta name="generator" content="cardgen docs">')
    for args in (["fmt", str(card)], ["build", str(card), "-o", str(work / "gen")],
                 ["docs", str(card), "-o", str(work / "book")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, (args, r.output)
    assert victim.read_text() == "precious\n"
    assert "⊙" in card.read_text("utf-8") and (work / "gen" / "Net.py").is_file()
    assert not (work / "gen" / ".cardgen-planted.tmp").exists()  # removed, as a link, not followed


def test_a_link_planted_at_a_target_is_never_followed(tmp_path):
    victim = tmp_path / "victim.py"
    victim.write_text("precious\n")
    card = tmp_path / "n.card"
    card.write_text(_module_card("Net"), "utf-8")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "Net.py").symlink_to(victim)
    r = CliRunner().invoke(main, ["build", str(card), "-o", str(tmp_path / "gen")])
    assert r.exit_code == 1 and "not generated by cardgen" in r.output, r.output
    r = CliRunner().invoke(main, ["build", str(card), "-o", str(tmp_path / "gen"), "--force"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "gen" / "Net.py").is_symlink() and victim.read_text() == "precious\n"
    (tmp_path / "book" / "cards").mkdir(parents=True)
    (tmp_path / "book" / "cards" / "Net.html").symlink_to(victim)
    r = CliRunner().invoke(main, ["docs", str(card), "-o", str(tmp_path / "book"), "--force"])
    assert r.exit_code == 1 and "outside" in r.output and "Traceback" not in r.output, r.output
    assert victim.read_text() == "precious\n"


def test_atomic_write_keeps_permissions_and_removes_only_dead_leftovers(tmp_path):
    import fcntl

    from cardgen.lang.files import TMP_PREFIX, TMP_SUFFIX, atomic_write, inside, remove_leftovers
    f = tmp_path / "private.card"
    f.write_text("old")
    f.chmod(0o600)
    atomic_write(f, "new")
    assert f.read_text() == "new" and (f.stat().st_mode & 0o777) == 0o600
    dead = tmp_path / f"{TMP_PREFIX}dead{TMP_SUFFIX}"
    dead.write_text("half")
    live = tmp_path / f"{TMP_PREFIX}live{TMP_SUFFIX}"
    live.write_text("being written")
    with open(live) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as atomic_write holds its file until the rename
        assert remove_leftovers(tmp_path) == 1
    assert not dead.exists() and live.exists()
    with pytest.raises(CardError):
        inside(tmp_path, "../x")
    assert inside(tmp_path, "a/b.html") == tmp_path.resolve() / "a" / "b.html"


def test_a_killed_docs_leaves_no_temporary_files_after_the_next_run(tmp_path):
    """Killed near the end (where the files are written), then run again: the book is whole
    and no temporary file is left, the planted one included."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "book"
    cmd = [sys.executable, "-m", "cardgen.cli", "docs", str(ROOT / "cards" / "Bigram.card"), "-o", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    whole = time.perf_counter() - start
    for fraction in (0.7, 0.85, 0.95, 0.99):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (out / "_static" / ".cardgen-killed.tmp").write_text("a write killed half way")
    subprocess.run(cmd, check=True, capture_output=True)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "cards" / "Bigram.html").read_text("utf-8").endswith("</html>\n")


# ------------------------------------------------------------------ bounded work
def nested_loops_card(depth: int) -> str:
    lines = ["algorithm y ← deep(x)", "  input  x ∈ ℝ^{D}", "  output y ∈ ℝ^{D}", "  hyper  D, K ∈ ℕ", "  1 y ← x"]
    for i in range(depth):
        lines.append("  " * (i + 1) + f"{i + 2} for i{i} = 1, …, K do")
    lines.append("  " * (depth + 1) + f"{depth + 2} y ← y + x")
    lines += ["  " * (i + 1) + f"{2 * depth + 2 - i} end" for i in reversed(range(depth))]
    return "\n".join(lines + [f"  {2 * depth + 3} return y"]) + "\n"


def test_sixteen_nested_loops_build_fast_and_thirty_are_refused_at_the_seventeenth(tmp_path):
    """The gradient analysis visited each loop body twice per level: 2^depth (14.8 s at depth 24).
    Python compiles at most 20 nested blocks, so beyond 16 carried loops cardgen says so."""
    import time
    start = time.process_time()
    card = parse(nested_loops_card(16), str(tmp_path / "deep.card"))
    lib = Library(cards={"deep": card})
    checked = check(card, lib)
    compile(module_source(checked, lib, "deep.card"), "deep.py", "exec")
    assert time.process_time() - start < 5.0
    mod = load_module(checked, lib)
    x = np.arange(3.0)
    y, cache = mod.forward(mod.Config(D=3, K=1), mod.Params(), x)
    np.testing.assert_array_equal(y, 2 * x)
    _, d_in = mod.backward(mod.Config(D=3, K=1), mod.Params(), cache, np.ones(3))
    np.testing.assert_array_equal(d_in["x"], 2 * np.ones(3))
    (tmp_path / "deep30.card").write_text(nested_loops_card(30), "utf-8")
    start = time.perf_counter()
    r = CliRunner().invoke(main, ["build", str(tmp_path / "deep30.card"), "-o", str(tmp_path / "out")])
    assert time.perf_counter() - start < 5.0
    assert r.exit_code == 1 and "deep30.card:22:" in r.output and "nested more than 16 deep" in r.output, r.output
    assert "hint:" in r.output and not (tmp_path / "out").exists()


# ------------------------------------------------------- values of the command line
@pytest.mark.parametrize("args, where, says", [
    (["--set", "D=-5"], "GPT2.card:8:3", "D = -5, but D is a size: it must be at least 1"),
    (["--set", "D=0"], "GPT2.card:8:3", "D = 0, but D is a size"),
    (["--set", "D=1.5"], "GPT2.card:8:3", "the card says D is a natural number"),
    (["--set", "D=768", "--set", "H=5"], "CausalSelfAttention.card:14:", "D/H = 153.6 (with D = 768, H = 5)"),
    (["--set", "H=0", "--set", "D=8"], "GPT2.card:9:3", "H = 0, but H is a size"),
    (["--set", "Dd=3"], "cardgen: error", "GPT2 has no hyperparameter or size named Dd"),
    (["--set", "V=nan"], "cardgen: error", "'nan' is not a finite number"),
    (["--set", "D=1e400"], "cardgen: error", "'1e400' is not a finite number"),
    (["--memory", "--set", "B=-1"], "cardgen: error", "the batch size must be a whole number of at least 1"),
    (["--memory", "--set", "T=-3"], "cardgen: error", "T = -3, but T is a size"),
    (["--memory", "--set", "dtype=int8"], "cardgen: error", "'int8' is not a float type"),
])
def test_set_values_are_checked_in_the_cards_terms(args, where, says):
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", *args])
    assert r.exit_code == 1 and where in r.output and says in r.output, r.output
    assert "internal error" not in r.output and "Traceback" not in r.output


def test_hints_name_the_fix():
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--set", "D=768", "--set", "H=5"])
    assert "hint: H must divide D" in r.output
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--set", "DD=3"])
    assert "did you mean D?" in r.output


def test_gradcheck_takes_the_same_checks():
    r = CliRunner().invoke(main, ["gradcheck", "cards/GPT2.card", "--set", "D=5", "--set", "H=2"])
    assert r.exit_code == 1 and "H must divide D" in r.output, r.output


def test_generated_modules_refuse_float16_complex_and_mixed_parameters():
    from .conftest import load_generated
    g = load_generated("GPT2")
    cfg = g.Config(V=11, D=8, H=2, D_f=16, N=2, ctx=8)
    x = np.arange(5) % 11
    for field, dtype, says in [
            ("W_e", np.float16, "params.W_e is float16: generated modules compute in float32 or float64"),
            ("W_e", np.complex64, "params.W_e is complex64"),
            ("W_p", np.float64, "params.W_p is float64 but params.W_e is float32: the parameters share one dtype")]:
        p = g.init_params(cfg, np.random.default_rng(0), np.float32)
        setattr(p, field, getattr(p, field).astype(dtype))
        with pytest.raises(ValueError, match=re.escape(says)):
            g.forward(cfg, p, x, 0)


def test_a_card_file_name_never_reaches_code(tmp_path):
    """git allows newlines in file names: the header holds the path on one escaped line, never a
    second line of code or a PEP 263 coding declaration."""
    import subprocess
    import sys
    folder = tmp_path / 'x\n__import__("os").system("touch pwned")\n# coding: unicode_escape'
    folder.mkdir()
    card = folder / "n.card"
    card.write_text(_module_card("Net").replace("  convention", '  "a \\\\n description"\n  convention'), "utf-8")
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


def test_a_link_to_an_endless_file_is_never_read(tmp_path):
    """A repository may commit book/index.html or generated/Net.py as a link to /dev/zero."""
    import subprocess
    import sys
    card = tmp_path / "n.card"
    card.write_text(_module_card("Net"), "utf-8")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "index.html").symlink_to("/dev/zero")
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "Net.py").symlink_to("/dev/zero")
    for cmd, out, says in (("docs", "book", "no cardgen book"), ("build", "gen", "not generated by cardgen")):
        r = subprocess.run([sys.executable, "-m", "cardgen.cli", cmd, str(card), "-o", str(tmp_path / out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and says in r.stderr, r.stderr


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
    text = _module_card("Net").replace("  convention", f"  {HTML_SPECIALS}\n  convention")
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


def test_flag_values_are_user_errors_not_bugs(tmp_path):
    r = CliRunner().invoke(main, ["gradcheck", "cards/Bigram.card", "--seed", "-1"])
    assert r.exit_code != 0 and "-1 is not in the range" in r.output and "internal error" not in r.output
    for cmd in ("build", "docs"):
        r = CliRunner().invoke(main, [cmd, "cards/Bigram.card", "-o", " "])
        assert r.exit_code == 1 and "the output folder's name is empty" in r.output, r.output
    r = CliRunner().invoke(main, ["gradcheck", "cards/GPT2.card", "--set", "D=10000000", "--set", "V=10000000"])
    assert r.exit_code == 1 and "out of memory" in r.output and "bug" not in r.output, r.output
