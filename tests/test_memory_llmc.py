"""What the generated GPT-2 keeps for its backward pass is no larger than what llm.c keeps
(issue 13, point 4): `cardgen render --memory cards/GPT2.card` at llm.c's sizes against llm.c's
activation layout (``ActivationTensors`` in karpathy/llm.c ``train_gpt2.c``; the tensors and their
shapes are listed in ../shared/reference/seeds/), and the savings it takes: layer norm's output and
GELU's arithmetic recomputed from what is kept, views of parameters (W_e^⊤) not counted as memory.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cardgen.cli import main

# llm.c's train_gpt2.c: GPT-2 small (124M) with the vocabulary padded to 50304, batch 4 × 64 tokens.
LLMC = {"B": 4, "T": 64, "C": 768, "NH": 12, "L": 12, "V": 50257, "Vp": 50304}


def llmc_activations(B, T, C, NH, L, Vp, **_):
    """llm.c's ActivationTensors, name -> number of floats (train_gpt2.c, fill_in_activation_sizes)."""
    return {
        "encoded": B * T * C, "ln1": L * B * T * C, "ln1_mean": L * B * T, "ln1_rstd": L * B * T,
        "qkv": L * B * T * 3 * C, "atty": L * B * T * C, "preatt": L * B * NH * T * T, "att": L * B * NH * T * T,
        "attproj": L * B * T * C, "residual2": L * B * T * C, "ln2": L * B * T * C, "ln2_mean": L * B * T,
        "ln2_rstd": L * B * T, "fch": L * B * T * 4 * C, "fch_gelu": L * B * T * 4 * C, "fcproj": L * B * T * C,
        "residual3": L * B * T * C, "lnf": B * T * C, "lnf_mean": B * T, "lnf_rstd": B * T,
        "logits": B * T * Vp, "probs": B * T * Vp, "losses": B * T,
    }


LOSS_HEAD = ("logits", "probs", "losses")  # the GPT2 card stops at the logits: no loss, no softmax


def render_memory(*sets: str) -> str:
    result = CliRunner().invoke(main, ["render", "--memory", "cards/GPT2.card", "--config", "gpt2",
                                       *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return result.output


def total_bytes(text: str) -> int:
    return int(re.search(r"total: ([\d,]+) bytes", text).group(1).replace(",", ""))


@pytest.mark.parametrize("T", [LLMC["T"], 1024])  # train_gpt2.c's 64 tokens, and GPT-2's whole context
def test_gpt2_saves_no_more_than_llmc(T):
    text = render_memory(f"B={LLMC['B']}", f"T={T}")
    ours = total_bytes(text)
    floats = llmc_activations(**{**LLMC, "T": T})
    llmc = 4 * sum(floats.values())
    llmc_body = 4 * sum(n for name, n in floats.items() if name not in LOSS_HEAD)
    # T = 64: 142 MB against llm.c's 293 MB, 190 MB without its logits and probabilities;
    # T = 1024: 4,543 MB against 9,224 MB and 7,576 MB (one (B, H, T, T) array a layer, llm.c two)
    assert ours <= llmc_body < llmc, \
        f"GPT2 saves {ours:,} B; llm.c {llmc:,} B ({llmc_body:,} B before the loss)\n{text}"


def test_kept_values_are_the_ones_llmc_keeps():
    text = render_memory("B=4", "T=64")
    rows = {line.split()[0]: line for line in text.splitlines()[1:-1]}
    # W_e^⊤ is a view of a parameter: no memory of the forward's
    assert not any("(D, V)" in line for line in rows.values()), text
    # per layer, GELU keeps its input and its tanh (llm.c: fch and fch_gelu), two (B, T, D_f) arrays
    assert sum("(B, T, D_f) × N" in line for line in rows.values()) == 2, text
    # a layer norm keeps x̂ and 1/σ's √, not its output x̂ ⊙ γ + β as well
    assert "e_hat" not in rows and "x_hat" in rows, text
