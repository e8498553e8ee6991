"""`cardgen render --format tex`: every card's box compiles with pdflatex, with
no error and no character dropped, and hostile card text prints as text."""

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from cardgen import parse
from cardgen.cli import main
from cardgen.docs.report import param_count_line
from cardgen.docs.texbox import box, document, tex_text
from cardgen.lang.check import Library, check

from .conftest import CARDS, ROOT, require, swap

# pdflatex reports a glyph it lacks only as "Missing character" in the log,
# and goes on: that fails the test as much as an error does.
LOG_PROBLEM = re.compile(r"^!.*|.*Missing character.*|.*Undefined control sequence.*|"
                         r".*not set up for use with LaTeX.*", re.M)


@pytest.fixture(scope="module")
def pdflatex():
    exe = shutil.which("pdflatex")
    require(exe is not None, "pdflatex is not installed (Debian: texlive-latex-base texlive-latex-recommended "
                             "texlive-science)")
    return exe


def render(*args) -> str:
    r = CliRunner().invoke(main, ["render", *args])
    assert r.exit_code == 0, r.output
    return r.output


def compile_tex(pdflatex, folder: Path, name: str, tex: str) -> tuple[int, str]:
    """pdflatex once (the boxes have no cross-references); the exit code and the log."""
    (folder / f"{name}.tex").write_text(tex, "ascii")
    r = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
                        f"{name}.tex"], cwd=folder, capture_output=True, timeout=120)
    log = (folder / f"{name}.log").read_text("latin-1")
    return r.returncode, log


def problems(rc: int, log: str) -> str | None:
    found = LOG_PROBLEM.findall(log)
    return None if rc == 0 and not found else f"pdflatex exit {rc}:\n" + "\n".join(found[:10])


@pytest.fixture(scope="module")
def compiled(pdflatex, tmp_path_factory):
    """Every card as `render --format tex --standalone` prints it (one library
    checks each card once), compiled in parallel: {stem: (exit code, log)}."""
    folder = tmp_path_factory.mktemp("tex")
    lib = Library(folders=[str(ROOT / "cards")])
    texs = {p.stem: document([box(ch, param_count_line(ch, lib, {}))])
            for p in CARDS for ch in [lib.checked(p.stem)]}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        done = {n: pool.submit(compile_tex, pdflatex, folder, n, t) for n, t in texs.items()}
        return {n: f.result() for n, f in done.items()}


def test_card_box_compiles(card_path, compiled):
    rc, log = compiled[card_path.stem]
    assert problems(rc, log) is None, problems(rc, log)


def test_full_gpt2_compiles_with_every_sub_algorithm(pdflatex, tmp_path):
    tex = render("cards/GPT2.card", "--format", "tex", "--standalone", "--full", "--set", "V=50257",
                 "--set", "D=768", "--set", "H=12", "--set", "D_f=3072", "--set", "N=12", "--set", "ctx=1024")
    assert tex.count(r"\begin{algorithm}") == len(re.findall("^Algorithm: ", render("cards/GPT2.card", "--full"),
                                                              re.M))
    assert "Parameter count: 124,439,808" in tex
    rc, log = compile_tex(pdflatex, tmp_path, "full", tex)
    assert problems(rc, log) is None, problems(rc, log)


def test_box_reads_like_the_paper():
    tex = render("cards/GPT2.card", "--format", "tex")
    assert tex.startswith("% ") and r"\usepackage{algorithm,algpseudocode,amsmath,amssymb}" in tex
    assert r"\documentclass" not in tex  # a fragment to paste
    for line in [r"\caption{$P \leftarrow \mathrm{GPT2}\left(x, p_{\mathrm{start}} \mid \theta\right)$}",
                 r"\begin{algorithmic}[1]",
                 r"\Statex \parbox[t]{\linewidth}{\hangindent=3em \textbf{Input:} $x \in \{0..\,V - 1\}^{T}$, "
                 r"token IDs}",
                 r"\For{$\ell \in [N]$}",
                 r"  \State $e \leftarrow \mathrm{GPT2Block}\left(e \mid \theta_{\ell}\right)$ "
                 r"\Comment{$e \in \mathbb{R}^{T \times D}$}",
                 r"\EndFor",
                 r"\State $\algorithmicreturn\ P = e \cdot {W_{e}}^{\top}$ \Comment{$P \in \mathbb{R}^{T \times V}$}"]:
        assert line in tex.splitlines(), line
    assert tex.isascii()


