"""Every primitive has its row in every stage's table.

Card IR ops: a shape rule in check (``x_<op>``), a printer in render and in
LaTeX (``op_<op>``).  Core IR primitives: a printer in every target's table
(``npcode.PRINT`` for NumPy, ``xpcode.PRINT`` for the array API) and, unless
they carry no gradient, a VJP rule (``ad.VJP``).  A new primitive
missing from one table fails here, not in a user's build."""

from cardgen import parse_file
from cardgen.compile.ad import NO_GRAD_PRIMS, VJP, differentiate, walk_all
from cardgen.compile.emit import output_names
from cardgen.compile.lower import lower
from cardgen.compile.npcode import PRINT
from cardgen.compile.targets import TARGETS
from cardgen.docs.latex import TexPrinter
from cardgen.lang.check import Checker, check
from cardgen.lang.ir import Expr, Step
from cardgen.lang.render import Printer


def methods(cls, prefix: str) -> set[str]:
    return {m.removeprefix(prefix) for m in dir(cls) if m.startswith(prefix)}


def ops_in(node) -> set[str]:
    """Every expression op below a step, an expression or a list of them."""
    if isinstance(node, Expr):
        return {node.op}.union(*(ops_in(a) for a in node.args))
    if isinstance(node, Step):
        return set().union(*(ops_in(getattr(node, f)) for f in node.__dataclass_fields__))
    if isinstance(node, (list, tuple)):
        return set().union(*(ops_in(x) for x in node))
    return set()


def test_card_ops_have_a_shape_rule_and_both_printers(card_path):
    card_ops = methods(Checker, "x_")
    assert methods(Printer, "op_") == card_ops
    assert methods(TexPrinter, "op_") == card_ops
    used = ops_in(list(parse_file(card_path).steps))
    assert used and used <= card_ops, sorted(used - card_ops)


def test_vjp_rules_build_only_printable_primitives():
    assert set(VJP) <= set(PRINT)
    assert NO_GRAD_PRIMS <= set(PRINT)
    assert not set(VJP) & NO_GRAD_PRIMS


def test_every_target_prints_every_primitive():
    assert TARGETS["numpy"].table is PRINT
    for name, target in TARGETS.items():
        assert set(target.table) == set(PRINT), (name, sorted(set(PRINT) ^ set(target.table)))


def test_lowered_and_derived_primitives_are_in_the_tables(card_path, library):
    checked = check(parse_file(card_path), library)
    prog = lower(checked, library)
    forward = {op.prim for op in walk_all(prog.body)}
    for target in TARGETS.values():
        assert forward <= set(target.table), (target.name, sorted(forward - set(target.table)))
    names = prog.names
    names.count = 10_000
    bwd = differentiate(prog, names, [names.fresh("d_" + o) for o in output_names(prog, checked)])
    backward = {op.prim for op in walk_all(bwd.body)}
    for target in TARGETS.values():
        assert backward <= set(target.table), (target.name, sorted(backward - set(target.table)))
    # (A forward primitive without a VJP rule is fine where no gradient flows through it:
    # differentiate raises NoDerivativeError, at the card step, where one does.)
