"""The front end answers at typing speed: the parser is cached between runs and never served stale,
each card is parsed and checked once per invocation, and `cardgen --help` loads nothing heavy.
(The timings themselves are in benchmarks/frontend.py; these tests hold the mechanisms.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from importlib import resources

import jinja2
import pytest
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.lang import parse as parse_mod
from cardgen.lang.errors import CardError

from .conftest import CARDS

GRAMMAR = resources.files("cardgen.grammar").joinpath("card.lark").read_text("utf-8")
CARD = """algorithm y ← twice(x)
  "Doubles x."
  input  x ∈ ℝ^D
  output y ∈ ℝ^D
  hyper  D ∈ ℕ
  1 z {arrow} 2 x
  2 return y = z
"""


@pytest.fixture
def builds(monkeypatch):
    """Counts the parsers built from a grammar (not loaded from the cache)."""
    count = []
    real = parse_mod._build_parser

    def counting(grammar):
        count.append(grammar)
        return real(grammar)
    monkeypatch.setattr(parse_mod, "_build_parser", counting)
    return count


def parses(parser, text: str) -> bool:
    try:
        parser.parse(text, start="start")
        return True
    except Exception:  # noqa: BLE001 - any Lark error: the text is not in this grammar
        return False


def test_the_cache_serves_the_same_grammar_without_building(tmp_path, builds):
    first = parse_mod.cached_parser(GRAMMAR, tmp_path)
    again = parse_mod.cached_parser(GRAMMAR, tmp_path)
    assert len(builds) == 1, "the second parser must come from the cache"
    assert len(list(tmp_path.iterdir())) == 1
    text = CARD.format(arrow="←")
    assert first.parse(text, start="start") == again.parse(text, start="start")
    assert [t.name for t in again.terminals] == [t.name for t in first.terminals]


def test_a_changed_grammar_is_built_afresh_never_served_stale(tmp_path, builds):
    old = parse_mod.cached_parser(GRAMMAR, tmp_path)
    assert 'ARROW: "←" | "<-"' in GRAMMAR
    changed = GRAMMAR.replace('ARROW: "←" | "<-"', 'ARROW: "←" | "<-" | ":="')
    new = parse_mod.cached_parser(changed, tmp_path)
    assert len(builds) == 2
    text = CARD.format(arrow=":=")
    assert parses(new, text) and not parses(old, text)
    # and each grammar keeps getting its own parser from the same folder
    assert parses(parse_mod.cached_parser(changed, tmp_path), text)
    assert not parses(parse_mod.cached_parser(GRAMMAR, tmp_path), text)
    assert len(builds) == 2


def test_a_damaged_or_foreign_cache_file_is_rebuilt(tmp_path, builds):
    parse_mod.cached_parser(GRAMMAR, tmp_path)
    (path,) = tmp_path.iterdir()
    key = parse_mod.parser_key(GRAMMAR).encode()
    for damage in (path.read_bytes()[:1000], key + b"\nnot a pickle", b"another grammar's key\n"):
        path.write_bytes(damage)
        parser = parse_mod.cached_parser(GRAMMAR, tmp_path)
        assert parses(parser, CARD.format(arrow="←"))
    assert len(builds) == 4
    assert path.read_bytes().startswith(key + b"\n")  # and the good one is back in place


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_cache_others_can_write_is_not_trusted(tmp_path, builds):
    parse_mod.cached_parser(GRAMMAR, tmp_path)
    (path,) = tmp_path.iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o666)  # it is unpickled: a file anyone could have written is never read
    parse_mod.cached_parser(GRAMMAR, tmp_path)
    assert len(builds) == 2


def test_an_unusable_cache_folder_only_costs_time(tmp_path, builds):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    parser = parse_mod.cached_parser(GRAMMAR, blocker / "cache")
    assert parses(parser, CARD.format(arrow="←"))


def _age(path, days):
    old = time.time() - days * 86400
    os.utime(path, (old, old))


def test_cache_files_unused_for_a_month_are_pruned_when_another_is_written(tmp_path, builds):
    stale, recent = tmp_path / "parser-stale.lark.pickle", tmp_path / "parser-recent.lark.pickle"
    other = tmp_path / "notes.txt"  # not a cache file: never touched
    for path in (stale, recent, other):
        path.write_bytes(b"another grammar's key\n")
        path.chmod(0o600)
    _age(stale, parse_mod.STALE_DAYS + 1)
    _age(recent, parse_mod.STALE_DAYS - 1)
    _age(other, 400)
    parse_mod.cached_parser(GRAMMAR, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "parser-stale.lark.pickle" not in names
    assert "parser-recent.lark.pickle" in names and "notes.txt" in names and len(names) == 3


def test_a_cache_file_in_use_is_kept(tmp_path, builds):
    parse_mod.cached_parser(GRAMMAR, tmp_path)
    (path,) = tmp_path.iterdir()
    _age(path, parse_mod.STALE_DAYS + 5)
    parse_mod.cached_parser(GRAMMAR, tmp_path)  # loaded from the cache: its time is refreshed
    assert len(builds) == 1 and path.stat().st_mtime > time.time() - 3600
    parse_mod.cached_parser(GRAMMAR.replace('ARROW: "←" | "<-"', 'ARROW: "←" | "<-" | ":="'), tmp_path)
    assert path.exists() and len(list(tmp_path.iterdir())) == 2


def test_the_template_cache_is_pruned_alike(tmp_path, monkeypatch):
    from cardgen.compile import template
    monkeypatch.setenv("CARDGEN_CACHE_DIR", str(tmp_path))
    stale = tmp_path / "template-0.0-stale.jinja"
    stale.write_bytes(b"old")
    stale.chmod(0o600)
    _age(stale, parse_mod.STALE_DAYS + 1)
    loader = jinja2.DictLoader({"t": "{{ x }} + 1"})
    jinja2.Environment(loader=loader, bytecode_cache=template._TemplateCache()).get_template("t")
    names = [p.name for p in tmp_path.iterdir()]
    assert not stale.exists() and len(names) == 1 and names[0].startswith("template-")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CARDGEN_CACHE_DIR", "off")
    assert parse_mod.cache_dir() is None
    monkeypatch.setenv("CARDGEN_CACHE_DIR", str(tmp_path))
    assert parse_mod.cache_dir() == tmp_path
    monkeypatch.delenv("CARDGEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert parse_mod.cache_dir() == tmp_path / "cardgen"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignore a relative path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_mod.cache_dir() == tmp_path / ".cache" / "cardgen"


def test_check_parses_and_checks_each_card_once(monkeypatch):
    """`cardgen check cards/` shares one Library: a callee is parsed once, not once per caller (in
    one process: with workers, once per worker, see test_parallel.py)."""
    parsed = []
    real = parse_mod.parse

    def counting(text, path="<card>"):
        parsed.append(path)
        return real(text, path)
    monkeypatch.setattr(parse_mod, "parse", counting)
    res = CliRunner().invoke(main, ["check", "cards/"], env={"CARDGEN_JOBS": "1"})
    assert res.exit_code == 0, res.output
    assert sorted(parsed) == sorted(f"cards/{p.name}" for p in CARDS)


def test_check_still_reports_each_bad_card(tmp_path):
    (tmp_path / "a.card").write_text(CARD.format(arrow="←").replace("2 x", "2 w"), "utf-8")
    (tmp_path / "b.card").write_text(CARD.format(arrow="←").replace("twice", "thrice"), "utf-8")
    res = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert res.exit_code == 1
    assert "a.card:6" in res.output and "1 of 2 cards failed" in res.output


def test_a_card_beside_its_callee_is_checked_against_the_new_text(tmp_path):
    """Two files defining one algorithm in one folder: the later one replaces the earlier in the
    shared library, and nothing checked against the earlier text is reused."""
    good = CARD.format(arrow="←")
    (tmp_path / "a.card").write_text(good, "utf-8")
    (tmp_path / "b.card").write_text(good.replace("2 x", "2 q"), "utf-8")
    res = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert res.exit_code == 1 and "b.card:6" in res.output


def test_help_loads_no_parser_numpy_or_jinja2():
    code = ("import sys\nfrom cardgen.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lark', 'numpy', 'jinja2', 'pygments'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_check_of_a_card_loads_no_jinja2():
    """`cardgen check` compiles the card as `build` does but does not lay the module out."""
    code = ("import sys\nfrom cardgen.cli import main\n"
            "try:\n    main(['check', 'cards/GPT2.card'])\nexcept SystemExit as e:\n    assert not e.code\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'jinja2', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=CARDS[0].parent.parent).stdout
    assert out.strip().splitlines()[-1] == "[]"


def _stock_parser():
    """The same grammar with Lark's own contextual lexer (one alternation per parser state)."""
    import lark
    options = {k: v for k, v in parse_mod.PARSER_OPTIONS.items() if k != "_plugins"}
    return lark.Lark(GRAMMAR, postlex=parse_mod.BracketPostLex(), **options)


