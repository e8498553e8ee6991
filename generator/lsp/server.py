"""``cardgen lsp``: the Language Server Protocol over stdio (pygls). Diagnostics on open and on every
change, hover, go to definition, completion, formatting and a code action for ▷ claims; the answers
come from analysis.py, over the card as the editor holds it (saved or not)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from ..lang.check import Checked, Library
from ..lang.check_call import callees
from ..lang.errors import CardError
from ..lang.ir import Pos
from ..lang.load import diagnose, library_for
from ..lang.render import card_text
from . import analysis

SOURCE = "cardgen"
CLAIMS_ACTION = "Insert or update ▷ shape claims"


class CardServer(LanguageServer):
    """Keeps, per open card, the last check (the last good one too, for completion while a line is
    half typed) and one Library per search path, whose cards are re-read when their files change."""

    def __init__(self):
        super().__init__("cardgen", package_version())
        self.checked: dict[str, Checked | None] = {}
        self.last_good: dict[str, Checked] = {}
        self.libraries: dict[tuple[str, ...], Library] = {}
        self.mtimes: dict[str, float] = {}
        self.names: dict[str, str] = {}  # document → the name of the card in it, as last checked

    def library(self, path: str, editing: str | None) -> Library:
        """The library for a card at ``path``: cards whose files changed are read again, and what was
        checked against them (or against ``editing``, the card being changed) is checked again."""
        fresh = library_for(path)
        lib = self.libraries.setdefault(tuple(fresh.folders), fresh)
        changed = {editing} if editing else set()
        for name, card in list(lib.cards.items()):
            try:
                mtime = os.stat(card.path).st_mtime
            except OSError:
                mtime = -1.0
            if self.mtimes.setdefault(card.path, mtime) != mtime:
                self.mtimes[card.path] = mtime
                del lib.cards[name]
                changed.add(name)
        forget(lib, changed)
        return lib

    def refresh(self, doc: TextDocument) -> None:
        path = path_of(doc.uri)
        name = self.names.get(doc.uri)
        lib = self.library(path, name)
        checked, errors = diagnose(path, lib, doc.source)
        if checked is not None:
            if name is not None and name != checked.card.name:  # renamed in the editor
                forget(lib, {name, checked.card.name})
                checked, errors = diagnose(path, lib, doc.source)
            self.names[doc.uri] = checked.card.name
        self.checked[doc.uri] = checked
        if checked is not None and not checked.errors:
            self.last_good[doc.uri] = checked
        diags = [diagnostic(doc, e) for e in errors]
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=doc.uri, diagnostics=diags, version=doc.version))


def forget(lib: Library, changed: set[str]) -> None:
    """Drop the checked results of ``changed`` cards and of every card that calls or groups one of
    them, however indirectly; the cards they call stay checked (most of a big card's work)."""
    callers: dict[str, set[str]] = {}
    for name, ch in lib.done.items():
        for callee in callees(ch.card):
            callers.setdefault(callee, set()).add(name)
    todo, seen = list(changed), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            lib.done.pop(name, None)
            todo += callers.get(name, ())



def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("cardgen")
    except PackageNotFoundError:
        return "0"


def path_of(uri: str) -> str:
    u = urlparse(uri)
    if u.scheme != "file":
        return unquote(u.path) or uri
    path = Path(unquote(u.path))
    try:  # relative to the server's folder (the editor's workspace), as the CLI would print it
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def uri_of(path: str) -> str:
    return Path(path).resolve().as_uri()


def to_range(doc: TextDocument, pos: Pos | None) -> lsp.Range:
    if pos is None:
        return lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
    lines = doc.lines
    start = lsp.Position(pos.line - 1, pos.col - 1)
    end = lsp.Position(pos.end_line - 1, pos.end_col - 1)
    if (pos.end_line, pos.end_col) <= (pos.line, pos.col):
        end = lsp.Position(pos.line - 1, pos.col)
    codec = doc.position_codec
    return lsp.Range(codec.position_to_client_units(lines, start), codec.position_to_client_units(lines, end))


def diagnostic(doc: TextDocument, e: CardError) -> lsp.Diagnostic:
    message = e.message + (f"\nhint: {e.hint}" if e.hint else "")
    return lsp.Diagnostic(range=to_range(doc, e.pos), message=message, severity=lsp.DiagnosticSeverity.Error,
                          source=SOURCE)


def place(doc: TextDocument, position: lsp.Position) -> analysis.Place:
    p = doc.position_codec.position_from_client_units(doc.lines, position)
    return (p.line + 1, p.character + 1)


server = CardServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def changed(ls: CardServer, params):
    ls.refresh(ls.workspace.get_text_document(params.text_document.uri))


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def closed(ls: CardServer, params: lsp.DidCloseTextDocumentParams):
    uri = params.text_document.uri
    for table in (ls.checked, ls.last_good):
        table.pop(uri, None)
    name = ls.names.pop(uri, None)
    lib = ls.libraries.get(tuple(library_for(path_of(uri)).folders))
    if name is not None and lib is not None:  # unsaved text is forgotten: calls see the file again
        lib.cards.pop(name, None)
        forget(lib, {name})
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))


