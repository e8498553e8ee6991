"""Memory planning for generated code: an element-wise op whose first operand
dies at that op writes its result into the operand (``np.add(a, b, out=a)``)
instead of allocating a new array.

Every allocation of a large temporary costs more than its arithmetic here:
glibc hands big freed blocks back to the kernel, so the next step faults them
in again.  The plan is decided on the core IR, where every shape is known:
an operand qualifies when it owns its memory (no view of something else),
has exactly the result's shape, and neither it nor any view of it is read
later, saved for the backward, returned or carried round a loop.
"""

from __future__ import annotations

from .ad import BLoop
from .core import Loop, Op

# Ops that can write into an operand, as NumPy ufuncs.
UFUNC = {"add": "np.add", "sub": "np.subtract", "mul": "np.multiply", "div": "np.divide",
         "neg": "np.negative", "exp": "np.exp", "log": "np.log", "tanh": "np.tanh", "sqrt": "np.sqrt",
         "abs": "np.abs", "sin": "np.sin", "cos": "np.cos"}
COMMUTATIVE = {"add", "mul"}
# Ops whose result is a view of (or the same array as) their first operand.
VIEWS = {"transpose", "expand", "reshape", "slice", "index", "copy", "broadcast", "batch", "squeeze",
         "broadcast_like",
         "reshape_to", "unsum", "pick", "sum_to",  # sum_to returns its argument when there is nothing to sum
         "slice_add",  # writes into its first argument and returns it
         "concat_part"}
# Ops whose result is a fresh array that nothing else refers to.
OWNING = set(UFUNC) | {"matmul", "softmax", "log_softmax", "sum", "max", "take", "square", "pow", "powv",
                       "relu", "sigmoid", "silu", "gelu", "where", "scale", "one_minus", "softmax_grad",
                       "layer_norm_grad", "log_softmax_grad", "silu_grad", "gelu_grad", "wgrad", "outer", "unslice",
                       "gelu_tanh_grad",
                       "scatter", "put_along", "unpick", "select_grad", "maximum", "concat"}


def plan(body: list, keep: set[str]) -> dict[int, int]:
    """{id(op): index of the operand it may overwrite}, for every op of
    ``body`` (loops included).  ``keep``: names that must survive the body."""
    decisions: dict[int, int] = {}
    _plan_block(body, set(keep), decisions)
    return decisions


def _uses(item) -> set[str]:
    if isinstance(item, Op):
        return set(item.args)
    names: set[str] = set()
    for x in item.body:
        names |= _uses(x)
    if isinstance(item, Loop):
        names |= {outer for outer, _, _ in item.carried}
    if isinstance(item, BLoop):
        names |= {g for _, g in item.seeds}
    return names


def _epilogue(item) -> set[str]:
    """Names a loop's bookkeeping reads after its body: carried results, saved values, gradients."""
    if isinstance(item, Loop):
        return {res for _, _, res in item.carried} | {inner for _, inner, _ in item.carried} \
            | set(getattr(item, "saved_names", ())) | {v for _, v, *_ in item.stacks}
    names = set(item.body_grads.values()) | set(item.carry.values())
    names |= {g for g, _ in item.closure.values()} | set(item.saved)
    return names


def _plan_block(body: list, keep: set[str], decisions: dict[int, int]) -> None:
    # A value carried into a loop is the first layer's input, which that layer saves for the
    # backward under the body's name: nothing after the loop may write into it.
    keep = keep | {outer for item in body if isinstance(item, Loop) for outer, _, _ in item.carried}
    later: list[set[str]] = [set() for _ in body]
    seen: set[str] = set()
    for i in range(len(body) - 1, -1, -1):  # names read after position i
        later[i] = set(seen)
        seen |= _uses(body[i])
    root: dict[str, str] = {}  # value -> the array that holds its memory
    fresh: set[str] = set()    # arrays made in this block, seen by no one else
    writable: set[str] = set()  # names that are a whole fresh array (not a view into one)
    layout: dict[str, tuple] = {}

    def root_of(n: str) -> str:
        return root.get(n, n)

    for i, item in enumerate(body):
        if not isinstance(item, Op):
            _plan_block(item.body, keep | _epilogue(item) | later[i], decisions)
            continue
        layout[item.out] = (item.shape, item.batched, item.kind)
        choice = None
        # A result with no axes of its own may be a NumPy scalar (no batch axes given): never written into.
        if (item.prim in UFUNC or item.prim in ("select_grad", "where")) and item.kind == "real" and item.shape:
            busy = None  # the arrays still to be read: worked out only for an argument that could be written into
            order = {"select_grad": [1], "where": [2]}.get(item.prim, [0, 1] if item.prim in COMMUTATIVE else [0])
            for k in order[: len(item.args)]:
                a = item.args[k]
                r = root_of(a)
                if a in writable and r in fresh and layout.get(a) == layout[item.out]:
                    if busy is None:
                        busy = {root_of(n) for n in later[i] | keep}
                    if r not in busy:
                        choice = k
                        break
        if choice is not None:
            decisions[id(item)] = choice
            root[item.out] = root_of(item.args[choice])  # the result lives in that operand's memory
            writable.add(item.out)
        elif item.prim in VIEWS and item.args:
            root[item.out] = root_of(item.args[0])
        elif item.prim in OWNING:
            fresh.add(item.out)
            writable.add(item.out)


