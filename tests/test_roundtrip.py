"""The round trip, on every card: card text and rendered pseudocode both parse
back to the card's own IR, and formatting is idempotent."""

import pytest
from click.testing import CliRunner

from cardgen import parse, parse_file
from cardgen.cli import main
from cardgen.lang.check import Library, check
from cardgen.lang.render import card_text, pseudocode

from .conftest import CARDS, ROOT


def checked(path, library):
    card = parse_file(path)
    return card, check(card, library)


def test_corpus_is_complete():
    names = {p.stem for p in CARDS}
    paper = {"token_embedding", "positional_embedding", "single_query_attention", "Attention",
             "MHAttention", "layer_norm", "unembedding", "EDTransformer", "ETransformer",
             "DTransformer", "EDTraining", "ETraining", "DTraining", "DInference", "EDInference"}
    gpt2 = {"GPT2", "GPT2Block", "LayerNorm", "CausalSelfAttention", "MLP", "GELU_tanh",
            "cross_entropy", "AdamW", "Bigram", "Head", "RMSNorm", "LLaMABlock"}
    recurrences = {"RNN", "LSTM", "GRU"}
    bert = {"BERTClassifier", "BERTLayer", "BERTSelfAttention"}
    assert paper <= names and gpt2 <= names and recurrences <= names and bert <= names


def test_file_name_is_card_name(card_path):
    assert parse_file(card_path).name == card_path.stem


def test_card_text_round_trip(card_path, library):
    card, ch = checked(card_path, library)
    text = card_text(card, ch.claims)
    again = parse(text)
    assert again == card
    assert card_text(again, check(again, Library(folders=[str(ROOT / "cards")])).claims) == text


def test_pseudocode_round_trip(card_path, library):
    card, ch = checked(card_path, library)
    assert parse(pseudocode(card, ch.claims)) == card


def test_card_file_is_canonical(card_path, library):
    card, ch = checked(card_path, library)
    assert card_path.read_text("utf-8") == card_text(card, ch.claims), "run `cardgen fmt cards/`"


def test_render_then_fmt_equals_fmt(card_path):
    runner = CliRunner()
    rendered = runner.invoke(main, ["render", str(card_path)])
    assert rendered.exit_code == 0, rendered.output
    via_render = runner.invoke(main, ["fmt", "-"], input=rendered.output)
    direct = runner.invoke(main, ["fmt", "-"], input=card_path.read_text("utf-8"))
    assert via_render.exit_code == 0 and direct.exit_code == 0, via_render.output + direct.output
    assert via_render.output == direct.output


@pytest.mark.parametrize("command", [["check"], ["render"], ["render", "--format", "md"], ["fmt", "--check"]])
def test_commands_take_rendered_pseudocode(card_path, tmp_path, command):
    runner = CliRunner()
    rendered = runner.invoke(main, ["render", str(card_path)]).output
    copy = tmp_path / card_path.name
    copy.write_text(rendered, "utf-8")
    result = runner.invoke(main, [*command, str(copy)])
    if command == ["fmt", "--check"]:  # rendered text is valid, but not the canonical card form
        assert result.exit_code == 1 and f"would reformat {copy}" in result.output
        assert parse(runner.invoke(main, ["fmt", "-"], input=rendered).output) == parse_file(card_path)
    else:
        assert result.exit_code == 0, result.output