def _outcome(parser, text: str, start: str):
    """The tree, or the error's kind, place and expected terminals."""
    try:
        return parser.parse(text, start=start)
    except Exception as e:  # noqa: BLE001 - Lark's errors are compared, not raised
        return (type(e).__name__, getattr(e, "pos_in_stream", None), getattr(e, "line", None),
                getattr(e, "column", None), sorted(getattr(e, "expected", None) or getattr(e, "allowed", ()) or ()))


def test_the_terminal_scanner_lexes_as_lark_does():
    """Our scanner (each terminal compiled once, tried in Lark's order) against Lark's alternations:
    the same trees for every card of the corpus, and the same errors, at the same place, expecting
    the same terminals, when every card is cut short or has a character removed or doubled."""
    import random
    import unicodedata

    from cardgen.lang.scanner import TerminalContextualLexer
    ours, stock = parse_mod._build_parser(GRAMMAR), _stock_parser()
    assert isinstance(ours.parser.lexer.lexer, TerminalContextualLexer)
    rng = random.Random(0)
    texts = []
    for path in CARDS:
        text = unicodedata.normalize("NFC", path.read_text("utf-8"))
        texts.append(text)
        for _ in range(12):
            i = rng.randrange(len(text))
            texts += [text[:i], text[:i] + text[i + 1:], text[:i] + text[i] + text[i:]]
    errors = 0
    for text in texts:
        want = _outcome(stock, text, "start")
        assert _outcome(ours, text, "start") == want, text
        errors += isinstance(want, tuple)
    assert errors > len(texts) // 4  # the mutations do reach the error paths
    for text in ["3", "D+1", "N_data", "2 d_e", "T ×", "⌊x⌋", "a mod b", "∞", "x x"]:
        assert _outcome(ours, text, "dim_start") == _outcome(stock, text, "dim_start"), text