def holders(body: list, decisions: dict[int, int], names) -> set[str]:
    """``names`` and every value whose memory they share (views, in-place results):
    the arrays that must outlive a layer when ``names`` are kept for the backward."""
    parent: dict[str, str] = {}
    for op in body:
        if not isinstance(op, Op):
            continue
        k = decisions.get(id(op))
        if k is not None:
            parent[op.out] = op.args[k]
        elif op.prim in VIEWS and op.args:
            parent[op.out] = op.args[0]
    out = set()
    for n in names:
        while n is not None and n not in out:
            out.add(n)
            n = parent.get(n)
    return out


def inplace_expr(op: Op, k: int) -> str:
    if op.prim == "where":  # where(c, a, b): a written into b where c holds
        c, a, b = op.args
        return f"_fill_where({b}, {c}, {a})"
    if op.prim == "select_grad":  # keep g where the condition says, zero elsewhere: in g itself
        c, g = op.args
        return f"_zero_where({g}, ~{c})" if op.attr[0] else f"_zero_where({g}, {c})"
    args = ", ".join(op.args)
    if op.batched and op.shape:  # activations: big enough to share among threads (_threaded decides)
        return f"_threaded({UFUNC[op.prim]}, {args}, out={op.args[k]})"
    return f"{UFUNC[op.prim]}({args}, out={op.args[k]})"


def share_buffers(block: list, decisions: dict[int, int], live_out: set[str],
                  exclude: set[str]) -> dict[int, tuple[tuple, int, bool]]:
    """{id(op): (shape, n, dead after)} for the ops of ``block`` (not those of loops inside it) whose
    workspace array can be one that an earlier value of the block no longer needs: values that die at
    different times share an array, as registers do, the n-th array of their shape. A value's array
    is free once the value, every view of it and every result written into it have been read for the
    last time; ``live_out`` names values read after the block, which never free theirs, and
    ``exclude`` ones that keep an array of their own. "Dead after": nothing in the array is read
    after the block, so another pass (the backward after the forward) may use it too.
    Slots are per shape (the workspace reallocates an array whose shape changes)."""
    root: dict[str, str] = {}

    def root_of(n: str) -> str:
        return root.get(n, n)

    end = len(block)
    for item in block:  # which array each value lives in
        if isinstance(item, Op):
            k = decisions.get(id(item))
            if k is not None:
                root[item.out] = root_of(item.args[k])
            elif item.prim in VIEWS and item.args:
                root[item.out] = root_of(item.args[0])
    last: dict[str, int] = {}
    for i, item in enumerate(block):
        for n in _uses(item):
            last[root_of(n)] = i
    for n in live_out | exclude:
        last[root_of(n)] = end + 1
    free: dict[tuple, list[str]] = {}
    busy: list[tuple[int, tuple, str]] = []  # (last use, shape class, slot)
    count: dict[tuple, int] = {}
    slots: dict[int, tuple] = {}
    for i, item in enumerate(block):
        for entry in [b for b in busy if b[0] < i]:  # arrays whose values were all read before this op
            busy.remove(entry)
            free.setdefault(entry[1], []).append(entry[2])
        if not isinstance(item, Op) or item.out in exclude or root_of(item.out) != item.out \
                or item.prim not in OWNING or item.kind != "real":
            continue
        shape = (item.shape, item.batched)
        pool = free.get(shape)
        if pool:
            slot = pool.pop()
        else:
            count[shape] = count.get(shape, 0) + 1
            slot = (shape, count[shape])
        slots[id(item)] = slot
        busy.append((last.get(item.out, i), shape, slot))
    kept = {slot for until, _, slot in busy if until >= end}  # hold a value past the block
    return {k: (*slot, slot not in kept) for k, slot in slots.items()}
