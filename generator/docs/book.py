"""`cardgen docs`: the cards as a static HTML book.  An index and one page per
card: the pseudocode as the paper's algorithm box (math from ``latex.py``,
typeset by the vendored KaTeX when the page loads, so the book reads from
file:// with no network), links to the cards it calls and back, the derived
backward pass and saved activations, the card's text and the NumPy module
``cardgen build`` writes for it, highlighted.

Python builds every piece of content; the Jinja2 templates
(``templates/book_*.html.j2``) only lay it out, with autoescape on, so card
text stays text.  Everything is computed before the first file is written: a
broken card stops the command with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import jinja2
from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from ..compile.emit import module_source
from ..compile.lower import LoweringError, lower, wrapper_kind
from ..compile.naming import file_stem
from ..lang.check import Checked, Library
from ..lang.check_call import callees
from ..lang.errors import CardError
from ..lang.files import atomic_write, holds, inside, read_plain, remove_leftovers
from ..lang.load import display_path, library_for, load
from .derived import backward_text, memory_rows
from .highlight import CardLexer
from .latex import ROLE_MD, TexSteps, math_text, tex_config, tex_decl, tex_signature
from .report import config_counts, param_count_line, values_for

ASSETS = Path(__file__).parent / "assets"
STATIC = "_static"
MARK = '<meta name="generator" content="cardgen docs">'  # how a later run knows the folder is a book


class StepRows(TexSteps):
    """The card's steps, one table row each (number, depth, statement as math,
    ▷ claim as math, ▷ prose as text) instead of one LaTeX array: prose in HTML
    wraps where a \\text{…} in a formula cannot."""

    def __init__(self, claims):
        super().__init__(claims)
        self.rows: list[tuple[str, int, str, str | None, str | None]] = []
        self.n = 0

    def row(self, depth, body, claim=None, prose=None, numbered=True):
        if numbered:
            self.n += 1
        self.rows.append((str(self.n) if numbered else "", depth, body, claim, prose))

    def line(self, depth, body, claim, note):
        self.row(depth, body, claim, note)

    def open(self, depth, kind, cond, note):
        self.row(depth, rf"{self.kw[kind]}\ {cond}\ {self.kw['do']}", None, note)

    def remark(self, depth, note):
        self.row(depth, r"\triangleright\ " + math_text(note), numbered=False)

    def close(self, depth, kind):
        self.row(depth, self.kw["end"])


@dataclass
class Page:
    name: str
    file: str  # relative to the book's root
    source_path: str
    kind: str  # model, training, inference
    checked: Checked
    lib: Library
    compiled: bool = True
    why: str | None = None  # why there is no module, backward or table
    calls: list[str] = field(default_factory=list)
    called_by: list[str] = field(default_factory=list)


def page_file(name: str) -> str:
    return f"cards/{file_stem(name)}.html"


def href(name: str) -> str:
    """A sibling card page's address from a card page."""
    return quote(f"{file_stem(name)}.html")


def load_pages(files: list[Path]) -> dict[str, Page]:
    pages: dict[str, Page] = {}
    paths: dict[str, Path] = {}  # card name -> its file, as given (for errors)
    libs: dict[Path, Library] = {}  # one per folder: each card beside it is parsed and checked once
    for f in files:
        folder = Path(f).parent
        lib = libs[folder] = libs.get(folder) or library_for(str(f))
        card, checked = load(str(f), lib)
        same = [n for n in pages if page_file(n).casefold() == page_file(card.name).casefold()]
        if same:  # one page file (on a case-insensitive file system too: macOS, Windows)
            raise CardError(f"two cards would share the page {page_file(card.name)}: {same[0]} ({paths[same[0]]}) "
                            f"and {card.name} ({f})", hint="rename one of them")
        paths[card.name] = f
        page = Page(card.name, page_file(card.name), display_path(f), wrapper_kind(card) or "model", checked, lib)
        try:
            lower(checked, lib)
        except LoweringError as e:
            if page.kind == "model":  # `cardgen build` fails on it too: the card is broken
                raise
            page.compiled, page.why = False, e.message
        page.calls = [n for n in callees(card) if lib.checked(n) is not None]  # cards, not softmax or exp
        pages[card.name] = page
    for page in pages.values():
        for n in page.calls:
            if n in pages:
                pages[n].called_by.append(page.name)
    return pages


