"""The loss curve, drawn with matplotlib (the ``plot`` extra: ``pip install 'cardgen[plot]'``).

Training loss every step (a line), validation loss at each evaluation (line with markers), labelled
axes, a legend, optionally a log-scaled loss axis. Without matplotlib there is no picture; the
numbers are always in ``log.csv``.
"""

from __future__ import annotations

import io
import os


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def loss_png(series: dict[str, tuple[list[int], list[float]]], title: str = "", log_scale: bool = False) -> bytes:
    """The PNG's bytes (the caller writes them atomically); byte-identical for the same numbers."""
    out = io.BytesIO()
    # No date or software stamp in the file: the same run gives the same bytes.
    figure(series, title, log_scale).savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def figure(series: dict[str, tuple[list[int], list[float]]], title: str = "", log_scale: bool = False):
    """A matplotlib Figure (not pyplot's global state: safe in a library and in threads)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.add_subplot()
    styles = {"train": {"linewidth": 1.0, "alpha": 0.8},
              "validation": {"marker": "o", "markersize": 4, "linewidth": 1.5}}
    for name, (steps, losses) in series.items():
        if steps:
            ax.plot(steps, losses, label=name, **styles.get(name, {"marker": "."}))
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats per token)")
    if log_scale:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def write_png(path: str | os.PathLike, series, title: str = "", log_scale: bool = False) -> bool:
    """Write the plot if matplotlib is installed; False if it is not."""
    if not available():
        return False
    from ..lang.files import atomic_write
    atomic_write(path, loss_png(series, title, log_scale))
    return True
