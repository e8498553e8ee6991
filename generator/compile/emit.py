"""Checked card -> a module: forward, derived backward, parameter init.

Jinja2 lays the module out (``templates/module.py.j2``); the statements come
from the core IR, one line per op, printed by the target's table
(``targets.py``: ``npcode.PRINT`` for NumPy, ``xpcode.PRINT`` for the array
API).  :func:`module_parts` does all that can refuse a card, so ``cardgen
check`` stops there and never loads Jinja (``template.py``, ~20 ms).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from fractions import Fraction

from ..lang.check import Checked, Library
from ..lang.errors import CardError
from ..lang.render import pseudocode
from ..lang.shapes import Poly, poly_text
from . import causal
from .ad import Backward, BLoop, NoDerivativeError, differentiate
from .core import Loop, Op, Program, walk
from .lower import LoweringError, lower
from .memory import _epilogue, holders, inplace_expr, plan, share_buffers
from .naming import ascii_name
from .npcode import at_index, py_dim
from .pytext import comment, docstring, header_path, number
from .targets import DEFAULT, TARGETS, Target
from .wrappers import wrapper_code

COMMENT_COL = 60


def shape_comment(shape, batched: bool) -> str:
    dims = ["…"] if batched else []
    dims += [poly_text(d) if isinstance(d, Poly) else str(d) for d in shape]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


class Writer:
    """Turns a body of core ops (and loops) into indented Python lines."""

    def __init__(self, card_lines: dict[str, str], inplace: dict[int, int] | None = None, side: str = "f",
                 card: str = "", target: Target = TARGETS[DEFAULT], blocks: dict[int, str] | None = None):
        self.target = target
        self.causal = blocks or {}  # id(op) -> how causal.plan computes it in row blocks (target.causal)
        self.lines: list[str] = []
        self.card_lines = card_lines
        self.last_step = None
        self.inplace = inplace or {}
        self.card = card
        self.side = f"{card}:{side}"  # keys never meet another card's, or the other pass's
        self.loop_var: str | None = None
        self.per_layer: set[str] = set()  # values kept for every layer (saved for the backward)
        self.alternate: set[str] | None = None  # values a layer hands to the next (None: every value)
        self.slots: dict[int, str] = {}  # id(op) -> the shared workspace array it writes (memory.share_buffers)
        self.blocks = 0
        self.loops = 0  # loop bodies given shared arrays so far

    def share(self, block: list, live_out: set[str], exclude: set[str] = frozenset()):
        """Workspace arrays shared, within ``block``, by values that die at different times."""
        if self.target.in_place:
            self.blocks += 1
            if self.loop_var is None:
                place = "top"
            else:
                self.loops += 1
                place = f"loop{self.loops}"
            for k, (shape, n, dead_after) in share_buffers(block, self.inplace, set(live_out), set(exclude)).items():
                # The forward's arrays whose values all die in their block are free once it returns: the
                # backward's block at the same place (the body, or the k-th loop) uses them too. The
                # forward's others hold what the backward reads.
                shared = dead_after or self.side.endswith(":b")
                where = f"{self.card}:@{place}" if shared else f"{self.side}@{self.blocks}"
                self.slots[k] = f"{where}{shape_comment(*shape)}/{n}"
        self.params: set[str] = set()  # parameter names (a stacked gradient is shaped like params.X)

    def buffer(self, op: Op) -> str:
        """The workspace array an op writes into: one per value; inside a layer loop one per
        layer for values kept across layers, else two that alternate between layers."""
        key = repr(f"{self.side}{op.out}")
        if id(op) in self.slots:  # dies in its block: an array it shares with values dead by then
            key = repr(self.slots[id(op)])
        elif self.loop_var is not None and op.out in self.per_layer:
            key = f"({key}, {self.loop_var})"
        elif self.loop_var is not None and (self.alternate is None or op.out in self.alternate):
            key = f"({key}, {self.loop_var} % 2)"  # two that alternate: the next layer reads this one's
        dims = ", ".join(py_dim(d) for d in op.shape) + ("," if len(op.shape) == 1 else "")
        shape = f"batch + ({dims})" if op.batched else f"({dims})"
        return f"_buf(workspace, {key}, {shape}, dtype)"

    def note_step(self, step, indent):
        if step and step != self.last_step:
            text = self.card_lines.get(step)
            if text:
                self.lines.append(indent + "# " + comment(text))
            self.last_step = step

    def op(self, op: Op, indent: str, shape_names: dict[str, str]):
        self.note_step(op.step, indent)
        k = self.inplace.get(id(op))
        expr = inplace_expr(op, k) if k is not None else None
        if expr is None and self.target.in_place and op.kind == "real" and (op.shape or op.batched):
            how = self.causal.get(id(op))
            expr = (self.target.causal[how] if how else self.target.out_expr)(op, self.buffer(op))
        code = f"{indent}{op.out} = {expr or self.target.op_expr(op)}"
        shape = comment(shape_comment(op.shape, op.batched))
        pad = max(1, COMMENT_COL - len(code))
        self.lines.append(code + " " * pad + "# " + shape)
        if op.out in shape_names:
            self.lines.append(f"{indent}{shape_names[op.out]} = {op.out}.shape")


def card_line_map(checked: Checked, lib: Library) -> dict[str, str]:
    """``Card:line`` -> the card's source line, for step comments."""
    out = {}
    seen = set()

    def add(ch: Checked):
        if ch.card.name in seen:
            return
        seen.add(ch.card.name)
        for i, text in enumerate(ch.card.source.split("\n"), start=1):
            out[f"{ch.card.name}:{i}"] = f"{ch.card.name} {text.strip()}" if ch is not checked \
                else text.strip()
        from ..lang.check_call import callees
        for c in callees(ch.card):
            sub = lib.checked(c)
            if sub is not None:
                add(sub)
    add(checked)
    return out


