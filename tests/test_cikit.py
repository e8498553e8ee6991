"""The CI kit on a card repository of someone else's: cards in `models/` (not `cards/`), their
modules in `generated/`, one broken card. The pytest plugin (`pytest --cardgen`) and the pre-commit hooks
(`pre-commit try-repo` this repository) must pass the good cards and fail the broken one at its
line and column."""

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

BROKEN = "algorithm y ← Broken(x)\n  convention rows, 0-based\n  input  x ∈ ℝ^D\n  output y ∈ ℝ^D\n" \
         "  1 return y = x + W\n"
WHERE = "models/Broken.card:5:20: error: unknown name W"


def git(repo, *args):
    subprocess.run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "models").mkdir()
    for name in ("LayerNorm", "MLP", "GELU_tanh"):
        shutil.copy(ROOT / "cards" / f"{name}.card", tmp_path / "models")
    r = subprocess.run([sys.executable, "-m", "cardgen.cli", "build", "models"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "cards")
    return tmp_path


def pytest_in(repo, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300)


def test_plugin_checks_each_card_four_ways(repo):
    r = pytest_in(repo, "--cardgen", "models")
    assert r.returncode == 0, r.stdout
    assert "12 passed" in r.stdout
    (repo / "models" / "Broken.card").write_text(BROKEN, "utf-8")
    r = pytest_in(repo, "--cardgen", "models")
    assert r.returncode == 1
    assert "4 failed, 12 passed" in r.stdout
    for check in ("roundtrip", "fmt", "build", "gradcheck"):
        assert f"FAILED models/Broken.card::{check}" in r.stdout
    assert WHERE in r.stdout and "  hint: declare it" in r.stdout
    assert "Traceback" not in r.stdout


def test_plugin_reports_a_stale_module_with_its_diff(repo):
    module = repo / "generated" / "LayerNorm.py"
    module.write_text(module.read_text("utf-8").replace("import numpy as np", "import numpy as np  # edited"))
    r = pytest_in(repo, "--cardgen", "models/LayerNorm.card")
    assert r.returncode == 1 and "1 failed, 3 passed" in r.stdout
    assert "LayerNorm.py is stale: run `cardgen build`" in r.stdout
    assert "-import numpy as np  # edited" in r.stdout


def test_plugin_is_off_unless_asked(repo):
    r = pytest_in(repo, "models")
    assert r.returncode == 5 and "no tests ran" in r.stdout  # pytest's "nothing collected"
    (repo / "generated").rename(repo / "gen")
    (repo / "pytest.ini").write_text("[pytest]\ncardgen = true\ncardgen_generated = gen\n")
    r = pytest_in(repo, "models")
    assert r.returncode == 0 and "12 passed" in r.stdout


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory):
    """One home for pre-commit's environments: the hook repository is installed once (pip resolves
    cardgen's dependencies with the machine's pip configuration, a local mirror where there is one)."""
    exe = shutil.which("pre-commit", path=os.path.dirname(sys.executable))
    assert exe is not None, "pre-commit is in the test extra"
    return exe, tmp_path_factory.mktemp("pre-commit-home")


def try_repo(pre_commit, repo, hook):
    exe, home = pre_commit
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run([exe, "try-repo", str(ROOT), hook, "--all-files", "--color", "never"], cwd=repo,
                          capture_output=True, text=True, env=env, timeout=600)


def test_pre_commit_hooks(repo, pre_commit_home):
    for hook in ("cardgen-check", "cardgen-fmt", "cardgen-build-check"):
        r = try_repo(pre_commit_home, repo, hook)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Passed" in r.stdout
    (repo / "models" / "Broken.card").write_text(BROKEN, "utf-8")
    layer_norm = repo / "models" / "LayerNorm.card"
    canonical = layer_norm.read_text("utf-8")
    layer_norm.write_text(canonical.replace("  1 m ←", "  1    m ←"), "utf-8")
    module = repo / "generated" / "MLP.py"
    module.write_text(module.read_text("utf-8") + "# edited\n")
    git(repo, "add", "-A")
    r = try_repo(pre_commit_home, repo, "cardgen-check")
    assert r.returncode == 1 and WHERE in r.stdout, r.stdout
    r = try_repo(pre_commit_home, repo, "cardgen-build-check")
    assert r.returncode == 1 and "stale: generated/MLP.py" in r.stdout, r.stdout
    (repo / "models" / "Broken.card").unlink()
    git(repo, "add", "-A")
    r = try_repo(pre_commit_home, repo, "cardgen-fmt")
    assert r.returncode == 1 and "reformatted models/LayerNorm.card" in r.stdout, r.stdout
    assert layer_norm.read_text("utf-8") == canonical
