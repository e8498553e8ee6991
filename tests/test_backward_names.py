"""The derived backward names what it can after the card (issue 13, point 7): the gradient of a value
the card names is `d_<name>` in `cardgen render --backward` and in the generated module, not `g10023`."""

from __future__ import annotations

import re

from cardgen.docs.derived import backward_text

from .conftest import CARDS, ROOT


def steps(text: str) -> list[tuple[str, str]]:
    """(target, right-hand side) of each numbered step of a rendered backward."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*\d+\s+(\S+) ← (.*?)\s*(▷.*)?$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def test_layer_norm_backward_names_the_cards_values(library):
    text = backward_text(library.checked("LayerNorm"), library)
    targets = [t for t, _ in steps(text)]
    assert {"d_beta", "d_gamma"} <= set(targets), text
    assert re.fullmatch(r"d_e(_\d+)?", targets[-1]), text  # the input's gradient is the last step


def test_intermediate_values_are_named_too(tmp_path):
    """Where the chain rule runs through the card's own steps, their gradients carry their names."""
    from cardgen.lang.check import Library
    from cardgen.lang.load import load
    path = tmp_path / "card.card"
    path.write_text(CENTRE_USED_TWICE, "utf-8")
    lib = Library(folders=[str(tmp_path)])
    targets = [t for t, _ in steps(backward_text(load(str(path), lib)[1], lib))]
    assert targets.count("d_v") == 1 and targets.count("d_m") == 1, targets
    assert re.fullmatch(r"d_e(_\d+)?", targets[-1]), targets


def test_every_parameter_gradient_of_a_module_has_its_name():
    """In every generated module, `grads = Params(W=d_W, …)`: each parameter's gradient is called
    after it (a parameter the output does not depend on gets zeros)."""
    checked = 0
    for card in CARDS:
        path = ROOT / "generated" / f"{card.stem}.py"
        if not path.exists():
            continue
        line = next((ln for ln in path.read_text("utf-8").splitlines() if ln.strip().startswith("grads = Params(")),
                    None)
        if line is None or line.strip() == "grads = Params()":
            continue
        for field, value in re.findall(r"(\w+)=([^,)]+(?:\([^)]*\))?)", line.split("Params(", 1)[1]):
            if value.startswith("np.zeros_like"):
                continue
            assert re.fullmatch(rf"d_{re.escape(field)}(_\d+)?", value), f"{path.name}: {field}={value}"
            checked += 1
    assert checked > 50


# ---------------------------------------------------------------- composites in closed form
UNBIASED = """algorithm ê ← unbiased_norm(e | γ)
  "Normalizes by the unbiased variance: not layer norm, so no closed-form rule may apply."
  convention rows, 0-based
  input  e ∈ ℝ^D
  output ê ∈ ℝ^D
  param  γ ∈ ℝ^D
  1 m ← Σ_{i=0}^{D − 1} e[i] / D
  2 v ← Σ_{i=0}^{D − 1} (e[i] − m)² / (D − 1)
  3 return ê = (e − m) / √v ⊙ γ
"""

CENTRE_USED_TWICE = """algorithm y ← norm_plus_mean(e)
  "Layer norm, plus the mean again: m has a second use, so its gradient must flow."
  convention rows, 0-based
  input  e ∈ ℝ^D
  output y ∈ ℝ^D
  1 m ← Σ_{i=0}^{D − 1} e[i] / D
  2 v ← Σ_{i=0}^{D − 1} (e[i] − m)² / D
  3 return y = (e − m) / √(v + 0.00001) + m
"""


def test_layer_norm_backward_is_the_textbook_one(library):
    """Issue 13 point 7: LayerNorm's derived backward in at most 8 steps; d_e in closed form."""
    for name in ("LayerNorm", "layer_norm"):
        rendered = steps(backward_text(library.checked(name), library))
        assert len(rendered) <= 8, rendered
        text = " ".join(f"{t} {rhs}" for t, rhs in rendered)
        assert not re.search(r"\b(g\d+|_\d+)\b", text), rendered  # no numbered temporaries
        (d_e,) = [rhs for t, rhs in rendered if re.fullmatch(r"d_e(_\d+)?", t)]
        assert "mean(" in d_e


def test_look_alikes_of_layer_norm_keep_the_chain_rule(tmp_path):
    from cardgen.compile.gradcheck import gradcheck
    from cardgen.lang.check import Library
    from cardgen.lang.load import load
    for text in (UNBIASED, CENTRE_USED_TWICE):
        path = tmp_path / "card.card"
        path.write_text(text, "utf-8")
        lib = Library(folders=[str(tmp_path)])
        _, checked = load(str(path), lib)
        assert "mean(" not in backward_text(checked, lib)
        assert gradcheck(checked, lib).worst <= 1e-6


