"""The public API (cardgen.api) and the card search path: what a notebook or a script sees.

The README's examples run here as doctests, so the README cannot drift from the code."""

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cardgen
from cardgen import CardError, api
from cardgen.lang.load import display_path, search_path

from .conftest import ROOT

RESIDUAL = """algorithm Y ← Residual(X | γ, β)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  hyper  T, D ∈ ℕ
  param  γ, β ∈ ℝ^D
  1 return Y = X + LayerNorm(X | γ, β)
"""


def test_readme_examples_run():
    failures, tried = doctest.testfile(str(ROOT / "README.md"), module_relative=False, verbose=False,
                                       optionflags=doctest.ELLIPSIS)
    assert tried >= 15 and failures == 0


def test_api_docstrings_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    tried = 0
    for module in (api.cards, api.checking):
        failures, n = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0, module.__name__
        tried += n
    assert tried >= 6


def test_top_level_names_are_the_api():
    for name in cardgen.API:
        assert getattr(cardgen, name) is getattr(api, name)
    with pytest.raises(AttributeError):
        cardgen.no_such_thing  # noqa: B018


def test_load_by_path_and_by_name_agree():
    by_path = cardgen.load(ROOT / "cards" / "GPT2.card")
    by_name = cardgen.load("GPT2")
    assert by_path.ir == by_name.ir
    assert [c.name for c in by_name.callees()] == ["GPT2Block", "LayerNorm"]


def test_compiled_modules_of_one_name_never_collide(tmp_path):
    """Two different cards both named E: each module keeps its own code (the old gradcheck loader
    registered both as cardgen_generated_E, and the second replaced the first)."""
    double = cardgen.loads(RESIDUAL.replace("Residual", "E").replace("X + LayerNorm", "2 X + LayerNorm"))
    single = cardgen.loads(RESIDUAL.replace("Residual", "E"))
    m2, m1 = double.compile(), single.compile()
    assert m1.__name__ != m2.__name__ and sys.modules[m1.__name__] is m1 and sys.modules[m2.__name__] is m2
    cfg = m1.Config(T=3, D=4)
    params = m1.init_params(cfg, np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).standard_normal((3, 4))
    y1, _ = m1.forward(cfg, params, x)
    y2, _ = m2.forward(m2.Config(T=3, D=4), m2.Params(**vars(params)), x)
    np.testing.assert_allclose(y2 - y1, x, atol=1e-12)
    assert single.compile() is m1  # the same source compiles once


def test_compile_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cardgen.load("GPT2").compile()
    assert list(tmp_path.iterdir()) == []


def test_build_writes_modules_as_the_command_does(tmp_path):
    written = cardgen.build([ROOT / "cards" / "LayerNorm.card", ROOT / "cards" / "GPT2.card"], tmp_path)
    assert [p.name for p in written] == ["LayerNorm.py", "GPT2.py"]
    for p in written:
        assert p.read_text("utf-8") == (ROOT / "generated" / p.name).read_text("utf-8")


def test_render_formats_and_errors():
    card = cardgen.load("MHAttention")
    assert card.render("text", full=True).count("Algorithm:") == 2
    assert card.render("tex").startswith("%")
    with pytest.raises(cardgen.CardError, match="unknown format 'html'"):
        card.render("html")
    with pytest.raises(cardgen.CardError) as e:
        cardgen.loads(RESIDUAL.replace("LayerNorm(X", "LayerNorm(X^⊤"))
    assert "<string>:7:" in str(e.value)


def test_cards_and_modules_display_in_jupyter():
    """Through IPython's own display formatter, as a notebook shows them."""
    from IPython.core.formatters import DisplayFormatter
    card = cardgen.load("LayerNorm")
    for obj in (card, card.compile()):
        data, _ = DisplayFormatter().format(obj)
        assert data["text/markdown"].startswith("### Algorithm: $`\\hat{e} \\leftarrow")
        assert "\\begin{algorithm}" in data["text/latex"]


# ---------------------------------------------------------------- the search path

