"""The paper's notation where the cards used to approximate it: Δ(N_V) for a
distribution, T̃ ⊆ [ℓ] for a set of positions, d_attn and d_mid free with the
default d_e/H (eq. 4)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cardgen import CardError, parse, parse_file
from cardgen.cli import main
from cardgen.lang.check import Library, check
from cardgen.lang.render import card_text, pseudocode

from .conftest import ROOT, load_generated


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_unembedding_outputs_a_distribution(library):
    card = parse_file(ROOT / "cards" / "unembedding.card")
    out = card.decl_of("p")
    assert out.set.kind == "simplex"
    checked = check(card, library)
    assert [str(d) for d in checked.env["p"].type.shape] == [str(checked.env["N_V"].type.value)]
    for text in (card_text(card), pseudocode(card)):
        assert "p ∈ Δ(N_V)" in text
        assert parse(text) == card
    assert "Δ(N_V)" in card_text(parse(card_text(card).replace("Δ(N_V)", "Delta(N_V)")))
    assert r"p \in \Delta(N_{V})" in run("render", "cards/unembedding.card", "--format", "md").output


def test_a_distribution_of_the_wrong_size_is_refused():
    src = ("algorithm p ← u(e | W)\n  input  e ∈ ℝ^{d}\n  output p ∈ Δ(n)\n  hyper  n, d ∈ ℕ\n"
           "  param  W ∈ ℝ^{d×d}\n  1 return p = softmax(W e)\n")
    with pytest.raises(CardError, match="declared"):
        check(parse(src), Library())


def test_a_set_of_positions_is_claimed_as_a_subset(library):
    card = parse_file(ROOT / "cards" / "ETraining.card")
    checked = check(card, library)
    claims = [c for c in checked.claims.values() if c.name == "T̃"]
    assert claims and claims[0].subset
    assert "▷ T̃ ⊆ [ℓ]" in card_text(card, checked.claims)
    assert r"\tilde{T} \subseteq [\ell]" in run("render", "cards/ETraining.card", "--format", "md").output
    assert parse(pseudocode(card, checked.claims)) == card


@pytest.mark.parametrize("claim, words, hint", [
    ("T̃ ∈ {0,1}^ℓ", "claims T̃ ∈ {0,1}^ℓ but this step computes a set of positions ⊆ [ℓ]", "claim it as T̃ ⊆ [ℓ]"),
    ("T̃ ⊆ [ℓ + 1]", "claims T̃ ⊆ [ℓ+1] but this step computes a set of positions ⊆ [ℓ]", None),
])
def test_a_wrong_claim_about_a_set_is_refused(claim, words, hint, tmp_path, library):
    text = (ROOT / "cards" / "ETraining.card").read_text("utf-8").replace("▷ T̃ ⊆ [ℓ]", f"▷ {claim}")
    with pytest.raises(CardError) as info:
        check(parse(text, "ETraining.card"), library)
    assert words in info.value.message and info.value.line == 19
    if hint:
        assert hint in info.value.hint


def test_subseteq_is_the_ascii_spelling(library):
    text = (ROOT / "cards" / "ETraining.card").read_text("utf-8").replace("▷ T̃ ⊆ [ℓ]", "# T̃ subseteq [ℓ]")
    check(parse(text), library)


@pytest.mark.parametrize("name", ["DTransformer", "ETransformer", "EDTransformer"])
def test_attention_sizes_are_free_with_the_default_d_e_over_h(name, library):
    card = parse_file(ROOT / "cards" / f"{name}.card")
    d = card.decl_of("d_attn")
    assert d.role == "hyper" and d.names == ("d_attn", "d_mid") and card_text(card).count("= d_e / H ") == 1
    mod = load_generated(name)
    sizes = dict(N_V=5, ell_max=8, H=4, d_e=12, d_mlp=6, L=1, L_enc=1, L_dec=1, d_f=7)
    fields = mod.Config.__dataclass_fields__
    cfg = mod.Config(**{k: v for k, v in sizes.items() if k in fields})
    assert (cfg.d_attn, cfg.d_mid) == (3, 3)
    cfg = mod.Config(**{k: v for k, v in sizes.items() if k in fields}, d_attn=5, d_mid=7)
    assert (cfg.d_attn, cfg.d_mid) == (5, 7)


def test_parameter_count_follows_free_attention_sizes():
    base = ["render", "cards/DTransformer.card", "--set", "N_V=10", "--set", "ℓ_max=8", "--set", "L=1",
            "--set", "H=2", "--set", "d_e=8", "--set", "d_mlp=16"]
    default = run(*base).output
    wider = run(*base, "--set", "d_attn=6").output
    assert "d_attn=4" in default and "d_attn=6" in wider
    count = lambda out: int(out.split("Parameter count: ")[1].split(" ")[0].replace(",", ""))  # noqa: E731
    assert count(wider) - count(default) == 2 * 2 * (8 + 1) * (6 - 4)  # W_q, W_k and b_q, b_k per head


# ------------------------------------------------------- x ← [x, y], per pass
def card_with(name: str, old: str, new: str) -> str:
    text = (ROOT / "cards" / f"{name}.card").read_text("utf-8")
    assert old in text
    return text.replace(old, new)


def test_a_growing_sequence_is_claimed_per_pass(library):
    card = parse_file(ROOT / "cards" / "DInference.card")
    text = card_text(card, check(card, library).claims)
    assert "▷ P ∈ ℝ^{N_V×i+ℓ−1}" in text and "▷ x ∈ {1..N_V}^{i+ℓ}" in text
    assert "▷ y ∈ {1..N_V}^{ℓ_gen}" in text  # after the loop: ℓ + ℓ_gen tokens, the last ℓ_gen returned


@pytest.mark.parametrize("old, new, words", [
    ("▷ P ∈ ℝ^{N_V×i+ℓ−1}", "▷ P ∈ ℝ^{N_V×ℓ}", "claims P ∈ ℝ^{N_V×ℓ} but this step computes ℝ^{N_V×i+ℓ−1}"),
    ("▷ x ∈ {1..N_V}^{i+ℓ}", "▷ x ∈ {1..N_V}^{ℓ+1}", "claims x ∈ {1..N_V}^{ℓ+1} but this step computes"),
])
def test_a_claim_true_only_on_the_first_pass_is_refused(old, new, words, library):
    with pytest.raises(CardError) as info:
        check(parse(card_with("DInference", old, new)), library)
    assert words in info.value.message


def test_a_while_loop_sequence_has_a_run_time_length(library):
    text = card_with("EDInference", "  4   P ← EDTransformer(z, x̂ | θ̂)\n",
                     "  4   P ← EDTransformer(z, x̂ | θ̂)  ▷ P ∈ ℝ^{N_V×1}\n")
    with pytest.raises(CardError) as info:
        check(parse(text), library)
    assert "claims P ∈ ℝ^{N_V×1} but this step computes ℝ^{N_V×…}" in info.value.message
    assert "known only at run time" in info.value.hint


def test_a_wrong_claim_in_a_loop_that_does_not_grow_is_still_refused(library):
    text = card_with("DTransformer", "▷ X̃ ∈ ℝ^{d_e×ℓ}", "▷ X̃ ∈ ℝ^{ℓ×d_e}")
    with pytest.raises(CardError) as info:
        check(parse(text), library)
    assert "claims X̃ ∈ ℝ^{ℓ×d_e}" in info.value.message and info.value.line == 23