def test_options_that_do_not_go_with_tex_are_errors():
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--standalone"])
    assert r.exit_code == 1 and "use it with --format tex" in r.output
    r = CliRunner().invoke(main, ["render", "cards/GPT2.card", "--format", "tex", "--backward"])
    assert r.exit_code == 1 and "--backward and --memory print text" in r.output


# Card text that would be TeX if pasted in as it is (a STRING unquotes \\ to \), and a name that
# would be too: the grammar keeps such characters out of names (W_{QQ} here), so the name is
# put into the IR by hand, to test the box's own escaping.
EVIL = r"""algorithm y ← evil(x | ж)
  "}\\end{document} \\input{/etc/passwd} 100% $x$ # & _ ^ ~ {} <> | -- '' `` γ ∈ ℝ^T ⊙ 😀 é ŷ θ̂"
  convention rows, 0-based
  input  x ∈ ℝ^{n}   "\\input{/etc/passwd}% the rest of the line"
  output y ∈ ℝ^{n}   "}\\end{algorithmic}\\end{algorithm}"
  hyper  n ∈ ℕ       "\\csname end\\endcsname \\def\\x{} ^^M"
  param  ж ∈ ℝ^{n}   "a Cyrillic name"
  param  W_{QQ} ∈ ℝ^{n}  "a name holding TeX"
  1 y ← x ⊙ ж ⊙ W_{QQ}  ▷ y ∈ ℝ^n; \end{document} % \input{/etc/passwd}
  2 return y
"""


def test_hostile_card_text_compiles_and_prints_literally(pdflatex, tmp_path):
    card = swap(parse(EVIL, "evil.card"), "QQ", "\\input /etc/passwd %$#&~^`{}\u2028")
    tex = document([box(check(card, Library(cards={card.name: card})), None)])
    assert tex.isascii()
    rc, log = compile_tex(pdflatex, tmp_path, "evil", tex)
    assert problems(rc, log) is None, problems(rc, log)
    assert "(/etc/passwd" not in log  # never read
    if shutil.which("pdftotext"):  # poppler-utils: what the reader sees
        subprocess.run(["pdftotext", "evil.pdf"], cwd=tmp_path, check=True)
        text = (tmp_path / "evil.txt").read_text("utf-8")
        flat = " ".join(text.split())  # (OT1's \_ is a drawn rule, which pdftotext cannot see)
        for s in [r"}\end{document} \input{/etc/passwd} 100% $x$ # &", r"\input{/etc/passwd}% the rest",
                  r"}\end{algorithmic}\end{algorithm}", r"\end{document} % \input{/etc/passwd}",
                  "[U+1F600]", "[U+0436]", "[U+2028]"]:
            assert s in flat, s


def test_text_escape_table():
    assert tex_text("a\nb\r\tc\x00d\u2028e") == "a b  c d e"  # no \par, no control characters
    assert tex_text(r"\{}$%#&_^~") == (r"\textbackslash{}\{\}\$\%\#\&\_\textasciicircum{}"
                                        r"\textasciitilde{}")
    assert tex_text("--''") == "-{}-'{}'"  # two characters, not an en dash or a quote
    assert tex_text("é θ̂ γ") == r"\'{e} \ensuremath{\hat{\theta}} \ensuremath{\gamma}"
    assert tex_text("😀") == r"\texttt{[U+1F600]}"
    assert tex_text('says "for i" ("x")') == "says ``for i'' (``x'')"  # OT1 would print ” for both


def test_output_is_the_same_every_time():
    def once(seed):
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        cmd = [sys.executable, "-c", "from cardgen.cli import main; main()", "render", "cards/GPT2.card",
               "--format", "tex", "--standalone", "--full"]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True).stdout
    first = once(0)
    assert first and once(1) == first
