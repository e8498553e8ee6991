"""Checked card IR -> core IR (whole-array operations).

The paper writes per-position steps (``∀t: k_t ← W_k e_t + b_k``), per-head
loops and sums over an index.  Lowering reads each index variable whose
iterations are independent as an array axis (a *mapped* axis), so those
steps become whole-array NumPy.  Only loops that carry a value from one
iteration to the next (layers: ``X ← X + …``) stay loops.  Sub-algorithm
calls are inlined.

The parts, one module each: ``layout.py`` (the abstract value ``AV``, laid out
``[batch…, mapped…, dims…]``, and the helpers that line axes up),
``lower_expr.py`` (a rule per expression op), ``inline.py`` (sub-algorithm
calls), ``lower_steps.py`` (a rule per step kind; mapped and sequential loops).
This module holds ``Lowerer``, which mixes them and holds their state, and the
entry ``lower()``: a card's declarations in, a ``Program`` out.
"""

from __future__ import annotations

from ..lang.check import Checked, Library, join_name, split_name
from ..lang.check_rule import grad_name
from ..lang.errors import CardError
from ..lang.ir import Card, Expr, Group, Step
from ..lang.shapes import Poly
from ..lang.types import INTEGRAL
from .core import Loop, Op, Program, Value, matmul_attr
from .cse import bookkeeping, cse
from .custom import lower_rule, record, rename
from .inline import Inlining
from .layout import AV, ONE, Layout, Members, ParamGroup
from .lower_expr import ExprLowering
from .lower_steps import StepLowering
from .naming import Names


class LoweringError(CardError):
    pass


class Lowerer(StepLowering, Inlining, ExprLowering, Layout):
    """Lowers one card body; sub-algorithm calls get a child Lowerer that
    shares the program being built.  Its rules live in the mixins, by topic."""

    def __init__(self, checked: Checked, lib: Library, names: Names, block: list, extents: dict,
                 subst: dict | None = None, prefix: str = ""):
        self.ch, self.card, self.lib = checked, checked.card, lib
        self.names, self.block, self.extents = names, block, extents
        self.subst = subst or {}
        self.prefix = prefix
        self.env: dict[str, object] = {}
        self.scope: list[str] = []  # mapped index variables, outermost first
        self.firsts: dict[str, Poly] = {}
        self.seq: dict[str, str] = {}  # sequential loop index -> Python name
        self.base = self.card.convention.base
        self.rows = self.card.convention.axes == "rows"
        self.step_no: str | None = None
        self.memo: dict = {}
        self.transposed: dict = {}
        self.returned: dict[str, AV] = {}
        self.funcs: dict[str, tuple[list[str], Expr]] = {}
        self.loops: list[Step] = []  # a wrapper's loops around its work (epochs, data, tokens)
        self.loop_state: dict[str, Step] = {}  # an inference loop's state -> the step that starts it (x̂ ← […])
        self.state_inputs: dict[str, AV] = {}  # that state where the model reads it: an input of forward
        self.current: Step | None = None  # the step being lowered, where a refusal is reported
        self.stacking: dict[str, dict] = {}  # a recurrence's index -> its per-step writes (Y[t] ← h)
        self.loop_counts: dict[str, Poly] = {}  # a sequential loop's index -> how many steps it runs
        self.in_loop = False  # inlined into a sequential loop's body: a loop of its own would nest
        self.regions: list = []  # the calls (and the card) whose own backward rule replaces the derived one

    def err(self, msg, node=None, hint=None):
        # at the node, else at the step being lowered: every refusal has a line and column
        pos = getattr(node, "pos", None) or getattr(self.current, "pos", None)
        e = LoweringError(msg, pos, hint=hint)
        raise e.located(self.card.path, self.card.source)


# ------------------------------------------------------------------ entry
def wrapper_kind(card: Card) -> str | None:
    """"training" for a card whose step updates with ∇ (DTraining), "inference" for one
    that samples (DInference), None for a model."""
    def walk(steps):
        for st in steps:
            if st.kind == "assign" and st.value is not None and _has(st.value, "grad"):
                return "training"
            if st.kind == "sample":
                return "inference"
            found = walk(st.body)
            if found:
                return found
        return None
    return walk(card.steps)