def current(ls: CardServer, uri: str) -> tuple[TextDocument, Checked | None, Library]:
    doc = ls.workspace.get_text_document(uri)
    if uri not in ls.checked:
        ls.refresh(doc)
    lib = ls.libraries[tuple(library_for(path_of(uri)).folders)]
    return doc, ls.checked.get(uri), lib


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def hover(ls: CardServer, params: lsp.HoverParams) -> lsp.Hover | None:
    doc, checked, lib = current(ls, params.text_document.uri)
    if checked is None:
        return None
    found = analysis.hover(checked, lib, place(doc, params.position))
    if found is None:
        return None
    text, pos = found
    return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text),
                     range=to_range(doc, pos) if pos is not None else None)


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
def definition(ls: CardServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    doc, checked, lib = current(ls, params.text_document.uri)
    if checked is None:
        return None
    target = analysis.definition(checked, lib, place(doc, params.position))
    if target is None:
        return None
    if target.path == checked.card.path:
        return lsp.Location(uri=doc.uri, range=to_range(doc, target.pos))
    start = lsp.Position(target.pos.line - 1, target.pos.col - 1) if target.pos else lsp.Position(0, 0)
    return lsp.Location(uri=uri_of(target.path), range=lsp.Range(start, start))


KINDS = {"variable": lsp.CompletionItemKind.Variable, "constant": lsp.CompletionItemKind.Constant,
         "function": lsp.CompletionItemKind.Function, "module": lsp.CompletionItemKind.Module}


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION)
def completion(ls: CardServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    uri = params.text_document.uri
    _, checked, lib = current(ls, uri)
    items = analysis.completions(ls.last_good.get(uri) if checked is None else checked, lib)
    return lsp.CompletionList(is_incomplete=False, items=[
        lsp.CompletionItem(label=label, kind=KINDS[kind], detail=detail) for label, kind, detail in items])


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def formatting(ls: CardServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
    """The ``cardgen fmt`` rewrite, for a card that checks (a broken one is left as it is)."""
    doc, checked, _ = current(ls, params.text_document.uri)
    if checked is None or checked.errors:
        return None
    new = card_text(checked.card, checked.claims)
    if new == doc.source:
        return []
    end = to_range(doc, Pos(len(doc.lines) + 1, 1, len(doc.lines) + 1, 1)).end
    return [lsp.TextEdit(range=lsp.Range(lsp.Position(0, 0), end), new_text=new)]


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix,
                                                         lsp.CodeActionKind.SourceFixAll]))
def code_action(ls: CardServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction] | None:
    doc, checked, _ = current(ls, params.text_document.uri)
    if checked is None:
        return None
    first, last = params.range.start.line + 1, params.range.end.line + 1
    actions = []
    for title, lines, kind in ((CLAIMS_ACTION + " on this line", range(first, last + 1), lsp.CodeActionKind.QuickFix),
                               (CLAIMS_ACTION + " in the card", None, lsp.CodeActionKind.SourceFixAll)):
        edits = analysis.claim_edits(checked, lines)
        if edits:
            text_edits = [lsp.TextEdit(range=to_range(doc, Pos(e.line, e.col, e.end_line, e.end_col)),
                                       new_text=e.text) for e in edits]
            actions.append(lsp.CodeAction(title=title, kind=kind,
                                          edit=lsp.WorkspaceEdit(changes={doc.uri: text_edits})))
    return actions


def main() -> None:
    server.start_io()
