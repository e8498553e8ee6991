"""Named configurations: `config NAME: V = …` lines in a card, checked against
its hyperparameters, shown by every renderer, and chosen with --config."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cardgen import CardError, parse, parse_file
from cardgen.cli import main
from cardgen.lang.check import Library, check
from cardgen.lang.configs import chosen_values, training_config
from cardgen.lang.render import card_text, pseudocode

from .conftest import ROOT

GPT2 = str(ROOT / "cards" / "GPT2.card")


def run(*args):
    return CliRunner().invoke(main, list(args))


def small_card(config_lines: str) -> str:
    """A bigram-like card whose line 8 onwards holds ``config_lines``."""
    return ("algorithm P ← B(x | W)\n"
            "  convention rows, 0-based\n"
            "  input  x ∈ {0..V−1}^T\n"
            "  output P ∈ ℝ^{T×V}\n"
            "  hyper  V ∈ ℕ\n"
            "  hyper  λ ∈ (0, 1) = 0.5\n"
            "  param  W ∈ ℝ^{V×V}\n"
            f"  {config_lines}\n"
            "  1 return P = W[x]\n")


# ----------------------------------------------------------------- GPT-2
def hf_count(**sizes) -> int:
    """Hugging Face's own count, built on the meta device (no memory, no download)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes))
    return model.num_parameters()


@pytest.mark.parametrize("name, sizes", [
    ("gpt2", dict(n_embd=768, n_layer=12, n_head=12)),
    ("gpt2-medium", dict(n_embd=1024, n_layer=24, n_head=16)),
    ("gpt2-large", dict(n_embd=1280, n_layer=36, n_head=20)),
    ("gpt2-xl", dict(n_embd=1600, n_layer=48, n_head=25)),
])
def test_gpt2_configurations_have_the_released_parameter_counts(name, sizes):
    r = run("render", GPT2, "--config", name)
    assert r.exit_code == 0, r.output
    expected = hf_count(**sizes)
    assert f"Parameter count: {expected:,} at V=50257" in r.output, r.output
    assert f"(configuration {name}; tied weights counted once)" in r.output


def test_gpt2_small_is_124_439_808():
    assert "Parameter count: 124,439,808 " in run("render", GPT2, "--config", "gpt2").output


def test_set_overrides_the_configuration():
    r = run("render", GPT2, "--config", "small", "--set", "N=4")
    assert r.exit_code == 0, r.output
    assert "N=4" in r.output and "D=64" in r.output


def test_training_configuration_is_marked():
    card = parse_file(GPT2)
    assert training_config(card).name == "small"
    assert dict(training_config(card).values)["V"] == "256"


# ------------------------------------------------------------ the commands
@pytest.mark.parametrize("args", [
    ("render", GPT2, "--set", "d=3"),
    ("render", GPT2, "--config", "small", "--set", "width=3"),
    ("gradcheck", GPT2, "--set", "Q=2"),
    ("train", GPT2, "--set", "d_model=64", "--steps", "1"),
])
def test_set_of_a_name_the_card_does_not_have_is_an_error(args, tmp_path):
    r = run(*args, *(["--out", str(tmp_path / "run")] if args[0] == "train" else []))
    assert r.exit_code == 1, r.output
    name = args[args.index("--set") + 1 if "width=3" not in args else -1].split("=")[0]
    assert f"--set {name}: GPT2 has no hyperparameter {name}" in r.output, r.output
    assert "Traceback" not in r.output


def test_set_suggests_the_name_meant():
    r = run("render", GPT2, "--set", "d=3")
    assert "hint: did you mean D?" in r.output


def test_render_memory_still_takes_batch_and_dtype():
    r = run("render", "--memory", GPT2, "--config", "small", "--set", "B=2", "--set", "T=8",
            "--set", "dtype=float64")
    assert r.exit_code == 0, r.output
    assert "total:" in r.output


@pytest.mark.parametrize("command", ["render", "gradcheck", "train"])
def test_unknown_configuration_names_the_ones_there_are(command, tmp_path):
    r = run(command, GPT2, "--config", "gpt3", *(["--out", str(tmp_path / "run")] if command == "train" else []))
    assert r.exit_code == 1, r.output
    assert "GPT2 has no configuration gpt3" in r.output
    assert "its configurations: gpt2, gpt2-medium, gpt2-large, gpt2-xl, small" in r.output


def test_gradcheck_at_a_named_configuration():
    r = run("gradcheck", str(ROOT / "cards" / "Bigram.card"), "--config", "bytes")
    assert r.exit_code == 0, r.output
    assert "Bigram" in r.output and "ok" in r.output