def card_context(page: Page, pages: dict[str, Page]) -> dict:
    """What the card page shows, as strings and rows for the template."""
    ch, lib, card = page.checked, page.lib, page.checked.card
    decls, last = [], None
    for d in card.decls:  # the role once per run, as the paper's boxes do
        decls.append((ROLE_MD[d.role] if d.role != last else "", tex_decl(d), d.desc))
        last = d.role
    steps = StepRows(ch.claims).steps(card.steps)
    rule = None
    if card.rule is not None:  # the card's own backward, numbered on from its steps
        forward_rows = steps.rows
        steps.rows = []
        steps.steps(card.rule.steps)
        rule = dict(straight_through=card.rule.straight_through, desc=card.rule.desc, steps=steps.rows)
        steps.rows = forward_rows
    ctx = dict(
        page=page, head=tex_signature(card), purpose=card.purpose, decls=decls, steps=steps.rows,
        convention=f"{card.convention.axes}, {card.convention.base}-based",
        count=param_count_line(ch, lib, {}), source=highlight_code(card.source, CardLexer(stripnl=False)),
        calls=[(n, href(n) if n in pages else None) for n in page.calls],
        called_by=[(n, href(n)) for n in sorted(page.called_by)],
        backward=None, saved=None, code=None, rule=rule,
        configs=[(c.name, tex_config(c), "—" if n is None else f"{n:,}", c.training, c.desc)
                 for c, n in config_counts(ch, lib)],
    )
    if page.compiled:
        ctx["code"] = highlight_code(module_source(ch, lib, page.source_path), PythonLexer(stripnl=False))
        ctx["backward"] = backward_text(ch, lib)
        rows, total, missing = memory_rows(ch, lib, values_for(ch, {}), 1, 4)
        ctx["saved"] = dict(rows=rows, total=total, missing=missing)
    return ctx


def highlight_code(code: str, lexer) -> Markup:
    return Markup(highlight(code, lexer, HtmlFormatter(cssclass="highlight")))


def pygments_css() -> str:
    return HtmlFormatter(style="default").get_style_defs(".highlight") + "\n"


def _env() -> jinja2.Environment:
    loader = jinja2.PackageLoader("cardgen.docs", "templates")
    return jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def book_files(files: list[Path]) -> dict[str, bytes]:
    """Every file of the book, by path relative to its root."""
    pages = load_pages(files)
    env = _env()
    out: dict[str, bytes] = {}
    for p in sorted(ASSETS.rglob("*")):
        if p.is_file():
            out[f"{STATIC}/{p.relative_to(ASSETS).as_posix()}"] = p.read_bytes()
    out[f"{STATIC}/pygments.css"] = pygments_css().encode()
    order = sorted(pages, key=lambda n: (n.casefold(), n))
    index = [dict(name=n, href=quote(pages[n].file), head=tex_signature(pages[n].checked.card),
                  purpose=pages[n].checked.card.purpose, kind=pages[n].kind, compiled=pages[n].compiled)
             for n in order]
    out["index.html"] = env.get_template("book_index.html.j2").render(
        mark=Markup(MARK), root="", cards=index).encode()
    card_tmpl = env.get_template("book_card.html.j2")
    for n in order:
        out[pages[n].file] = card_tmpl.render(mark=Markup(MARK), root="../", **card_context(pages[n], pages)).encode()
    return out


def write_book(files: list[Path], out_dir: Path, force: bool = False) -> int:
    """Write the book into ``out_dir``; returns the number of card pages.  Files that
    are already up to date are left alone, and nothing is ever deleted."""
    if not files:
        raise CardError("no .card files to make a book of")
    index = out_dir / "index.html"
    if not force and out_dir.is_dir() and any(out_dir.iterdir()) and \
            MARK.encode() not in (read_plain(index, 4096) or b""):
        raise CardError(f"{out_dir} holds files and no cardgen book; not writing into it "
                        "(choose an empty folder, or use --force)")
    content = book_files(files)  # all of it first: a broken card leaves no half-written book
    targets = {rel: inside(out_dir, rel) for rel in content}  # every path checked before any write
    for folder in sorted({t.parent for t in targets.values()}):
        if folder.is_dir():
            remove_leftovers(folder)  # of a killed run: ours, never followed
    for rel, data in sorted(content.items()):
        target = targets[rel]
        if holds(target, data):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    return sum(rel.startswith("cards/") for rel in content)
