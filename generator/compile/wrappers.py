"""Code for the paper's wrapper cards: a training card (DTraining, EDTraining) gets
``train_step`` (its ∇ update on one batch) and ``train`` (its loops); an inference
card (DInference) gets ``generate`` (its sampling loop).  The numbers come from
the module's own forward and backward; this is the loop around them, read off
the card's steps."""

from __future__ import annotations

from ..lang.errors import CardError
from ..lang.ir import Expr
from ..lang.render import expr_text
from .naming import ascii_name
from .npcode import py_dim
from .pytext import comment, docstring, number


def wrapper_code(prog, checked) -> str:
    if prog.wrapper == "training":
        return training_code(prog, checked)
    if prog.wrapper == "inference":
        return inference_code(prog, checked)
    return ""


def _coefficient(update: Expr, theta: str) -> str:
    """θ − c · ∇f(θ) -> the Python for c (a hyperparameter or a number)."""
    v = update
    if v.op != "sub" or v.args[0] != Expr("name", (), theta):
        raise CardError(f"cardgen compiles updates of the form {theta} ← {theta} − η · ∇loss({theta}), "
                        f"not {expr_text(update)}", update.pos)
    step = v.args[1]
    if step.op in ("matmul", "mul", "juxt") and step.args[1].op == "grad":
        c = step.args[0]
        if c.op == "name":
            return f"config.{ascii_name(c.attr)}"
        if c.op == "num":
            return number(c.attr)
    if step.op == "grad":
        return "1.0"
    raise CardError(f"cardgen compiles updates of the form {theta} ← {theta} − η · ∇loss({theta})", update.pos)


def training_code(prog, checked) -> str:
    lw = prog.lowerer
    st = lw.update
    theta = st.target.attr
    coef = _coefficient(st.value, theta)
    ins = [v.name for v in prog.inputs]
    args = ", ".join(ins)
    line = st.pos.line if st.pos else "?"
    loops = []
    for loop in lw.loops:  # a loop whose index names the data's sequences (x_n) runs over the data
        loops.append((loop, [v for v in ins if v.endswith("_" + ascii_name(loop.var))]))
    draws = prog.draws  # the card masks at random: every step gets the run's generator
    step_args = ", ".join(f"np.asarray({v})[None]" for v in ins) + (", rng" if draws else "")
    body = [f"losses.append(train_step(config, params, {step_args}, workspace=workspace))"]
    rng_arg = ", rng: np.random.Generator | None = None" if draws else ""
    rng_fwd = ", rng" if draws else ""
    rng_line = ("\n    rng = np.random.default_rng(0) if rng is None else rng  # one generator for the whole run"
                if draws else "")
    rng_doc = ("\n    rng: the generator of the card's random choices, one for the whole run (default\n"
               "    np.random.default_rng(0)), so a run is reproducible from its seed.") if draws else ""
    step_doc = "\n    rng: the generator of the card's random choices (forward's default when None)." \
        if draws else ""
    code_loops = []
    depth = 1
    for loop, family in loops:
        pad = "    " * depth
        if family:
            names = ", ".join(ins)
            code_loops.append(f"{pad}for {names} in zip({', '.join(f'data[{i}]' for i in range(len(ins)))}, "
                              "strict=True):" if len(ins) > 1 else f"{pad}for {ins[0]} in data:")
        else:
            count = _config_names(py_dim(checked.types[id(loop.domain[-1])].value), prog) if loop.domain else "1"
            note = comment(f"{loop.var}: {expr_text(loop.domain[-1])} times")
            code_loops.append(f"{pad}for _{ascii_name(loop.var)} in range({count}):  # {note}")
        depth += 1
    data_doc = "data: a list of token sequences (1-D arrays)" if len(ins) == 1 else \
        f"data: a tuple of {len(ins)} lists of token sequences ({', '.join(ins)})"
    inner = "    " * depth
    return f'''

def train_step(config: Config, params: Params, {args}{rng_arg}, workspace: dict | None = None) -> float:
    """Line {line} of the card, {doc(theta)} ← {doc(theta)} − η · ∇loss({doc(theta)}): one update of every parameter
    (in place), on a batch of sequences ({args}: (B, ℓ) token ids) with the gradient of the
    mean of their losses.  Returns that mean loss.{step_doc}"""
    loss, cache = forward(config, params, {args}{rng_fwd}, workspace=workspace)
    seed = np.full(np.shape(loss), 1.0 / max(1, np.size(loss)), dtype=np.result_type(loss))
    grads, _ = backward(config, params, cache, seed, workspace=workspace)
    for name in params.__dataclass_fields__:
        value = getattr(params, name)
        value -= {coef} * getattr(grads, name)
    return float(np.mean(loss))


def train(config: Config, params: Params, data{rng_arg}, workspace: dict | None = None) -> list[float]:
    """The card's loops around that step ({doc(', '.join(loop.var for loop, _ in loops))}): one update per
    sequence, in order, as the card says.  {data_doc}.  Returns the losses.{rng_doc}"""{rng_line}
    losses = []
{chr(10).join(code_loops)}
{inner}{body[0]}
    return losses
'''