def _has(e: Expr, op: str) -> bool:
    return e.op == op or any(_has(a, op) for a in e.args)


def replace_steps(steps):
    from ..lang.ir import Card, Convention
    return Card("", (), (), (), None, Convention(), (), tuple(steps))


def lower(checked: Checked, lib: Library) -> Program:
    """The whole card as a Program: inputs and parameters in, outputs out.  A training card
    becomes its loss (parameters: θ's); an inference card, its model call."""
    card = checked.card
    names = Names()
    block: list = []
    extents: dict = {}
    lw = Lowerer(checked, lib, names, block, extents)
    inputs, params, paths, hypers = [], [], {}, []
    token_bounds: dict[str, Poly] = {}
    input_sets: dict[str, str] = {}
    wrapper = wrapper_kind(card)
    for d in card.decls:
        if d.role == "input":
            if isinstance(d.set, Group):
                if wrapper is None or d.set.card is None:
                    raise LoweringError(f"{card.name} takes parameters as input, but it neither trains (∇) nor "
                                        "samples (∼)", d.pos).located(card.path, card.source)
                for n in d.names:  # θ: the model card's parameters are this program's parameters
                    lw.env[n] = param_tree(checked, lib, n, d, names, params, paths, (ascii_path(n),), ())
                continue
            for n in d.names:
                key = _key(n, d)
                b = checked.env[key]
                over = tuple(b.over)
                if over and wrapper == "training":  # one sequence of the data set at a time: x_n
                    key, over = n, ()
                kind = "int" if b.type.kind in INTEGRAL else "bool" if b.type.kind == "boolean" else "real"
                known = {s: Poly.sym(f"len_{ascii_path(n)}") for d in b.type.shape for s in d.symbols()
                         if s.startswith("?")}  # a sequence whose length no step names
                shape = over + tuple(d.subst(known) for d in b.type.shape)
                # Token ids and arrays take batch axes; a lone number (an offset such as p_start) does not.
                batched = bool(shape) or b.type.kind == "span"
                name = names.fresh(ascii_path(n))
                lw.env[key] = AV(name, (), shape, kind, batched=batched)
                inputs.append(Value(name, shape, batched, kind))
                from ..lang.render import set_text
                input_sets[name] = set_text(d.set)
                if b.type.kind == "span" and len(b.type.bounds) == 2:
                    token_bounds[name] = b.type.bounds[1] - b.type.bounds[0] + ONE
        elif d.role == "hyper":
            for n in d.names:
                b = checked.env[n]
                if b.type.shape:  # an array hyperparameter (Mask): an input without gradient
                    name = names.fresh(n)
                    kind = "bool" if b.type.kind == "boolean" else "real"
                    lw.env[n] = AV(name, (), b.type.shape, kind, batched=False)
                    inputs.append(Value(name, b.type.shape, False, kind))
                    from ..lang.render import set_text
                    input_sets[name] = set_text(d.set)
                else:
                    hypers.append(n)
                    name = names.fresh(n)
                    kind = "int" if b.type.kind in INTEGRAL else "bool" if b.type.kind == "boolean" else "real"
                    lw.env[n] = AV(name, (), (), kind)
    for d in card.decls:
        if d.role == "param":
            for n in d.names:
                key = _key(n, d)
                lw.env[key] = param_tree(checked, lib, key, d, names, params, paths, (ascii_path(key),), ())
    if wrapper is not None:
        outputs = lower_wrapper(lw, wrapper)
        for n, av in lw.state_inputs.items():  # x̂ of EDInference: the text so far, given to forward
            inputs.append(Value(av.name, av.dims, True, av.kind))
            from ..lang.render import set_text
            decl = next(d for d in card.decls if n in d.names)
            input_sets[av.name] = set_text(decl.set)
            bounds = checked.env[n].type.bounds
            if len(bounds) == 2:
                token_bounds[av.name] = bounds[1] - bounds[0] + ONE
    elif lw.body(card.steps) is None:
        raise LoweringError(f"{card.name} has no return step", card.pos).located(card.path, card.source)
    else:
        outputs, returned = [], {}
        for n in card.outputs:  # in signature order: the return step's, and those steps assign
            out = lw.materialize(lw.returned.get(n) or lw.env[n])
            if out.mapped:
                raise LoweringError("the output still has an index axis", card.pos).located(card.path, card.source)
            outputs.append(Value(out.name, checked.env[n].type.shape, out.batched, out.kind))
            returned[n] = out
        if card.rule is not None:  # the card's own backward stands for its whole body
            region = lower_rule(lw, list(block), list(returned.items()))
            if region is not None:
                record(lw.regions, region)
    dims = dim_sources(checked, inputs)
    from .core import walk as walk_ops
    for sym in sorted({s for v in params for d in v.shape for s in d.symbols()}
                      | {s for op in walk_ops(block) for d in op.shape for s in d.symbols()}):
        dims.setdefault(sym, f"config.{ascii_name_of(sym)}")  # a model card's sizes, for a wrapper
    from .naming import ascii_name
    given = {grad_name(o) for o in card.outputs} if card.rule is not None else set()  # the backward's arguments
    names.taken |= {ascii_name(d) for d in dims} | {ascii_name(n) for n in checked.env if n not in given}
    frozen = set().union(*(r.forward for r in lw.regions))  # a rule reads its card's values by name
    renamed: dict[str, str] = {}
    block = hoist_products(block, {v.name: v for v in inputs + params}, names, frozen)
    block = cse(hoist(block), {o.name for o in outputs}, frozen, renamed)
    for region in lw.regions:
        rename(region, renamed)
    prog = Program(card.name, inputs, params, paths, hypers, dims, block, outputs)
    prog.names = names
    prog.base = card.convention.base
    prog.token_bounds = token_bounds
    prog.input_sets = input_sets
    prog.hyper_names = {n: lw.env[n].name for n in hypers}
    prog.wrapper = wrapper
    prog.rules = lw.regions
    prog.draws = any(op.prim == "draw" for op in walk_ops(block))  # forward takes an rng
    prog.lowerer = lw  # the wrapper's steps and loops, for emit's train()/generate()
    return prog


