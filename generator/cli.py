"""The ``cardgen`` command: check, fmt, render, build, docs, gradcheck, train, sample."""

from __future__ import annotations

import math
import sys

import click

from .lang.diagnostics import FORMATS
from .lang.errors import CardError

# Each command parses its options, calls one function of the API (cardgen.api) and prints. Commands
# import the API when they run, so `cardgen --help` (and a typo) answers without loading lark, numpy
# or jinja2 (tests/test_frontend.py holds it to that).


def fail(err: Exception) -> None:
    click.echo(str(err), err=True)


# Exit codes: 0 ok, 1 a card or input error, 2 a usage error (click's own), 3 a bug in cardgen.
INTERNAL_ERROR = 3


# The generated modules' documented input checks (compile/npcode.py HELPERS): their ValueErrors
# are mistakes in what was passed in, in the card's terms, not bugs.
INPUT_CHECKS = {"_check_input", "_check_params", "_check_divides", "_check_length", "_as_mask", "_slice_in"}


def raised_by_input_check(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(e, ValueError) and tb is not None and tb.tb_frame.f_code.co_name in INPUT_CHECKS


def guarded(fn):
    """Turn any error into a message and an exit code: users never see a traceback."""
    import functools

    @functools.wraps(fn)
    def run(*a, **kw):
        try:
            return fn(*a, **kw)
        except CardError as e:
            fail(e)
            sys.exit(1)
        except RecursionError:
            click.echo("cardgen: error: the input is nested too deeply to process", err=True)
            sys.exit(1)
        except MemoryError as e:  # sizes the user chose (--set), not a bug
            click.echo(f"cardgen: error: out of memory{': ' + str(e) if str(e) else ''}\n"
                       "  hint: smaller sizes (--set NAME=VALUE)", err=True)
            sys.exit(1)
        except (OSError, UnicodeError) as e:
            click.echo(f"cardgen: error: {e}", err=True)
            sys.exit(1)
        except Exception as e:  # a bug in cardgen, not in the card: say so, briefly
            if raised_by_input_check(e):  # a generated module refusing its inputs (--set values, data)
                click.echo(f"cardgen: error: {e}", err=True)
                sys.exit(1)
            click.echo(f"cardgen: internal error: {type(e).__name__}: {e}\n"
                       "  this is a bug in cardgen; please report it with the card that caused it", err=True)
            sys.exit(INTERNAL_ERROR)
    return run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cardgen")
def main():
    """cardgen: compile algorithm cards (Phuong & Hutter pseudocode) into checked IR,
    paper-style pseudocode and NumPy."""


@main.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text", show_default=True,
              help="json: one object per error; github: workflow annotations; sarif: SARIF 2.1.0 for code scanning.")
@click.option("-v", "--verbose", is_flag=True, help="Say where each card a card calls was found on the search path.")
@guarded
def check_cmd(paths, fmt, verbose):
    """Parse and type-check cards (files, folders or names on the search path); report every error of
    every file."""
    from . import api
    # -v prints what each card calls, so it needs the cards; the errors alone can come from
    # worker processes, many files at once (the same report, in the same order)
    report = api.check(paths) if verbose else api.check_errors(paths)
    for f in report.files if verbose else ():
        if f.card is not None:
            click.echo(f"{f.name}: {f.card.name}", err=fmt != "text")
            for name, found in f.callees():
                click.echo(f"  calls {name}: {found}", err=fmt != "text")
    n, bad = len(report.files), sum(not f.ok for f in report.files)
    if fmt == "text":
        click.echo(report.format(), err=True, nl=False)
        if bad:
            errors = len(report.errors)
            click.echo(f"{bad} of {n} card{'s' if n != 1 else ''} failed "
                       f"({errors} error{'s' if errors != 1 else ''})", err=True)
        else:
            click.echo(f"{n} card{'s' if n != 1 else ''} ok")
    else:
        click.echo(report.format(fmt), nl=False)
    if bad:
        sys.exit(1)