def _config_names(code: str, prog) -> str:
    """Dimension variables in generated code are locals of forward(); here they live in config."""
    import re
    dims = {ascii_name(s): how for s, how in prog.dims.items()}

    def repl(m):
        name = m.group(0)
        how = dims.get(name)
        return how if how and how.startswith("config.") else name
    return re.sub(r"[A-Za-z_][A-Za-z0-9_]*", repl, code)


def inference_code(prog, checked) -> str:
    lw = prog.lowerer
    card = checked.card
    (loop,) = lw.loops[-1:] or [None]
    sample = next((s for s in _walk(card.steps) if s.kind == "sample"), None)
    if loop is None or sample is None:
        raise CardError(f"{card.name}: cardgen compiles an inference card as a loop that calls the model and "
                        "samples", card.pos)
    weights = sample.value
    temperature = None
    if weights.op == "pow" and weights.args[1].op == "div" and weights.args[1].args[0] == Expr("num", (), "1"):
        t = weights.args[1].args[1]
        temperature = f"config.{ascii_name(t.attr)}" if t.op == "name" else number(t.attr) if t.op == "num" \
            else None  # anything else: the error below
    if temperature is None:
        raise CardError(f"cardgen compiles sampling of the form y ∼ q ∝ p^{{1/τ}}, not {expr_text(weights)}",
                        sample.pos)
    rows = card.convention.axes == "rows"
    base = card.convention.base
    ctx = next((f"config.{f}" for f in ("ell_max", "ctx") if any(ascii_name(d) == f for d in prog.dims)), None)
    last = "P[..., -1, :]" if rows else "P[..., :, -1]"
    if loop.kind == "while":
        return until_code(prog, checked, loop, sample, temperature, ctx, last)
    if lw.loop_state:  # generate() below starts from the prompt, running no step before the loop
        first = next(iter(lw.loop_state.values()))
        raise CardError(f"cardgen compiles a for loop of an inference card that starts from the card's input "
                        f"(DInference: x ← [x, y] on the prompt x); this step sets "
                        f"{', '.join(lw.loop_state)} before the loop", first.pos)
    count = _config_names(py_dim(checked.types[id(loop.domain[-1])].value), prog)
    return f'''

def generate(config: Config, params: Params, prompt, n_tokens: int | None = None, temperature: float | None = None,
             rng: np.random.Generator | None = None, context: int | None = None):
    """The card's loop: n_tokens times (default: the card's {doc(expr_text(loop.domain[-1]))}), run the model on the
    text so far, take the distribution p at the newest position, sample y ∼ q ∝ p^{{1/τ}} (temperature
    τ; 0 takes the most likely token) and append it.  The model sees the last `context` tokens only,
    so the text may outgrow its positions (default: {ctx or "all"}).  prompt: (…, ℓ) token ids.
    Returns the new tokens."""
    x = np.asarray(prompt)
    context = {ctx or "None"} if context is None else context
    n_tokens = {count} if n_tokens is None else n_tokens
    tau = {temperature} if temperature is None else temperature
    rng = np.random.default_rng() if rng is None else rng
    start = x.shape[-1]
    for _ in range(n_tokens):
        window = x if context is None else x[..., -context:]
        P, _ = forward(config, params, window)
{draw_next(last)}
        x = np.concatenate([x, (y + {base})[..., None].astype(x.dtype)], axis=-1)
    return x[..., start:]
'''


def draw_next(last: str) -> str:
    """Both loops' sampling of the next token from the model's last distribution ``last``: greedy at
    τ = 0, else from q ∝ p^(1/τ); one draw per sequence of the batch."""
    return f'''        p = np.asarray({last}, dtype=np.float64)
        if tau == 0:
            y = np.argmax(p, axis=-1)
        else:
            logq = np.log(np.maximum(p, 1e-300)) / tau  # q ∝ p^(1/τ), in logs for a small τ
            q = np.exp(logq - logq.max(axis=-1, keepdims=True))
            q /= q.sum(axis=-1, keepdims=True)
            flat = q.reshape(-1, q.shape[-1])
            y = np.array([rng.choice(flat.shape[-1], p=row) for row in flat]).reshape(q.shape[:-1])'''