def write_card(folder: Path, name: str, purpose: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.card"
    path.write_text(f'algorithm y ← {name}(x)\n  "{purpose}"\n  convention rows, 0-based\n'
                    f"  input  x ∈ ℝ^D\n  output y ∈ ℝ^D\n  hyper  D ∈ ℕ\n  1 return y = 2 x\n", "utf-8")
    return path


def test_search_path_order(tmp_path, monkeypatch):
    """Beside the card, --path, CARDGEN_PATH, [tool.cardgen], ./cards, the standard cards: first wins."""
    project = tmp_path / "proj"
    for folder in ("beside", "flag", "env", "configured", "cards"):
        write_card(project / folder, "Twice", f"from {folder}")
    user = project / "beside" / "User.card"
    user.write_text('algorithm z ← User(x)\n  convention rows, 0-based\n  input  x ∈ ℝ^D\n  output z ∈ ℝ^D\n'
                    "  hyper  D ∈ ℕ\n  1 return z = Twice(x)\n", "utf-8")
    (project / "pyproject.toml").write_text('[tool.cardgen]\npath = ["configured"]\n', "utf-8")
    monkeypatch.chdir(project)
    monkeypatch.setenv("CARDGEN_PATH", str(project / "env"))

    def purpose(extra):
        card = cardgen.load(user, path=extra)
        return card.library.checked("Twice").card.purpose

    assert purpose([project / "flag"]) == "from beside"
    (project / "beside" / "Twice.card").unlink()
    assert purpose([project / "flag"]) == "from flag"
    assert purpose([]) == "from env"
    monkeypatch.delenv("CARDGEN_PATH")
    assert purpose([]) == "from configured"
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n", "utf-8")
    assert purpose([]) == "from cards"
    origins = [e.origin for e in search_path(user, [])]
    assert origins == ["beside the card", "./cards", "standard cards"]


def test_bad_project_path_is_a_card_error(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.cardgen]\npath = "cards"\n', "utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cardgen.CardError, match="must be a list"):
        cardgen.load("GPT2")


def cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "cardgen", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_every_command_takes_path_and_check_says_where(tmp_path):
    from cardgen.cli import main
    assert all(any(p.name == "search_path" for p in c.params) for c in main.commands.values())
    write_card(tmp_path / "mine", "Double", "doubles")
    user = tmp_path / "work" / "Quad.card"
    user.parent.mkdir()
    user.write_text('algorithm z ← Quad(x)\n  convention rows, 0-based\n  input  x ∈ ℝ^D\n  output z ∈ ℝ^D\n'
                    "  hyper  D ∈ ℕ\n  1 y ← Double(x)\n  2 return z = Double(y)\n", "utf-8")
    alone = cli("check", "Quad.card", cwd=user.parent)
    assert alone.returncode == 1 and "Double" in alone.stderr
    found = cli("check", "--verbose", "--path", "../mine", "Quad.card", cwd=user.parent)
    assert found.returncode == 0, found.stderr
    assert "calls Double: " in found.stdout and "(--path)" in found.stdout
    env = cli("check", "-v", "Quad.card", cwd=user.parent, env={"CARDGEN_PATH": str(tmp_path / "mine")})
    assert env.returncode == 0 and "(CARDGEN_PATH)" in env.stdout


def test_standard_cards_from_an_empty_folder(tmp_path):
    render = cli("render", "GPT2", "--full", cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert "Algorithm: P ← GPT2(x, p_start | θ)" in render.stdout and "Algorithm: ê ← LayerNorm" in render.stdout
    piped = subprocess.run([sys.executable, "-m", "cardgen", "check", "-"], input=render.stdout.split("─" * 72)[0],
                           cwd=tmp_path, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr  # rendered pseudocode checks outside ./cards too


def test_outputs_name_no_absolute_path(tmp_path):
    """The module header and the book name the card relative to the project, not the builder's disk."""
    assert display_path(ROOT / "cards" / "GPT2.card") == "cards/GPT2.card"
    build = cli("build", str(ROOT / "cards" / "LayerNorm.card"), "-o", str(tmp_path / "gen"), cwd=ROOT)
    assert build.returncode == 0, build.stderr
    header = (tmp_path / "gen" / "LayerNorm.py").read_text("utf-8").splitlines()[0]
    assert header == "# Code generated by cardgen from cards/LayerNorm.card. DO NOT EDIT."
    docs = cli("docs", str(ROOT / "cards" / "LayerNorm.card"), "-o", str(tmp_path / "book"), cwd=ROOT)
    assert docs.returncode == 0, docs.stderr
    page = (tmp_path / "book" / "cards" / "LayerNorm.html").read_text("utf-8")
    assert "From <code>cards/LayerNorm.card</code>" in page and str(ROOT) not in page


def test_python_dash_m_cardgen():
    out = cli("--help", cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("Usage: cardgen ")


PART = """algorithm Y ← Part(X | W)
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
  hyper  D ∈ ℕ
  param  W ∈ ℝ^{D×D}
  1 Y ← X W
  2 Y[0] ← X[1]
  3 return Y
"""  # checks as a language, but cardgen cannot compile step 2 (a write into part of an array)


def test_load_accepts_what_check_accepts(tmp_path):
    with pytest.raises(CardError, match="0 picks part of Y") as e:
        cardgen.loads(PART)
    assert (e.value.line, e.value.col) == (8, 7)
    assert cardgen.loads(PART, compiles=False).name == "Part"  # what fmt and the interpreter need
    (tmp_path / "Part.card").write_text(PART, "utf-8")
    assert not cardgen.check([tmp_path / "Part.card"]).ok


def test_check_reports_every_error_of_every_file(tmp_path):
    (tmp_path / "Part.card").write_text(PART, "utf-8")
    (tmp_path / "Two.card").write_text(RESIDUAL.replace("Residual", "Two").replace("return Y = X +", "return Y = X^⊤ +")
                                       .replace("1 return", "1 Z ← W_none\n  2 return"), "utf-8")
    (tmp_path / "Fine.card").write_text(RESIDUAL, "utf-8")
    report = cardgen.check([tmp_path])
    assert [f.path.name for f in report.files] == ["Fine.card", "Part.card", "Two.card"]
    assert [f.ok for f in report.files] == [True, False, False]
    assert len(report.files[2].errors) == 2  # both of its errors, not the first alone
    assert report.files[0].callees()[0][0] == "LayerNorm"
    assert json.loads(report.format("json"))["errors"][0]["line"] == 8
    assert str(report).count("error:") == 3
    with pytest.raises(CardError, match="unknown report format"):
        report.format("xml")


def test_configurations_and_values_are_checked():
    gpt2 = cardgen.load("GPT2")
    assert gpt2.values("gpt2", {"N": 2})["N"] == 2
    assert gpt2.values(None, {"D": 64}) == {"D": 64}
    with pytest.raises(CardError, match="GPT2 has no configuration gpt3") as e:
        gpt2.values("gpt3")
    assert "gpt2-medium" in e.value.hint
    with pytest.raises(CardError, match="no hyperparameter Dee"):
        gpt2.values(None, {"Dee": 64})
    with pytest.raises(CardError, match="H must divide D|divide"):
        gpt2.render(values={"D": 64, "H": 5, "V": 16, "D_f": 8, "N": 1, "ctx": 8})
    assert "Parameter count: 124,439,808" in gpt2.render(config="gpt2")


def test_build_report_writes_the_cards_that_compile(tmp_path):
    (tmp_path / "Part.card").write_text(PART, "utf-8")
    (tmp_path / "Fine.card").write_text(RESIDUAL.replace("Residual", "Fine"), "utf-8")
    done = api.build_report([tmp_path], tmp_path / "out")
    assert not done.ok and "0 picks part of Y" in done.errors[0].message
    assert [p.name for p in done.written] == ["Fine.py"]
    again = api.build_report([tmp_path / "Fine.card"], tmp_path / "out", check_only=True)
    assert again.ok and not again.changed and [p.name for p in again.current] == ["Fine.py"]
    with pytest.raises(CardError, match="0 picks part of Y"):
        cardgen.build([tmp_path], tmp_path / "out")
