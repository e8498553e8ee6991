"""The ``cardgen`` command: check, fmt, render, build, docs, gradcheck, train, sample."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .docs.report import param_count_line, render_card
from .lang import load as search
from .lang.check import Checked, Library
from .lang.check_call import callees
from .lang.configs import chosen_values, settable_names, training_config
from .lang.errors import CardError
from .lang.load import card_paths, display_path, library_for, load, where
from .lang.render import card_text


def fail(err: Exception) -> None:
    click.echo(str(err), err=True)


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
        except (OSError, UnicodeError) as e:
            click.echo(f"cardgen: error: {e}", err=True)
            sys.exit(1)
        except Exception as e:  # a bug in cardgen, not in the card: say so, briefly
            click.echo(f"cardgen: internal error: {type(e).__name__}: {e}\n"
                       "  this is a bug in cardgen; please report it with the card that caused it", err=True)
            sys.exit(2)
    return run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cardgen")
def main():
    """cardgen: compile algorithm cards (Phuong & Hutter pseudocode) into checked IR,
    paper-style pseudocode and NumPy."""


@main.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option("-v", "--verbose", is_flag=True, help="Say where each card a card calls was found on the search path.")
@guarded
def check_cmd(paths, verbose):
    """Parse and type-check cards (files, folders or names on the search path)."""
    bad = 0
    files = card_paths(paths)
    if not files:
        raise CardError(f"no .card files in {', '.join(paths)}")
    for f in files:
        try:
            lib = library_for(str(f))
            card, _ = load(str(f), lib)
        except CardError as e:
            fail(e)
            bad += 1
            continue
        if verbose:
            click.echo(f"{display_path(f)}: {card.name}")
            for name in callees(card):
                found = where(lib, name)
                if found is not None:
                    click.echo(f"  calls {name}: {found}")
    n = len(files)
    if bad:
        click.echo(f"{bad} of {n} card{'s' if n != 1 else ''} failed", err=True)
        sys.exit(1)
    click.echo(f"{n} card{'s' if n != 1 else ''} ok")


@main.command("fmt")
@click.argument("paths", nargs=-1, required=True)
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if any file would change; change nothing.")
@guarded
def fmt_cmd(paths, check_only):
    """Rewrite cards in canonical form (``-`` reads standard input)."""
    if paths == ("-",):
        card, checked = load("-")
        sys.stdout.write(card_text(card, checked.claims))
        return
    stale = []
    for f in card_paths(paths):
        card, checked = load(str(f))
        new = card_text(card, checked.claims)
        old = f.read_text("utf-8")
        if new != old:
            stale.append(f)
            if not check_only:
                write_atomic(f, new)
    for f in stale:
        click.echo(f"{'would reformat' if check_only else 'reformatted'} {f}")
    if check_only and stale:
        sys.exit(1)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


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
    if standalone and fmt != "tex":
        raise CardError("--standalone makes a LaTeX document: use it with --format tex")
    if fmt == "tex" and (backward or memory):
        raise CardError("--backward and --memory print text; --format tex renders the card itself")
    lib = library_for(card)
    c, checked = load(card, lib)
    order = sub_algorithms(checked, lib) if full else [checked]
    known = [n for ch in order for n in settable_names(ch, lib)]
    values = chosen_values(c, config, parse_sets(sets), known, ("B", "dtype") if memory else ())
    if backward or memory:
        from .docs.derived import backward_text, memory_text
        if backward:
            click.echo(backward_text(checked, lib), nl=False)
        if memory:
            itemsize = 8 if str(values.pop("dtype", "")) in ("64", "float64") else 4
            batch = int(values.pop("B", 1))
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
        values[name.strip()] = int(num) if num.is_integer() else num
    return values


def sub_algorithms(root: Checked, lib: Library) -> list[Checked]:
    """The card and every card it calls, recursively, each once (depth first)."""
    from .lang.check_call import callees
    seen: dict[str, Checked] = {}

    def visit(ch: Checked):
        if ch.card.name in seen:
            return
        seen[ch.card.name] = ch
        for name in callees(ch.card):
            sub = lib.checked(name)
            if sub is not None:
                visit(sub)
    visit(root)
    return list(seen.values())


GENERATED_HEADER = "# Code generated by cardgen from "


@main.command("build")
@click.argument("paths", nargs=-1)
@click.option("-o", "--out", "out_dir", default="generated", show_default=True, help="Folder for the modules.")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if a generated module is stale; write nothing.")
@click.option("--force", is_flag=True, help="Overwrite files that cardgen did not generate.")
@guarded
def build_cmd(paths, out_dir, check_only, force):
    """Generate a NumPy module (forward, backward, init) for every model card."""
    from .compile.emit import module_source
    from .compile.lower import LoweringError
    files = card_paths(paths or ("cards",))
    out = Path(out_dir)
    stale, written, skipped, failed = [], 0, [], 0
    if not check_only and out.is_dir():
        for leftover in out.glob(".*.py.tmp"):  # from a build that was killed: ours to remove
            leftover.unlink()
    for f in files:
        lib = library_for(str(f))
        try:
            card, checked = load(str(f), lib)
            text = module_source(checked, lib, display_path(f))
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
        target = out / f"{card.name}.py"
        old = target.read_text("utf-8") if target.exists() else None
        if old == text:
            continue
        if check_only:
            stale.append(target)
            continue
        if old is not None and not old.startswith(GENERATED_HEADER) and not force:
            raise CardError(f"{target} exists and was not generated by cardgen; not overwriting it "
                            "(use --force)")
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text)
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
@click.option("--seed", default=0, show_default=True)
@guarded
def gradcheck_cmd(paths, sets, config, seed):
    """Check derived gradients against float64 finite differences."""
    from .compile.gradcheck import TOL, gradcheck
    from .compile.lower import LoweringError
    given = {k: int(v) for k, v in parse_sets(sets).items() if k != "dtype"}
    loaded = [(lib := library_for(str(f)), *load(str(f), lib)) for f in card_paths(paths or ("cards",))]
    known = [n for lib, _, ch in loaded for n in settable_names(ch, lib)]
    bad = 0
    for lib, card, checked in loaded:
        values = chosen_values(card, config, given, known)
        try:
            res = gradcheck(checked, lib, values, seed)
        except LoweringError:
            from .compile.lower import wrapper_kind
            if wrapper_kind(card) is not None:  # a wrapper cardgen does not compile: nothing to check
                continue
            raise
        worst = res.worst
        verdict = "ok" if worst <= TOL else "FAIL"
        bad += worst > TOL
        click.echo(f"{card.name:24} {verdict:4}  max relative error {worst:.1e}")
        for name, err in res.errors.items():
            click.echo(f"    {name:20} {err:.1e}" + ("  > tolerance" if err > TOL else ""))
    if bad:
        click.echo(f"{bad} card(s) exceed the tolerance {TOL:g}", err=True)
        sys.exit(1)


def training_modules(card_path: str, values: dict, config: str | None = None):
    """The model card's module, the cross_entropy and AdamW cards' modules, and a Config:
    the named configuration's values (by default the card's training configuration), then ``values``."""
    import dataclasses

    from .compile.gradcheck import load_module
    from .compile.naming import ascii_name
    lib = library_for(card_path)
    card, checked = load(card_path, lib)
    if config is None and training_config(card) is not None:
        config = training_config(card).name
    names = settable_names(checked, lib)
    values = chosen_values(card, config, values, [*names, *map(ascii_name, names)])
    out = checked.env[card.outputs[0]].type if len(card.outputs) == 1 else None
    if card.convention.axes != "rows" or out is None or len(out.shape) != 2:
        raise CardError(f"cardgen train trains a language model whose output is logits, one row per position "
                        f"(T×V, as GPT2 and Bigram); {card.name} is not one",
                        hint="the paper's DTransformer trains with its own card: generated/DTraining.py, train()")
    mods = {}
    for name in ("cross_entropy", "AdamW"):
        sub = lib.checked(name)
        if sub is None:
            raise CardError(f"training needs the card {name}.card beside {card_path} or in ./cards")
        mods[name] = load_module(sub, lib)
    model = load_module(checked, lib)
    fields = {f.name: f for f in dataclasses.fields(model.Config)}
    given = {ascii_name(k): v for k, v in values.items()}
    vocab = [f for f in fields if f in ("V", "N_V")]
    for f in vocab:
        if given.setdefault(f, 256) != 256:
            raise CardError(f"byte-level training needs {f} = 256, not {given[f]}")
    missing = [f for f, spec in fields.items() if f not in given and spec.default is dataclasses.MISSING]
    if missing:
        raise CardError(f"{card.name} needs values for {', '.join(missing)}: --set NAME=VALUE",
                        hint="for example --set D=64 --set H=4 --set D_f=256 --set N=2 --set ctx=64")
    config = model.Config(**{k: v for k, v in given.items() if k in fields})
    return card, model, mods["cross_entropy"], mods["AdamW"], config


@main.command("train")
@click.argument("card")
@click.option("--data", type=click.Path(exists=True, dir_okay=False),
              help="A text file (default: Python's own sources).")
@click.option("--steps", default=1000, show_default=True, help="Total optimizer steps.")
@click.option("--batch", default=16, show_default=True, help="Sequences per step.")
@click.option("--seq", default=None, type=int, help="Tokens per sequence (default: the context, at most 64).")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--weight-decay", default=0.0, show_default=True)
@click.option("--clip", default=1.0, show_default=True, help="Clip the gradient's global norm (0: off).")
@click.option("--accumulate", default=1, show_default=True, help="Micro-batches per step.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A hyperparameter of the card.")
@click.option("--config", "config", metavar="NAME",
              help="One of the card's named configurations (default: the one marked (training)); --set on top.")
@click.option("--out", "out_dir", default=None, help="Folder for checkpoint, log and plot (default runs/<card>).")
@click.option("--resume", is_flag=True, help="Continue from the folder's checkpoint, on the same trajectory.")
@click.option("--seed", default=0, show_default=True)
@click.option("--eval-every", default=100, show_default=True)
@guarded
def train_cmd(card, data, steps, batch, seq, lr, weight_decay, clip, accumulate, sets, config, out_dir, resume,
              seed, eval_every):
    """Train a model card on bytes of text with AdamW; checkpoints resume exactly."""
    import time

    import numpy as np

    from .train import trainer as tr
    from .train.plot import loss_png
    values = parse_sets(sets)
    c, model, ce, adamw, config = training_modules(card, values, config)
    out = Path(out_dir or f"runs/{c.name}")
    out.mkdir(parents=True, exist_ok=True)
    ckpt, log_path = out / "checkpoint.npz", out / "log.csv"
    text = Path(data).read_bytes() if data else tr.stdlib_text()
    train_tokens, val_tokens = tr.split(text)
    ctx = getattr(config, "ctx", None) or getattr(config, "ell_max", None)
    seq = seq or min(ctx or 64, 64)
    settings = tr.AdamWSettings(lr=lr, weight_decay=weight_decay, clip_norm=clip or None, accumulate=accumulate)
    trainer = tr.Trainer(model, ce, adamw, config, settings)
    if resume:
        if not ckpt.exists():
            raise CardError(f"--resume: no checkpoint at {ckpt}")
        state, rng, meta = tr.load_checkpoint(ckpt, model)
        click.echo(f"resuming {c.name} at step {state.step} from {ckpt}")
    else:
        rng = np.random.default_rng(seed)
        state = trainer.init(rng)
        log_path.write_text("step,train_loss,val_loss,tokens_per_s\n")

    def save():
        tr.save_checkpoint(ckpt, state, rng, config, {"card": str(Path(card).resolve()), "seq": seq})

    def evaluate(step):  # its own RNG per step: evaluation never moves the training trajectory
        vb = tr.batches(val_tokens, batch, seq, np.random.default_rng([seed, step]))
        return trainer.evaluate(state.params, vb)

    tty = sys.stderr.isatty()
    start, done_tokens = time.perf_counter(), 0
    try:
        while state.step < steps:
            micro = [tr.batches(train_tokens, batch, seq, rng) for _ in range(accumulate)]
            loss = trainer.step(state, micro)
            done_tokens += batch * seq * accumulate
            rate = done_tokens / (time.perf_counter() - start)
            val = evaluate(state.step) if state.step % eval_every == 0 or state.step == steps else float("nan")
            with log_path.open("a") as f:
                f.write(f"{state.step},{loss:.6f},{val:.6f},{rate:.1f}\n")
            line = f"step {state.step}/{steps}  loss {loss:.4f}  {rate:,.0f} tokens/s" + \
                ("" if np.isnan(val) else f"  val {val:.4f}")
            if tty:
                click.echo("\r" + line.ljust(72), nl=False, err=True)
            elif state.step % eval_every == 0 or state.step == steps:
                click.echo(line, err=True)
    except KeyboardInterrupt:
        save()
        click.echo(f"\ninterrupted at step {state.step}: saved {ckpt}", err=True)
        sys.exit(130)
    if tty:
        click.echo("", err=True)
    save()
    rows = [r.split(",") for r in log_path.read_text().splitlines()[1:]]
    train_curve = ([int(r[0]) for r in rows], [float(r[1]) for r in rows])
    va = [(int(r[0]), float(r[2])) for r in rows if r[2] != "nan"]
    loss_png(out / "loss.png", {"train": train_curve, "val": ([a for a, _ in va], [b for _, b in va])})
    sample = trainer.generate(state.params, np.frombuffer(b"def ", np.uint8), 120, 0.8,
                              np.random.default_rng(seed), context=seq)
    click.echo(f"saved {ckpt}, {log_path}, {out / 'loss.png'}")
    click.echo("sample: " + (b"def " + bytes(sample.astype(np.uint8))).decode("utf-8", "replace"))


@main.command("sample")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", default="def ", show_default=True)
@click.option("--tokens", default=200, show_default=True)
@click.option("--temperature", default=0.8, show_default=True, help="0 picks the most likely byte.")
@click.option("--seed", default=0, show_default=True)
@guarded
def sample_cmd(checkpoint, prompt, tokens, temperature, seed):
    """Continue a prompt with a trained checkpoint."""
    import json

    import numpy as np

    from .train import trainer as tr
    with np.load(checkpoint) as d:
        meta = json.loads(bytes(d["meta"]).decode("utf-8"))
    config_values = meta["config"]
    c, model, ce, adamw, config = training_modules(meta["card"], config_values)
    state, _, _ = tr.load_checkpoint(checkpoint, model)
    trainer = tr.Trainer(model, ce, adamw, config)
    x = np.frombuffer(prompt.encode("utf-8"), np.uint8)
    out = trainer.generate(state.params, x, tokens, temperature, np.random.default_rng(seed), context=meta["seq"])
    click.echo((prompt.encode("utf-8") + bytes(out.astype(np.uint8))).decode("utf-8", "replace"))


def _search_path_option(ctx, param, value):
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
