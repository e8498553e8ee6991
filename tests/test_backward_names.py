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
    assert {"d_beta", "d_gamma", "d_v", "d_m"} <= set(targets), text
    # the input's gradient is the last step, by its name (d_e_2: e's second share, summed)
    assert re.fullmatch(r"d_e(_\d+)?", targets[-1]), text
    assert targets.count("d_v") == 1 and targets.count("d_m") == 1


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