def ascii_name_of(sym: str) -> str:
    from .naming import ascii_name
    return ascii_name(sym)


def lower_wrapper(lw: Lowerer, wrapper: str) -> list[Value]:
    """The one step a wrapper card repeats, as a program: a training card's loss(θ) for one
    batch of examples, an inference card's model call on the text so far."""
    card = lw.card
    steps = []
    level = list(card.steps)
    while True:  # the steps before the work, at every loop level, then the innermost loop's own
        loop = next((st for st in level if st.kind in ("for", "while")
                     and wrapper_kind(replace_steps(st.body)) is not None), None)
        if loop is None:
            steps += level
            break
        state = set(_assigned(loop.body)) if wrapper == "inference" else set()  # x̂ ← [x̂, y] starts before it ...
        for st in level[: level.index(loop)]:
            if st.kind in ("for", "while"):
                continue
            if st.kind == "assign" and st.target.op == "name" and st.target.attr in state:
                lw.loop_state[st.target.attr] = st  # ... and its start is generate()'s, not forward's
                continue
            steps.append(st)
        lw.loops.append(loop)
        level = list(loop.body)
    out = None
    for st in steps:
        if wrapper == "training" and st.kind == "assign" and st.value is not None and _has(st.value, "grad"):
            grad = _find(st.value, "grad")
            out = lw.value(grad.args[0])  # loss(θ): what ∇ differentiates
            lw.update = st
            break
        if wrapper == "inference" and st.kind == "assign" and st.value is not None and st.value.op == "call" \
                and lw.lib.card(st.value.attr[0]) is not None:
            for arg in st.value.args:  # the model reads the loop's state: forward takes it as an input
                if arg.op == "name" and arg.attr in lw.loop_state and arg.attr not in lw.env:
                    av = AV(lw.names.fresh(ascii_path(arg.attr)), (), (Poly.sym(f"len_{ascii_path(arg.attr)}"),),
                            "int", batched=True)
                    lw.env[arg.attr] = lw.state_inputs[arg.attr] = av
            out = lw.named(lw.value(st.value), st.target.attr)  # P ← Model(x | θ̂)
            lw.model_step = st
            break
        lw.step(st)
    if out is None:
        raise LoweringError(f"{card.name}: cardgen compiles a training card's ∇ update or an inference card's "
                            "model call; this card has neither in its innermost loop",
                            card.pos).located(card.path, card.source)
    out = lw.materialize(out)
    return [Value(out.name, (), out.batched, out.kind) if wrapper == "training" else
            Value(out.name, out.dims, out.batched, out.kind)]


