"""The array-API target on the engines themselves: for every model card, the
module `cardgen build --target array-api` writes, run on NumPy arrays, on
PyTorch CPU tensors and on JAX CPU arrays (eagerly and under `jax.jit`), gives
the NumPy target's outputs and gradients to 1e-12 in float64.  CuPy runs where
a CUDA GPU and CuPy are present (`pip install cupy-cuda12x`, then
`pytest tests/test_engines.py -k cupy`) and is reported as skipped elsewhere."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os

import numpy as np
import pytest

from cardgen.compile.core import Loop
from cardgen.compile.gradcheck import load_module, make_config, make_inputs, run_forward, small_sizes
from cardgen.compile.lower import lower
from cardgen.lang.load import library_for, load

from .conftest import ROOT

TOL = 1e-12
# XLA's optimisation passes are most of a jax.jit's cost on these small cards (~40%) and buy nothing
# the comparison checks; read when JAX starts its CPU backend, which no other test file does.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
# Every card that compiles to a model module (not a training or inference wrapper).
MODELS = sorted(p.stem for p in (ROOT / "generated").glob("*.py")
                if "def train_step(" not in (text := p.read_text("utf-8")) and "def generate(" not in text)


@dataclasses.dataclass
class Case:
    """One card's two modules, float64 inputs and the NumPy target's results on them."""
    numpy_mod: object
    xp_mod: object
    config: object
    params: object               # NumPy arrays (the NumPy target's Params)
    args: list                   # forward's inputs after config and params
    seeds: list                  # a gradient for each output
    outs: list                   # the NumPy target's outputs ...
    grads: dict                  # ... parameter gradients ...
    input_grads: dict            # ... and input gradients


@functools.cache
def case(name: str, path: str | None = None) -> Case:
    path = path or str(ROOT / "cards" / f"{name}.card")
    lib = library_for(path)
    _, checked = load(path, lib)
    numpy_mod = load_module(checked, lib)
    xp_mod = load_module(checked, lib, target="array-api")
    prog = lower(checked, lib)
    # Two layers are enough to check a layer loop; jax.jit unrolls it, and EDTransformer's
    # default sizes (6 and 4 layers) alone cost it minutes of XLA compilation.
    layers = {s for item in prog.body if isinstance(item, Loop) for s in item.count.symbols()}
    sizes = small_sizes(checked, lib, {s: 2 for s in layers if prog.dims.get(s, "").startswith("config.")})
    config = make_config(numpy_mod, sizes)
    rng = np.random.default_rng(0)
    params = numpy_mod.init_params(config, rng, np.float64)
    params = numpy_mod.Params(**{k: v + 0.1 * rng.standard_normal(v.shape) for k, v in vars(params).items()})
    args = make_inputs(prog, sizes, rng, positive=name == "AdamW")  # AdamW's v: positive
    outs, cache = run_forward(numpy_mod, config, params, args)
    seeds = [rng.standard_normal(np.shape(o)) for o in outs]
    grads, input_grads = numpy_mod.backward(config, params, cache, *seeds)
    return Case(numpy_mod, xp_mod, config, params, args, seeds, outs, vars(grads), input_grads)


def assert_close(got, want, what: str):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, NumPy target {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, NumPy target {want.dtype}"
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    err = float(np.max(np.abs(got - want), initial=0.0)) / scale
    assert err <= TOL, f"{what}: differs from the NumPy target by {err:.2e} (relative)"


def check_results(c: Case, outs, grads: dict, input_grads: dict, to_numpy):
    for i, (got, want) in enumerate(zip(outs, c.outs, strict=True)):
        assert_close(to_numpy(got), want, f"output {i}")
    assert set(grads) == set(c.grads)
    for k, want in c.grads.items():
        assert_close(to_numpy(grads[k]), want, f"gradient of {k}")
    assert set(input_grads) == set(c.input_grads)
    for k, want in c.input_grads.items():
        assert_close(to_numpy(input_grads[k]), want, f"gradient of input {k}")


def run_on(c: Case, to_engine, to_numpy):
    """forward and backward of the array-API module on the engine's arrays."""
    conv = functools.partial(_convert, to_engine)
    params = c.xp_mod.Params(**{k: to_engine(v) for k, v in vars(c.params).items()})
    *outs, cache = c.xp_mod.forward(c.config, params, *map(conv, c.args))
    grads, input_grads = c.xp_mod.backward(c.config, params, cache, *map(to_engine, c.seeds))
    check_results(c, outs, vars(grads), input_grads, to_numpy)


def _convert(to_engine, a):
    return to_engine(a) if isinstance(a, np.ndarray) else a  # a Python int (p_start) stays one


@pytest.mark.parametrize("name", MODELS)
def test_array_api_module_on_numpy_equals_numpy_target(name):
    c = case(name)
    run_on(c, np.asarray, np.asarray)


def engine(name: str):
    """torch or jax, from the `test` extra: missing, an error, except in CI's runs with only
    `test-core` (CARDGEN_TEST_WITHOUT_TORCH, see conftest.py), where it is a skip that says why."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CARDGEN_TEST_WITHOUT_TORCH"):
            pytest.skip(f"{name} is not installed (test-core only: CARDGEN_TEST_WITHOUT_TORCH)")
        raise


@pytest.fixture
def torch1():
    """torch on one thread: these tensors are small, and a second thread only adds synchronisation
    (40× slower on a loaded 2-core machine)."""
    torch = engine("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", MODELS)
def test_array_api_module_on_torch_cpu_tensors_equals_numpy_target(name, torch1):
    torch = torch1
    c = case(name)

    def to_numpy(t):
        assert isinstance(t, torch.Tensor), f"a {type(t).__name__}, not a torch.Tensor"
        return t.numpy()
    run_on(c, torch.asarray, to_numpy)


def recurrence_cards(folder) -> dict[str, str]:
    """The recurrences of tests/test_recurrence.py (loops over time, written step by step), as files;
    the corpus's RNN, LSTM and GRU run with every other model card (MODELS)."""
    from . import test_recurrence
    paths = {}
    for text in (v for k, v in vars(test_recurrence).items() if k.isupper() and isinstance(v, str)):
        name = text.split("(")[0].split()[-1]
        paths[name] = folder / f"{name}.card"
        paths[name].write_text(text, "utf-8")
    return paths