def _hyper_or_number(e: Expr, prog) -> str | None:
    """A hyperparameter (config.bos_token) or a number, as Python; None for anything else."""
    if e.op == "name" and e.attr in prog.hyper_names:
        return f"config.{prog.hyper_names[e.attr]}"
    if e.op == "num":
        return number(e.attr)
    return None


def until_code(prog, checked, loop, sample, temperature: str, ctx: str | None, last: str) -> str:
    """EDInference's loop: ``x̂ ← [bos]``, then ``while y ≠ eos``: run the model on the input and the
    text so far, sample ``y``, ``x̂ ← [x̂, y]``; the card's own steps say which token starts and
    which ends, and forward's inputs (the card's inputs, then x̂) say what the model reads."""
    y = sample.target.attr
    form = (f"cardgen compiles an inference card's while loop as x̂ ← [bos]; while {y} ≠ eos do …; {y} ∼ q; "
            f"x̂ ← [x̂, {y}] end; return x̂")
    cond = loop.cond
    stop = _hyper_or_number(cond.args[1], prog) if cond.op == "cmp" and cond.attr == "≠" \
        and cond.args[0] == Expr("name", (), y) else None
    if stop is None:
        raise CardError(f"{form}; the loop's test is {expr_text(cond)}", cond.pos)
    appends = [st for st in loop.body if st.kind == "assign" and st.target.op == "name"
               and st.value.op == "list" and st.value.attr == ","
               and st.value.args[-1:] == (Expr("name", (), y),) and st.value.args[0] == st.target]
    if len(appends) != 1 or len(prog.lowerer.state_inputs) != 1:
        raise CardError(f"{form}: one sequence the loop appends {y} to, which the model reads", loop.pos)
    text = appends[0].target.attr
    state = prog.lowerer.state_inputs[text].name
    start = prog.lowerer.loop_state.get(text)
    first = _hyper_or_number(start.value.args[0], prog) if start is not None and start.value.op == "list" \
        and len(start.value.args) == 1 else None
    if first is None:
        raise CardError(f"{form}: {text} starts as one token, [bos_token]", (start or loop).pos)
    start_text, stop_text = doc(expr_text(start.value.args[0])), doc(expr_text(cond.args[1]))
    start_line = comment(f"{expr_text(start.target)} ← {expr_text(start.value)}")
    given = [v.name for v in prog.inputs if v.name != state]
    args = ", ".join(given)
    lead = given[0] if given else None
    rank = next((len(v.shape) for v in prog.inputs if v.name == lead), 0)
    batch = f"np.shape({lead})[:np.ndim({lead}) - {rank}]" if lead else "()"
    return f'''

def generate(config: Config, params: Params, {args}, max_tokens: int | None = None,
             temperature: float | None = None, rng: np.random.Generator | None = None, context: int | None = None):
    """The card's loop: {doc(text)} ← [{start_text}], then while {doc(expr_text(cond))}: run the model on
    ({args}, the text so far), take the distribution p at the newest position, sample
    {doc(y)} ∼ q ∝ p^{{1/τ}} (temperature τ; 0 takes the most likely token) and append it.  The model sees
    the last `context` tokens of the text (default: {ctx or "all"}), so the text may outgrow its positions.
    max_tokens: stop after that many tokens even without {stop_text} (default: none, as the card).
    {args}: token ids with any leading batch axes; every sequence of a batch runs until it ends, and
    one that has ended is padded with {stop_text}.  Returns {doc(text)}: (…, n) token ids, from
    {start_text} to {stop_text}."""
    {"; ".join(f"{g} = np.asarray({g})" for g in given) or "pass"}
    batch = {batch}
    context = {ctx or "None"} if context is None else context
    tau = {temperature} if temperature is None else temperature
    rng = np.random.default_rng() if rng is None else rng
    end = {stop}
    {state} = np.full(batch + (1,), {first}, dtype=np.int64)  # {start_line}
    done = np.zeros(batch, dtype=bool)
    while not done.all() and (max_tokens is None or {state}.shape[-1] <= max_tokens):
        window = {state} if context is None else {state}[..., -context:]
        P, _ = forward(config, params, {args}, window)
{draw_next(last)}
        y = np.where(done, end, y + {prog.base})
        {state} = np.concatenate([{state}, y[..., None]], axis=-1)
        done |= y == end
    return {state}
'''


def _walk(steps):
    for s in steps:
        yield s
        yield from _walk(s.body)


def doc(text: str) -> str:
    """Card text for a docstring of these functions: one line, escaped."""
    return docstring(comment(text))