def _assigned(steps) -> list[str]:
    """The names the steps (and the loops in them) assign."""
    out = []
    for st in steps:
        if st.kind in ("assign", "sample") and st.target is not None and st.target.op == "name":
            out.append(st.target.attr)
        out += _assigned(st.body)
    return out


def _find(e: Expr, op: str) -> Expr | None:
    if e.op == op:
        return e
    for a in e.args:
        f = _find(a, op)
        if f is not None:
            return f
    return None


def ascii_path(key: str) -> str:
    """A parameter's field name: its card name without the repetition script (W^□_q -> W_q)."""
    from .naming import ascii_name
    return ascii_name(key.replace("_□", "").replace("^□", ""))


def _key(n: str, d) -> str:
    if not d.over:
        return n
    base, scripts = split_name(n)
    return join_name(base, [(k, "□" if v in dict(d.over) else v) for k, v in scripts])


def param_tree(checked: Checked, lib: Library, key: str, d, names: Names, params: list, paths: dict,
               path: tuple, stack: tuple, sub: dict | None = None):
    """A declared parameter (or group) as AVs over flattened Program params.
    ``stack`` holds the repetition extents of enclosing groups (θ_ℓ for ℓ ∈ [N]);
    ``sub`` maps this card's dimension names to the root card's."""
    sub = sub or {}
    b = checked.env[key]
    over = tuple(o.subst(sub) for o in b.over)
    if isinstance(d.set, Group):
        if d.set.card is None:  # a members group: its members are declared on their own
            return Members(d.set.members, tuple(v for v, _ in d.over))
        callee = lib.checked(d.set.card)
        g = b.type.group
        inner = {k: v.subst(sub) for k, v in (dict(g[1]) if isinstance(g, tuple) and len(g) == 2 else {}).items()}
        leaves = {}
        for cd in callee.card.decls:
            if cd.role != "param":
                continue
            for cn in cd.names:
                ck = _key(cn, cd)
                leaves[ck] = param_tree(callee, lib, ck, cd, names, params, paths, path + (ascii_path(ck),),
                                        stack + over, inner)
        return ParamGroup(d.set.card, leaves)
    shape = stack + over + tuple(x.subst(sub) for x in b.type.shape)
    name = names.fresh("_".join(p for p in path[-1:]))
    params.append(Value(name, shape, False, "real"))
    paths[name] = path
    return AV(name, (), shape, "real", False)


def dim_sources(checked: Checked, inputs: list[Value]) -> dict[str, str]:
    """How generated code finds each dimension: from config, or from an input's shape."""
    from .naming import ascii_name
    out = {}
    for n, b in checked.env.items():
        if b.role == "hyper" and b.type.value is not None and not b.type.shape:
            out[n] = f"config.{ascii_name(n)}"
    for inp in inputs:
        nd = len(inp.shape)
        for i, dim in enumerate(inp.shape):
            syms = dim.symbols()
            if len(syms) == 1 and dim == Poly.sym(syms[0]) and syms[0] not in out:
                out[syms[0]] = f"{inp.name}.shape[{i - nd}]"
    return out


