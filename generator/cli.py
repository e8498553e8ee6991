"""The ``cardgen`` command: check, fmt, render, build, docs, gradcheck, train, sample."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .lang.diagnostics import FORMATS
from .lang.errors import CardError

# Commands import what they use when they run, so `cardgen --help` (and a typo) answers without
# loading lark, numpy or jinja2 (tests/test_frontend.py holds it to that).
if TYPE_CHECKING:
    from .lang.check import Checked, Library


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
    from .lang.check_call import callees
    from .lang.diagnostics import text_report
    from .lang.load import card_paths, diagnose, display_path, library_for, where
    files = card_paths(paths)
    if not files:
        raise CardError(f"no .card files in {', '.join(paths)}")
    from .compile.verify import buildable
    errors, bad = [], 0
    libs: dict = {}  # one Library per search path: each callee is parsed and checked once
    for f in files:
        lib = library_for(str(f), shared=libs)
        checked, errs = diagnose(str(f), lib)
        if not errs:
            try:
                buildable(checked, lib)  # what build would refuse, check refuses
            except CardError as e:
                errs = [e]
        errors += errs
        bad += bool(errs)
        if verbose and checked is not None:
            click.echo(f"{display_path(f)}: {checked.card.name}", err=fmt != "text")
            for name in callees(checked.card):
                found = where(lib, name)
                if found is not None:
                    click.echo(f"  calls {name}: {found}", err=fmt != "text")
    n = len(files)
    if fmt == "text":
        click.echo(text_report(errors), err=True, nl=False)
        if bad:
            click.echo(f"{bad} of {n} card{'s' if n != 1 else ''} failed "
                       f"({len(errors)} error{'s' if len(errors) != 1 else ''})", err=True)
        else:
            click.echo(f"{n} card{'s' if n != 1 else ''} ok")
    else:
        click.echo(FORMATS[fmt](errors), nl=False)
    if bad:
        sys.exit(1)


@main.command("fmt")
@click.argument("paths", nargs=-1, required=True)
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if any file would change; change nothing.")
@click.option("--diff", "show_diff", is_flag=True, help="Print what would change as a unified diff.")
@guarded
def fmt_cmd(paths, check_only, show_diff):
    """Rewrite cards in canonical form (``-`` reads standard input)."""
    from .lang.files import atomic_write, remove_leftovers
    from .lang.load import card_paths, library_for, load
    from .lang.render import card_text
    if paths == ("-",):
        card, checked = load("-")
        sys.stdout.write(card_text(card, checked.claims))
        return
    stale, libs = [], {}
    for f in card_paths(paths):
        card, checked = load(str(f), library_for(str(f), shared=libs))
        new = card_text(card, checked.claims)
        old = f.read_text("utf-8")
        if new != old:
            stale.append(f)
            if show_diff:
                click.echo(unified_diff(old, new, str(f)), nl=False)
            if not check_only:
                atomic_write(f, new)
    for folder in dict.fromkeys(Path(f).parent for f in stale):
        if not check_only:
            remove_leftovers(folder)  # of a fmt that was killed: ours, never followed
    for f in stale:
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
    from .docs.report import param_count_line, render_card
    from .lang.configs import chosen_values, settable_names
    from .lang.load import library_for, load
    from .lang.values import check_values
    if standalone and fmt != "tex":
        raise CardError("--standalone makes a LaTeX document: use it with --format tex")
    if fmt == "tex" and (backward or memory):
        raise CardError("--backward and --memory print text; --format tex renders the card itself")
    lib = library_for(card)
    c, checked = load(card, lib)
    from .api import sub_algorithms
    order = sub_algorithms(checked, lib) if full else [checked]
    known = [n for ch in order for n in settable_names(ch, lib)]
    extra = ("B", "dtype") if memory else ()
    values = chosen_values(c, config, parse_sets(sets), known, extra)
    check_values(checked, values, extra=extra + others(values, checked, lib), lib=lib)
    if backward or memory:
        from .docs.derived import backward_text, memory_text
        if backward:
            click.echo(backward_text(checked, lib), nl=False)
        if memory:
            itemsize = memory_itemsize(values.pop("dtype", "32"))
            batch = memory_batch(values.pop("B", 1))
            click.echo(memory_text(checked, lib, values, batch, itemsize), nl=False)
        return
    parts = []
    for ch in order:
        count = param_count_line(ch, lib, values, config if ch is checked else None)
        parts.append(render_card(ch, fmt, count))
    if fmt == "tex":
        from .docs.texbox import document, fragment
        click.echo((document if standalone else fragment)(parts), nl=False)
        return
    sep = "\n" if fmt == "md" else "\n" + "─" * 72 + "\n\n"
    click.echo(sep.join(parts), nl=False)


def others(values: dict, checked: Checked, lib: Library) -> tuple[str, ...]:
    """The names among ``values`` that belong to other cards of the command (callees, or the other
    cards of a folder): ``check_values`` leaves them to those cards."""
    from .lang.configs import settable_names
    mine = set(settable_names(checked, lib))
    return tuple(n for n in values if n not in mine)


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


GENERATED_HEADER = "# Code generated by cardgen from "


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
    from .lang.files import atomic_write, holds, inside, read_plain, remove_leftovers
    from .lang.load import card_paths, display_path, library_for, load
    if out_dir is not None and not out_dir.strip():
        raise CardError("-o/--out: the output folder's name is empty")
    from .compile.lower import LoweringError
    from .compile.outputs import add_module, check_compiles
    from .compile.verify import module_text
    files = card_paths(paths or ("cards",))
    out = Path(out_dir or ("generated" if target_kind == "numpy" else "generated/array_api"))
    stale, written, skipped, failed = [], 0, [], 0
    modules: dict[str, tuple[str, str]] = {}  # file name -> (card file, module text)
    libs: dict = {}
    for f in files:
        lib = library_for(str(f), shared=libs)
        try:
            card, checked = load(str(f), lib)
            text = module_text(checked, lib, display_path(f), target=target_kind)
        except LoweringError as e:
            from .compile.lower import wrapper_kind
            if wrapper_kind(card) is not None:  # a wrapper cardgen cannot compile yet: say why, go on
                skipped.append((f, e.message))
                continue
            fail(e)
            failed += 1
            continue
        except CardError as e:
            fail(e)
            failed += 1
            continue
        add_module(modules, card.name, str(f), text, out)
    check_compiles(modules, out)  # every module compiles, or none is written
    if not check_only and out.is_dir():
        remove_leftovers(out)  # from a build that was killed: ours, and never followed
        for leftover in out.glob(".*.py.tmp"):  # the fixed names of older cardgens
            leftover.unlink()
    for name, (_, text) in modules.items():
        target = out / name
        if holds(target, text.encode("utf-8")):
            continue
        if show_diff:
            old = target.read_text("utf-8") if target.is_file() else None
            click.echo(unified_diff(old, text, target.as_posix()), nl=False)
        if check_only:
            stale.append(target)
            continue
        head = read_plain(target, len(GENERATED_HEADER))
        if (head is not None and head != GENERATED_HEADER.encode() or target.is_symlink()) and not force:
            raise CardError(f"{target} exists and was not generated by cardgen; not overwriting it "
                            "(use --force)")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(inside(out, name) if not target.is_symlink() else target, text)
        written += 1
    for f, why in skipped:
        click.echo(f"skipped {f}: {why.split('error: ')[-1]}", err=True)
    if check_only:
        for t in stale:
            click.echo(f"stale: {t} (run `cardgen build`)")
        if stale or failed:
            sys.exit(1)
        click.echo(f"{len(files) - len(skipped) - failed} generated modules are current")
        return
    if failed:
        sys.exit(1)
    click.echo(f"wrote {written} module{'s' if written != 1 else ''} to {out}/ "
               f"({len(files) - len(skipped)} cards compiled; {len(skipped)} training/inference wrappers have none)")


@main.command("docs")
@click.argument("paths", nargs=-1)
@click.option("-o", "--out", "out_dir", default="book", show_default=True, help="Folder for the book.")
@click.option("--force", is_flag=True, help="Write into a folder that holds files but no cardgen book.")
@guarded
def docs_cmd(paths, out_dir, force):
    """Write a static HTML book: an index and a page per card (default cards/), math typeset offline."""
    from .lang.load import card_paths
    if not out_dir.strip():
        raise CardError("-o/--out: the output folder's name is empty")
    from .docs.book import write_book
    files = card_paths(paths or ("cards",))
    n = write_book(files, Path(out_dir), force)
    click.echo(f"wrote {out_dir}/index.html and {n} card page{'s' if n != 1 else ''}; open it in a browser")


@main.command("primitives")
@guarded
def primitives_cmd():
    """Print the table of built-in functions and operators (Markdown): spellings, shape rule, derivative."""
    from .docs.primitives import primitives_table
    click.echo(primitives_table(), nl=False)


@main.command("gradcheck")
@click.argument("paths", nargs=-1)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A dimension's size (default: small).")
@click.option("--config", "config", metavar="NAME", help="One of the card's named configurations (then --set on top).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@guarded
def gradcheck_cmd(paths, sets, config, seed):
    """Check derived gradients against float64 finite differences."""
    from .compile.gradcheck import TOL, gradcheck
    from .compile.lower import LoweringError
    from .lang.configs import chosen_values, settable_names
    from .lang.load import card_paths, library_for, load
    from .lang.values import check_values
    given = {k: v for k, v in parse_sets(sets).items() if k != "dtype"}
    libs: dict = {}
    loaded = [(lib := library_for(str(f), shared=libs), *load(str(f), lib)) for f in card_paths(paths or ("cards",))]
    known = [n for lib, _, ch in loaded for n in settable_names(ch, lib)]
    bad = 0
    for lib, card, checked in loaded:
        values = chosen_values(card, config, given, known)
        check_values(checked, values, extra=others(values, checked, lib), lib=lib)
        try:
            res = gradcheck(checked, lib, values, seed)
        except LoweringError:
            from .compile.lower import wrapper_kind
            if wrapper_kind(card) is not None:  # a wrapper cardgen does not compile: nothing to check
                continue
            raise
        worst = res.worst
        verdict = {"ok": "ok", "FAIL": "FAIL", "straight-through": "STE"}[res.status()]
        bad += not res.passed
        rules = f"  (own backward rule: {', '.join(res.rules)})" if res.rules else ""
        click.echo(f"{card.name:24} {verdict:4}  max relative error {worst:.1e}{rules}")
        for name, err in res.errors.items():
            status = res.status(name)
            click.echo(f"    {name:20} {err:.1e}" + ("" if status == "ok" else "  > tolerance" if status == "FAIL" else
                       f"  > tolerance: straight-through estimator of {', '.join(res.straight_through)}, "
                       "not the true gradient by design (not failed)"))
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
def train_cmd(card, data, steps, batch, seq, lr, lr_min, warmup, weight_decay, clip, accumulate, sets, config, out_dir,
              resume, force, seed, dtype, eval_every, save_every, log_scale, engine, nproc):
    """Train a model card on bytes of text with AdamW; SIGINT/SIGTERM save, --resume continues exactly."""
    from .lang import load as search
    if engine == "torch":  # cardgen.torch.ddp: the card in PyTorch, data-parallel on torch.distributed
        unused = given_options(["lr_min", "warmup", "clip", "accumulate", "resume", "force", "eval_every",
                                "save_every", "log_scale"])
        if unused:
            raise CardError(f"--engine torch takes a constant --lr, no clipping, checkpoints or validation: "
                            f"drop {', '.join('--' + n.replace('_', '-') for n in unused)}")
        from .torch.ddp import train_command
        from .train.commands import read_data
        out = train_command(search.resolve(card), read_data(data)[0], steps=steps, batch=batch, seq=seq, lr=lr,
                            weight_decay=weight_decay, values=parse_sets(sets), out_dir=out_dir, seed=seed,
                            nproc=nproc, dtype=dtype)
        click.echo(f"saved {out / 'weights.npz'}, {out / 'log.csv'}")
        return
    from .train.commands import train
    from .train.run import Settings
    given = given_options(["steps", "batch", "seq", "lr", "lr_min", "warmup", "weight_decay", "clip", "accumulate",
                           "seed", "dtype", "eval_every", "save_every"])
    settings = Settings(steps=steps, batch=batch, seq=seq or 0, lr=lr, lr_min=lr / 10 if lr_min is None else lr_min,
                        warmup=warmup, weight_decay=weight_decay, clip=clip, accumulate=accumulate, seed=seed,
                        dtype=dtype, data={}, eval_every=eval_every, save_every=save_every)
    status = train(card, parse_sets(sets), settings, given, out_dir, resume, force, data, log_scale,
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
    from .train.commands import sample
    sample(checkpoint, prompt, tokens, temperature, seed, card, say=lambda m: click.echo(m, err=True), out=click.echo,
           limit=max_bytes)


@main.command("import-hf")
@click.argument("folder")
@click.option("-o", "--out", "out", default="gpt2.safetensors", show_default=True, help="The checkpoint to write.")
@click.option("--card", default="GPT2", show_default=True, help="The GPT2 card to carry (a file or a name).")
@MAX_BYTES
@guarded
def import_hf_cmd(folder, out, card, max_bytes):
    """Turn a Hugging Face GPT-2 folder (save_pretrained: config.json, model.safetensors) into a checkpoint."""
    from .train.commands import import_hf
    click.echo(f"wrote {import_hf(folder, card, out, max_bytes)}")


@main.command("export-hf")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.argument("folder")
@MAX_BYTES
@guarded
def export_hf_cmd(checkpoint, folder, max_bytes):
    """Write a GPT2 checkpoint as a Hugging Face folder (GPT2LMHeadModel.from_pretrained reads it)."""
    from .train.commands import export_hf
    paths = export_hf(checkpoint, folder, max_bytes)
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
    from .lang import load as search
    search.extra_path[:] = list(value)


# Every command takes --path (kept last: it reaches the commands defined above it).
for _command in main.commands.values():
    _command.params.append(click.Option(
        ["--path", "search_path"], multiple=True, metavar="DIR", expose_value=False, is_eager=True,
        callback=_search_path_option,
        help="A folder of cards that calls resolve in (repeatable; before CARDGEN_PATH, [tool.cardgen] "
             "path in pyproject.toml, ./cards and the standard cards)."))


if __name__ == "__main__":
    main()
