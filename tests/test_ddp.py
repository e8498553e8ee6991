"""Data-parallel training on torch.distributed (cardgen.torch.ddp): two gloo
processes on this machine, each on half of every batch, end with the weights of
one process trained on the whole batches, in float64."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch  # noqa: F401  (without the `test` extra, conftest.py leaves this file out)

from cardgen.torch.ddp import Run, launch

from .conftest import ROOT

STEPS = 3


def test_two_gloo_processes_take_the_steps_of_one_process_on_the_whole_batch(tmp_path):
    text = b"".join(p.read_bytes() for p in sorted((ROOT / "cards").glob("*.card")))
    run = Run(card=str(ROOT / "cards" / "GPT2.card"), tokens=np.frombuffer(text, np.uint8),
              sizes={"V": 256, "D": 16, "H": 2, "D_f": 32, "N": 2, "ctx": 16}, steps=STEPS, batch=4, seq=12,
              lr=1e-2, dtype="float64", out=str(tmp_path / "two"))
    launch(run, nproc=2)
    launch(dataclasses.replace(run, out=str(tmp_path / "one")), nproc=1)

    two, one = np.load(tmp_path / "two" / "weights.npz"), np.load(tmp_path / "one" / "weights.npz")
    assert sorted(two.files) == sorted(one.files) and "W_qkv" in two.files
    for name in one.files:
        assert two[name].dtype == np.float64
        err = np.max(np.abs(two[name] - one[name]))
        assert err <= 1e-6, f"{name}: two processes differ from one by {err:.2e}"
    log = [line.split(",") for line in (tmp_path / "two" / "log.csv").read_text().splitlines()[1:]]
    assert [int(r[2]) for r in log] == [2] * STEPS, "the run was not split over two processes"
    single = [line.split(",") for line in (tmp_path / "one" / "log.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose([float(r[1]) for r in log], [float(r[1]) for r in single], rtol=1e-9)
    # The steps moved the weights (by far more than the tolerance): the comparison is not of two copies
    # of the initial weights.
    from cardgen.torch import CardModule
    init = CardModule(run.card, dtype=__import__("torch").float64, seed=run.seed, **run.sizes)
    moved = max(np.max(np.abs(one[n] - p.detach().numpy())) for n, p in init.named_parameters())
    assert moved > 1e-3


def test_the_train_command_runs_the_torch_engine_and_refuses_the_numpy_trainers_options(tmp_path):
    from click.testing import CliRunner

    from cardgen.cli import main
    sizes = ["--set", "D=16", "--set", "H=2", "--set", "D_f=32", "--set", "N=1", "--set", "ctx=8"]
    args = ["train", str(ROOT / "cards" / "GPT2.card"), "--engine", "torch", "--steps", "2", "--batch", "2",
            "--seq", "8", "--dtype", "float64", "--data", str(ROOT / "README.md"), "--out", str(tmp_path), *sizes]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "weights.npz").exists()
    assert np.load(tmp_path / "weights.npz")["W_e"].dtype == np.float64
    assert (tmp_path / "log.csv").read_text().splitlines()[1:] and "step 2/2" in result.output
    refused = CliRunner().invoke(main, [*args, "--warmup", "3", "--clip", "0.5"])
    assert refused.exit_code == 1
    assert "--engine torch takes a constant --lr" in refused.output and "drop --warmup, --clip" in refused.output
