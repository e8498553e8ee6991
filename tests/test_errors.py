"""Broken cards: each must fail with a CardError at an exact line and column,
with the key words of its message (and hint), and never with a traceback.

Every case is one row of CASES.  A case's source is written to a fresh
folder as ``case.card`` (bytes as they are, text as UTF-8), beside copies of
the cards it calls, then parsed with ``parse_file`` and checked against a
Library of that folder.  Columns are 1-based and count the two-space indent
of card lines.

Rows marked ``bug=`` are cases where cardgen today raises something other
than a CardError, or reports a misleading position or message: the row says
what it *should* report and runs as a strict xfail until the checker is fixed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import cardgen
from cardgen import CardError
from cardgen.cli import main
from cardgen.lang.check import Library, check
from cardgen.lang.parse import MAX_BYTES

CARDS = Path(__file__).resolve().parent.parent / "cards"


# --------------------------------------------------------------- card makers
PROJ = """\
algorithm Q ← proj(X | W_q, b_q)
  "Projects X."
  input  X ∈ ℝ^{d_x×ℓ}
  output Q ∈ ℝ^{d_a×ℓ}
  hyper  d_a ∈ ℕ
  param  W_q ∈ ℝ^{d_a×d_x}
  param  b_q ∈ ℝ^{d_a}
"""  # 7 lines: steps start on line 8
RET = "return Q = W_q X + b_q 1^⊤"  # a correct last step for PROJ

PROJ_THETA = PROJ.replace("proj(X | W_q, b_q)", "proj(X | θ)")  # θ: all parameters

BLOCK = """\
algorithm Y ← block(X | γ, β)
  "Normalizes each column."
  input  X ∈ ℝ^{d×ℓ}
  output Y ∈ ℝ^{d×ℓ}
  param  γ, β ∈ ℝ^{d}
"""  # 5 lines: steps start on line 6; calls layer_norm (cards/layer_norm.card)

UNEMBED = """\
algorithm P ← unembed(e | W_e)
  "Scores every token."
  convention rows, 0-based
  input  e ∈ ℝ^{T×D}
  output P ∈ ℝ^{T×V}
  hyper  V, D ∈ ℕ
  param  W_e ∈ ℝ^{V×D}
"""  # 7 lines: steps start on line 8

SLICER = """\
algorithm Y ← slicer(X)
  "Slices columns."
  convention rows, 0-based
  input  X ∈ ℝ^{T×D}
  output Y ∈ ℝ^{T×D}
"""  # 5 lines: steps start on line 6

MHA = """\
algorithm Y ← mh(X | 𝓦)
  "Multi-head self-attention."
  input  X ∈ ℝ^{d×ℓ}
  output Y ∈ ℝ^{d×ℓ}
  hyper  H ∈ ℕ
  param  𝓦 = MHAttention[d_x = d, d_z = d, d_out = d, d_attn = d/H, d_mid = d/H]
"""  # 6 lines: steps start on line 7; calls MHAttention, which calls Attention

STACK = """\
algorithm Y ← stack(X | θ)
  "Layers of anything."
  input  X ∈ ℝ^{d×ℓ}
  output Y ∈ ℝ^{d×ℓ}
  hyper  L ∈ ℕ