@main.command("fmt")
@click.argument("paths", nargs=-1, required=True)
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if any file would change; change nothing.")
@click.option("--diff", "show_diff", is_flag=True, help="Print what would change as a unified diff.")
@guarded
def fmt_cmd(paths, check_only, show_diff):
    """Rewrite cards in canonical form (``-`` reads standard input)."""
    from . import api
    if paths == ("-",):
        sys.stdout.write(api.load("-", compiles=False).text())
        return
    stale = api.fmt(paths, write=not check_only)
    for f, old, new in stale if show_diff else ():
        click.echo(unified_diff(old, new, str(f)), nl=False)
    for f, _, _ in stale:
        click.echo(f"{'would reformat' if check_only else 'reformatted'} {f}")
    if check_only and stale:
        sys.exit(1)


def unified_diff(old: str | None, new: str, name: str) -> str:
    """``old`` → ``new`` as ``diff -u`` prints it (``old`` None: the file does not exist yet)."""
    import difflib
    lines = difflib.unified_diff((old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"a/{name}" if old is not None else "/dev/null", f"b/{name}")
    return "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)


@main.command("render")
@click.argument("card")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "tex"]), default="text", show_default=True,
              help="tex: LaTeX algorithm boxes (algorithm + algpseudocode) to paste into a document.")
@click.option("--standalone", is_flag=True, help="With --format tex: a complete document for pdflatex.")
@click.option("--full", is_flag=True, help="Append every sub-algorithm the card calls, once each.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A hyperparameter value (repeatable); with values the parameter count is shown.")
@click.option("--config", "config", metavar="NAME", help="One of the card's named configurations (then --set on top).")
@click.option("--backward", is_flag=True, help="Print the derived backward pass instead.")
@click.option("--memory", is_flag=True,
              help="List the activations the forward saves for the backward, with shapes and bytes "
                   "(--set B=… for the batch, default 1; --set dtype=float64 for 8-byte floats).")
@guarded
def render_cmd(card, fmt, standalone, full, sets, config, backward, memory):
    """Print a card as Phuong–Hutter pseudocode."""
    from . import api
    if fmt == "tex" and (backward or memory):
        raise CardError("--backward and --memory print text; --format tex renders the card itself")
    if standalone and fmt != "tex":
        raise CardError("--standalone makes a LaTeX document: use it with --format tex")
    c = api.load(card, compiles=False)  # pseudocode needs a card that checks; --backward compiles it
    if not (backward or memory):
        click.echo(api.render(c, fmt, full, parse_sets(sets), config, standalone), nl=False)
        return
    values = c.values(config, parse_sets(sets), extra=("B", "dtype"))
    if backward:
        click.echo(c.backward_text(), nl=False)
    if memory:
        itemsize = memory_itemsize(values.pop("dtype", "32"))
        batch = memory_batch(values.pop("B", 1))
        click.echo(c.memory_text(values, batch, itemsize), nl=False)


def parse_sets(sets) -> dict[str, float]:
    values = {}
    for s in sets:
        name, eq, val = s.partition("=")
        if not eq or not name.strip():
            raise CardError(f"--set takes NAME=VALUE, not {s!r}")
        if name.strip() == "dtype":
            values["dtype"] = val.strip().removeprefix("float")
            continue
        try:
            num = float(val)
        except ValueError:
            raise CardError(f"--set {name}: {val!r} is not a number") from None
        if not math.isfinite(num):
            raise CardError(f"--set {name}: {val!r} is not a finite number")
        values[name.strip()] = int(num) if num.is_integer() else num
    return values


def memory_itemsize(dtype) -> int:
    """--set dtype=… for `render --memory`: bytes a number."""
    sizes = {"16": 2, "32": 4, "64": 8}
    if str(dtype) not in sizes:
        raise CardError(f"--set dtype: {dtype!r} is not a float type", hint="float16, float32 or float64")
    return sizes[str(dtype)]


