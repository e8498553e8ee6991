"""cardgen.Sharded: a compiled card's forward and backward over a batch cut into shards, each on a
thread of its own, against one call of the module: the same outputs, parameter gradients and input
gradients (float64, to rounding), whatever the cut; what cannot be cut is refused."""

import doctest

import numpy as np
import pytest

import cardgen
from cardgen.train import shards

from .conftest import ROOT, load_generated, watch_forward

BERT, GPT2 = load_generated("BERTLayer"), load_generated("GPT2")


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_bounds_cut_in_order_with_sizes_one_apart():
    assert shards.bounds(5, 2) == [(0, 2), (2, 5)]
    assert shards.bounds(7, 3) == [(0, 2), (2, 5), (5, 7)]
    assert shards.bounds(2, 4) == [(0, 1), (1, 2)]  # never an empty shard
    assert shards.bounds(1, 1) == [(0, 1)]


@pytest.mark.parametrize("threads", [2, 3])
def test_a_bert_layer_in_shards_is_one_call(threads, monkeypatch):
    cfg = BERT.Config(D=16, H=2, D_f=32)
    params = BERT.init_params(cfg, np.random.default_rng(0), np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 16))
    m = (np.arange(6)[None, :] < np.array([6, 5, 4, 3, 6])[:, None]).astype(np.int64)  # padding differs by row
    dy = rng.standard_normal((5, 6, 16))
    y, cache = BERT.forward(cfg, params, x, m)
    grads, input_grads = BERT.backward(cfg, params, cache, dy)
    seen = watch_forward(monkeypatch, BERT)
    sharded = cardgen.Sharded(BERT, threads)
    workspace = {}
    for _ in range(2):  # the second time through the shards' workspaces
        ys, cache_s = sharded.forward(cfg, params, x, m, workspace=workspace)
        grads_s, input_grads_s = sharded.backward(cfg, params, cache_s, dy, workspace=workspace)
        close(ys, y)
        for name in vars(grads):
            close(getattr(grads_s, name), getattr(grads, name))
        assert set(input_grads_s) == set(input_grads) == {"X"}
        close(input_grads_s["X"], input_grads["X"])
    assert sorted(n for _, n, _ in seen[:threads]) == sorted(hi - lo for lo, hi in shards.bounds(5, threads))
    assert all(name.startswith("cardgen-shard") and set(blas) == {1} for name, _, blas in seen)
    assert ("shard", threads - 1) in workspace


def test_an_input_without_batch_axes_goes_whole_to_every_shard():
    """GPT-2's p_start takes no batch axes: each shard gets it, and the positions start there."""
    cfg = GPT2.Config(V=32, D=16, H=2, D_f=32, N=1, ctx=12)
    params = GPT2.init_params(cfg, np.random.default_rng(0), np.float64)
    x = np.random.default_rng(1).integers(0, 32, size=(4, 8))
    y, cache = GPT2.forward(cfg, params, x, 3)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    grads, _ = GPT2.backward(cfg, params, cache, dy)
    sharded = cardgen.Sharded(GPT2, 2)
    ys, cache_s = sharded.forward(cfg, params, x, 3)
    grads_s, input_grads_s = sharded.backward(cfg, params, cache_s, dy)
    close(ys, y)
    assert input_grads_s == {}
    for name in vars(grads):
        close(getattr(grads_s, name), getattr(grads, name))


def test_what_cannot_be_cut_is_refused(tmp_path):
    cfg = BERT.Config(D=16, H=2, D_f=32)
    params = BERT.init_params(cfg, np.random.default_rng(0), np.float64)
    x, m = np.zeros((3, 6, 16)), np.ones((3, 6), dtype=np.int64)
    sharded = cardgen.Sharded(BERT, 2)
    with pytest.raises(ValueError, match="no input of .* has a batch axis"):
        sharded.forward(cfg, params, x[0], m[0])
    with pytest.raises(ValueError, match="first batch axes differ"):
        sharded.forward(cfg, params, x, m[:2])
    with pytest.raises(ValueError, match="m has no batch axis while X has one"):
        sharded.forward(cfg, params, x, m[0])
    with pytest.raises(ValueError, match="at least 1"):
        cardgen.Sharded(BERT, 0)
    dropout = cardgen.load(str(ROOT / "tests" / "differential_cases" / "Dropout.card")).compile()
    with pytest.raises(ValueError, match="draws random numbers"):
        cardgen.Sharded(dropout, 2)
    old = (ROOT / "generated" / "LayerNorm.py").read_text().replace("INPUT_RANKS", "OLD_RANKS")
    path = tmp_path / "OldLayerNorm.py"
    path.write_text(old)
    from cardgen.compile.gradcheck import import_source
    with pytest.raises(ValueError, match="build it again"):
        cardgen.Sharded(import_source("OldLayerNorm", old, str(path)), 2)


def test_every_module_records_its_ranks():
    """INPUT_RANKS and OUTPUT_RANKS follow the signature: every input, every output, in order."""
    for path in sorted((ROOT / "generated").glob("*.py")):
        mod = load_generated(path.stem)
        inputs = [p for p in mod.forward.__code__.co_varnames[2:mod.forward.__code__.co_argcount]
                  if p not in ("rng", "workspace")]
        assert list(mod.INPUT_RANKS) == inputs, path.name
        assert all(r is None or r >= 0 for r in (*mod.INPUT_RANKS.values(), *mod.OUTPUT_RANKS.values()))
    assert load_generated("BERTLayer").INPUT_RANKS == {"X": 2, "m": 1}
    assert load_generated("AdamW").INPUT_RANKS["t"] is None


def test_the_docstring_runs(monkeypatch):
    monkeypatch.chdir(ROOT)
    failures, tried = doctest.testmod(shards, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried >= 6
