"""Errors as reports: text for people, JSON for tools, GitHub workflow annotations, SARIF 2.1.0 for
code-scanning services. One ``Diagnostic`` per error; a printer per format in ``FORMATS``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import PurePath
from urllib.parse import quote

from .errors import CardError


@dataclass(frozen=True)
class Diagnostic:
    """An error where an editor or a CI service shows it: 1-based lines and columns (code points),
    the end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    message: str
    hint: str | None = None
    severity: str = "error"

    @classmethod
    def of(cls, e: CardError) -> Diagnostic:
        line, col = e.line, e.col
        end_line, end_col = line, col + 1
        if e.pos is not None and (e.pos.end_line, e.pos.end_col) > (line, col):
            end_line, end_col = e.pos.end_line, e.pos.end_col
        return cls(e.path, line, col, end_line, end_col, e.message, e.hint)


def text_report(errors: list[CardError]) -> str:
    return "".join(f"{e}\n" for e in errors)


def json_report(errors: list[CardError]) -> str:
    return json.dumps({"errors": [asdict(Diagnostic.of(e)) for e in errors]}, ensure_ascii=False, indent=1) + "\n"


def _gh_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_prop(s: str) -> str:
    return _gh_data(s).replace(":", "%3A").replace(",", "%2C")


def github_report(errors: list[CardError]) -> str:
    """GitHub Actions workflow commands: each error becomes an annotation on the file's line."""
    out = []
    for d in map(Diagnostic.of, errors):
        props = f"file={_gh_prop(d.file)},line={d.line},col={d.col},endLine={d.end_line},endColumn={d.end_col}"
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        out.append(f"::error {props},title=cardgen::{_gh_data(message)}\n")
    return "".join(out)


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
RULE = "card-error"


def sarif_report(errors: list[CardError], version: str = "") -> str:
    """A SARIF 2.1.0 log with one run of cardgen; columns count code points, as cardgen's do."""
    results = []
    for d in map(Diagnostic.of, errors):
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        results.append({
            "ruleId": RULE, "level": "error", "message": {"text": message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(d.file)},
                "region": {"startLine": d.line, "startColumn": d.col,
                           "endLine": d.end_line, "endColumn": d.end_col}}}],
        })
    driver = {"name": "cardgen", "informationUri": "https://arxiv.org/abs/2207.09238",
              "rules": [{"id": RULE, "shortDescription": {"text": "a card does not parse or type-check"}}]}
    if version:
        driver["version"] = version
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0",
           "runs": [{"tool": {"driver": driver}, "columnKind": "unicodeCodePoints", "results": results}]}
    return json.dumps(log, ensure_ascii=False, indent=1) + "\n"


def _uri(path: str) -> str:
    """A relative path stays relative (SARIF resolves it against the repository), escaped as a URI."""
    p = PurePath(path)
    return p.as_uri() if p.is_absolute() else quote(p.as_posix())


FORMATS = {"text": text_report, "json": json_report, "github": github_report, "sarif": sarif_report}
