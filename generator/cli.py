"""The ``cardgen`` command: check, fmt, render."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .check import Checked, Library, check
from .errors import CardError
from .ir import Card
from .parse import parse, parse_file
from .render import card_text
from .report import param_count_line, render_card


def card_paths(paths) -> list[Path]:
    """Files as given, folders expanded to their ``*.card`` files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.card"))
        else:
            out.append(p)
    return out


def library_for(path: str | None) -> Library:
    folders = []
    if path and path != "-":
        folders.append(str(Path(path).parent))
    if Path("cards").is_dir():
        folders.append("cards")
    return Library(folders=folders)


def load(path: str, lib: Library | None = None) -> tuple[Card, Checked]:
    """Parse and check one card (``-``: standard input)."""
    if path == "-":
        text = sys.stdin.read()
        card = parse(text, "<stdin>")
    else:
        card = parse_file(path)
    lib = lib or library_for(path)
    if path == "-" or lib.card(card.name) is None or lib.card(card.name).source != card.source:
        lib.cards[card.name] = card
        lib.done.pop(card.name, None)
    return card, check(card, lib)


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
@guarded
def check_cmd(paths):
    """Parse and type-check cards (files or folders)."""
    bad = 0
    files = card_paths(paths)
    if not files:
        raise CardError(f"no .card files in {', '.join(paths)}")
    for f in files:
        try:
            load(str(f))
        except CardError as e:
            fail(e)
            bad += 1
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
@click.option("--format", "fmt", type=click.Choice(["text", "md"]), default="text", show_default=True)
@click.option("--full", is_flag=True, help="Append every sub-algorithm the card calls, once each.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A hyperparameter value (repeatable); with values the parameter count is shown.")
@click.option("--backward", is_flag=True, help="Print the derived backward pass instead.")
@click.option("--memory", is_flag=True,
              help="List the activations the forward saves for the backward, with shapes and bytes "
                   "(--set B=… for the batch, default 1; --set dtype=float64 for 8-byte floats).")
@guarded
def render_cmd(card, fmt, full, sets, backward, memory):
    """Print a card as Phuong–Hutter pseudocode."""
    values = parse_sets(sets)
    lib = library_for(card)
    c, checked = load(card, lib)
    if backward or memory:
        from .derived import backward_text, memory_text
        if backward:
            click.echo(backward_text(checked, lib), nl=False)
        if memory:
            itemsize = 8 if str(values.pop("dtype", "")) in ("64", "float64") else 4
            batch = int(values.pop("B", 1))
            click.echo(memory_text(checked, lib, values, batch, itemsize), nl=False)
        return
    order = [checked]
    if full:
        order = sub_algorithms(checked, lib)
    parts = []
    for ch in order:
        count = param_count_line(ch, lib, values)
        parts.append(render_card(ch, fmt, count))
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
    from .report import callees
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
    from .emit import module_source
    from .lower import LoweringError
    files = card_paths(paths or ("cards",))
    out = Path(out_dir)
    stale, written, skipped, failed = [], 0, [], 0
    for f in files:
        lib = library_for(str(f))
        try:
            card, checked = load(str(f), lib)
            text = module_source(checked, lib, Path(f).as_posix())
        except LoweringError as e:
            if "cardgen train" in e.message:  # training and inference cards: `cardgen train` compiles them
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
               f"({len(files) - len(skipped)} cards compiled, {len(skipped)} left to `cardgen train`)")


@main.command("gradcheck")
@click.argument("paths", nargs=-1)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A dimension's size (default: small).")
@click.option("--seed", default=0, show_default=True)
@guarded
def gradcheck_cmd(paths, sets, seed):
    """Check derived gradients against float64 finite differences."""
    from .gradcheck import TOL, gradcheck
    from .lower import LoweringError
    values = {k: int(v) for k, v in parse_sets(sets).items() if k != "dtype"}
    bad = 0
    for f in card_paths(paths or ("cards",)):
        lib = library_for(str(f))
        card, checked = load(str(f), lib)
        try:
            res = gradcheck(checked, lib, values, seed)
        except LoweringError as e:
            if "cardgen train" in e.message:
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


if __name__ == "__main__":
    main()