def hoist(body: list) -> list:
    """Move ops that do not depend on a layer loop's index or carried values
    (the causal mask, sizes) out of the loop, so they run once, not per layer."""
    out = []
    for item in body:
        if not isinstance(item, Loop):
            out.append(item)
            continue
        item.body = hoist(item.body)
        variant = {inner for _, inner, _ in item.carried} | {item.var}  # X[t] reads the index itself
        kept, moved = [], []
        for x in item.body:
            if isinstance(x, Loop):
                kept.append(x)
                variant |= {op.out for op in _walk_ops(x.body)} | {n for n, _ in x.outs} \
                    | {n for n, *_ in x.stacks}
                continue
            uses_index = x.prim == "index" or any(item.var in str(a) for a in x.attr)
            if uses_index or any(a in variant for a in x.args):
                variant.add(x.out)
                kept.append(x)
            else:
                moved.append(x)
        item.body = kept
        out += moved + [item]
    return out


def hoist_products(body: list, known: dict[str, Value], names: Names, frozen: set[str]) -> list:
    """W X[:, t] in a loop over t, with W and X from before the loop, is (W X)[:, t]; X[t] W, with X's
    rows, is (X W)[t]: one matrix product before the loop instead of one matrix-vector product a
    step (a recurrence's input projection), and so, derived from it, one product each for W's and
    X's gradients after the backward loop instead of one a step. ``known``: the inputs and
    parameters; values the loop's body makes or carries stay where they are."""
    known = dict(known)
    out = []
    for item in body:
        if not isinstance(item, Loop):
            if isinstance(item, Op):
                known[item.out] = Value(item.out, item.shape, item.batched, item.kind)
            out.append(item)
            continue
        item.body = hoist_products(item.body, known, names, frozen)
        inside = {op.out for op in _walk_ops(item.body)} | {inner for _, inner, _ in item.carried}
        picks = {x.out: x for x in item.body if isinstance(x, Op) and x.prim == "index"
                 and x.attr[0] == item.var and x.args[0] in known and x.args[0] not in inside}
        before = []
        for k, x in enumerate(item.body):
            if not isinstance(x, Op) or x.prim != "matmul" or x.out in frozen:
                continue
            a, b = x.args
            if x.attr[0] == "mv" and b in picks and picks[b].attr[1] == -1:
                w, pick, axis = a, picks[b], -1
            elif x.attr[0] == "vm" and a in picks and picks[a].attr[1] == -2:
                w, pick, axis = b, picks[a], -2
            else:
                continue
            whole = known[pick.args[0]]
            if w not in known or w in inside or known[w].batched or whole.kind != "real" or pick.out in frozen:
                continue
            if axis == -1:  # Xᵀ Wᵀ, so that each step reads a row of the product, not a strided column
                flipped = []
                for v in (whole, known[w]):
                    t = names.fresh(f"{v.name}_T")
                    flipped.append(Value(t, v.shape[:-2] + v.shape[:-3:-1], v.batched, v.kind))
                    before.append(Op(t, "transpose", (v.name,), ((-1, -2),), flipped[-1].shape, v.batched, v.kind,
                                     x.step))
                    known[t] = flipped[-1]
                args = tuple(v.name for v in flipped)
            else:
                args = (whole.name, w)
            shape = whole.shape[-1:] + x.shape if axis == -1 else whole.shape[-2:-1] + x.shape
            name = names.fresh(f"{w}_{whole.name}_T" if axis == -1 else f"{whole.name}_{w}")  # (W_x X)ᵀ, X W_x
            before.append(Op(name, "matmul", args, matmul_attr("mm", False, True), shape, whole.batched, x.kind,
                             x.step))
            known[name] = Value(name, shape, whole.batched, x.kind)
            item.body[k] = Op(x.out, "index", (name,), (item.var, -2), x.shape, x.batched, x.kind, x.step)
        if before:  # a column no longer read (the product took it) goes
            read = {a for op in _walk_ops(item.body) for a in op.args} | bookkeeping(item)
            item.body = [x for x in item.body if not (isinstance(x, Op) and x.out in picks and x.out not in read)]
        out += before + [item]
    return out


def _walk_ops(body):
    from .core import walk
    return walk(body)



__all__ = ["lower", "lower_wrapper", "wrapper_kind", "AV", "Lowerer", "LoweringError"]
