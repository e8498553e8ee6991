"""Training runs are never lost or torn: a run stopped by SIGINT, SIGTERM or SIGKILL at random
moments, over and over, and resumed each time, ends bit-identical to a run never stopped; a folder
holding a run is not overwritten; resuming with other settings is refused with the differences."""

import os
import random
import signal
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.lang.load import library_for, load
from cardgen.train import cards as tc
from cardgen.train import checkpoint as ckpt
from cardgen.train import run as rn

from .conftest import ROOT

DATA = (ROOT / "generator" / "lang" / "check.py").read_bytes()[:40_000]


@pytest.fixture(scope="module")
def bigram():
    lib = library_for(str(ROOT / "cards" / "Bigram.card"))
    card, _ = load(str(ROOT / "cards" / "Bigram.card"), lib)
    checked = tc.check_model(lib, card.name)
    return tc.compile_modules(checked, lib, {}), tc.card_texts(checked, lib)


def settings(steps=400):
    return rn.Settings(steps=steps, batch=2, seq=8, lr=1e-2, lr_min=1e-3, warmup=20, weight_decay=0.1, clip=1.0,
                       accumulate=2, seed=3, dtype="float32", data=rn.data_identity("check.py", DATA), eval_every=7,
                       save_every=5)


def life(folder, mods, texts) -> int:
    """One process's life: resume the folder's run if it has one, else start it; train to the end."""
    from cardgen.train.trainer import split
    train, val = split(DATA)
    run = rn.Run(folder, mods, texts, settings(), train, val)
    path = folder / rn.CHECKPOINT
    if path.exists():
        ck = ckpt.open_checkpoint(path)
        run.resume(ck)
        ck.close()
    else:
        run.start()
    stopped = run.train()
    return 0 if stopped is None else 128 + stopped


