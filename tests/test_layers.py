"""The packages' import contract: imports go one way, down the pipeline's layers, and no two
modules import each other in a circle (import-linter's `layers` and `independence`, as a test).

    __main__ -> cli -> lsp -> api -> {docs, train} -> {compile, semantics} -> lang

A layer may import any layer below it; packages on one layer import neither each other nor up.
Imports under ``if TYPE_CHECKING:`` are annotations only and never run, so they are left out of
the cycle check, but not out of the layer check.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

SRC = ROOT / "generator"
LAYERS = [("__main__",), ("cli",), ("lsp", "pytest_plugin"), ("api",), ("docs", "train", "torch"),
          ("compile", "semantics"), ("lang",)]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at run time?, line) for each import of a cardgen module in ``path``."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    tree = ast.parse(path.read_text("utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            targets = [".".join(base)] if node.module else [".".join(base + [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cardgen"):
            targets = [node.module.removeprefix("cardgen").lstrip(".")]
        elif isinstance(node, ast.Import):
            targets = [a.name.removeprefix("cardgen").lstrip(".") for a in node.names if a.name.startswith("cardgen")]
        else:
            continue
        out += [(t.strip("."), id(node) not in typing_only, node.lineno) for t in targets]
    return out


def top(module: str) -> str:
    return module.split(".")[0]


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def test_every_package_is_in_a_layer():
    packages = {top(m) for m in MODULES if m} - {""}
    assert packages <= set(RANK), f"add {sorted(packages - set(RANK))} to LAYERS"


def test_imports_go_down_the_layers():
    wrong = []
    for name, path in MODULES.items():
        if not name:
            continue  # the package's __init__ re-exports the language's entry points
        for target, _, line in imports(path):
            a, b = top(name), top(target)
            if a != b and target and RANK.get(b, 99) <= RANK[a]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {name: sorted({t for t, runtime, _ in imports(p) if runtime and t in MODULES and t != name})
             for name, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_every_package_ships():
    """A package folder missing from pyproject's list would be left out of the wheel."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(("cardgen",) + p.parent.relative_to(SRC).parts) for p in SRC.rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


# What the command may use besides the API: the error type, the report formats' names (for its
# --format choices), the search-path option's list, and the language server it starts.
CLI_MAY_IMPORT = {"api", "lang.errors", "lang.diagnostics", "lang.load", "lsp.server"}


def test_the_command_is_a_thin_layer_over_the_api():
    """Each command parses its options, calls the API and prints: what it does is in ``cardgen.api``."""
    used = {t for t, _, _ in imports(SRC / "cli.py")}
    assert used <= CLI_MAY_IMPORT, f"cli.py imports {sorted(used - CLI_MAY_IMPORT)}: call it through cardgen.api"