"""  # 5 lines: a parameter group declared next is line 6


def card(head: str, *steps: str) -> str:
    """``head`` followed by one indented line per step."""
    return head + "".join(f"  {s}\n" for s in steps)


def proj(*steps: str) -> str:
    return card(PROJ, *steps)


def edited(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced by ``new``."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


PROJ_OK = proj("1 " + RET)  # a correct card, for edits to its declarations


def ret_vector(name: str, body: str) -> str:
    """A one-step card over vectors: algorithm y ← name(x), returning body (line 5)."""
    return card(f'algorithm y ← {name}(x)\n  "Vector card."\n  input  x ∈ ℝ^{{d}}\n  output y ∈ ℝ^{{d}}\n',
                f"1 return y = {body}")


PING = ret_vector("ping", "pong(x)")
PONG = ret_vector("pong", "ping(x)")
SELFIE = ret_vector("selfie", "selfie(x)")
DOUBLE_BROKEN = ret_vector("double", "2 ⊙ z")  # z is unknown: line 5, col 20

LONG_SPACES = "  1 A ← X" + " " * 10_000 + "+ "  # then W_qq
# Where the parse tree passes parse.MAX_DEPTH (2000) levels, on these lines.
DEEP_MINUS_COL, DEEP_CALL_COL = 2005, 4001
TOO_LARGE_COL = MAX_BYTES + 1 - len(proj("1 A ← X"))  # the first character past the limit, on line 9
LONG_SUM = "  1 A ← X" + " + X" * 1_000 + " + "  # a flat 4,000-character sum, then W_qq


# --------------------------------------------------------------------- table
@dataclass(frozen=True)
class Case:
    id: str
    src: str | bytes
    line: int
    col: int
    words: tuple[str, ...]          # all must appear in err.message
    hint: tuple[str, ...] = ()      # all must appear in err.hint
    cards: tuple[str, ...] = ()     # callee cards copied from cards/
    beside: tuple[tuple[str, str], ...] = ()  # (name, text): more cards in the folder
    absent: tuple[str, ...] = ()    # must appear in neither message nor hint
    bug: str | None = None          # known checker bug: strict xfail with this reason


def C(id, src, line, col, words, hint=(), **kw) -> Case:  # noqa: A002, N802
    as_tuple = lambda x: (x,) if isinstance(x, str) else tuple(x)  # noqa: E731
    return Case(id, src, line, col, as_tuple(words), as_tuple(hint), **kw)


CASES = [
    # ----------------------------------------------------------- syntax
    C("syntax-missing-arrow", proj("1 A W_q X", "2 return Q = A"),
      8, 7, ("unexpected 'W_q'", '"←"')),
    C("syntax-stray-operator", proj("1 A ← W_q X + * b_q 1^⊤", "2 return Q = A"),
      8, 17, ("unexpected '*'", "expected an expression")),
    C("syntax-unclosed-paren", proj("1 A ← (W_q X + b_q 1^⊤", "2 return Q = A"),
      8, 25, ("unexpected end of line", 'expected ")"')),
    C("syntax-extra-close-paren", proj("1 A ← W_q X) + b_q 1^⊤", "2 return Q = A"),
      8, 14, ("unexpected ')'", "end of line")),
    C("syntax-loop-missing-end", proj("1 for t ∈ [ℓ] do", "2   A ← W_q X", "3 return Q = A"),
      10, 17, "the card ends too early", hint="closing `end`"),
    C("syntax-end-without-loop", proj("1 A ← W_q X", "2 end", "3 return Q = A"),
      9, 5, "end"),
    C("syntax-garbage-token", proj("1 A ← W_q X $ b_q", "2 return Q = A"),
      8, 15, "unexpected character '$'"),
    C("syntax-statement-after-do", proj("1 for t ∈ [ℓ] do A ← 1", "2 end", RET),
      8, 20, "unexpected 'A'", hint="two statements on one line"),
    C("syntax-two-statements-on-a-line", proj("1 A ← W_q X  B ← A", "2 return Q = A"),
      8, 18, "unexpected '←'", hint="two statements on one line"),
    C("syntax-bad-convention", edited(PROJ_OK, 'X."\n', 'X."\n  convention cols, 1-based\n'),
      3, 14, ("unexpected 'cols'", '"columns" or "rows"'), absent=('"]"',)),
    C("syntax-count-by-two", proj("1 for l = 1, 3, …, ℓ do", "2   A ← X", "3 end", "4 " + RET),
      8, 16, "a counting loop goes up by one", hint="for l = 1, 2, …, ℓ do"),
    C("syntax-two-element-set", edited(PROJ_OK, "ℕ\n", "ℕ\n  hyper  M ∈ {0,2}^{ℓ}\n"),
      6, 14, "a two-element set must be {0,1}", hint="{0,1} for booleans"),

    # ------------------------------------------------------- unknown names
    C("name-misspelt-param", proj("1 return Q = W_qq X + b_q 1^⊤"),
      8, 16, "unknown name W_qq", hint="did you mean W_q?"),
    C("name-unknown-no-near-match", proj("1 A ← W_q Y", "2 " + RET),
      8, 13, "unknown name Y", hint="declare it, or bind it"),
    C("name-family-wrong-index", proj("1 for t ∈ [ℓ] : e_t ← X[:, t]", "2 B ← e_u", "3 " + RET),
      9, 9, "unknown name e_u", hint="did you mean e_t?"),
    C("name-function-param-unknown", proj("1 f(φ) ← 1", "2 " + RET),
      8, 7, "unknown name φ"),

    # ------------------------------------------------------------- shapes
    C("shape-matmul-transposable", card(UNEMBED, "1 return P = e · W_e"),
      8, 16, ("cannot multiply", "ℝ^{T×D}", "ℝ^{V×D}", "D ≠ V"), hint="did you mean W_e^⊤?"),
    C("shape-juxtaposed-transposable", card(UNEMBED, "1 return P = e W_e"),
      8, 16, ("cannot multiply", "D ≠ V"), hint="did you mean W_e^⊤?"),
    C("shape-matmul-left-transposable", card(UNEMBED, "1 return P = W_e · e"),
      8, 16, ("cannot multiply", "ℝ^{V×D}", "ℝ^{T×D}", "D ≠ T"), hint="did you mean e^⊤?"),
    C("shape-matmul-operands-swapped", proj("1 return Q = X W_q + b_q 1^⊤"),
      8, 16, ("cannot multiply", "ℝ^{d_x×ℓ}", "ℝ^{d_a×d_x}", "ℓ ≠ d_a")),
    C("shape-add-vector-to-matrix", proj("1 return Q = W_q X + b_q"),
      8, 16, ("cannot add", "ℝ^{d_a×ℓ}", "ℝ^{d_a}", "ℓ ≠ d_a"), hint="b 1^⊤"),
    C("shape-elementwise-mismatch", proj("1 A ← W_q X", "2 return Q = A ⊙ X"),
      9, 16, ("cannot multiply element-wise", "ℝ^{d_a×ℓ}", "ℝ^{d_x×ℓ}", "d_a ≠ d_x")),
    C("shape-false-claim", proj("1 A ← W_q X   ▷ A ∈ ℝ^{d_x×ℓ}", "2 return Q = A + b_q 1^⊤"),
      8, 17, ("the comment claims A ∈ ℝ^{d_x×ℓ}", "computes ℝ^{d_a×ℓ}")),
    C("shape-false-claim-on-return", proj("1 return Q = W_q X + b_q 1^⊤  ▷ Q ∈ ℝ^{ℓ×d_a}"),
      8, 33, ("claims Q ∈ ℝ^{ℓ×d_a}", "computes ℝ^{d_a×ℓ}")),
    C("shape-claim-names-another-value", proj("1 A ← W_q X   ▷ B ∈ ℝ^{d_a×ℓ}", "2 " + RET),
      8, 17, "the comment claims B but this step sets A"),
    C("shape-claim-undefined-dimension", proj("1 A ← W_q X   ▷ A ∈ ℝ^{zz×ℓ}", "2 " + RET),
      8, 26, "dimension zz is undefined"),
    C("shape-index-too-many-axes", proj("1 a ← b_q[1, 2]", "2 " + RET),
      8, 9, "b_q has 1 axis but is indexed with 2", hint="b_q ∈ ℝ^{d_a}"),
    C("shape-negative-slice", card(SLICER, "1 B ← X[:, 2 : 1]", "2 return Y = X"),
      6, 14, "slice"),

    # -------------------------------------------------------------- calls
    C("call-too-many-inputs", card(BLOCK, "1 return Y = layer_norm(X, X | γ, β)"),
      6, 16, "layer_norm takes 1 input(s): e", cards=["layer_norm"]),
    C("call-missing-parameter", card(BLOCK, "1 return Y = layer_norm(X | γ)"),
      6, 16, "layer_norm also needs β after |", hint="layer_norm(e | γ, β)", cards=["layer_norm"]),
    C("call-missing-all-parameters", card(BLOCK, "1 return Y = layer_norm(X)"),
      6, 16, "layer_norm also needs γ, β after |", hint="layer_norm(e | γ, β)", cards=["layer_norm"]),
    C("call-too-many-parameters", card(BLOCK, "1 return Y = layer_norm(X | γ, β, γ)"),
      6, 16, "layer_norm takes 2 argument(s) after |: γ, β", cards=["layer_norm"]),
    C("call-missing-input", card(BLOCK, "1 return Y = layer_norm(| γ, β)"),
      6, 16, "layer_norm needs input e", hint="layer_norm(e | …)", cards=["layer_norm"]),
    C("call-input-wrong-shape", card(BLOCK, "1 return Y = layer_norm(X^⊤ | γ, β)"),
      6, 27, ("layer_norm expects e ∈ ℝ^d", "X^⊤ ∈ ℝ^{ℓ×d}"), cards=["layer_norm"]),
    C("call-input-rank-unbound-dimension",  # Head's T is bound by nothing yet: shown by its name
      card('algorithm y ← Outer(x | W_k, W_q, W_v)\n  convention rows, 0-based\n  input  x ∈ ℝ^D\n'
           '  output y ∈ ℝ^{d_h}\n  hyper  d_h ∈ ℕ\n  param  W_k, W_q, W_v ∈ ℝ^{D×d_h}\n',
           "1 return y = Head(x | W_k, W_q, W_v)"),
      7, 21, ("Head expects X ∈ ℝ^{T×D}", "x ∈ ℝ^D"), cards=["Head"], absent="?"),
    C("call-misspelt-algorithm", card(BLOCK, "1 return Y = layer_nrom(X | γ, β)"),
      6, 16, "unknown algorithm or function layer_nrom", hint="did you mean layer_norm?",
      cards=["layer_norm"]),
    C("call-unknown-algorithm", card(BLOCK, "1 return Y = Foo(X | γ, β)"),
      6, 16, "unknown algorithm or function Foo", hint="<name>.card", cards=["layer_norm"]),
    C("call-misspelt-builtin", proj("1 return Q = softmx(W_q X + b_q 1^⊤)"),
      8, 16, "unknown algorithm or function softmx", hint="did you mean softmax?"),
    C("call-unknown-named-argument", card(MHA, "1 return Y = MHAttention(X | 𝓦, Mosk = 1)"),
      7, 35, "MHAttention has no hyperparameter Mosk", hint="did you mean Mask?",
      cards=["MHAttention", "Attention"]),
    C("call-callee-has-errors", card(BLOCK, "1 return Y = double(X)"),
      6, 16, ("double has errors of its own", "double.card:5:20", "unknown name z"),
      hint="cardgen check", beside=[("double", DOUBLE_BROKEN)]),
    C("call-cycle", PING,
      5, 16, "algorithms call each other in a cycle: ping → pong → ping", beside=[("pong", PONG)]),
    C("call-self-cycle", SELFIE,
      5, 16, "in a cycle: selfie → selfie"),
    C("call-function-arity", card(PROJ_THETA, "1 f(θ) ← Σ_{i=1}^{d_a} b_q[i]", "2 a ← f(θ, θ)", "3 " + RET),
      9, 9, "f takes 1 argument(s)"),

    # ------------------------------------------------------- declarations
    C("decl-param-declared-twice", edited(PROJ_OK, "ℝ^{d_a}\n", "ℝ^{d_a}\n  param  b_q ∈ ℝ^{d_x}\n"),
      8, 3, "b_q is declared twice", hint="first declared on line 7"),
    C("decl-declared-twice-on-one-line", edited(PROJ_OK, "param  b_q ∈", "param  b_q, b_q ∈"),
      7, 3, "b_q is declared twice", absent=("first declared on line 7",)),
    C("decl-undefined-dimension", edited(PROJ_OK, "ℝ^{d_a×d_x}", "ℝ^{d_a×d_y}"),
      6, 23, "dimension d_y is undefined", hint="did you mean d_x?"),
    C("decl-undefined-dimension-no-near", edited(PROJ_OK, "ℝ^{d_a×d_x}", "ℝ^{d_a×n}"),
      6, 23, "dimension n is undefined", hint="hyper n ∈ ℕ"),
    C("decl-group-unknown-card", card(STACK, "param  θ_l = Blok for l ∈ [L]", "1 return Y = X"),
      6, 16, "unknown algorithm Blok", cards=["layer_norm"]),
    C("decl-group-misspelt-card", card(STACK, "param  θ_1 = layer_nom", "1 return Y = X"),
      6, 16, "unknown algorithm layer_nom", hint="did you mean layer_norm?", cards=["layer_norm"]),
    C("decl-group-unknown-dimension", card(edited(MHA, "d_mid = d/H]", "d_mud = d/H]"),
                                           "1 return Y = MHAttention(X | 𝓦, Mask = 1)"),
      6, 14, "MHAttention has no dimension d_mud", hint="d_mid", cards=["MHAttention", "Attention"]),
    C("decl-group-member-undeclared", edited(PROJ_OK, "ℝ^{d_a}\n", "ℝ^{d_a}\n  param  𝓦 = {W_q, b_k}\n"),
      8, 20, "group member b_k is not a declared parameter", hint="did you mean b_q?"),
    C("decl-group-member-index-not-in-for",
      edited(PROJ_OK, "ℝ^{d_a}\n", "ℝ^{d_a}\n  param  V^h_l ∈ ℝ^{d_a} for h ∈ [d_a], l ∈ [d_x]\n"
                                    "  param  𝓦^h = {W_q, V^h_j} for h ∈ [d_a]\n"),
      9, 22, "group member V^h_j is indexed by j, which the group does not repeat over",
      hint="add j ∈ […] to its `for`"),
    C("decl-input-not-in-signature", edited(PROJ_OK, "ℕ\n", "ℕ\n  input  Z ∈ ℝ^{d_x}\n"),
      6, 3, "input Z is declared but not in the signature", hint="proj(X, Z | W_q, b_q)"),
    C("decl-signature-output-undeclared", edited(PROJ_OK, "algorithm Q ←", "algorithm Q, R ←"),
      1, 1, "the signature returns R, which is not declared as an output", hint="output R ∈"),

    # -------------------------------------------------------------- steps
    C("step-output-never-computed", proj("1 A ← W_q X"),
      4, 3, "output Q is never computed", hint="return Q ="),
    C("step-return-non-output", proj("1 A ← W_q X", "2 return A = A"),
      9, 12, "return A: A is not an output of proj", hint="outputs: Q"),
    C("step-assign-hyperparameter", proj("1 d_a ← 3", "2 " + RET),
      8, 5, "d_a is a hyperparameter; it cannot be assigned", hint="bind a new name"),
    C("step-assign-loop-index", proj("1 for t ∈ [ℓ] do", "2   t ← 1", "3 end", "4 " + RET),
      9, 7, "t is a loop index; it cannot be assigned"),
    C("step-loop-index-hides-hyper", proj("1 for d_a ∈ [ℓ] do", "2   A ← X", "3 end", "4 " + RET),
      8, 5, "loop index d_a hides hyper d_a", hint="another index name"),
    C("step-forall-range-not-inferable", proj("1 ∀t: a_t ← 1", "2 " + RET),
      8, 5, "cannot tell what t ranges over", hint="for t ∈ [n]"),
    C("step-sum-range-not-inferable", proj("1 s ← Σ_u 1", "2 " + RET),
      8, 9, "cannot tell what u ranges over", hint="Σ_{u=1}^{n}"),
    C("step-family-list-misses-first", proj("1 for t ∈ [ℓ] : e_t ← W_q X[:, t]", "2 Y ← [e_2, …, e_ℓ]",
                                            "3 return Q = Y + b_q 1^⊤"),
      9, 10, ("the list must run over the whole family", "1…ℓ")),
    C("step-family-list-misses-last", proj("1 for t ∈ [ℓ] : e_t ← W_q X[:, t]",
                                           "2 Y ← [e_1, e_2, …, e_{ℓ−1}]", "3 return Q = Y + b_q 1^⊤"),
      9, 23, ("the list must run over the whole family", "1…ℓ")),
    C("step-condition-not-boolean", proj("1 A ← X", "2 if A then A ← X", "3 " + RET),
      9, 8, "a condition must be true or false"),

    # ----------------------------------------------- files, bytes and size
    C("file-empty", b"", 1, 1, "the file is empty"),
    C("file-whitespace-only", b"  \n\t\n   \n", 1, 1, "the file is empty"),
    C("file-binary-nul", b"\x00\x00\x00\x01garbage", 1, 1, "NUL", hint="binary file"),
    C("file-nul-mid-line", 'algorithm Y ← f(X)\n  "x"\x00\n'.encode(), 2, 6, "NUL", hint="binary file"),
    C("file-invalid-utf8", 'algorithm Y ← f(X)\n  "caf'.encode() + b'\xff"\n', 2, 7,
      "byte 0xff is not UTF-8", hint="binary file"),
    C("file-invalid-utf8-after-multibyte", 'algorithm Y ← f(X)\n  "ℝ∈'.encode() + b'\xff"\n', 2, 6,
      "byte 0xff is not UTF-8"),
    C("file-png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1, 1, "byte 0x89 is not UTF-8"),
    C("file-utf16", "algorithm Y ← f(X)\n".encode("utf-16"), 1, 1, "byte 0xff is not UTF-8"),
    C("file-too-large", proj("1 A ← X", "▷ " + "x" * MAX_BYTES), 9, TOO_LARGE_COL,
      (f"cards are at most {MAX_BYTES:,}", f"the file is {len(proj('1 A ← X', '▷ ' + 'x' * MAX_BYTES)):,}"),
      hint="split it into cards"),
    C("deep-nesting-parens-are-harmless", proj("1 A ← " + "(" * 500 + "W_qq" + ")" * 500, "2 " + RET),
      8, 509, "unknown name W_qq"),
    C("deep-nesting-calls", proj("1 A ← " + "exp(" * 1500 + "X" + ")" * 1500, "2 " + RET),
      8, DEEP_CALL_COL, "nested more than 2000 levels deep", hint="split it into steps"),
    C("deep-nesting-unary-minus", proj("1 A ← " + "−" * 2_000 + "X", "2 " + RET),
      8, DEEP_MINUS_COL, "nested more than 2000 levels deep"),
    C("long-line-of-spaces", proj(LONG_SPACES[2:] + "W_qq", "2 " + RET),
      8, len(LONG_SPACES) + 1, "unknown name W_qq", hint="did you mean W_q?"),
    C("long-line-flat-sum", proj(LONG_SUM[2:] + "W_qq", "2 " + RET),
      8, len(LONG_SUM) + 1, "unknown name W_qq", hint="did you mean W_q?"),
    C("brackets-in-description",
      edited(proj("1 return Q = W_qq X"), '"Projects X."', '"Projects X ' + "(" * 70 + '"'),
      8, 16, "unknown name W_qq"),
]


def write_case(case: Case, folder: Path) -> Path:
    for name in case.cards:
        shutil.copy(CARDS / f"{name}.card", folder / f"{name}.card")
    for name, text in case.beside:
        (folder / f"{name}.card").write_text(text, "utf-8")
    path = folder / "case.card"
    if isinstance(case.src, bytes):
        path.write_bytes(case.src)
    else:
        path.write_text(case.src, "utf-8")
    return path


def first_error(case: Case, folder: Path) -> CardError:
    path = write_case(case, folder)
    with pytest.raises(CardError) as info:
        card = cardgen.parse_file(path)
        check(card, Library(folders=[str(folder)]))
    return info.value


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else [])
    for c in CASES])
def test_broken_card(case: Case, tmp_path: Path):
    err = first_error(case, tmp_path)
    shown = str(err)
    assert (err.line, err.col) == (case.line, case.col), shown
    for word in case.words:
        assert word in err.message, shown
    for word in case.hint:
        assert err.hint is not None and word in err.hint, shown
    for word in case.absent:
        assert word not in err.message + (err.hint or ""), shown
    head = f"{tmp_path / 'case.card'}:{case.line}:{case.col}: error: {err.message}"
    assert shown.splitlines()[0] == head


def test_enough_cases():
    assert len(CASES) >= 36
    assert len({c.id for c in CASES}) == len(CASES)


# ----------------------------------------------------------------------- CLI
def run_check(*paths: Path):
    result = CliRunner().invoke(main, ["check", *map(str, paths)])
    return result, result.output


def test_cli_check_broken_card(tmp_path: Path):
    bad = tmp_path / "proj.card"
    bad.write_text(proj("1 return Q = W_qq X + b_q 1^⊤"), "utf-8")
    result, out = run_check(bad)
    assert result.exit_code == 1, out
    assert f"{bad}:8:16: error: unknown name W_qq" in out
    assert "hint: did you mean W_q?" in out
    assert "1 of 1 card failed" in out
    assert "Traceback" not in out
    assert isinstance(result.exception, SystemExit)


def test_cli_check_binary_file(tmp_path: Path):
    bad = tmp_path / "image.card"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    result, out = run_check(bad)
    assert result.exit_code == 1, out
    assert f"{bad}:1:1: error: byte 0x89 is not UTF-8" in out
    assert "Traceback" not in out
    assert isinstance(result.exception, SystemExit)


def test_cli_check_reports_each_broken_file(tmp_path: Path):
    good = tmp_path / "good.card"
    good.write_text(proj("1 " + RET), "utf-8")
    bad = tmp_path / "bad.card"
    bad.write_text(proj("1 A ← W_q X + * b_q 1^⊤", "2 return Q = A"), "utf-8")
    result, out = run_check(tmp_path)
    assert result.exit_code == 1, out
    assert f"{bad}:8:17: error: unexpected '*'" in out
    assert "1 of 2 cards failed" in out
    assert "Traceback" not in out


def test_cli_check_checker_crash_is_an_error(tmp_path: Path):
    bad = tmp_path / "slicer.card"
    bad.write_text(card(SLICER, "1 B ← X[:, 2 : 1]", "2 return Y = X"), "utf-8")
    result, out = run_check(bad)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1
    assert f"{bad}:6:14: error:" in out
    assert "Traceback" not in out


def test_cli_check_deep_file_among_others(tmp_path: Path):
    deep = tmp_path / "deep.card"
    deep.write_text(proj("1 A ← " + "−" * 2_000 + "X", "2 " + RET), "utf-8")
    bad = tmp_path / "other.card"
    bad.write_text(proj("1 return Q = W_qq X + b_q 1^⊤"), "utf-8")
    result, out = run_check(tmp_path)
    assert result.exit_code == 1, out
    assert f"{deep}:8:" in out
    assert f"{bad}:8:16: error: unknown name W_qq" in out
    assert "2 of 2 cards failed" in out
