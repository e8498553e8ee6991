"""`cardgen render --format md`, read the way GitHub reads it.

GitHub parses a page with cmark-gfm, its fork of cmark, then typesets the math:
`$`…`$` is a code span between two dollars and ```math a fenced block, so their
TeX reaches the typesetter untouched, while a bare `$…$` in the prose would be
read as math too.  So, for every card and for a hostile one: cmark-gfm itself
(the cmarkgfm bindings) parses the page; every formula comes out of it exactly
as written, no emphasis or link forms inside one, the prose keeps every
character of the card's text, and KaTeX (the copy the HTML book ships) typesets
every formula with throwOnError and strict warnings counted as failures."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import cmarkgfm
import pytest

from cardgen import parse, parse_file
from cardgen.docs.latex import markdown, math_text, md_text
from cardgen.lang.check import Library, check

from .conftest import ROOT, require, swap

KATEX = ROOT / "generator" / "docs" / "assets" / "katex" / "katex.min.js"

SRC_INLINE = re.compile(r"\$`([^`]*)`\$")
SRC_BLOCK = re.compile(r"^```math\n(.*?)^```$", re.S | re.M)
HTML_INLINE = re.compile(r"\$<code>(.*?)</code>\$", re.S)
HTML_BLOCK = re.compile(r'<pre lang="math"><code>(.*?)</code></pre>', re.S)
TAG = re.compile(r"<[^>]+>")

HOSTILE = r"""algorithm y ← hostile(x | w)
  "A *purpose* with _under_ __score__, `ticks`, $5 and $6, <b>tags</b>, [a](link), ~~gone~~ and a \\"
  convention rows, 0-based
  input  x ∈ ℝ^{n}     "costs $x$ and *y* | pipe # hash > quote"
  output y ∈ ℝ^{n}     "1. not a list; - nor this; ```fence```"
  hyper  n ∈ ℕ
  param  w ∈ ℝ^{n}     "weights_with_underscores and a^b^c"
  1 y ← x ⊙ w          ▷ y ∈ ℝ^n; note with & % # $ _ ^ ~ \ { } and `ticks`, SEP done
  ▷ a remark with $math$, 50% & more}
  2 return y
