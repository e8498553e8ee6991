"""The paper's two last wrappers, compiled, against references written from the paper's definitions
(Phuong & Hutter, arXiv:2207.09238; the text is in shared/reference/phuong_hutter_algorithms.md):

- Algorithm 12, ETraining: for each sequence, each token becomes mask_token with probability p_mask
  (one uniform draw per position, in order), T̃ is the set of masked positions, the loss is
  −Σ_{t∈T̃} log P(θ)[x_n[t], t] with P = ETransformer(x̃_n | θ), and θ ← θ − η · ∇loss(θ) by SGD;
- Algorithm 15, EDInference: x̂ ← [bos_token], then until y = eos_token: P ← EDTransformer(z, x̂ | θ̂),
  p ← P[:, length(x̂)], y ∼ q ∝ p^{1/τ}, x̂ ← [x̂, y].

The references run the PyTorch transformers of test_oracle_paper.py (written from Alg. 8 and 9) in
float64, with torch's autograd for ∇loss, and draw their random numbers from a NumPy generator
with the same seed as the generated code: the masks and the samples are the paper's, position by
position, so the trained parameters and the generated sequences must agree, not just their
statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import load_generated
from .test_oracle_paper import E_SHAPES, ED_SHAPES, draw_params, ref_edtransformer, ref_etransformer, rel

E_SIZES = dict(N_V=13, ell_max=11, L=2, H=4, d_e=20, d_mlp=23, d_f=17, d_attn=6, d_mid=9)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------ Algorithm 12 from the paper

def reference_etraining(theta: dict, data: list, n_epochs: int, eta: float, p_mask: float, mask_token: int,
                        rng: np.random.Generator) -> tuple[dict, list[float], list[int]]:
    """Alg. 12 line by line: the trained θ, each step's loss and each step's |T̃|."""
    theta = {k: torch.tensor(v, dtype=torch.float64) for k, v in theta.items()}
    losses, masked = [], []
    for _i in range(n_epochs):
        for x in data:
            ell = len(x)                                                          # 3
            x_tilde = [mask_token if rng.random() < p_mask else int(x[t]) for t in range(ell)]  # 4–6
            T_tilde = [t for t in range(ell) if x_tilde[t] == mask_token]         # 7
            params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
            P = ref_etransformer(params, torch.tensor([x_tilde]))[0]              # 8: (N_V, ℓ)
            loss = -sum((torch.log(P[x[t] - 1, t]) for t in T_tilde), torch.zeros((), dtype=torch.float64))  # 9
            if loss.requires_grad:
                loss.backward()
            theta = {k: v - eta * (p.grad if p.grad is not None else torch.zeros_like(v))        # 10
                     for (k, v), p in zip(theta.items(), params.values(), strict=True)}
            losses.append(float(loss.detach()))
            masked.append(len(T_tilde))
    return {k: v.numpy() for k, v in theta.items()}, losses, masked


def e_setup(p_mask=0.3, n_epochs=2, eta=0.05):
    mod = load_generated("ETraining")
    cfg = mod.Config(**E_SIZES, N_data=5, N_epochs=n_epochs, eta=eta, p_mask=p_mask)
    rng = np.random.default_rng(3)
    theta = draw_params(E_SHAPES, rng)
    data = [rng.integers(1, E_SIZES["N_V"] + 1, size=n) for n in (7, 11, 4, 9, 6)]  # ragged, ℓ ≤ ℓ_max
    data[0][:3] = [1, E_SIZES["N_V"], cfg.mask_token]  # both ends of [N_V], and a token that is mask_token
    return mod, cfg, theta, data


def test_etraining_trains_as_algorithm_12():
    mod, cfg, theta, data = e_setup()
    assert cfg.mask_token == cfg.N_V - 2  # the paper's mask_token := N_V − 2
    params = mod.Params(**{k: v.copy() for k, v in theta.items()})
    losses = mod.train(cfg, params, data, rng=np.random.default_rng(7))
    ref, ref_losses, masked = reference_etraining(theta, data, cfg.N_epochs, cfg.eta, cfg.p_mask, cfg.mask_token,
                                                  np.random.default_rng(7))
    assert len(losses) == cfg.N_epochs * len(data)
    assert max(masked) >= 3 and len(set(masked)) > 2  # the draws matter: each step masks its own positions
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-9, atol=1e-12)
    errors = {k: rel(getattr(params, k), ref[k]) for k in theta}
    assert max(errors.values()) <= 1e-9, errors
    assert max(rel(getattr(params, k), theta[k]) for k in theta) > 1e-3  # it did train


def test_etraining_is_reproducible_from_a_seed_and_draws_anew_each_step():
    mod, cfg, theta, data = e_setup(p_mask=0.5, n_epochs=1)
    runs = []
    for seed in (11, 11, 12):
        params = mod.Params(**{k: v.copy() for k, v in theta.items()})
        runs.append((mod.train(cfg, params, data, rng=np.random.default_rng(seed)), params.W_e.copy()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]
    # forward without a generator is a function of its arguments (gradient checks need that);
    # with one, each call draws new masks
    x = np.stack([data[1], data[1][::-1]])
    params = mod.Params(**theta)
    assert np.array_equal(mod.forward(cfg, params, x)[0], mod.forward(cfg, params, x)[0])
    rng = np.random.default_rng(0)
    draws = {tuple(mod.forward(cfg, params, x, rng)[0]) for _ in range(6)}
    assert len(draws) > 1


def test_etraining_masks_with_probability_p_mask():
    """A batch draws one number per position, example after example (the order of the paper's
    loops over n and t): a sequence's loss is 0 exactly when none of its draws fell below p_mask,
    and about p_mask of all positions are masked."""
    mod, cfg, theta, _ = e_setup(p_mask=0.25)
    x = np.random.default_rng(5).integers(1, cfg.mask_token, size=(400, 6))  # no mask_token in the data
    loss, _ = mod.forward(cfg, mod.Params(**theta), x, np.random.default_rng(9))
    masked = np.random.default_rng(9).random(x.shape) < cfg.p_mask
    assert abs(masked.mean() - cfg.p_mask) < 0.03
    assert np.array_equal(loss == 0, ~masked.any(axis=-1))
    assert np.all(loss[masked.any(axis=-1)] > 0)


# ------------------------------------------------------------------ Algorithm 15 from the paper

ELL_MAX_ED = 64  # longer than any sequence below: the paper's loop has no window
ED_SIZES = dict(N_V=13, ell_max=ELL_MAX_ED, L_enc=2, L_dec=3, H=4, d_e=20, d_mlp=23)


def reference_edinference(theta: dict, z, tau: float, bos: int, eos: int, rng: np.random.Generator,
                          max_tokens: int | None = None) -> list[int]:
    """Alg. 15 line by line (τ = 0: the most likely token, the limit the paper names)."""
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in theta.items()}
    x_hat = [bos]                                                                  # 1
    y = 0                                                                          # 2
    while y != eos and (max_tokens is None or len(x_hat) <= max_tokens):          # 3
        P = ref_edtransformer(params, torch.tensor([list(z)]), torch.tensor([x_hat]))[0]  # 4
        p = P[:, len(x_hat) - 1].numpy()                                           # 5: column length(x̂), 1-based
        if tau == 0:
            y = int(np.argmax(p)) + 1
        else:
            q = p ** (1 / tau)
            y = int(rng.choice(len(q), p=q / q.sum())) + 1                         # 6
        x_hat = x_hat + [y]                                                        # 7
    return x_hat                                                                   # 9


def ed_setup():
    mod = load_generated("EDInference")
    cfg = mod.Config(**ED_SIZES, tau=1.0)
    shapes = {**ED_SHAPES, "W_p": (ED_SIZES["d_e"], ELL_MAX_ED)}
    theta = draw_params(shapes, np.random.default_rng(4))
    return mod, cfg, theta


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_edinference_samples_as_algorithm_15(tau):
    mod, cfg, theta = ed_setup()
    assert (cfg.bos_token, cfg.eos_token) == (cfg.N_V - 1, cfg.N_V)  # the paper's special tokens
    params = mod.Params(**theta)
    z = np.array([3, 1, 4, 1, 5, 9, 2, 6, 13])
    lengths = []
    for seed in range(4):
        got = mod.generate(cfg, params, z, temperature=tau, rng=np.random.default_rng(seed))
        want = reference_edinference(theta, z, tau, cfg.bos_token, cfg.eos_token, np.random.default_rng(seed))
        assert got.tolist() == want
        assert got[0] == cfg.bos_token and got[-1] == cfg.eos_token and cfg.eos_token not in got[:-1]
        lengths.append(len(got))
    assert max(lengths) > 3  # not every run ends at once


def test_edinference_greedy_batches_and_bounds():
    """τ = 0 is the most likely token; a batch runs each sequence to its own end and pads the
    sequences that ended with eos_token; max_tokens bounds a loop that might not end."""
    mod, cfg, theta = ed_setup()
    params = mod.Params(**theta)
    zs = np.array([[3, 1, 4, 1, 5], [2, 7, 1, 8, 2]])
    batch = mod.generate(cfg, params, zs, temperature=0, max_tokens=12)
    for z, row in zip(zs, batch, strict=True):
        want = reference_edinference(theta, z, 0, cfg.bos_token, cfg.eos_token, None, max_tokens=12)
        assert row[: len(want)].tolist() == want
        assert np.all(row[len(want):] == cfg.eos_token)
    assert batch.shape[-1] <= 13  # bos and at most max_tokens tokens
    # the window: a text longer than the model's positions still runs, on its last ℓ_max tokens;
    # until it outgrows them it is Algorithm 15's
    small = mod.Config(**{**ED_SIZES, "ell_max": 4}, tau=1.0)
    short = {**theta, "W_p": theta["W_p"][:, :4]}
    out = mod.generate(small, mod.Params(**short), zs[0][:4], temperature=0, max_tokens=9)
    assert 2 <= len(out) <= 10
    want = reference_edinference(short, zs[0][:4], 0, small.bos_token, small.eos_token, None, max_tokens=3)
    assert out[: len(want)].tolist() == want


# ------------------------------------------------------------------ what cardgen refuses, at its place

def test_a_wrapper_loop_cardgen_does_not_compile_is_refused_by_check_and_build(tmp_path):
    """No card is skipped any more: an inference loop of another form (here x̂ ← [y, x̂], prepending)
    is an error at its line, from `check` and from `build` alike."""
    from click.testing import CliRunner

    from cardgen.cli import main

    from .conftest import ROOT
    text = (ROOT / "cards" / "EDInference.card").read_text("utf-8").replace("x̂ ← [x̂, y]", "x̂ ← [y, x̂]")
    (tmp_path / "EDInference.card").write_text(text, "utf-8")
    for f in (ROOT / "cards").glob("*.card"):
        if f.name != "EDInference.card":
            (tmp_path / f.name).write_text(f.read_text("utf-8"), "utf-8")
    card = str(tmp_path / "EDInference.card")
    for args in (["check", card], ["build", card, "-o", str(tmp_path / "out")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 1, r.output
        assert "EDInference.card:13:" in r.output and "while loop as x̂ ← [bos]" in r.output, r.output
        assert "skipped" not in r.output
    assert not (tmp_path / "out").exists()


def test_an_inference_for_loop_with_a_state_set_before_it_is_refused(tmp_path):
    """DInference's generate() starts from the prompt; a step before its loop that sets what the loop
    changes (x ← x + 0) would be lost, so it is refused at that step."""
    from cardgen.api import load
    from cardgen.lang.errors import CardError

    from .conftest import ROOT
    first = "  1 ℓ ← length(x)                    ▷ ℓ ∈ ℕ\n"
    text = (ROOT / "cards" / "DInference.card").read_text("utf-8").replace(first, first + "  1 x ← x + 0\n")
    assert "x ← x + 0" in text
    (tmp_path / "DInference.card").write_text(text, "utf-8")
    with pytest.raises(CardError, match=r"DInference.card:11:.*sets x before the loop"):
        load(str(tmp_path / "DInference.card"), path=[str(ROOT / "cards")]).compile()