def test_memory_lists_saved_values_by_name(library):
    from cardgen.docs.derived import memory_rows
    rows, _, _ = memory_rows(library.checked("LayerNorm"), library, {"D": 8}, 2, 4)
    assert [name for name, _, _ in rows] == ["x_hat", "sigma"]


NUMBERED = re.compile(r"\b(g\d+|_\d+)\b")


def test_gelu_backward_is_one_closed_form_step(library):
    """GPT-2's tanh GELU is found in the IR: one step reading x and the tanh, not a dozen."""
    rendered = steps(backward_text(library.checked("GELU_tanh"), library))
    assert [t for t, _ in rendered] == ["d_x"], rendered
    assert "tanh_x" in rendered[0][1] and "√(2/π)" in rendered[0][1], rendered
    mlp = steps(backward_text(library.checked("MLP"), library))
    assert not NUMBERED.search(" ".join(f"{t} {rhs}" for t, rhs in mlp)), mlp
    assert ("d_u", "d_y ⊙ 0.5 ((1 + tanh_u) + √(2/π) u (1 + 3·0.044715 u²) (1 − tanh_u²))") in mlp, mlp


def test_attention_backward_reads_like_the_textbook(library):
    """Softmax in closed form, no pass zeroing the masked scores (their softmax is already 0),
    the scale divides the two small products, and every name comes from the card."""
    for name in ("CausalSelfAttention", "Attention"):
        rendered = steps(backward_text(library.checked(name), library))
        text = " ".join(f"{t} {rhs}" for t, rhs in rendered)
        assert not NUMBERED.search(text), rendered
        assert "?" not in text, rendered  # no select for the mask
        (d_s,) = [rhs for t, rhs in rendered if t == "d_S"]
        assert "softmax_S ⊙ (d_softmax_S − Σ(d_softmax_S ⊙ softmax_S))" in d_s, rendered
    rendered = dict(steps(backward_text(library.checked("CausalSelfAttention"), library)))
    assert rendered["d_Q"] == "(d_S · K) / √(D / H)" and rendered["d_K"] == "((d_S^⊤) · Q) / √(D / H)", rendered


def test_memory_of_gpt2_lists_readable_names(library):
    from cardgen.docs.derived import memory_rows
    sizes = {"V": 256, "T": 128, "D": 128, "H": 4, "N": 4, "D_f": 512, "ctx": 128}
    rows, total, _ = memory_rows(library.checked("GPT2"), library, sizes, 8, 4)
    names = [name for name, _, _ in rows]
    assert not [n for n in names if NUMBERED.fullmatch(n)], names
    assert {"u", "tanh_u", "softmax_S", "x_hat", "sigma"} <= set(names), names
    assert total < 52 * 2**20  # the chain rule through GELU saved five (B, T, D_f) arrays a layer: 65 MiB


def gelu_card(body: str, extra: str = "") -> str:
    return f"""algorithm y ← act(x)
  "An activation for the closed-form GELU rule to recognise, or not."
  convention rows, 0-based
  input  x ∈ ℝ^D
  output y ∈ ℝ^D
{extra}  1 return y = {body}
"""


def test_gelu_look_alikes_differentiate_correctly(tmp_path):
    """Other constants still match (the rule takes any a, c, k); a square is not a cube; a tanh read
    elsewhere keeps the chain rule. Every variant passes the float64 gradient check."""
    from cardgen.compile.gradcheck import gradcheck
    from cardgen.lang.check import Library
    from cardgen.lang.load import load
    cards = {
        "square, not cube": (gelu_card("0.5 x ⊙ (1 + tanh(0.79788 (x + 0.044715 x^{2})))"), False),
        "other constants": (gelu_card("0.25 x ⊙ (1 + tanh(1.5 (x + 0.1 x^{3})))"), True),
        "tanh used twice": (gelu_card("0.5 x ⊙ (1 + t) + t", "  1 t ← tanh(0.8 (x + 0.04 x^{3}))\n")
                            .replace("  1 return", "  2 return"), False),
    }
    for label, (text, fused) in cards.items():
        path = tmp_path / "act.card"
        path.write_text(text, "utf-8")
        lib = Library(folders=[str(tmp_path)])
        _, checked = load(str(path), lib)
        text = backward_text(checked, lib)
        assert ("(1 + 3·" in text) == fused, (label, text)  # the closed form's (1 + 3k x²)
        assert gradcheck(checked, lib).worst <= 1e-6, label