def test_array_api_module_of_recurrences_on_torch_equals_numpy_target(tmp_path, torch1):
    paths = recurrence_cards(tmp_path)
    assert {"Elman", "ElmanFamily", "LearnedStart"} <= set(paths)
    assert {"RNN", "LSTM", "GRU"} <= set(MODELS)
    for name, path in paths.items():
        c = case(name, str(path))
        run_on(c, torch1.asarray, lambda t: t.numpy())


@pytest.fixture
def jax64():
    jax = engine("jax")
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)  # float64, as the NumPy target's results
    yield jax
    jax.config.update("jax_enable_x64", before)


# Eager JAX compiles every op for every new shape (~10 s of CPU for GPT2Block), so eagerly only cards
# that between them use every helper; every card runs on JAX arrays under jax.jit below.
EAGER_JAX = ["DTransformer", "LLaMABlock", "cross_entropy", "token_embedding"]


@pytest.mark.parametrize("name", EAGER_JAX)
def test_array_api_module_on_jax_cpu_arrays_equals_numpy_target(name, jax64):
    c = case(name)

    def to_numpy(a):
        assert isinstance(a, jax64.Array), f"a {type(a).__name__}, not a jax.Array"
        return np.asarray(a)
    run_on(c, jax64.numpy.asarray, to_numpy)


@pytest.mark.parametrize("name", MODELS)
def test_array_api_module_under_jax_jit_forward_and_backward(name, jax64):
    """forward and backward traced once by jax.jit (no Python control flow on traced values, no
    writes into arrays) and run compiled, on two sets of values, without tracing again."""
    c = case(name)
    jnp = jax64.numpy
    arrays = [i for i, a in enumerate(c.args) if isinstance(a, np.ndarray)]  # traced; Python ints stay static
    traces = []

    def step(params: dict, inputs: list, seeds: list):
        traces.append(1)
        assert all(isinstance(v, jax64.core.Tracer) for v in params.values())
        args = list(c.args)
        for i, a in zip(arrays, inputs, strict=True):
            args[i] = a
        *outs, cache = c.xp_mod.forward(c.config, c.xp_mod.Params(**params), *args)
        grads, input_grads = c.xp_mod.backward(c.config, c.xp_mod.Params(**params), cache, *seeds)
        return outs, vars(grads), input_grads

    jitted = jax64.jit(step)
    for _ in range(2):  # the second call runs the compiled code on the same values again
        outs, grads, input_grads = jitted({k: jnp.asarray(v) for k, v in vars(c.params).items()},
                                          [jnp.asarray(c.args[i]) for i in arrays], [jnp.asarray(s) for s in c.seeds])
        check_results(c, outs, grads, input_grads, np.asarray)
    assert len(traces) == 1, "jax.jit traced the module more than once"


@pytest.mark.parametrize("name", MODELS)
def test_array_api_module_on_cupy_gpu_arrays_equals_numpy_target(name):
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install cupy-cuda12x on a CUDA machine)")
    try:
        gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CuPy without a driver or device raises its own CUDA errors
        pytest.skip(f"no CUDA GPU for CuPy: {e}")
    if not gpus:
        pytest.skip("no CUDA GPU for CuPy")
    c = case(name)
    run_on(c, cupy.asarray, cupy.asnumpy)


def test_the_array_api_target_refuses_wrapper_cards_with_a_reason():
    from cardgen.compile.emit import module_source
    from cardgen.compile.lower import LoweringError
    path = str(ROOT / "cards" / "DTraining.card")
    lib = library_for(path)
    _, checked = load(path, lib)
    with pytest.raises(LoweringError, match="compiles model cards; DTraining is a training card"):
        module_source(checked, lib, "cards/DTraining.card", target="array-api")


def test_init_params_draws_the_numpy_targets_numbers_into_the_namespace_given(torch1):
    c = case("GPT2")
    want = c.numpy_mod.init_params(c.config, np.random.default_rng(7), np.float64)
    got = c.xp_mod.init_params(c.config, np.random.default_rng(7), np.float64, xp=torch1)
    for k, v in vars(want).items():
        t = getattr(got, k)
        assert isinstance(t, torch1.Tensor) and t.dtype == torch1.float64
        assert np.array_equal(t.numpy(), v), k


def test_the_public_api_compiles_for_the_array_api_target(tmp_path):
    import cardgen
    from cardgen.lang.errors import CardError
    card = cardgen.load(str(ROOT / "cards" / "LayerNorm.card"))
    mod = card.compile("array-api")
    assert "from array_api_compat import array_namespace" in cardgen.api.module_text(card, "array-api")
    c = case("LayerNorm")
    *outs, _ = mod.forward(c.config, mod.Params(**vars(c.params)), *c.args)
    assert_close(outs[0], c.outs[0], "output")
    written = cardgen.api.build([str(ROOT / "cards" / "LayerNorm.card")], tmp_path, target="array-api")
    assert [p.name for p in written] == ["LayerNorm.py"] and "# Target: the Python array API" in written[0].read_text()
    with pytest.raises(CardError, match="unknown target 'cuda': cardgen emits numpy or array-api"):
        card.compile("cuda")
