"""What a training run looks like: the warmup + cosine schedule's values at known steps and in the
log, the progress bar on a terminal and plain lines elsewhere, the matplotlib loss plot."""

import io
import math

import pytest
from click.testing import CliRunner

from cardgen.cli import main
from cardgen.train.progress import Progress
from cardgen.train.schedule import Schedule

from .conftest import ROOT


def test_warmup_then_cosine_at_known_steps():
    s = Schedule(lr=6e-4, lr_min=6e-5, warmup=10, steps=110)
    expected = {
        1: 6e-5, 5: 3e-4, 10: 6e-4,                    # linear warmup, lr at its end
        35: 6e-5 + 0.5 * 5.4e-4 * (1 + math.cos(math.pi / 4)),  # a quarter of the decay
        60: 3.3e-4,                                    # half way: the mean of lr and lr_min
        110: 6e-5, 200: 6e-5,                          # the floor at the end and after
    }
    for step, lr in expected.items():
        assert s(step) == pytest.approx(lr, rel=1e-12), step
    values = [s(t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # decays monotonically
    assert Schedule(1e-3, 1e-3, 0, 50)(37) == 1e-3 and not Schedule(1e-3, 1e-3, 0, 50).uses_steps
    # No warmup: the decay starts from lr at step 0, so step 1 is a quarter of the way down 4 steps.
    assert Schedule(1e-3, 0.0, 0, 4)(1) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)), rel=1e-12)


def test_the_log_records_the_rate_each_step_used(tmp_path):
    data = tmp_path / "data.txt"
    data.write_bytes((ROOT / "generator" / "lang" / "check.py").read_bytes()[:20_000])
    r = CliRunner().invoke(main, ["train", "cards/Bigram.card", "--data", str(data), "--steps", "12", "--batch", "2",
                                  "--seq", "8", "--lr", "1e-2", "--lr-min", "1e-3", "--warmup", "4", "--out",
                                  str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    rows = [line.split(",") for line in (tmp_path / "run" / "log.csv").read_text().splitlines()]
    assert rows[0] == ["step", "train_loss", "val_loss", "lr", "tokens_per_s"]
    s = Schedule(1e-2, 1e-3, 4, 12)
    assert [float(r[3]) for r in rows[1:]] == pytest.approx([s(t) for t in range(1, 13)], rel=1e-5)
    assert rows[-1][2]  # validated at the last step


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    plain = io.StringIO()
    p = Progress(total=20, start=0, every=10, stream=plain)
    for step in range(1, 21):
        p.update(step, 3.0, 2.5 if step % 10 == 0 else None, 1000.0)
    p.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 10/20  loss 3.0000  val 2.5000")
    assert "elapsed 00:00" in lines[0] and "eta 00:00" in lines[1] and "\r" not in plain.getvalue()

    term = Terminal()
    bar = Progress(total=20, start=5, every=10, stream=term)
    for step in range(6, 21):
        bar.update(step, 3.0, None, 1000.0)
    bar.close()
    out = term.getvalue()
    assert "\r" in out and "20/20" in out and "loss 3.0000" in out and "<00:00" in out  # tqdm: elapsed<remaining


def test_the_loss_plot_has_labelled_axes_markers_and_a_log_option():
    from cardgen.train.plot import figure, loss_png  # matplotlib: in the test extras
    series = {"train": ([1, 2, 3, 4], [5.5, 4.0, 3.5, 3.0]), "validation": ([2, 4], [4.2, 3.3])}
    ax = figure(series, "GPT2").axes[0]
    assert ax.get_xlabel() == "step" and "loss" in ax.get_ylabel() and ax.get_title() == "GPT2"
    train, val = ax.get_lines()
    assert train.get_marker() in ("None", None, "") and val.get_marker() == "o"
    assert list(val.get_xdata()) == [2, 4] and [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["train", "validation"]
    assert figure(series, log_scale=True).axes[0].get_yscale() == "log"
    png = loss_png(series)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == loss_png(series) and png != loss_png(series, log_scale=True)