def module_source(checked: Checked, lib: Library, source_path: str, target: str = DEFAULT) -> str:
    """The generated module for one card, as text, for a target of ``targets.TARGETS``."""
    return render_module(module_parts(checked, lib, source_path, target))


def render_module(parts: dict) -> str:
    """The module text of :func:`module_parts`, laid out by the template."""
    from .template import render
    return render("module.py.j2", parts)


def module_parts(checked: Checked, lib: Library, source_path: str, target: str = DEFAULT) -> dict:
    """Everything the module template lays out: the card lowered, its backward derived, every line
    printed. Raises the ``CardError`` a build would; laying the parts out cannot refuse a card."""
    try:
        return _module_parts(checked, lib, source_path, target)
    except CardError as e:  # a rule that knew the node but not the file
        raise e.located(checked.card.path, checked.card.source) from None


def _module_parts(checked: Checked, lib: Library, source_path: str, target: str) -> dict:
    tg = TARGETS[target]
    prog = lower(checked, lib)
    if prog.wrapper and not tg.in_place:
        raise LoweringError(f"the {target} target compiles model cards; {checked.card.name} is a {prog.wrapper} "
                            "card: build it for the numpy target", checked.card.pos)
    names = prog.names
    names.count = 10_000  # backward temporaries never meet forward ones
    try:
        bwd = differentiate(prog, names, [names.fresh("d_" + o) for o in output_names(prog, checked)])
    except NoDerivativeError as e:
        raise locate_step(e, lib) from None
    card = checked.card
    shape_names = {x: s for s, x in bwd.shapes}
    card_lines = card_line_map(checked, lib)
    blocks = causal_blocks(prog, bwd) if tg.causal else {}
    back = drop_unused(backward_lines(prog, bwd, card_lines, tg, blocks))
    needed = {m.group(1) for line in back if (m := re.match(r'\s*(\w+) = cache\["', line))}
    fwd = forward_lines(prog, bwd, shape_names, card_lines, needed, tg, blocks)
    hypers = config_fields(checked, prog)
    have = {h["field"] for h in hypers}
    inherited = callee_defaults(checked, lib)
    for s, how in prog.dims.items():  # a wrapper's model sizes (d_e, L, …) are configured too
        field = how.removeprefix("config.")
        if how.startswith("config.") and field not in have:
            row = {"field": field, "type": "int", "default": None, "derived": inherited.get(field),
                   "comment": comment(f"{s} — a size of the model the card trains or runs")}
            if row["derived"] is not None:
                row.update(type="int | None", default="None")
                hypers.append(row)
            else:
                hypers.insert(0, row)
            have.add(field)
    derived_defaults(hypers)
    for s in param_dims(prog):
        hypers.insert(0, {"field": ascii_name(s), "type": "int", "default": None,
                          "comment": comment(f"{s} — length of an input axis; sizes parameters")})
    params = param_fields(checked, prog)
    inputs = [v.name for v in prog.inputs]
    args = ", ".join(inputs + (["rng: np.random.Generator | None = None"] if prog.draws else []))
    rng_doc = ["rng: the generator of the card's random choices (`with probability`); by default the",
               "same fixed draw every call (np.random.default_rng(0)), so forward is a function of its",
               "arguments; pass one generator to every call for fresh draws, reproducible from its seed."]
    text = pseudocode(card, checked.claims)
    out_name = ", ".join(output_names(prog, checked))
    return dict(
        source=header_path(source_path), sha=hashlib.sha256(card.source.encode("utf-8")).hexdigest(),
        name=docstring(comment(card.name)), purpose=docstring(comment(card.purpose or card.name)),
        card_text=docstring("\n".join("    " + line if line else "" for line in text.removesuffix("\n").split("\n"))),
        input_list=", ".join(inputs + (["rng"] if prog.draws else [])), input_args=args, output=out_name,
        output_grad=", ".join(bwd.output_grads),
        hypers=hypers, params=params, init_dims=init_dims(prog),
        signature=docstring(comment(f"{', '.join(card.outputs)} ← {card.name}(...)")),
        input_docs=[docstring(comment(f"{v.name}: {shape_comment(v.shape, v.batched)} "
                                      f"{'token ids' if v.kind == 'int' else ''}")) for v in prog.inputs]
        + (rng_doc if prog.draws else []),
        output_shape=docstring(comment(", ".join(shape_comment(o.shape, o.batched) for o in prog.outputs))),
        input_ranks=_ranks(prog.inputs), output_ranks=_ranks(prog.outputs),
        forward=drop_unused(fwd + [f"return {', '.join(o.name for o in prog.outputs)}, cache"]),
        backward=back, helpers=tg.helpers, extra=wrapper_code(prog, checked), target=target,
    )


