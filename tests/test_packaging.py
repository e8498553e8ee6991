"""A wheel built from the repo works on its own: grammar, templates, the HTML book's assets and the
standard cards ship inside it (and in the sdist), and the code passes ruff."""

import os
import shutil
import subprocess
import sys
import venv

from .conftest import ROOT


def test_wheel_runs_outside_the_repo(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
                   check=True)
    (wheel,) = wheels.glob("cardgen-*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    for name in ("layer_norm", "Attention", "MHAttention"):
        shutil.copy(ROOT / "cards" / f"{name}.card", work)
    cardgen = env_dir / "bin" / "cardgen"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([str(cardgen), "check", "."], cwd=work, capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr
    render = subprocess.run([str(cardgen), "render", "MHAttention.card", "--full"], cwd=work,
                            capture_output=True, text=True, env=env)
    assert render.returncode == 0, render.stderr
    assert "Algorithm: Ṽ ← MHAttention(X, Z | 𝓦, Mask)" in render.stdout
    assert "Algorithm: Ṽ ← Attention(X, Z | 𝓦_qkv, Mask)" in render.stdout
    docs = subprocess.run([str(cardgen), "docs", ".", "-o", "book"], cwd=work, capture_output=True, text=True,
                          env=env)
    assert docs.returncode == 0, docs.stderr
    book = work / "book"
    assert {p.name for p in (book / "cards").iterdir()} == {"layer_norm.html", "Attention.html", "MHAttention.html"}
    katex = book / "_static" / "katex"  # the vendored KaTeX ships in the wheel
    assert (katex / "katex.min.js").stat().st_size > 100_000 and (katex / "LICENSE").exists()
    assert len(list((katex / "fonts").glob("*.woff2"))) == 20
    assert (book / "_static" / "book.css").exists() and (book / "_static" / "book.js").exists()
    where = subprocess.run([str(py), "-c", "import cardgen; print(cardgen.__file__)"], cwd=work,
                           capture_output=True, text=True, env=env).stdout
    assert str(env_dir) in where  # the wheel's copy, not the repo's
    lexed = subprocess.run([str(env_dir / "bin" / "pygmentize"), "-f", "raw", "MHAttention.card"], cwd=work,
                           capture_output=True, text=True, env=env)  # the lexer's entry point ships too
    assert lexed.returncode == 0 and "Token.Name.Function\t'MHAttention'" in lexed.stdout, lexed.stderr

    # The standard cards ship in the wheel: in an empty folder, a card's name is enough.
    empty = tmp_path / "empty"
    empty.mkdir()
    render = subprocess.run([str(py), "-m", "cardgen", "render", "GPT2", "--full"], cwd=empty,
                            capture_output=True, text=True, env=env)
    assert render.returncode == 0, render.stderr
    assert "Algorithm: P ← GPT2(x, p_start | θ)" in render.stdout and "Algorithm: ê ← LayerNorm" in render.stdout
    (empty / "data.txt").write_text("def f(x):\n    return x\n" * 50)
    train = subprocess.run([str(cardgen), "train", "GPT2", "--data", "data.txt", "--steps", "2", "--batch", "2",
                            "--seq", "8", "--set", "D=16", "--set", "H=2", "--set", "D_f=32", "--set", "N=1",
                            "--set", "ctx=16", "--out", "run"], cwd=empty, capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr
    assert (empty / "run").is_dir() and "sample:" in train.stdout
    names = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.files('cardgen'))"],
                           cwd=empty, capture_output=True, text=True, env=env).stdout
    assert "LICENSE" in names


def test_sdist_carries_the_cards_and_license(tmp_path):
    import tarfile
    build = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    (sdist,) = tmp_path.glob("cardgen-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert "LICENSE" in names and "cards/GPT2.card" in names and "grammar/card.lark" in names


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
