"""The VS Code extension packages as a .vsix with what it needs to start `cardgen lsp`: its
script, the language client library and the grammar (`.ci/run` installs the npm packages)."""

import json
import shutil
import subprocess
import zipfile

from .conftest import ROOT, require

FOLDER = ROOT / "editors" / "vscode"


def test_extension_starts_cardgen_lsp_through_a_language_client():
    manifest = json.loads((FOLDER / "package.json").read_text("utf-8"))
    assert manifest["main"] == "./extension.js" and "onLanguage:card" in manifest["activationEvents"]
    assert "vscode-languageclient" in manifest["dependencies"]
    props = manifest["contributes"]["configuration"]["properties"]
    assert props["cardgen.server.command"]["default"] == "cardgen"
    assert props["cardgen.server.args"]["default"] == ["lsp"]
    script = (FOLDER / "extension.js").read_text("utf-8")
    assert 'require("vscode-languageclient/node")' in script and "TransportKind.stdio" in script


def test_vsix_packages(tmp_path):
    npx = shutil.which("npx")
    require(npx is not None and (FOLDER / "node_modules" / "@vscode" / "vsce").is_dir(),
            "needs node and `npm ci --prefix editors/vscode`")
    out = tmp_path / "card.vsix"
    r = subprocess.run([npx, "--no-install", "vsce", "package", "--allow-missing-repository", "--skip-license",
                        "-o", str(out)], cwd=FOLDER, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        grammar = z.read("extension/syntaxes/card.tmLanguage.json")
    assert {"extension/extension.js", "extension/package.json",
            "extension/node_modules/vscode-languageclient/node.js"} <= names
    assert not any("/@vscode/vsce/" in n for n in names)  # build tools stay out
    assert grammar == (ROOT / "editors" / "card.tmLanguage.json").read_bytes()