def causal_blocks(prog: Program, bwd: Backward) -> dict[int, str]:
    """causal.plan over both passes; what leaves them (saved, outputs, gradients) is computed whole."""
    escaping = set(bwd.saved) | {v for names in bwd.saved_in_loops.values() for v in names}
    escaping |= {o.name for o in prog.outputs}
    escaping |= {g for g in (*bwd.param_grads.values(), *bwd.input_grads.values()) if g}
    return causal.plan(prog.body, bwd.body, escaping)


def _ranks(values) -> str:
    """``{"X": 2, "t": None}``: each value's axes in the card, None for one that takes no batch axes."""
    return "{" + ", ".join(f'"{v.name}": {len(v.shape) if v.batched else None}' for v in values) + "}"


SETUP = re.compile(r"^(\s*)(\w+) = (config\.\w+|cache\[\"\w+\"\]|params\.\w+|[\w.]+\.shape(\[-?\d+\])?"
                   r"|np\.result_type\(\w+\)|np\.shape\(.*\)\[.*\]|\(\)"
                   r"|\w+\.dtype|tuple\(\w+\.shape\[.*\]\)|array_namespace\(.*\)|_device\(\w+\)|None)$")


WORD = re.compile(r"(?<![\w.])\w+")  # x.dtype is no use of dtype


LITERALS = re.compile(r"'[^']*'|\"[^\"]*\"")


def drop_unused(lines: list[str]) -> list[str]:
    """Set-up lines (a size from config, a value from the cache) for names nothing reads."""
    def code(line: str) -> str:  # comments and string literals are no use of a name
        return LITERALS.sub("", line.split("#")[0])
    uses = Counter(WORD.findall("\n".join(code(line) for line in lines)))  # one pass, not one per line
    kept = []
    for line in lines:
        m = SETUP.match(line)
        if m and uses[m.group(2)] == WORD.findall(code(line)).count(m.group(2)):
            continue  # read nowhere but on its own line
        kept.append(line)
    return kept