def test_train_with_no_flags_uses_the_training_configuration(tmp_path):
    from cardgen.train import checkpoint
    from cardgen.train import run as runs
    r = run("train", GPT2, "--steps", "1", "--batch", "2", "--seq", "8", "--eval-every", "1",
            "--out", str(tmp_path / "run"))
    assert r.exit_code == 0, r.output
    ck = checkpoint.open_checkpoint(tmp_path / "run" / runs.CHECKPOINT)
    try:
        assert {k: ck.config[k] for k in ("V", "D", "H", "D_f", "N", "ctx")} == \
            dict(V=256, D=64, H=4, D_f=256, N=2, ctx=64)
    finally:
        ck.close()


def test_chosen_values_puts_set_on_top_of_the_configuration():
    card = parse_file(GPT2)
    vals = chosen_values(card, "gpt2", {"N": 2}, known=["N"])
    assert vals["N"] == 2 and vals["D"] == 768 and isinstance(vals["D"], int)


# ------------------------------------------------------------ the card text
def test_configurations_round_trip_through_card_text_and_pseudocode():
    src = small_card('config tiny (training): V = 4, λ = 0.25  "a test"\n'
                     "  config big-one.v2: V = 50000, λ = 1e-3")
    card = parse(src)
    assert [c.name for c in card.configs] == ["tiny", "big-one.v2"]
    assert card.configs[0].training and card.configs[0].desc == "a test"
    for text in (card_text(card), pseudocode(card)):
        back = parse(text)
        assert back == card and back.configs == card.configs
    assert "Configuration tiny (training): V = 4, λ = 0.25" in pseudocode(card)
    check(card, Library())


def test_ascii_card_text_keeps_a_negative_value():
    card = parse(small_card("config a: V = 3").replace("λ ∈ (0, 1) = 0.5", "λ ∈ ℝ = 0.5")
                 .replace("config a: V = 3", "config a: V = 3, λ = -2"))
    assert dict(card.configs[0].values)["λ"] == "-2"
    assert "λ = −2" in card_text(card)
    assert parse(card_text(card)) == card


@pytest.mark.parametrize("line, col, words, hint", [
    ("config a: V = 256, W = 3", 22, "configuration a sets W, which is not a hyperparameter of B",
     "its hyperparameters: V, λ"),
    ("config a: V = 2.5", 13, "configuration a: V = 2.5 is not in ℕ", "V ∈ ℕ, as declared on line 5"),
    ("config a: V = -3", 13, "V = -3 is not in ℕ", None),
    ("config a: V = 3, λ = 1", 20, "λ = 1 is not in (0, 1)", None),
    ("config a: λ = 0.5", 3, "configuration a leaves V without a value", "add V = …"),
    ("config a: V = 3, V = 4", 20, "configuration a gives V twice", None),
    ("config a: v = 3", 13, "sets v, which is not a hyperparameter", "did you mean V?"),
    ("config a (training): V = 3\n  config b (training): V = 4", 3,
     "two configurations are marked (training): a and b", None),
    ("config a: V = 3\n  config a: V = 4", 3, "configuration a is declared twice", "first declared on line 8"),
    ("config a-: V = 3", 11, "unexpected '-'", None),
    ("config a:", 12, "expected a name", None),
])
def test_broken_configuration_is_reported_at_its_place(line, col, words, hint):
    src = small_card(line)
    with pytest.raises(CardError) as info:
        check(parse(src, "B.card"), Library())
    err = info.value
    shown = str(err)
    assert words in err.message, shown
    assert (err.line, err.col) == (line.count("\n") + 8, col), shown
    if hint:
        assert err.hint and hint in err.hint, shown


# ------------------------------------------------------------ other outputs
def test_markdown_and_tex_show_each_configuration():
    md = run("render", GPT2, "--format", "md").output
    assert "**Configuration** gpt2-medium: $`V = 50257,\\ D = 1024," in md
    assert "**Configuration** small (training):" in md
    tex = run("render", GPT2, "--format", "tex").output
    assert r"\textbf{Configuration} gpt2-xl: $V = 50257,\ D = 1600," in tex


def test_book_shows_each_configuration_with_its_parameter_count(tmp_path):
    r = run("docs", str(ROOT / "cards"), "-o", str(tmp_path / "book"))
    assert r.exit_code == 0, r.output
    page = (tmp_path / "book" / "cards" / "GPT2.html").read_text("utf-8")
    for count in ("124,439,808", "354,823,168", "774,030,080", "1,557,611,200", "120,576"):
        assert f'<td class="n">{count}</td>' in page
    assert "<code>small</code> (training)" in page