""".replace("SEP", "\u2028")


# Names no parser makes (the grammar keeps these characters out): built by hand, so the
# escaping of names in formulas is tested on its own.  A backtick would close `$`…`$`.
NAME_PAYLOADS = ["a`b` **c** [d](e) <i>f</i>", "$g$ \\h{i} %&#~^_", "j}{k\n\nl\u2028m", "``` $$ ` \\"]


def named_card(payload: str):
    text = HOSTILE.replace("| w)", "| w_{QQ})").replace("param  w ", "param  w_{QQ} ").replace("⊙ w ", "⊙ w_{QQ} ")
    return swap(parse(text), "QQ", payload)


def card_page(card):
    return markdown(check(card, Library(folders=[str(ROOT / "cards")], cards={card.name: card})))


def formulas_in_source(md: str) -> list[tuple[str, bool]]:
    return [(m, False) for m in SRC_INLINE.findall(md)] + [(m, True) for m in SRC_BLOCK.findall(md)]


def formulas_in_html(page: str) -> list[tuple[str, bool]]:
    return ([(html.unescape(m), False) for m in HTML_INLINE.findall(page)]
            + [(html.unescape(m), True) for m in HTML_BLOCK.findall(page)])


def prose(page: str) -> str:
    """What GitHub shows as text: the page without formulas and tags."""
    page = HTML_BLOCK.sub(" ", HTML_INLINE.sub(" ", page))
    return html.unescape(TAG.sub("", page))


def check_github_rules(card, md: str) -> None:
    page = cmarkgfm.github_flavored_markdown_to_html(md)
    assert formulas_in_html(page) == formulas_in_source(md), "a formula did not reach the typesetter intact"
    rest = HTML_BLOCK.sub(" ", HTML_INLINE.sub(" ", page))
    tags = set(re.findall(r"</?([a-z0-9]+)", rest))
    assert tags <= {"h3", "p", "em", "strong", "br"}, f"GitHub would format card text: {sorted(tags)}"
    assert rest.count("<em>") == (1 if card.purpose else 0), "only the purpose is emphasis"
    shown = " ".join(prose(page).split())
    for text in texts(card):
        assert " ".join(text.split()) in shown, f"{text!r} loses characters on GitHub"
    text_source = SRC_BLOCK.sub("", SRC_INLINE.sub("", md))
    bare = re.search(r"(?<!\\)\$", text_source)
    assert bare is None, f"a bare $ in the prose opens math on GitHub: {text_source[bare.start() - 30:][:60]!r}"


def texts(card) -> list[str]:
    return [t for t in [card.purpose, *(d.desc for d in card.decls)] if t]


def typeset(formulas: list[tuple[str, bool]]) -> list[str | None]:
    """KaTeX's verdict on each formula: None, or its error or strict-mode warning."""
    node = shutil.which("node")
    require(node is not None and KATEX.exists(), f"needs node and the vendored KaTeX ({KATEX})")
    script = """
const katex = require(process.argv[1]);
const items = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(items.map(([tex, display]) => {
  const warnings = [];
  try {
    katex.renderToString(tex, {displayMode: display, throwOnError: true,
      strict: (code, msg) => { warnings.push(code + ': ' + msg); return 'ignore'; }});
    return warnings.length ? warnings.join('; ') : null;
  } catch (e) { return e.message; }
})));
"""
    run = subprocess.run([node, "-e", script, str(KATEX)], input=json.dumps(formulas), capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(run.stdout)


def test_every_card_reads_right_on_github(card_path, library):
    card = parse_file(card_path)
    md = markdown(check(card, library))
    check_github_rules(card, md)


def test_a_hostile_card_reads_right_on_github():
    card = parse(HOSTILE)
    md = card_page(card)
    check_github_rules(card, md)
    assert "$5 and $6" in prose(cmarkgfm.github_flavored_markdown_to_html(md))


@pytest.mark.parametrize("payload", NAME_PAYLOADS)
def test_a_name_with_markdown_in_it_stays_in_its_formula(payload):
    card = named_card(payload)
    md = card_page(card)
    check_github_rules(card, md)
    page = cmarkgfm.github_flavored_markdown_to_html(md)
    assert sum("\\in \\mathbb{R}^{n}" in f and "w" in f for f, _ in formulas_in_html(page)) >= 1


def test_every_formula_typesets():
    """All cards' formulas and the hostile card's, in one KaTeX run."""
    lib = Library(folders=[str(ROOT / "cards")])
    pages = {p.stem: markdown(check(parse_file(p), lib)) for p in sorted((ROOT / "cards").glob("*.card"))}
    pages["hostile"] = card_page(parse(HOSTILE))
    pages.update({f"hostile name {i}": card_page(named_card(p)) for i, p in enumerate(NAME_PAYLOADS)})
    items = [(name, f) for name, md in pages.items() for f in formulas_in_source(md)]
    verdicts = typeset([f for _, f in items])
    bad = [f"{name}: {err}\n    {tex[:200]}" for (name, (tex, _)), err in zip(items, verdicts, strict=True) if err]
    assert not bad, "\n".join(bad)
    assert {name for name, (_, display) in items if display} == set(pages), "every page has its steps"


@pytest.mark.parametrize("text", ["a_b", "50% & more", "$x$", "{}", "\\", "^~#", "plain", "a\u2028b"])
def test_note_text_is_literal_in_math(text):
    tex = math_text(text)
    runs = re.findall(r"\\text\{([^}]*)\}", tex)
    assert not any(set(run) & set("\\{}$%#&_^~\u2028") for run in runs), tex
    assert "".join(runs).replace(" ", "") == "".join(c for c in text if c.isalnum())


def test_md_text_escapes_what_github_formats():
    assert md_text("$5 *a* _b_ `c`") == r"\$5 \*a\* \_b\_ \`c\`"