def output_names(prog: Program, checked: Checked) -> list[str]:
    """What forward returns: the card's outputs; a training card's loss; an inference card's model output."""
    if prog.wrapper == "training":
        return ["loss"]
    if prog.wrapper == "inference":
        return [ascii_name(prog.lowerer.model_step.target.attr)]
    return [ascii_name(o) for o in checked.card.outputs]


def locate_step(err: CardError, lib: Library) -> CardError:
    """Point an error about a core op back at the card step it came from."""
    from ..lang.ir import Pos
    name, _, line = (err.step or "").rpartition(":")
    card = lib.card(name) if name else None
    if card is None or not line.isdigit():
        return err
    ln = int(line)
    lines = card.source.split("\n")  # numbered as Lark numbers them
    text = lines[ln - 1] if 0 < ln <= len(lines) else ""
    col = len(text) - len(text.lstrip()) + 1
    err.pos = Pos(ln, col, ln, len(text) + 1)
    err.path, err.source = card.path, card.source
    return err


def dim_lines(prog: Program, source: str = "forward") -> list[str]:
    lines = []
    for sym, how in prog.dims.items():
        lines.append(f"{ascii_name(sym)} = {how}")
    return lines


def init_dims(prog: Program) -> list[str]:
    used = {s for p in prog.params for d in p.shape for s in d.symbols()}
    return [f"{ascii_name(s)} = config.{ascii_name(s)}" for s in prog.dims if s in used]


def param_dims(prog: Program) -> list[str]:
    """Dimensions that size parameters but come from inputs: Config needs them to draw parameters."""
    used = {s for p in prog.params for d in p.shape for s in d.symbols()}
    return [s for s, how in prog.dims.items() if s in used and not how.startswith("config.")]


def forward_lines(prog: Program, bwd: Backward, shape_names, card_lines, needed: set[str],
                  target: Target = TARGETS[DEFAULT], blocks: dict[int, str] | None = None) -> list[str]:
    for item in prog.body:
        if isinstance(item, Loop):
            item.saved_names = bwd.saved_in_loops.get(item.var, [])
    keep = set(saved_names(prog, bwd)) | {v.name for v in prog.outputs} | set(shape_names)
    w = Writer(card_lines, plan(prog.body, keep) if target.in_place else {}, card=prog.name, target=target,
               blocks=blocks)
    w.share(prog.body, keep)
    if prog.draws:
        w.lines.append("rng = np.random.default_rng(0) if rng is None else rng")
    w.lines += dim_lines(prog)
    for _h, local in prog.hyper_names.items():
        if local not in {ascii_name(s) for s in prog.dims}:
            w.lines.append(f"{local} = config.{local}")
    for p in prog.params:
        w.lines.append(f"{p.name} = params.{p.name}")
    for v in prog.inputs + prog.params:
        if v.name in shape_names:
            w.lines.append(f"{shape_names[v.name]} = {v.name}.shape")
    if not target.in_place:  # the namespace of the arrays given: NumPy, PyTorch, JAX, CuPy, …
        arrays = [v.name for v in prog.inputs if v.shape or v.batched]
        w.lines.append(f"xp = array_namespace({', '.join(arrays + ['*vars(params).values()'])})")
    w.lines += check_lines(prog, target)
    w.lines += layout_lines(prog, target)
    body(prog.body, w, "", shape_names, bwd)
    saved = saved_names(prog, bwd)
    dims = [ascii_name(s) for s in prog.dims]
    layout = ["batch", "dtype"] + ([] if target.in_place else ["device"])
    items = [f'"{n}": {n}' for n in dims + layout + saved + [f"saved_{v}" for v in bwd.saved_in_loops]
             if n in needed]  # what the backward reads, and nothing else
    w.lines.append("cache = {" + ", ".join(items) + "}")
    return w.lines