def memory_batch(b) -> int:
    if b != int(b) or b < 1:
        raise CardError(f"--set B={b}: the batch size must be a whole number of at least 1")
    return int(b)


@main.command("build")
@click.argument("paths", nargs=-1)
@click.option("-o", "--out", "out_dir", default=None,
              help="Folder for the modules (default: generated/; generated/array_api/ for --target array-api).")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if a generated module is stale; write nothing.")
@click.option("--diff", "show_diff", is_flag=True, help="Print how each stale module would change, as a unified diff.")
@click.option("--force", is_flag=True, help="Overwrite files that cardgen did not generate.")
@click.option("--target", "target_kind", type=click.Choice(["numpy", "array-api"]), default="numpy", show_default=True,
              help="numpy: NumPy only, in place; array-api: NumPy, PyTorch, JAX or CuPy arrays (array_api_compat).")
@guarded
def build_cmd(paths, out_dir, check_only, show_diff, force, target_kind):
    """Generate a module (forward, backward, init) for every model card."""
    from . import api
    done = api.build_report(paths, out_dir, target_kind, check_only=check_only, force=force)
    for e in done.errors:
        fail(e)
    for file, old, new in done.changed if show_diff else ():
        click.echo(unified_diff(old, new, file.as_posix()), nl=False)
    for f, why in done.skipped:
        click.echo(f"skipped {f}: {why}", err=True)
    compiled = done.cards - len(done.skipped)
    if check_only:
        for file, _, _ in done.changed:
            click.echo(f"stale: {file} (run `cardgen build`)")
        if done.changed or done.errors:
            sys.exit(1)
        click.echo(f"{compiled - len(done.errors)} generated modules are current")
        return
    if done.errors:
        sys.exit(1)
    n = len(done.written)
    left = f"; {len(done.skipped)} training/inference cards are NumPy's" if done.skipped else ""
    click.echo(f"wrote {n} module{'s' if n != 1 else ''} to {done.out}/ ({compiled} cards compiled{left})")


@main.command("docs")
@click.argument("paths", nargs=-1)
@click.option("-o", "--out", "out_dir", default="book", show_default=True, help="Folder for the book.")
@click.option("--force", is_flag=True, help="Write into a folder that holds files but no cardgen book.")
@guarded
def docs_cmd(paths, out_dir, force):
    """Write a static HTML book: an index and a page per card (default cards/), math typeset offline."""
    from . import api
    n = api.docs(paths, out_dir, force=force)
    click.echo(f"wrote {out_dir}/index.html and {n} card page{'s' if n != 1 else ''}; open it in a browser")


@main.command("primitives")
@guarded
def primitives_cmd():
    """Print the table of built-in functions and operators (Markdown): spellings, shape rule, derivative."""
    from . import api
    click.echo(api.primitives(), nl=False)


