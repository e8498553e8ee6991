"""Hostile cards: nothing written in a card (names, descriptions, purpose lines,
numbers, comments) can put code into a generated module."""

import contextlib
import io
import os

import numpy as np

from cardgen import parse
from cardgen.compile.emit import module_source
from cardgen.compile.gradcheck import gradcheck, load_module
from cardgen.lang.check import Library, check

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