def check_lines(prog: Program, target: Target = TARGETS[DEFAULT]) -> list[str]:
    """Reject wrong inputs and parameters with a message in the card's terms, before any work."""
    from ..lang.render import set_text
    config_dims = {s for s, how in prog.dims.items() if how.startswith("config.")}

    def expected(shape):
        return "(" + "".join(f"{py_dim(d) if set(d.symbols()) <= config_dims else None}, " for d in shape) + ")"
    lines = []
    for v in prog.inputs:
        decl = prog.input_sets.get(v.name)
        lo, hi = "None", "None"
        if v.name in prog.token_bounds:
            lo, hi = str(prog.base), py_dim(prog.token_bounds[v.name] - Poly.const(1 - prog.base))
        kind = {"int": "i", "bool": "b"}.get(v.kind, "f")
        xp = "" if target.in_place else "xp, "
        lines.append(f"_check_input({xp}{v.name!r}, {v.name}, {expected(v.shape)}, {kind!r}, {lo}, {hi}, "
                     f"{decl!r})")
        if v.kind == "bool":  # a mask given as 0/1 numbers
            lines.append(f"{v.name} = _as_mask({xp}{v.name!r}, {v.name}, {decl!r})")
    shapes = ", ".join(f"{p.name!r}: {expected(p.shape)}" for p in prog.params)
    if prog.params:
        lines.append(f"_check_params(params, {{{shapes}}})")
    lines += division_checks(prog)
    del set_text
    return lines


def division_checks(prog: Program) -> list[str]:
    """A size the card divides (``D/H``) must divide evenly, else ``D // H`` silently drops the rest
    (or a reshape fails in NumPy's terms): one check per quotient, in the card's terms."""
    shapes = [v.shape for v in prog.inputs + prog.params] + [op.shape for op in walk(prog.body)]
    shapes += [(item.count,) for item in prog.body if isinstance(item, Loop)]
    seen: dict[str, tuple[Poly, Poly]] = {}
    for dim in dict.fromkeys(d for shape in shapes for d in shape if isinstance(d, Poly)):  # each once, in order
        for mono, coef in dim.terms:
            den = Poly(((tuple((s, -e) for s, e in mono if e < 0), Fraction(coef.denominator)),))
            if den == Poly.const(1):
                continue
            num = Poly(((tuple((s, e) for s, e in mono if e > 0), Fraction(abs(coef.numerator))),))
            seen.setdefault(poly_text(num.divide(den)), (num, den))
    lines = [f"_check_divides({text!r}, {py_dim(num)}, {py_dim(den)}, {poly_text(num)!r}, {poly_text(den)!r})"
             for text, (num, den) in seen.items()]
    # A length such as ℓ − 11 (Σ_{t=11}^{ℓ−1}) is negative for a sequence too short for the card.
    differences = {poly_text(d): d for shape in shapes for d in shape
                   if isinstance(d, Poly) and any(c < 0 for _, c in d.terms)}
    for text, d in differences.items():
        sizes = "".join(f"({s!r}, {ascii_name(s)}), " for s in d.symbols())
        lines.append(f"_check_length({text!r}, {py_dim(d)}, ({sizes}))")
    return lines


def layout_lines(prog: Program, target: Target = TARGETS[DEFAULT]) -> list[str]:
    """The batch axes and the float dtype, which size every workspace buffer."""
    reals = [v for v in prog.params + prog.inputs if v.kind == "real"]
    batched = next((v for v in prog.inputs if v.batched), None)
    if not target.in_place:
        dtype = f"{reals[0].name}.dtype" if reals else "xp.float64"
        batch = f"tuple({batched.name}.shape[:{batched.name}.ndim - {len(batched.shape)}])" if batched else "()"
        device = f"_device({reals[0].name})" if reals else "None"  # arrays made here go beside the inputs
        return [f"dtype = {dtype}", f"device = {device}", f"batch = {batch}"]
    dtype = f"np.result_type({reals[0].name})" if reals else "np.float64"
    batch = f"np.shape({batched.name})[:np.ndim({batched.name}) - {len(batched.shape)}]" if batched else "()"
    return [f"dtype = {dtype}", f"batch = {batch}"]