def forked(fn) -> int:
    """Run fn in a forked child (the compiled modules come along: no start-up cost); its pid.
    The child only computes with NumPy and writes files: the threads of the parent that Python
    3.12+ warns about (OpenBLAS's pool, which re-forms after a fork) are not a risk here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 97
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            status = fn()
        except KeyboardInterrupt:  # SIGINT before the run installed its handlers: nothing saved yet
            status = 130
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(status)
    return pid


def final(folder):
    ck = ckpt.open_checkpoint(folder / rn.CHECKPOINT)
    try:
        return ck.step, ck.rng, {k: ck.file.tensor(k) for k in ck.file.entries}
    finally:
        ck.close()


ALONE = "CARDGEN_KILL_TEST_ALONE"


def ran_alone(request) -> bool:
    """Run the calling test in a fresh pytest of its own and say so (True), unless this is that one.
    The tests that fork need it: by their turn in a full run the suite has started PyTorch's and
    JAX's thread pools, after which a forked child can deadlock or crash (SIGSEGV, seen in a
    full-suite run); a fresh pytest running one test has started none."""
    if os.environ.get(ALONE):
        return False
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", request.node.nodeid],
                       cwd=ROOT, env={**os.environ, ALONE: "1"}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]
    return True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_stopped_at_random_moments_and_resumed_ends_bit_identical(tmp_path, bigram, request):
    if ran_alone(request):
        return
    mods, texts = bigram
    began = time.perf_counter()
    assert life(tmp_path / "straight", mods, texts) == 0
    whole = time.perf_counter() - began
    want = final(tmp_path / "straight")
    assert want[0] == 400

    rand = random.Random(11)
    folder = tmp_path / "stopped"
    stops = {signal.SIGINT: 0, signal.SIGTERM: 0, signal.SIGKILL: 0}
    for _ in range(200):
        pid = forked(lambda: life(folder, mods, texts))
        time.sleep(rand.uniform(0, whole / 12))
        sig = rand.choice(list(stops))
        os.kill(pid, sig)  # a child that already ended is a zombie until waited: no error
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            break
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        # -SIGTERM: a stop before the run installed its handlers (nothing to save yet), as in the CLI
        assert code in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM), code
        stops[sig] += 1
    else:
        pytest.fail("the run never finished")
    print("stops:", {s.name: n for s, n in stops.items()})
    assert sum(stops.values()) >= 20 and all(stops.values()), stops
    got = final(folder)
    assert got[0] == want[0] and got[1] == want[1]
    assert got[2].keys() == want[2].keys()
    for k in want[2]:
        assert np.array_equal(got[2][k], want[2][k]), k
    # The log agrees too (but for tokens/s): rows past the checkpoint were dropped, then recomputed.
    a = [r.split(",")[:4] for r in (tmp_path / "straight" / rn.LOG).read_text().splitlines()]
    b = [r.split(",")[:4] for r in (folder / rn.LOG).read_text().splitlines()]
    assert a == b
    assert not [p for p in folder.iterdir() if p.name.startswith(".cardgen-")]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigterm_saves_the_last_completed_step(tmp_path, bigram, request):
    if ran_alone(request):
        return
    mods, texts = bigram
    folder = tmp_path / "run"
    pid = forked(lambda: life(folder, mods, texts))
    deadline = time.time() + 30
    while not (folder / rn.CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 128 + signal.SIGTERM
    step, _, _ = final(folder)
    rows = (folder / rn.LOG).read_text().splitlines()
    assert 0 < step < 400 and int(rows[-1].split(",")[0]) == step  # log and checkpoint agree


# ----------------------------------------------------------------- the command line
TINY = ["--batch", "2", "--seq", "8", "--eval-every", "3", "--save-every", "2"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    out = tmp_path / "run"
    first = cli("train", "cards/Bigram.card", "--data", data, "--steps", 4, "--out", out, *TINY)
    assert first.exit_code == 0, first.output
    before = (out / rn.CHECKPOINT).read_bytes()
    again = cli("train", "cards/Bigram.card", "--data", data, "--steps", 4, "--out", out, *TINY)
    assert again.exit_code == 1 and "already holds a training run" in again.output and "--resume" in again.output
    assert (out / rn.CHECKPOINT).read_bytes() == before
    forced = cli("train", "cards/Bigram.card", "--data", data, "--steps", 4, "--out", out, "--force", "--seed", 1,
                 *TINY)
    assert forced.exit_code == 0, forced.output
    assert (out / rn.CHECKPOINT).read_bytes() != before


def test_resume_refuses_settings_that_change_the_run(tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    other = tmp_path / "other.txt"
    other.write_bytes(DATA[::-1])
    out = tmp_path / "run"
    assert cli("train", "cards/Bigram.card", "--data", data, "--steps", 4, "--out", out, *TINY).exit_code == 0
    r = cli("train", "cards/Bigram.card", *TINY, "--data", other, "--steps", 8, "--out", out, "--resume", "--lr", 0.5,
            "--batch", 3, "--set", "V=256")
    assert r.exit_code == 1, r.output
    for line in ("--batch: 2 in the checkpoint, 3 now", "--lr: 0.001 in the checkpoint, 0.5 now",
                 "--steps: 4 in the checkpoint, 8 now", "--data: data.txt", "other.txt"):
        assert line in r.output, r.output
    same = cli("train", "cards/Bigram.card", "--data", data, "--out", out, "--resume")
    assert same.exit_code == 0 and "resuming Bigram at step 4" in same.output, same.output


@pytest.mark.parametrize("args, message", [
    (["--seq", "-1"], "Invalid value for '--seq'"),
    (["--steps", "0"], "Invalid value for '--steps'"),
    (["--batch", "0"], "Invalid value for '--batch'"),
    (["--warmup", "50"], "--warmup (50) is longer than the run"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lr-min", "1"], "--lr-min must be between 0 and --lr"),
    (["--clip", "-1"], "--clip must be 0 (off) or more"),
    (["--seq", "100000"], "training text has"),
    (["--resume", "--force"], "give one"),
])
def test_bad_values_are_errors_not_empty_training(tmp_path, args, message):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    r = cli("train", "cards/Bigram.card", "--data", data, "--steps", 10, "--out", tmp_path / "run", *args)
    assert r.exit_code in (1, 2) and message in r.output, r.output
    assert "internal error" not in r.output and not (tmp_path / "run" / rn.CHECKPOINT).exists()


@pytest.mark.parametrize("sets, message", [
    (["H=3"], "the dimension D/H is 32/3 at D=32, H=3, not a whole number"),
    (["D=0"], "D = 0 is not a size"),
    (["D=32.5"], "D = 32.5 is not a size"),
    (["Q=1"], "GPT2 has no hyperparameter Q"),
    (["V=300"], "byte-level training needs V = 256"),
])
def test_bad_model_sizes_are_errors_in_the_cards_terms(tmp_path, sets, message):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    base = {"D": "32", "H": "2", "D_f": "64", "N": "1", "ctx": "16"}
    base.update(dict(s.split("=") for s in sets))
    args = [a for k, v in base.items() for a in ("--set", f"{k}={v}")]
    r = cli("train", "cards/GPT2.card", "--data", data, "--steps", 2, "--out", tmp_path / "run", *args)
    assert r.exit_code == 1 and message in r.output and "internal error" not in r.output, r.output


def test_bad_sample_values_are_errors(tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    assert cli("train", "cards/Bigram.card", "--data", data, "--steps", 2, "--out", tmp_path / "run").exit_code == 0
    ck = tmp_path / "run" / rn.CHECKPOINT
    for args, message in ((["--temperature", "nan"], "--temperature must be a finite number"),
                          (["--temperature", "-1"], "Invalid value for '--temperature'"),
                          (["--seed", "-1"], "Invalid value for '--seed'"),
                          (["--tokens", "-5"], "Invalid value for '--tokens'"),
                          (["--prompt", ""], "--prompt is empty")):
        r = cli("sample", ck, *args)
        assert r.exit_code in (1, 2) and message in r.output and "internal error" not in r.output, r.output


def test_resume_takes_settings_that_do_not_change_the_run(tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes(DATA)
    out = tmp_path / "run"
    assert cli("train", "cards/Bigram.card", "--data", data, "--steps", 4, "--out", out, "--lr-min", "1e-3",
               "--eval-every", 2, "--batch", 2, "--seq", 8).exit_code == 0
    r = cli("train", "cards/Bigram.card", "--data", data, "--steps", 9, "--out", out, "--resume", "--eval-every", 3)
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in (out / rn.LOG).read_text().splitlines()[1:]]
    assert [r[0] for r in rows if r[2]] == ["2", "4", "6", "9"]  # every 2 steps, then every 3, and the last
    ck = ckpt.open_checkpoint(out / rn.CHECKPOINT)
    assert ck.step == 9 and ck.run["eval_every"] == 3 and ck.run["batch"] == 2
    ck.close()


def test_the_command_stopped_by_each_signal_and_resumed_ends_bit_identical(tmp_path):
    """The same through the `cardgen train` command in its own process: one stop by each signal."""
    import subprocess
    import sys
    data = tmp_path / "data.txt"
    data.write_bytes(DATA * 4)
    args = ["train", "cards/Bigram.card", "--data", str(data), "--steps", "300", "--batch", "2", "--seq", "8",
            "--save-every", "7", "--eval-every", "50"]
    assert cli(*args, "--out", tmp_path / "straight").exit_code == 0
    folder = tmp_path / "stopped"
    for i, sig in enumerate((signal.SIGTERM, signal.SIGKILL, signal.SIGINT)):
        cmd = [sys.executable, "-m", "cardgen", *args, "--out", str(folder)] + (["--resume"] if i else [])
        log = folder / rn.LOG
        before = log.read_text().splitlines() if log.exists() else []
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120

        def trained_on(log=log, before=before):  # rows of this process's own (a resume drops unsaved ones first)
            rows = log.read_text().splitlines() if log.exists() else []
            return len(rows) >= len(before) + 10 and rows != before
        while time.time() < deadline and proc.poll() is None and not trained_on():
            time.sleep(0.02)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1].decode()
        assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig), err
        assert "Traceback" not in err
    r = subprocess.run([sys.executable, "-m", "cardgen", *args, "--out", str(folder), "--resume"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a, b = final(tmp_path / "straight"), final(folder)
    assert a[0] == b[0] == 300 and a[1] == b[1]
    assert all(np.array_equal(a[2][k], b[2][k]) for k in a[2])
