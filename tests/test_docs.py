"""`cardgen docs`: the HTML book, as a reader's browser shows it (headless Debian
chromium driven by playwright; no browser download, no network), and as files:
deterministic, escaped, written whole or not at all."""

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from click.testing import CliRunner

from cardgen.cli import main

from .conftest import ROOT, require, swap

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium reaches out at start-up, and the closed network refuses it.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

HOSTILE = r"""algorithm y ← evil(x | W)
  "</script><script>alert(1)</script>"
  convention rows, 0-based
  input  x ∈ ℝ^{n}   "<img src=x onerror=\"alert(2)\"> & \"quotes\""
  output y ∈ ℝ^{n}   "{{ 7*7 }} {% raw %}"
  hyper  n ∈ ℕ       "n"
  param  W ∈ ℝ^{n×n} "weights"
  1 y ← layer_norm(W x | W x, x)   ▷ y ∈ ℝ^n; \href{javascript:alert(3)}{x} $x$ & # % _ ^ ~ {} </span> ≤ τ
  2 return y
"""


def docs(*args):
    return CliRunner().invoke(main, ["docs", *map(str, args)])


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    r = docs("cards", "-o", out)
    assert r.exit_code == 0, r.output
    return out


# A name the grammar refuses (W_{QQ} is swapped for it in the IR), to test the book's own escaping.
EVIL_NAME = "</span><script>alert(4)</script>`{{ 7*7 }}` $x$ \\y{z} %&#~^_\u2028<!--"


@pytest.fixture(scope="module")
def hostile_book(tmp_path_factory):
    import cardgen.docs.book as book_module
    from cardgen.lang.check import check

    work = tmp_path_factory.mktemp("hostile")
    (work / "evil.card").write_text(HOSTILE, "utf-8")
    (work / "named.card").write_text(HOSTILE.replace("evil(x | W)", "named(x | W_{QQ})")
                                     .replace("param  W ", "param  W_{QQ} ").replace("W x", "W_{QQ} x"), "utf-8")
    real = book_module.load

    def load(path, lib=None):  # the named card, with its name swapped in after parsing
        card, checked = real(path, lib)
        if card.name != "named":
            return card, checked
        card = swap(card, "QQ", EVIL_NAME)
        return card, check(card, lib)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(book_module, "load", load)
        r = docs(work / "evil.card", work / "named.card", "-o", work / "book")
    assert r.exit_code == 0, r.output
    return work / "book"