def saved_names(prog: Program, bwd: Backward) -> list[str]:
    """What the forward keeps for the backward: the values it reads, the shapes
    it needs, and scalar inputs (slice offsets such as p_start)."""
    out = list(bwd.saved)
    inside = _in_loops(prog)
    out += [s for s, x in bwd.shapes if s not in out and x not in inside]  # saved once, not per layer
    out += [v.name for v in prog.inputs if not v.shape and v.name not in out]
    return out


def _in_loops(prog) -> set[str]:
    """The values defined inside a loop body."""
    inside = set()
    for item in prog.body:
        if isinstance(item, Loop):
            inside |= {op.out for op in walk(item.body)} | {i for _, i, _ in item.carried}
    return inside


def body(items, w: Writer, indent: str, shape_names, bwd: Backward):
    for item in items:
        if isinstance(item, Loop):
            loop(item, w, indent, shape_names, bwd)
        else:
            w.op(item, indent, shape_names)


def loop(lp: Loop, w: Writer, indent: str, shape_names, bwd: Backward):
    saved = bwd.saved_in_loops.get(lp.var, [])
    w.note_step(lp.step, indent)
    for outer, inner, _ in lp.carried:
        w.lines.append(f"{indent}{inner} = {outer}")
    if saved:
        w.lines.append(f"{indent}saved_{lp.var} = []")
    for whole, v, _axis, dims in lp.stacks:  # a recurrence's output, filled one step at a time
        batched = bwd.values[v].batched
        shape = ", ".join(py_dim(d) for d in dims) + ("," if len(dims) == 1 else "")
        key = repr(f"{w.side}{whole}")
        w.lines.append(f"{indent}{whole} = _buf(workspace, {key}, {'batch + ' if batched else ''}({shape}), dtype)"
                       if w.target.in_place else f"{indent}{whole} = []  # one step at a time, stacked after the loop")
    w.lines.append(f"{indent}for {lp.var} in range({py_dim(lp.count)}):")
    keep = holders(lp.body, w.inplace, saved)
    # A layer that saves (a view of) its input keeps the previous layer's output alive too.
    keep = holders(lp.body, w.inplace, keep | {res for _, inner, res in lp.carried if inner in keep})
    w.loop_var, w.per_layer = lp.var, keep
    if all(isinstance(x, Op) for x in lp.body):  # what dies within its layer needs one array, not two
        w.alternate = holders(lp.body, w.inplace, {res for _, _, res in lp.carried})
        w.share(lp.body, _epilogue(lp) | keep, keep | w.alternate)
    for _, inner, _ in lp.carried:
        if inner in shape_names:
            w.lines.append(f"{indent}    {shape_names[inner]} = {inner}.shape")
    body(lp.body, w, indent + "    ", shape_names, bwd)
    for whole, v, axis, dims in lp.stacks:
        w.lines.append(f"{indent}    {whole}[{at_index(lp.var, axis, len(dims), True)}] = {v}" if w.target.in_place
                       else f"{indent}    {whole}.append({v})")
    if saved:
        w.lines.append(f"{indent}    saved_{lp.var}.append(({', '.join(saved)},))")
    for _, inner, res in lp.carried:
        w.lines.append(f"{indent}    {inner} = {res}")
    if not w.target.in_place:
        for whole, _v, axis, _dims in lp.stacks:
            w.lines.append(f"{indent}{whole} = xp.stack({whole}, axis={axis})")
    for new, res in lp.outs:
        inner = next(i for o, i, r in lp.carried if r == res)
        w.lines.append(f"{indent}{new} = {inner}")
        if new in shape_names:
            w.lines.append(f"{indent}{shape_names[new]} = {new}.shape")
    for whole, *_ in lp.stacks:
        if whole in shape_names:
            w.lines.append(f"{indent}{shape_names[whole]} = {whole}.shape")
    w.last_step = None
    w.loop_var, w.alternate = None, None


