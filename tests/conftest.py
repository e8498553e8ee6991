"""Every test that takes ``card_path`` runs once per card in cards/: a new card
gets every test for free."""

import dataclasses
import os
from pathlib import Path

import pytest

from cardgen.lang.check import Library

ROOT = Path(__file__).resolve().parent.parent
CARDS = sorted((ROOT / "cards").glob("*.card"))


def require(present: bool, why: str) -> None:
    """For a test that needs a program from outside PyPI (pdflatex, chromium,
    node): a skip, with the reason, where it is missing; under CI, which
    installs it (.ci/run), a failure."""
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs it: {why}")
        pytest.skip(why)


def _needs_torch(path: Path) -> bool:
    text = path.read_text("utf-8")
    return "import torch" in text or "from transformers" in text


# The PyTorch and transformers oracle tests need the `test` extra. With only `test-core` (CI's runs
# on Python 3.12/3.13, where no CPU build of torch is at hand) they are left out, by name, and only
# when CARDGEN_TEST_WITHOUT_TORCH is set: a missing torch is otherwise an error, never a quiet skip.
try:
    import torch  # noqa: F401
except ImportError:
    TORCH_FREE = os.environ.get("CARDGEN_TEST_WITHOUT_TORCH")
    collect_ignore = [p.name for p in sorted(Path(__file__).parent.glob("test_*.py")) if _needs_torch(p)] \
        if TORCH_FREE else []


def pytest_report_header(config):
    ignored = globals().get("collect_ignore")
    if ignored:
        return f"torch is not installed: left out {', '.join(ignored)} (CARDGEN_TEST_WITHOUT_TORCH)"


def pytest_generate_tests(metafunc):
    if "card_path" in metafunc.fixturenames:
        metafunc.parametrize("card_path", CARDS, ids=[p.stem for p in CARDS])


@pytest.fixture
def library():
    return Library(folders=[str(ROOT / "cards")])


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


def load_generated(name: str):
    """Import generated/<name>.py (checked in; `cardgen build --check` keeps it current)."""
    import importlib.util
    import sys

    mod_name = f"generated_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, ROOT / "generated" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def swap(x, old: str, new: str):
    """``x`` (IR) with ``old`` replaced by ``new`` in every string: IR no parser would give, to
    test each output's own escaping apart from the grammar's restrictions on names."""
    if isinstance(x, str):
        return x.replace(old, new)
    if isinstance(x, (tuple, list)):
        return type(x)(swap(v, old, new) for v in x)
    if isinstance(x, dict):
        return {swap(k, old, new): swap(v, old, new) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: swap(getattr(x, f.name), old, new)
                                         for f in dataclasses.fields(x) if f.init})
    return x


def module_card(name: str) -> str:
    """A small model card named ``name``, for tests of what is done with a card's name."""
    return (f"algorithm y ← {name}(x | W)\n  convention rows, 0-based\n  input  x ∈ ℝ^{{n}}\n  output y ∈ ℝ^{{n}}\n"
            f"  hyper  n ∈ ℕ\n  param  W ∈ ℝ^{{n}}\n  1 return y = x ⊙ W\n")


def watch_forward(monkeypatch, module) -> list:
    """Replace ``module.forward`` by one that records, for each call, the thread it ran on, the first
    input's leading size and NumPy's BLAS thread counts at that moment (shards run on their own
    threads with one BLAS thread); the list fills as calls come."""
    import threading

    from threadpoolctl import threadpool_info
    seen = []
    forward = module.forward

    def watched(*a, **k):
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        seen.append((threading.current_thread().name, a[2].shape[0], blas))
        return forward(*a, **k)
    monkeypatch.setattr(module, "forward", watched)
    return seen