@main.command("gradcheck")
@click.argument("paths", nargs=-1)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A dimension's size (default: small).")
@click.option("--config", "config", metavar="NAME", help="One of the card's named configurations (then --set on top).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@guarded
def gradcheck_cmd(paths, sets, config, seed):
    """Check derived gradients against float64 finite differences."""
    from . import api
    from .api import GRADCHECK_TOLERANCE as TOL
    given = {k: v for k, v in parse_sets(sets).items() if k != "dtype"}
    bad = 0
    for card, res in api.gradcheck(paths, config, given, seed):
        worst = res.worst
        verdict = {"ok": "ok", "FAIL": "FAIL", "straight-through": "STE"}[res.status()]
        bad += not res.passed
        rules = f"  (own backward rule: {', '.join(res.rules)})" if res.rules else ""
        click.echo(f"{card.name:24} {verdict:4}  max relative error {worst:.1e}{rules}")
        for name, err in res.errors.items():
            click.echo(f"    {name:20} {err:.1e}" + res.note(name))
    if bad:
        click.echo(f"{bad} card(s) exceed the tolerance {TOL:g}", err=True)
        sys.exit(1)


def given_options(names) -> dict:
    """The options among ``names`` that were typed on the command line (not defaults), by name."""
    ctx = click.get_current_context()
    return {n: ctx.params[n] for n in names
            if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}


POSITIVE = click.IntRange(min=1)
MAX_BYTES = click.option("--max-bytes", default=16 * 2**30, show_default=True, type=POSITIVE,
                         help="Refuse a checkpoint or model whose tensors declare more bytes than this.")


@main.command("train")
@click.argument("card")
@click.option("--data", type=click.Path(exists=True, dir_okay=False),
              help="A text file (default: Python's own sources).")
@click.option("--steps", default=1000, show_default=True, type=POSITIVE, help="Total optimizer steps.")
@click.option("--batch", default=16, show_default=True, type=POSITIVE, help="Sequences per step.")
@click.option("--seq", default=None, type=POSITIVE, help="Tokens per sequence (default: the context, at most 64).")
@click.option("--lr", default=1e-3, show_default=True, help="Peak learning rate (after warmup).")
@click.option("--lr-min", default=None, type=float,
              help="Learning rate at the last step, reached by cosine decay (default: lr/10; = --lr: constant).")
@click.option("--warmup", default=0, show_default=True, type=click.IntRange(min=0),
              help="Steps of linear warmup from lr/warmup to lr.")
@click.option("--weight-decay", default=0.0, show_default=True)
@click.option("--clip", default=1.0, show_default=True, help="Clip the gradient's global norm (0: off).")
@click.option("--accumulate", default=1, show_default=True, type=POSITIVE, help="Micro-batches per step.")
@click.option("--threads", default=1, show_default=True, type=POSITIVE,
              help="Split each batch into this many shards, each run on a thread of its own with one BLAS "
                   "thread (data parallelism); up to one per core.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A hyperparameter of the card.")
@click.option("--config", "config", metavar="NAME",
              help="One of the card's named configurations (default: the one marked (training)); --set on top.")
@click.option("--out", "out_dir", default=None, help="Folder for checkpoint, log and plot (default runs/<card>).")
@click.option("--resume", is_flag=True, help="Continue the folder's run from its checkpoint, on the same trajectory.")
@click.option("--force", is_flag=True, help="Start over in a folder that holds a run, replacing it.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "float64"]))
@click.option("--eval-every", default=100, show_default=True, type=POSITIVE, help="Steps between validations.")
@click.option("--save-every", default=100, show_default=True, type=POSITIVE,
              help="Steps between checkpoints (kill -9 loses at most this many).")
@click.option("--log-scale", is_flag=True, help="Draw loss.png with a logarithmic loss axis.")
@click.option("--engine", type=click.Choice(["numpy", "torch"]), default="numpy", show_default=True,
              help="torch: the card as a cardgen.torch module and torch.optim.AdamW, data-parallel "
                   "(torch.distributed) over --nproc processes or under torchrun.")
@click.option("--nproc", default=1, show_default=True, type=POSITIVE,
              help="With --engine torch: processes on this machine.")
@guarded
def train_cmd(card, data, steps, batch, seq, lr, lr_min, warmup, weight_decay, clip, accumulate, threads, sets, config,
              out_dir, resume, force, seed, dtype, eval_every, save_every, log_scale, engine, nproc):
    """Train a model card on bytes of text with AdamW; SIGINT/SIGTERM save, --resume continues exactly."""
    from . import api
    if engine == "torch":  # cardgen.torch.ddp: the card in PyTorch, data-parallel on torch.distributed
        unused = given_options(["lr_min", "warmup", "clip", "accumulate", "threads", "resume", "force", "eval_every",
                                "save_every", "log_scale"])
        if unused:
            raise CardError(f"--engine torch takes a constant --lr, no clipping, threads (--nproc instead), "
                            "checkpoints or validation: "
                            f"drop {', '.join('--' + n.replace('_', '-') for n in unused)}")
        out = api.train_torch(card, data, steps=steps, batch=batch, seq=seq, lr=lr, weight_decay=weight_decay,
                              values=parse_sets(sets), out_dir=out_dir, seed=seed, nproc=nproc, dtype=dtype)
        click.echo(f"saved {out / 'weights.npz'}, {out / 'log.csv'}")
        return
    from .api import Settings
    given = given_options(["steps", "batch", "seq", "lr", "lr_min", "warmup", "weight_decay", "clip", "accumulate",
                           "threads", "seed", "dtype", "eval_every", "save_every"])
    settings = Settings(steps=steps, batch=batch, seq=seq or 0, lr=lr, lr_min=lr / 10 if lr_min is None else lr_min,
                        warmup=warmup, weight_decay=weight_decay, clip=clip, accumulate=accumulate, seed=seed,
                        dtype=dtype, data={}, eval_every=eval_every, save_every=save_every, threads=threads)
    status = api.train(card, parse_sets(sets), settings, given, out_dir, resume, force, data, log_scale,
                   say=lambda m: click.echo(m, err=True), out=click.echo, config=config)
    sys.exit(status)


@main.command("sample")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", default="def ", show_default=True,
              help="Text to continue (a checkpoint from import-hf: token ids separated by spaces).")
@click.option("--tokens", default=200, show_default=True, type=click.IntRange(min=0), help="Tokens to add.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0, max=1e6),
              help="0 picks the most likely token.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--card", "card", default=None, help="Say whether this card on disk differs from the checkpoint's copy.")
@MAX_BYTES
@guarded
def sample_cmd(checkpoint, prompt, tokens, temperature, seed, card, max_bytes):
    """Continue a prompt with a trained checkpoint, compiled from the card texts it carries."""
    from . import api
    api.sample(checkpoint, prompt, tokens, temperature, seed, card, say=lambda m: click.echo(m, err=True),
               out=click.echo, limit=max_bytes)


@main.command("import-hf")
@click.argument("folder")
@click.option("-o", "--out", "out", default="gpt2.safetensors", show_default=True, help="The checkpoint to write.")
@click.option("--card", default="GPT2", show_default=True, help="The GPT2 card to carry (a file or a name).")
@MAX_BYTES
@guarded
def import_hf_cmd(folder, out, card, max_bytes):
    """Turn a Hugging Face GPT-2 folder (save_pretrained: config.json, model.safetensors) into a checkpoint."""
    from . import api
    click.echo(f"wrote {api.import_hf(folder, card, out, max_bytes)}")


@main.command("export-hf")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("folder")
@MAX_BYTES
@guarded
def export_hf_cmd(checkpoint, folder, max_bytes):
    """Write a GPT2 checkpoint as a Hugging Face folder (GPT2LMHeadModel.from_pretrained reads it)."""
    from . import api
    paths = api.export_hf(checkpoint, folder, max_bytes)
    click.echo("wrote " + ", ".join(map(str, paths)))


@main.command("lsp")
def lsp_cmd():
    """Run the language server on standard input and output (for editors)."""
    try:
        from .lsp.server import main as serve
    except ImportError as e:
        raise click.ClickException(f"the language server needs pygls: pip install 'cardgen[lsp]' ({e})") from None
    serve()


def _search_path_option(ctx, param, value):
    from .lang.load import extra_path  # the search path's --path entries, for this invocation
    extra_path[:] = list(value)


# Every command takes --path (kept last: it reaches the commands defined above it).
for _command in main.commands.values():
    _command.params.append(click.Option(
        ["--path", "search_path"], multiple=True, metavar="DIR", expose_value=False, is_eager=True,
        callback=_search_path_option,
        help="A folder of cards that calls resolve in (repeatable; before CARDGEN_PATH, [tool.cardgen] "
             "path in pyproject.toml, ./cards and the standard cards)."))


if __name__ == "__main__":
    main()