def backward_lines(prog: Program, bwd: Backward, card_lines, target: Target = TARGETS[DEFAULT],
                   blocks: dict[int, str] | None = None) -> list[str]:
    keep = {g for g in list(bwd.param_grads.values()) + list(bwd.input_grads.values()) if g}
    w = Writer(card_lines, plan(bwd.body, keep) if target.in_place else {}, side="b", card=prog.name, target=target,
               blocks=blocks)
    w.share(bwd.body, keep)
    w.params = {p.name for p in prog.params}
    if not target.in_place:
        w.lines.append(f"xp = array_namespace({', '.join(bwd.output_grads)})")
    dims = [ascii_name(s) for s in prog.dims]
    saved = saved_names(prog, bwd)
    for _h, local in prog.hyper_names.items():
        if local not in dims:
            w.lines.append(f"{local} = config.{local}")
    layout = ["batch", "dtype"] + ([] if target.in_place else ["device"])
    for n in dims + layout + saved + [f"saved_{v}" for v in bwd.saved_in_loops]:
        if n in {p.name for p in prog.params}:
            w.lines.append(f"{n} = params.{n}")
        else:
            w.lines.append(f'{n} = cache["{n}"]')
    bbody(bwd.body, w, "", bwd)
    grads = []
    for p in prog.params:
        g = bwd.param_grads.get(p.name)
        zeros = "np.zeros_like" if target.in_place else "xp.zeros_like"
        grads.append(f"{p.name}={g if g else f'{zeros}(params.{p.name})'}")
    w.lines.append("grads = Params(" + ", ".join(grads) + ")")
    ins = ", ".join(f'"{k}": {v}' for k, v in bwd.input_grads.items())
    w.lines.append("return grads, {" + ins + "}")
    return w.lines


def bbody(items, w: Writer, indent: str, bwd: Backward):
    for item in items:
        if isinstance(item, BLoop):
            bloop(item, w, indent, bwd)
        else:
            w.op(item, indent, {})


def bloop(bl: BLoop, w: Writer, indent: str, bwd: Backward):
    lp = bl.loop
    for res, g in bl.seeds:
        w.lines.append(f"{indent}{bl.carry[res]} = {g}")
    seeded = {res for res, _ in bl.seeds}
    zeros = "np.zeros({}, dtype)" if w.target.in_place else "xp.zeros({}, dtype=dtype, device=device)"
    for res, name in bl.carry.items():
        if res not in seeded:
            w.lines.append(f"{indent}{name} = {zeros.format(bl.zeros[res])}")
    stack_axes = {bl.stacked_grads[stacked]: bl.slice_axes[per_layer] for per_layer, stacked in bl.sliced.items()}
    for stacked, grad in bl.stacked_grads.items():
        if w.target.in_place:
            shape = f"params.{stacked}.shape" if stacked in w.params else bl.stacked_shapes[stacked]
            w.lines.append(f"{indent}{grad} = _buf(workspace, {w.side + grad!r}, {shape}, dtype)")
            w.lines.append(f"{indent}{grad}.fill(0)")
        else:  # one gradient per step in a list, stacked after the loop: no writes into an array
            w.lines.append(f"{indent}{grad} = [0] * {py_dim(lp.count)}")
    for _, acc in bl.closure.values():
        w.lines.append(f"{indent}{acc} = 0")
    w.lines.append(f"{indent}for {lp.var} in reversed(range({py_dim(lp.count)})):")
    w.loop_var, w.per_layer = lp.var, set()
    if all(isinstance(x, Op) for x in bl.body):  # what dies within its layer needs one array, not two
        handed = {bl.body_grads[i] for _, i, res in lp.carried if i in bl.body_grads and res in bl.carry}
        w.alternate = holders(bl.body, w.inplace, handed)
        w.share(bl.body, _epilogue(bl), w.alternate)
    inner = indent + "    "
    if bl.saved:
        w.lines.append(f"{inner}{', '.join(bl.saved)}, = saved_{lp.var}[{lp.var}]")
    bbody(bl.body, w, inner, bwd)
    for per_layer, stacked in bl.sliced.items():
        grad = bl.stacked_grads[stacked]
        if w.target.in_place:
            at = at_index(lp.var, bl.slice_axes[per_layer], len(bwd.values[stacked].shape), stacked not in w.params)
            w.lines.append(f"{inner}{grad}[{at}] += {bl.body_grads[per_layer]}")
        else:
            w.lines.append(f"{inner}{grad}[{lp.var}] = {grad}[{lp.var}] + {bl.body_grads[per_layer]}")
    for _x, (g, acc) in bl.closure.items():
        w.lines.append(f"{inner}{acc} = {acc} + {g}")
    for _outer, inner_name, res in lp.carried:
        if inner_name in bl.body_grads and res in bl.carry:
            w.lines.append(f"{inner}{bl.carry[res]} = {bl.body_grads[inner_name]}")
        elif res in bl.carry:
            w.lines.append(f"{inner}{bl.carry[res]} = {zeros.format(bl.zeros[res])}")
    if not w.target.in_place:
        for grad, axis in stack_axes.items():
            w.lines.append(f"{indent}{grad} = xp.stack({grad}, axis={axis})")
    w.last_step = None
    w.loop_var, w.alternate = None, None


