"""The cardgen command as a user meets it."""

import re

from click.testing import CliRunner

from cardgen.cli import main

from .conftest import ROOT

GPT2_SMALL = ["--set", "V=50257", "--set", "D=768", "--set", "H=12", "--set", "D_f=3072",
              "--set", "N=12", "--set", "ctx=1024"]


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_check_corpus_ok():
    r = run("check", "cards/")
    assert r.exit_code == 0, r.output
    assert re.search(r"\d+ cards ok", r.output)


def test_check_reports_every_broken_file(tmp_path):
    (tmp_path / "a.card").write_text("algorithm y ← a(x)\n  input x ∈ ℝ\n  output y ∈ ℝ\n  1 y ← x +\n")
    (tmp_path / "b.card").write_text("algorithm y ← b(x)\n  input x ∈ ℝ\n  output y ∈ ℝ\n  1 y ← z\n")
    r = run("check", str(tmp_path))
    assert r.exit_code == 1
    assert f"{tmp_path / 'a.card'}:4:" in r.output and f"{tmp_path / 'b.card'}:4:9:" in r.output
    assert "2 of 2 cards failed" in r.output and "Traceback" not in r.output


def test_check_missing_file_is_an_error_not_a_traceback(tmp_path):
    r = run("check", str(tmp_path / "nope.card"))
    assert r.exit_code == 1 and "cannot read" in r.output and "Traceback" not in r.output


def test_gpt2_small_parameter_count():
    """GPT-2 small has 124,439,808 parameters with the embedding tied (Hugging Face's count)."""
    r = run("render", "cards/GPT2.card", *GPT2_SMALL)
    assert r.exit_code == 0, r.output
    assert "Parameter count: 124,439,808 at V=50257, D=768, H=12, D_f=3072, N=12, ctx=1024" in r.output


def test_parameter_count_asks_for_missing_values():
    r = run("render", "cards/GPT2.card", "--set", "V=10")
    assert "Parameter count: needs values for" in r.output and "D" in r.output


def test_parameter_count_from_defaults_alone(tmp_path):
    card = tmp_path / "lin.card"
    card.write_text("algorithm y ← lin(x | W)\n  input x ∈ ℝ^{n}\n  output y ∈ ℝ^{m}\n"
                    "  hyper m ∈ ℕ = 3\n  hyper n ∈ ℕ = 4\n  param W ∈ ℝ^{m×n}\n  1 return y = W x\n")
    r = run("render", str(card))
    assert r.exit_code == 0, r.output
    assert "Parameter count: 12 at m=3, n=4" in r.output


def test_render_full_lists_each_sub_algorithm_once():
    r = run("render", "cards/GPT2.card", "--full")
    assert r.exit_code == 0, r.output
    headers = re.findall(r"^Algorithm: .*?← (\w+)\(", r.output, flags=re.M)
    assert headers == ["GPT2", "GPT2Block", "CausalSelfAttention", "MLP", "GELU_tanh", "LayerNorm"]


def test_render_markdown_puts_math_in_math_blocks():
    r = run("render", "cards/Attention.card", "--format", "md")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("### Algorithm: $`")
    assert "```math" in r.output and r"\begin{array}" in r.output
    # Outside math, no raw underscore or asterisk-delimited emphasis can leak from card names.
    prose = re.sub(r"\$`.*?`\$|```math.*?```", "", r.output, flags=re.S)
    assert "_" not in prose.replace(r"\_", "")


def test_markdown_math_escapes_comments_and_nests_scripts():
    from cardgen.docs.latex import math_text, tex_name
    # A ▷ comment is prose: TeX's special characters are characters, symbols and Greek are math.
    assert math_text("mask_token ~ p^{1/τ} ≤ 50% & #1") == (
        r"\text{mask}{\_}\text{token }{\sim}\text{ p}{\hat{}}{\{}\text{1/}{\tau}{\}}\text{ }{\le}\text{ 50}{\%}"
        r"\text{ }{\&}\text{ }{\#}\text{1}")
    assert tex_name("x_{1:N_data}") == r"x_{1:N_{\mathrm{data}}}"
    r = run("render", "cards/ETraining.card", "--format", "md")
    assert r"\text{mask}{\_}\text{token or x}{\_}\text{n[t] randomly" in r.output


def test_render_header_reads_like_the_paper():
    r = run("render", "cards/GPT2.card")
    lines = r.output.splitlines()
    assert lines[0] == "Algorithm: P ← GPT2(x, p_start | θ)"
    assert lines[1].startswith("/* GPT-2")
    assert any(line.startswith("Input:") for line in lines)
    assert any(line.startswith("Parameters:") for line in lines)
    assert any("▷ P ∈ ℝ^{T×V}" in line for line in lines)


def test_fmt_check_names_stale_files_and_changes_nothing(tmp_path):
    messy = ("algorithm y ← f(x)\n  input x ∈ ℝ^{n}\n  output y ∈ ℝ^{n}\n  hyper n ∈ N\n"
             "   7 y <- x*x\n  8 return y\n")
    card = tmp_path / "f.card"
    card.write_text(messy)
    r = run("fmt", "--check", str(card))
    assert r.exit_code == 1 and f"would reformat {card}" in r.output
    assert card.read_text() == messy
    r = run("fmt", str(card))
    assert r.exit_code == 0
    tidy = card.read_text()
    assert "1 y ← x ⊙ x" in tidy and "2 return y" in tidy and "hyper  n ∈ ℕ" in tidy
    assert run("fmt", "--check", str(card)).exit_code == 0
    r = run("fmt", str(card))
    assert card.read_text() == tidy  # idempotent


def test_fmt_stdin_to_stdout():
    src = (ROOT / "cards" / "layer_norm.card").read_text()
    r = run("fmt", "-", input=src)
    assert r.exit_code == 0 and r.output == src


def test_fmt_refuses_a_broken_card_and_leaves_it(tmp_path):
    card = tmp_path / "g.card"
    broken = "algorithm y ← g(x)\n  input x ∈ ℝ\n  output y ∈ ℝ\n  1 y ← x +\n"
    card.write_text(broken)
    r = run("fmt", str(card))
    assert r.exit_code == 1 and card.read_text() == broken


def test_ascii_spellings_parse_to_the_same_card():
    uni = ("algorithm y ← f(x | W, b)\n  input x ∈ ℝ^{n×m}\n  output y ∈ ℝ^{n}\n  hyper n, m ∈ ℕ\n"
           "  param W ∈ ℝ^{n×n}\n  param b ∈ ℝ^{n}\n"
           "  1 return y = Σ_{j=1}^{m} (W · x[:, j] ⊙ b + √n − (W^⊤ x)[:, j]) / ∞\n")
    asc = ("algorithm y <- f(x | W, b)\n  input x in R^{n x m}\n  output y in R^{n}\n  hyper n, m in N\n"
           "  param W in R^{n x n}\n  param b in R^{n}\n"
           "  1 return y = sum_{j=1}^{m} (W @ x[:, j] * b + sqrt(n) - (W^T x)[:, j]) / inf\n")
    a = run("fmt", "-", input=uni)
    b = run("fmt", "-", input=asc)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert a.output == b.output