def test_cardgen_still_exports_parse_lazily():
    import cardgen
    assert cardgen.parse is parse_mod.parse and cardgen.CardError is CardError
    with pytest.raises(AttributeError):
        cardgen.no_such_name  # noqa: B018


def test_the_module_template_is_compiled_once_and_kept_privately(tmp_path, monkeypatch):
    """The compiled module template is kept beside the parser (~25 ms a run); a file there that
    others could have written is not executed."""
    from cardgen.compile.template import _env
    monkeypatch.setenv("CARDGEN_CACHE_DIR", str(tmp_path))
    values = {name: "" for name in ("header", "doc", "source_path")}
    first = _env.__wrapped__().get_template("module.py.j2")  # a fresh Environment: compiles it, keeps it
    (kept,) = tmp_path.glob("template-*.jinja")
    assert kept.stat().st_mode & 0o777 == 0o600

    def compiles(*a, **kw):
        raise AssertionError("compiled again")
    env = _env.__wrapped__()
    monkeypatch.setattr(env, "compile", compiles)
    again = env.get_template("module.py.j2")  # loaded from the file
    assert again.render(**values) == first.render(**values)

    kept.chmod(0o666)
    env = _env.__wrapped__()
    monkeypatch.setattr(env, "compile", compiles)
    with pytest.raises(AssertionError, match="compiled again"):
        env.get_template("module.py.j2")