def config_fields(checked: Checked, prog: Program) -> list[dict]:
    out = []
    for d in checked.card.decls:
        if d.role != "hyper":
            continue
        for n in d.names:
            b = checked.env[n]
            if b.type.shape:
                continue
            field = ascii_name(n)
            integral = b.type.kind in ("nat", "integer", "span")
            boolean = b.type.kind == "boolean"
            default = derived = None
            if d.default is not None and boolean and d.default.op == "num":
                default = str(float(d.default.attr) != 0)
            elif d.default is not None:
                t = checked.types.get(id(d.default))
                if t is not None and t.value is not None and t.value.constant is not None:
                    default = str(int(t.value.constant))
                elif d.default.op == "num":
                    default = number(d.default.attr, integral)
                elif t is not None and t.value is not None:  # d_attn = d_e/H: set from the others once made
                    default, derived = "None", t.value
                    integral = "optional"
            desc = f" — {d.desc}" if d.desc else ""
            kind = "int | None" if integral == "optional" else "int" if integral else "bool" if boolean else "float"
            out.append({"field": field, "type": kind, "default": default,
                        "comment": comment(f"{n}{desc}"), "derived": derived})
    out.sort(key=lambda h: h["default"] is not None)  # fields with defaults last
    return out


def derived_defaults(hypers: list[dict]) -> None:
    """A default over other fields (d_attn = d_e/H) as Python over ``self.<field>``, for __post_init__."""
    fields = {h["field"] for h in hypers}
    for h in hypers:
        if h.get("derived") is not None:
            expr = py_dim(h["derived"])
            h["derived"] = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: f"self.{m[0]}" if m[0] in fields else m[0], expr)


def callee_defaults(checked: Checked, lib: Library) -> dict[str, object]:
    """Hyperparameter defaults over other sizes in the cards a wrapper runs (d_attn = d_e/H), by field."""
    from ..lang.check_call import callees
    out: dict[str, object] = {}
    for name in callees(checked.card):
        sub = lib.checked(name)
        if sub is None:
            continue
        for h in config_fields(sub, None):
            if h["derived"] is not None:
                out.setdefault(h["field"], h["derived"])
        for field, poly in callee_defaults(sub, lib).items():
            out.setdefault(field, poly)
    return out


def param_fields(checked: Checked, prog: Program) -> list[dict]:
    out = []
    for v in prog.params:
        path = prog.param_paths[v.name]
        shape = ", ".join(py_dim(d) for d in v.shape)
        leaf = path[-1]
        if leaf.startswith(("gamma", "g")) and len(leaf) <= 7 and not leaf.startswith("gelu"):
            init = f"np.ones(({shape},), dtype=dtype)"
        elif leaf.startswith(("beta", "b")) and (leaf[1:2] in ("", "_") or leaf.startswith("beta")):
            init = f"np.zeros(({shape},), dtype=dtype)"
        else:
            init = f"(0.02 * rng.standard_normal(({shape},))).astype(dtype)"
        note = ".".join(path) + " " + shape_comment(v.shape, False)
        out.append({"field": v.name, "init": init, "comment": comment(note)})
    return out