def browser():
    """A headless Debian chromium, or a skip (a failure under CI, which installs it)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None and CHROMIUM.exists(),
            "needs playwright and Debian's chromium (apt-get install chromium)")
    return sync_playwright


def visit_all(page, files):
    """Open each file; return (problems, {file: local link targets})."""
    problems, links, current = [], {}, [None]

    def problem(what):
        problems.append(f"{current[0].name}: {what}")

    page.on("console", lambda m: m.type in ("error", "warning", "assert") and problem(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problem(f"page error: {e}"))
    page.on("requestfailed", lambda r: problem(f"failed request: {r.url} {r.failure}"))
    page.on("request", lambda r: r.url.startswith(("file:", "data:")) or problem(f"left file://: {r.url}"))
    page.on("dialog", lambda d: (problem(f"a dialog opened: {d.message}"), d.dismiss()))
    for f in files:
        current[0] = f
        page.goto(f.as_uri())
        typeset = page.locator(".katex").count()
        if not typeset:
            problem("no typeset math")
        if page.locator(".katex-error").count():
            problem("a .katex-error")
        if page.locator("[data-tex]:not(:has(.katex))").count():
            problem("math left untypeset")
        hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => [a.className, a.href])")
        links[f] = [(cls, Path(unquote(urlparse(h).path))) for cls, h in hrefs if h.startswith("file:")]
    return problems, links


def test_every_page_loads_offline_with_its_math_typeset(book, hostile_book, tmp_path):
    sync_playwright = browser()
    pages = [book / "index.html", *sorted((book / "cards").glob("*.html"))]
    assert len(pages) == 1 + len(list((ROOT / "cards").glob("*.card")))
    start = time.perf_counter()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1100, "height": 1300})
            problems, links = visit_all(page, pages + [hostile_book / "cards" / f"{n}.html" for n in ("evil", "named")])
            page.goto((book / "cards" / "GPT2.html").as_uri())
            page.evaluate("document.fonts.ready.then(() => true)")
            shot = tmp_path / "book-GPT2.png"
            page.screenshot(path=str(shot))
        finally:
            chromium.close()
    print(f"\n{len(pages)} pages checked in {time.perf_counter() - start:.1f} s; screenshot {shot}")
    assert not problems, "\n".join(problems)
    broken = [f"{f.name} → {target}" for f, ls in links.items() for _, target in ls if not target.exists()]
    assert not broken, broken
    calls = {t.name for cls, t in links[book / "cards" / "GPT2.html"] if cls == "call"}
    assert calls == {"GPT2Block.html", "LayerNorm.html"}
    callers = {t.name for cls, t in links[book / "cards" / "LayerNorm.html"] if cls == "caller"}
    assert {"GPT2.html", "GPT2Block.html"} <= callers
    assert shot.stat().st_size > 10_000


def test_a_card_page_has_the_pieces(book):
    html = (book / "cards" / "GPT2.html").read_text("utf-8")
    assert 'data-tex="P \\leftarrow \\mathrm{GPT2}' in html            # the header, as math
    assert "Derived backward pass" in html and "for ell = N, …, 1 do" in html
    assert '<table class="saved">' in html and "(B, H, T, T) × N" in html
    assert "def backward(" in module_text(html)  # the module, highlighted
    source = html.split('<div class="card-source">', 1)[1].split("</div>", 1)[0]
    assert '<span class="kd">algorithm</span>' in source  # the card, highlighted by the card lexer
    assert re.sub("<[^>]+>", "", source).startswith("algorithm P ← GPT2(x, p_start | θ)")
    wrapper = (book / "cards" / "ETraining.html").read_text("utf-8")  # a wrapper compiles like a model
    assert "def train_step(" in module_text(wrapper) and "does not compile" not in wrapper
    index = (book / "index.html").read_text("utf-8")
    assert index.count('<tr>\n<td class="card-name">') == len(list((ROOT / "cards").glob("*.card")))
    assert "not compiled" not in index


def module_text(page: str) -> str:
    """The highlighted module on a card page, as plain text again."""
    numpy = page.split('<section id="numpy">', 1)[1]
    code = re.search(r'<div class="highlight"><pre>(.*?)</pre></div>', numpy, re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", code))


def test_the_generated_module_is_the_one_build_writes(book):
    page = (book / "cards" / "MLP.html").read_text("utf-8")
    assert module_text(page) == (ROOT / "generated" / "MLP.py").read_text("utf-8")


def test_card_text_stays_text(hostile_book):
    page = (hostile_book / "cards" / "evil.html").read_text("utf-8")
    index = (hostile_book / "index.html").read_text("utf-8")
    for text in (page, index):
        assert "<script>alert" not in text and "<img" not in text
        assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "{{ 7*7 }} {% raw %}" in page  # not a template
    named = (hostile_book / "cards" / "named.html").read_text("utf-8")
    assert "alert(4)" in named and "<script>alert(4)" not in named and "</span><script>" not in named
    assert '<span class="call missing" title="not in this book">layer_norm</span>' in page


def test_the_book_is_the_same_from_run_to_run(book, tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "cardgen.cli", "docs", "-o", str(tmp_path)], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    files = sorted(p.relative_to(book) for p in book.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert [f for f in files if (book / f).read_bytes() != (tmp_path / f).read_bytes()] == []


def test_a_broken_card_stops_it_with_nothing_written(tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    for name in ("layer_norm", "Attention"):
        (cards / f"{name}.card").write_text((ROOT / "cards" / f"{name}.card").read_text("utf-8"), "utf-8")
    bad = (ROOT / "cards" / "token_embedding.card").read_text("utf-8").replace("W_e[:, v]", "W_e · W_e")
    (cards / "token_embedding.card").write_text(bad, "utf-8")
    r = docs(cards, "-o", tmp_path / "book")
    assert r.exit_code == 1
    assert f"{cards / 'token_embedding.card'}:9:16: error: cannot multiply" in r.output
    assert not (tmp_path / "book").exists()


def test_it_writes_into_no_folder_of_someone_else(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = docs("cards/layer_norm.card", "-o", tmp_path)
    assert r.exit_code == 1 and "no cardgen book" in r.output
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    r = docs("cards/layer_norm.card", "-o", tmp_path, "--force")
    assert r.exit_code == 0, r.output
    r = docs("cards/layer_norm.card", "cards/Attention.card", "-o", tmp_path)  # a book now: rewritten in place
    assert r.exit_code == 0, r.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert {p.name for p in (tmp_path / "cards").iterdir()} == {"layer_norm.html", "Attention.html"}
    assert not list(tmp_path.rglob(".*.tmp"))


def test_two_cards_whose_pages_would_be_one_file_are_refused(tmp_path):
    """layer_norm and Layer_Norm are one file on macOS and Windows: one page would overwrite the other."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    text = (ROOT / "cards" / "layer_norm.card").read_text("utf-8")
    (a / "layer_norm.card").write_text(text, "utf-8")
    (b / "Layer_Norm.card").write_text(text.replace("layer_norm(", "Layer_Norm("), "utf-8")
    r = docs(a / "layer_norm.card", b / "Layer_Norm.card", "-o", tmp_path / "book")
    assert r.exit_code == 1
    assert "two cards would share the page cards/Layer_Norm.html: layer_norm" in r.output
    assert "hint: rename one of them" in r.output
    assert not (tmp_path / "book").exists()


def test_a_card_page_shows_the_card_s_own_backward_rule(book):
    page = (book / "cards" / "QuantLinear.html").read_text("utf-8")
    rule = page[page.index('id="rule"'):page.index("</section>", page.index('id="rule"'))]
    assert "<b>Backward:</b>" in rule and "straight-through" in rule
    assert html.escape(r"d_{W} \leftarrow {X}^{\top} \cdot d_{Y}") in rule
    assert "Through QuantLinear: its own backward rule, not derived" in page  # the backward section says so
    ce = (book / "cards" / "cross_entropy.html").read_text("utf-8")
    assert 'id="rule"' in ce and "straight-through" not in ce[ce.index('id="rule"'):]
