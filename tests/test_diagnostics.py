"""`cardgen check` reports every error of every file, once each, in four formats; `fmt` and
`build` show what they would change as unified diffs."""

import json
import random
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.lang.check import Library, check_all
from cardgen.lang.errors import CardError
from cardgen.lang.parse import parse

from .conftest import CARDS, ROOT

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-2.1.0-rtm.5.json"

# Two independent mistakes (steps 1 and 3) and uses of their results (steps 4 and 6), which must
# not be reported again.
TWO_ERRORS = (ROOT / "cards" / "Attention.card").read_text("utf-8") \
    .replace("1 Q ← W_q X + b_q 1^⊤", "1 Q ← W_q Z + b_q 1^⊤") \
    .replace("3 V ← W_v Z + b_v 1^⊤", "3 V ← W_v X + b_v 1^⊤")


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def broken(tmp_path):
    (tmp_path / "Attention.card").write_text(TWO_ERRORS, "utf-8")
    (tmp_path / "Parse.card").write_text("algorithm y ← Parse(x)\n  input x ∈ ℝ\n  output y ∈ ℝ\n  1 y ← x +\n")
    (tmp_path / "Ok.card").write_text("algorithm y ← Ok(x)\n  input x ∈ ℝ\n  output y ∈ ℝ\n  1 return y = 2 x\n")
    return tmp_path


def test_every_error_once_and_no_follow_on():
    ch = check_all(parse(TWO_ERRORS, "Attention.card"), Library(folders=[]))
    assert [(e.line, e.col) for e in ch.errors] == [(16, 9), (18, 9)]
    assert "d_x ≠ d_z" in ch.errors[0].message and "d_z ≠ d_x" in ch.errors[1].message


def test_a_failed_loop_body_silences_the_family_it_would_define(tmp_path):
    """MHAttention's loop body calls a broken Attention: one error at the call, none where the
    family Y^h it would have defined is used."""
    (tmp_path / "Attention.card").write_text(TWO_ERRORS, "utf-8")
    lib = Library(folders=[str(tmp_path)])
    ch = check_all(parse((ROOT / "cards" / "MHAttention.card").read_text("utf-8"), "MHAttention.card"), lib)
    assert len(ch.errors) == 1
    e = ch.errors[0]
    assert "Attention has errors of its own" in e.message and "16:9" in e.message
    assert e.path == "MHAttention.card"


def test_independent_declaration_errors_are_all_reported():
    text = ("algorithm y ← f(x)\n  input x ∈ ℝ^{D}\n  output y ∈ ℝ^{D}\n  param W ∈ ℝ^{Q×D}\n"
            "  param b ∈ ℝ^{R}\n  1 return y = x\n")
    errs = check_all(parse(text, "f.card"), Library()).errors
    assert [(e.line, e.message) for e in errs] == [(4, "dimension Q is undefined"), (5, "dimension R is undefined")]


@pytest.mark.parametrize("seed", range(3))
def test_mutated_cards_give_card_errors_only(seed):
    """Recovery runs code after an error that used to stop everything: on broken cards it still only
    ever reports CardErrors, each at a place in the file, and never twice at one place."""
    rng = random.Random(seed)
    lib = Library(folders=[str(ROOT / "cards")])
    for path in CARDS:
        lines = path.read_text("utf-8").split("\n")
        steps = [i for i, x in enumerate(lines) if x[:4].strip().isdigit()]
        for _ in range(3):
            mutated = list(lines)
            for i in rng.sample(steps, min(2, len(steps))):
                words = mutated[i].split(" ")
                j = rng.randrange(3, len(words)) if len(words) > 3 else len(words) - 1
                words[j] = rng.choice(["Zz", "W_q", "x^⊤", "(", "1", "softmax(Zz)"])
                mutated[i] = " ".join(words)
            try:
                card = parse("\n".join(mutated), path.name)
            except CardError:
                continue
            errs = check_all(card, lib).errors
            assert all(isinstance(e, CardError) and e.pos is not None for e in errs)
            places = [(e.line, e.col, e.message) for e in errs]
            assert len(places) == len(set(places)), places


def test_check_text_reports_all_errors(broken):
    r = run("check", str(broken))
    assert r.exit_code == 1
    assert r.output.count("error:") == 3
    assert f"{broken / 'Attention.card'}:16:9:" in r.output and f"{broken / 'Attention.card'}:18:9:" in r.output
    assert f"{broken / 'Parse.card'}:4:" in r.output
    assert "2 of 3 cards failed (3 errors)" in r.output


def test_check_json(broken):
    r = run("check", str(broken), "--format", "json")
    assert r.exit_code == 1
    errs = json.loads(r.stdout)["errors"]
    assert [(Path(e["file"]).name, e["line"], e["col"]) for e in errs][:2] == [
        ("Attention.card", 16, 9), ("Attention.card", 18, 9)]
    assert errs[0]["end_col"] == 14 and errs[0]["severity"] == "error"


def test_check_json_clean_corpus_is_empty():
    r = run("check", "cards/", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"errors": []}


def test_check_github_annotations(broken):
    r = run("check", str(broken), "--format", "github")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"::error file={broken / 'Attention.card'},line=16,col=9,endLine=16,endColumn=14,"
                               "title=cardgen::cannot multiply")
    assert all(x.startswith("::error file=") for x in lines)


def test_github_escapes_what_would_end_a_command():
    from cardgen.lang.diagnostics import github_report
    e = CardError("a: b, c%\nd", None, "h", path="we,ird:name.card")
    out = github_report([e])
    assert out == "::error file=we%2Cird%3Aname.card,line=1,col=1,endLine=1,endColumn=2,title=cardgen::" \
                  "a: b, c%25%0Ad%0Ahint: h\n"


def test_check_sarif_is_valid_sarif_2_1_0(broken):
    r = run("check", str(broken), "--format", "sarif")
    assert r.exit_code == 1
    log = json.loads(r.stdout)
    schema = json.loads(SARIF_SCHEMA.read_text("utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)
    results = log["runs"][0]["results"]
    assert len(results) == 3
    region = results[0]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 16, "startColumn": 9, "endLine": 16, "endColumn": 14}
    # The validator really rejects a broken log (the test would notice a schema that accepts anything).
    del log["runs"][0]["tool"]["driver"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(log)


def test_fmt_check_diff(tmp_path):
    card = tmp_path / "LayerNorm.card"
    text = (ROOT / "cards" / "LayerNorm.card").read_text("utf-8")
    card.write_text(text.replace("  1 m ←", "  1   m ←"), "utf-8")
    r = run("fmt", "--check", "--diff", str(card))
    assert r.exit_code == 1
    assert f"--- a/{card}\n+++ b/{card}\n@@ " in r.stdout
    assert "\n-  1   m ←" in r.stdout and "\n+  1 m ←" in r.stdout
    assert card.read_text("utf-8") != text  # --check writes nothing


def test_build_check_diff(tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    module = (ROOT / "generated" / "LayerNorm.py").read_text("utf-8")
    (out / "LayerNorm.py").write_text(module.replace("import numpy as np", "import numpy as np  # edited"))
    r = run("build", "cards/LayerNorm.card", "-o", str(out), "--check", "--diff")
    assert r.exit_code == 1
    assert "\n-import numpy as np  # edited\n+import numpy as np\n" in r.stdout
    assert f"stale: {out / 'LayerNorm.py'}" in r.stdout
