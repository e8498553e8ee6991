"""Training and sampling with compiled cards: the AdamW step against
torch.optim.AdamW, learning on real text, exact resume, accumulation, clipping,
sampling, and the train/sample commands."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.train import trainer as trainer_module
from cardgen.train.trainer import AdamWSettings, Trainer, batches, split, stdlib_text

from .conftest import ROOT, load_generated, watch_forward
from .test_oracle_gpt2 import hf_model, rel, to_params

GPT2, CE, ADAMW, BIGRAM = (load_generated(n) for n in ("GPT2", "cross_entropy", "AdamW", "Bigram"))
SMALL = ["--set", "D=32", "--set", "H=2", "--set", "D_f=128", "--set", "N=2", "--set", "ctx=32"]


@pytest.fixture(scope="module")
def text():
    return split(stdlib_text(600_000))


def test_ten_adamw_steps_match_pytorch():
    """Same initial weights, same batches: every loss and the final weights agree (float64)."""
    from .test_oracle_gpt2 import CTX, D, H, N, V
    model = hf_model(torch.float64)
    cfg = GPT2.Config(V=V, D=D, H=H, D_f=4 * D, N=N, ctx=CTX)
    settings = AdamWSettings(lr=3e-3, beta_1=0.9, beta_2=0.999, eps=1e-8, weight_decay=0.1)
    trainer = Trainer(GPT2, CE, ADAMW, cfg, settings)
    state = trainer.init(np.random.default_rng(0), np.float64)
    state.params = to_params(GPT2, model, np.float64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    rng = np.random.default_rng(7)
    for _ in range(10):
        tokens = rng.integers(0, V, size=(3, 9))
        ours = trainer.step(state, [tokens])
        opt.zero_grad(set_to_none=True)
        t = torch.from_numpy(tokens)
        logits = model(t[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), t[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        assert abs(ours - loss.item()) <= 1e-9 * abs(loss.item())
    final = to_params(GPT2, model, np.float64)
    errors = {name: rel(getattr(state.params, name), getattr(final, name)) for name in vars(final)}
    assert max(errors.values()) <= 1e-9, errors


def test_adamw_runs_block_by_block_over_all_parameters_with_the_cards_numbers(monkeypatch):
    """The update runs the AdamW card block by block over flat vectors; each parameter comes out bit
    for bit as the card computes it on that parameter alone, and every step updates the same flat θ,
    m and v in place (the fields are views of them), with no copy of θ, m or v."""
    cfg = GPT2.Config(V=32, D=16, H=2, D_f=64, N=2, ctx=8)
    monkeypatch.setattr(trainer_module, "ADAMW_BLOCK", 1000)  # blocks that straddle parameters
    settings = AdamWSettings(lr=1e-2, weight_decay=0.1)
    trainer = Trainer(GPT2, CE, ADAMW, cfg, settings)
    state = trainer.init(np.random.default_rng(0), np.float32)
    tokens = np.random.default_rng(1).integers(0, 32, size=(2, 9))
    calls = []
    forward = ADAMW.forward
    ADAMW.forward = lambda *a, **k: calls.append(a[2]) or forward(*a, **k)
    flats = []
    try:
        for step in (1, 2):
            before = {n: (np.array(getattr(state.params, n)), np.array(getattr(state.m, n)),
                          np.array(getattr(state.v, n))) for n in vars(state.params)}
            _, grads = trainer.loss_and_grads(state.params, tokens)
            grads = {n: np.array(getattr(grads, n)) for n in vars(grads)}
            trainer.step(state, [tokens])
            flats.append(state.workspace["AdamW:flat"][0])
            adamw_cfg = ADAMW.Config(eta=1e-2, beta_1=0.9, beta_2=0.999, eps=1e-8, lam=0.1)
            for name, (theta, m, v) in before.items():
                want = forward(adamw_cfg, ADAMW.Params(), theta.ravel(), grads[name].ravel(), m.ravel(), v.ravel(),
                               step)
                got = (getattr(state.params, name), getattr(state.m, name), getattr(state.v, name))
                for w, g in zip(want[:3], got, strict=True):
                    assert np.array_equal(w.reshape(g.shape), g), name
    finally:
        ADAMW.forward = forward
    size = sum(np.size(p) for p in vars(state.params).values())
    full, rest = divmod(size, 1000)
    assert full >= 3 and [c.size for c in calls] == 2 * ([1000] * full + [rest] * (rest > 0))
    assert flats[1] is flats[0]  # step 2 updated step 1's flat θ in place
    assert all(np.shares_memory(c, flats[0]) for c in calls[len(calls) // 2:])  # blocks of it, no copy
    assert all(np.shares_memory(p, flats[1]) for p in vars(state.params).values())


def test_bigram_and_gpt2_learn_real_text(text):
    train, val = text
    rng = np.random.default_rng(0)
    uniform = np.log(256)  # 5.55 nats: a model that learned nothing
    for mod, cfg, lr, steps, bound in [(BIGRAM, BIGRAM.Config(V=256), 3e-2, 150, 2.9),
                                       (GPT2, GPT2.Config(V=256, D=32, H=2, D_f=128, N=2, ctx=32), 3e-3, 150, 3.0)]:
        trainer = Trainer(mod, CE, ADAMW, cfg, AdamWSettings(lr=lr, clip_norm=1.0))
        state = trainer.init(np.random.default_rng(0))
        before = trainer.evaluate(state.params, batches(val, 32, 32, np.random.default_rng(1)))
        for _ in range(steps):
            trainer.step(state, [batches(train, 16, 32, rng)])
        after = trainer.evaluate(state.params, batches(val, 32, 32, np.random.default_rng(1)))
        assert before > uniform - 0.1 and after < bound, (mod.__name__, before, after)


def test_accumulated_micro_batches_equal_one_big_batch(text):
    train, _ = text
    cfg = GPT2.Config(V=256, D=16, H=2, D_f=32, N=1, ctx=16)
    tokens = batches(train, 8, 16, np.random.default_rng(3))
    a, b = (Trainer(GPT2, CE, ADAMW, cfg, AdamWSettings(lr=1e-2)) for _ in range(2))
    sa, sb = a.init(np.random.default_rng(0), np.float64), b.init(np.random.default_rng(0), np.float64)
    a.step(sa, [tokens])
    b.step(sb, [tokens[:4], tokens[4:]])
    for name in vars(sa.params):
        np.testing.assert_allclose(getattr(sa.params, name), getattr(sb.params, name), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("settings", [AdamWSettings(lr=1e-2), AdamWSettings(lr=1e-2, clip_norm=0.5)],
                         ids=["plain", "clipped"])
def test_threads_shard_the_batch_and_sum_to_the_same_step(text, settings, monkeypatch):
    """With threads, each batch splits into shards (uneven ones too: 5 sequences on 2 and 3 threads),
    each runs on a thread of its own with one BLAS thread, and the steps are those of one thread up
    to rounding; the same thread count gives the same numbers bit for bit; accumulation and clipping
    see the sum."""
    train, _ = text
    cfg = GPT2.Config(V=256, D=16, H=2, D_f=32, N=1, ctx=16)
    tokens = batches(train, 5, 16, np.random.default_rng(3))
    seen = watch_forward(monkeypatch, GPT2)

    def run(threads, micro):
        trainer = Trainer(GPT2, CE, ADAMW, cfg, settings, threads=threads)
        state = trainer.init(np.random.default_rng(0), np.float64)
        losses = [trainer.step(state, micro) for _ in range(3)]
        return losses, state
    one, one_state = run(1, [tokens])
    assert {name for name, _, _ in seen} == {threading.current_thread().name}
    for threads, sizes in ((2, [2, 3]), (3, [2, 2, 1])):
        seen.clear()
        losses, state = run(threads, [tokens])
        assert sorted(n for _, n, _ in seen[:threads]) == sorted(sizes)
        assert all(name.startswith("cardgen-shard") and all(b == 1 for b in blas) for name, _, blas in seen)
        np.testing.assert_allclose(losses, one, rtol=1e-13)
        for name in vars(state.params):
            np.testing.assert_allclose(getattr(state.params, name), getattr(one_state.params, name),
                                       rtol=1e-11, atol=1e-13, err_msg=name)
        again, again_state = run(threads, [tokens])
        assert again == losses and all(np.array_equal(getattr(again_state.params, n), getattr(state.params, n))
                                       for n in vars(state.params))
    micro = [tokens[:3], tokens[3:]]  # two micro-batches, each split again
    (plain, plain_state), (split, split_state) = run(1, micro), run(2, micro)
    np.testing.assert_allclose(split, plain, rtol=1e-13)
    for name in vars(plain_state.params):
        np.testing.assert_allclose(getattr(split_state.params, name), getattr(plain_state.params, name),
                                   rtol=1e-11, atol=1e-13, err_msg=name)


def test_evaluation_shards_the_batch_like_a_step(text, monkeypatch):
    """evaluate() with threads runs the batch's shards on the shard threads (one BLAS thread each) and
    gives the one-thread loss up to rounding."""
    _, val = text
    cfg = GPT2.Config(V=256, D=16, H=2, D_f=32, N=1, ctx=16)
    tokens = batches(val, 5, 16, np.random.default_rng(4))
    params = Trainer(GPT2, CE, ADAMW, cfg).init(np.random.default_rng(0), np.float64).params
    seen = watch_forward(monkeypatch, GPT2)
    one = Trainer(GPT2, CE, ADAMW, cfg).evaluate(params, tokens)
    for threads, sizes in ((2, [2, 3]), (3, [1, 2, 2])):
        seen.clear()
        loss = Trainer(GPT2, CE, ADAMW, cfg, threads=threads).evaluate(params, tokens, {})
        assert sorted(n for _, n, _ in seen) == sizes
        assert all(name.startswith("cardgen-shard") and all(b == 1 for b in blas) for name, _, blas in seen)
        assert loss == pytest.approx(one, rel=1e-13)


def test_adamw_blocks_run_side_by_side_with_the_same_numbers(monkeypatch):
    """With threads, the update's blocks are shared out among the threads, each with its own work
    arrays; element-wise, so θ, m and v come out bit for bit as with one thread."""
    cfg = GPT2.Config(V=32, D=16, H=2, D_f=64, N=2, ctx=8)
    monkeypatch.setattr(trainer_module, "ADAMW_BLOCK", 4000)  # blocks of 1000 with threads
    calls = []
    forward = ADAMW.forward
    monkeypatch.setattr(ADAMW, "forward",
                        lambda *a, **k: calls.append((threading.current_thread().name, a[2].size)) or forward(*a, **k))
    states = []
    for threads in (1, 2):
        trainer = Trainer(GPT2, CE, ADAMW, cfg, AdamWSettings(lr=1e-2, weight_decay=0.1), threads=threads)
        state = trainer.init(np.random.default_rng(0), np.float32)
        grads = {n: np.random.default_rng(1).standard_normal(np.shape(getattr(state.params, n))).astype(np.float32)
                 for n in vars(state.params)}
        adamw_cfg = ADAMW.Config(eta=1e-2, beta_1=0.9, beta_2=0.999, eps=1e-8, lam=0.1)
        for step in (1, 2):
            state.step = step
            trainer.update(state, grads, adamw_cfg)
        states.append(state)
    one, two = states
    for holder in ("params", "m", "v"):
        for n in vars(one.params):
            assert np.array_equal(getattr(getattr(one, holder), n), getattr(getattr(two, holder), n)), (holder, n)
    size = sum(np.size(p) for p in vars(one.params).values())
    by_thread = [s for name, s in calls if name.startswith("cardgen-shard")]
    assert [s for name, s in calls if not name.startswith("cardgen-shard")] == 2 * (
        [4000] * (size // 4000) + [size % 4000] * (size % 4000 > 0))
    assert sorted(by_thread) == sorted(2 * ([1000] * (size // 1000) + [size % 1000] * (size % 1000 > 0)))


def test_threads_are_refused_below_one_and_capped_at_the_batch():
    cfg = BIGRAM.Config(V=256)
    with pytest.raises(ValueError, match="at least 1"):
        Trainer(BIGRAM, CE, ADAMW, cfg, threads=0)
    trainer = Trainer(BIGRAM, CE, ADAMW, cfg, threads=4)
    state = trainer.init(np.random.default_rng(0), np.float64)
    tokens = np.random.default_rng(1).integers(0, 256, size=(1, 9))
    loss, parts = trainer.shard_grads(state.params, tokens)
    assert len(parts) == 1 and loss == Trainer(BIGRAM, CE, ADAMW, cfg).loss_and_grads(state.params, tokens)[0]


def test_clipping_scales_the_update_to_the_global_norm(text):
    train, _ = text
    cfg = BIGRAM.Config(V=256)
    tokens = batches(train, 4, 16, np.random.default_rng(3))
    clip = Trainer(BIGRAM, CE, ADAMW, cfg, AdamWSettings(lr=1.0, clip_norm=1e-3))
    state = clip.init(np.random.default_rng(0), np.float64)
    _, g = clip.loss_and_grads(state.params, tokens)
    norm = np.sqrt(np.sum(g.W ** 2))
    assert norm > 1e-3
    clip.step(state, [tokens])
    # Adam's first step moves each weight by lr·g/(|g|+ε): clipping scales g, the step barely changes,
    # but the moments do: m = (1 − β_1)·g·(clip/norm)
    np.testing.assert_allclose(state.m.W, 0.1 * g.W * 1e-3 / (norm + 1e-6), rtol=1e-9, atol=1e-15)


def test_sampling_is_greedy_at_zero_temperature_reproducible_and_slides(text):
    train, _ = text
    cfg = GPT2.Config(V=256, D=16, H=2, D_f=32, N=1, ctx=8)
    trainer = Trainer(GPT2, CE, ADAMW, cfg)
    params = trainer.init(np.random.default_rng(0)).params
    prompt = train[:20]  # longer than the 8 positions the model has: the window must slide
    greedy = trainer.generate(params, prompt, 5, 0.0, np.random.default_rng(0), context=8)
    logits, _ = trainer.logits(params, prompt[None, -8:])
    assert greedy[0] == int(np.argmax(logits[0, -1]))
    a = trainer.generate(params, prompt, 30, 1.0, np.random.default_rng(5), context=8)
    b = trainer.generate(params, prompt, 30, 1.0, np.random.default_rng(5), context=8)
    c = trainer.generate(params, prompt, 30, 1.0, np.random.default_rng(6), context=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 256


def test_train_resumes_on_exactly_the_same_trajectory(tmp_path):
    # A constant rate (--lr-min = --lr): then the step count does not shape the run and it may grow.
    common = ["--batch", "4", "--seq", "16", "--eval-every", "5", "--lr", "3e-3", "--lr-min", "3e-3", *SMALL]
    runner = CliRunner()
    straight = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "12", "--out", str(tmp_path / "a"),
                                    *common])
    assert straight.exit_code == 0, straight.output
    half = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "6", "--out", str(tmp_path / "b"), *common])
    assert half.exit_code == 0, half.output
    rest = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "12", "--resume", "--out",
                                str(tmp_path / "b"), *common])
    assert rest.exit_code == 0 and "resuming GPT2 at step 6" in rest.output, rest.output
    a, b = (safetensors.numpy.load_file(tmp_path / x / "checkpoint.safetensors") for x in "ab")
    assert list(a) == list(b) and "params/W_e" in a and "m/W_qkv" in a
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert (tmp_path / "a" / "log.csv").read_text() .splitlines()[-1].split(",")[:3] == \
        (tmp_path / "b" / "log.csv").read_text().splitlines()[-1].split(",")[:3]
    assert (tmp_path / "a" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sample: def " in straight.output
    sample = runner.invoke(main, ["sample", str(tmp_path / "a" / "checkpoint.safetensors"), "--prompt", "import ",
                                  "--tokens", "10", "--temperature", "0"])
    assert sample.exit_code == 0 and sample.output.startswith("import "), sample.output


def test_train_with_threads_and_resume_only_with_the_same_count(tmp_path):
    common = ["--batch", "4", "--seq", "16", "--eval-every", "5", "--lr", "3e-3", "--lr-min", "3e-3", *SMALL]
    runner = CliRunner()
    first = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "3", "--threads", "2", "--out",
                                 str(tmp_path), *common])
    assert first.exit_code == 0, first.output
    other = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "5", "--resume", "--threads", "1",
                                 "--out", str(tmp_path), *common])
    assert other.exit_code == 1 and "--threads: 2 in the checkpoint, 1 now" in other.output, other.output
    same = runner.invoke(main, ["train", "cards/GPT2.card", "--steps", "5", "--resume", "--out", str(tmp_path),
                                *common])
    assert same.exit_code == 0 and "resuming GPT2 at step 3" in same.output, same.output
    torch_engine = runner.invoke(main, ["train", "cards/GPT2.card", "--engine", "torch", "--threads", "2"])
    assert torch_engine.exit_code == 1 and "drop --threads" in torch_engine.output, torch_engine.output


def test_ctrl_c_saves_a_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "cardgen.cli", "train", "cards/GPT2.card", "--steps", "100000", "--batch", "4",
           "--seq", "16", "--save-every", "5", "--out", str(tmp_path), *SMALL]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "log.csv").exists():
        time.sleep(0.2)
    time.sleep(1.0)  # a few steps in
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"stopped at step" in err and b"Traceback" not in err
    state = safetensors.numpy.load_file(tmp_path / "checkpoint.safetensors")
    assert "params/W_e" in state


def test_train_asks_for_missing_sizes(tmp_path):
    """Without a (training) configuration in the card (cards/GPT2.card has one), the sizes must be given."""
    text = Path("cards/GPT2.card").read_text("utf-8")
    bare = "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("config "))
    (tmp_path / "GPT2.card").write_text(bare, "utf-8")
    r = CliRunner().invoke(main, ["train", str(tmp_path / "GPT2.card"), "--steps", "1", "--out", str(tmp_path / "run")])
    assert r.exit_code == 1 and "GPT2 needs values for D, H, D_f, N, ctx" in r.output


# ---------------------------------------------------- the paper's wrapper cards, compiled
def paper_config(mod, **extra):
    sizes = dict(N_V=13, H=2, L=2, d_e=8, d_mlp=16, ell_max=12)
    fields = {f for f in mod.Config.__dataclass_fields__}
    return mod.Config(**{k: v for k, v in {**sizes, **extra}.items() if k in fields})


def test_dtraining_compiles_to_its_update_and_loops():
    dt = load_generated("DTraining")
    cfg = paper_config(dt, N_data=4, N_epochs=3, eta=0.05)
    params = dt.init_params(cfg, np.random.default_rng(0), np.float64)
    params = dt.Params(**{k: v + 0.1 * np.random.default_rng(1).standard_normal(v.shape)
                          for k, v in vars(params).items()})
    rng = np.random.default_rng(2)
    data = [rng.integers(1, 14, size=n) for n in (5, 9, 7, 11)]  # ragged, as x_n ∈ [N_V]*
    # train_step is the card's line θ ← θ − η · ∇loss(θ) on one sequence
    before = {k: v.copy() for k, v in vars(params).items()}
    loss, cache = dt.forward(cfg, params, data[0][None])
    grads, _ = dt.backward(cfg, params, cache, np.ones(1))
    step_loss = dt.train_step(cfg, params, data[0][None])
    assert step_loss == pytest.approx(float(loss[0]), rel=1e-12)
    for k in before:
        np.testing.assert_allclose(getattr(params, k), before[k] - 0.05 * getattr(grads, k), rtol=1e-12, atol=1e-15)
    # the loss is the card's: −Σ_{t=1}^{ℓ−1} log P[x[t+1], t], with P from the generated DTransformer
    dtrans = load_generated("DTransformer")
    P, _ = dtrans.forward(paper_config(dtrans), dtrans.Params(**before), data[1])
    expected = -sum(np.log(P[data[1][t] - 1, t - 1]) for t in range(1, len(data[1])))
    loss1, _ = dt.forward(cfg, dt.Params(**before), data[1][None])
    assert float(loss1[0]) == pytest.approx(expected, rel=1e-12)
    # train(): N_epochs passes over the data, one update per sequence; the loss goes down
    losses = dt.train(cfg, params, data)
    assert len(losses) == 3 * 4
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_dinference_compiles_to_a_sampler():
    di = load_generated("DInference")
    cfg = paper_config(di, ell_gen=5, tau=1.0)
    params = di.init_params(cfg, np.random.default_rng(0), np.float64)
    params = di.Params(**{k: v + 0.3 * np.random.default_rng(1).standard_normal(v.shape)
                          for k, v in vars(params).items()})
    prompt = np.array([3, 1, 4, 1, 5])
    y = di.generate(cfg, params, prompt, rng=np.random.default_rng(0))
    assert y.shape == (5,) and y.min() >= 1 and y.max() <= 13  # ℓ_gen tokens of [N_V]
    again = di.generate(cfg, params, prompt, rng=np.random.default_rng(0))
    assert np.array_equal(y, again)  # reproducible from a seed
    greedy = di.generate(cfg, params, prompt, n_tokens=1, temperature=0)
    P, _ = di.forward(cfg, params, prompt)
    assert greedy[0] == int(np.argmax(P[:, -1])) + 1  # τ = 0: the most likely token (1-based ids)
    long = di.generate(cfg, params, np.ones(30, int), n_tokens=3, temperature=0)  # past ℓ_max = 12: slides
    assert long.shape == (3,)
