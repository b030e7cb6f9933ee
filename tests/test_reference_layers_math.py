"""The reference layers against central finite differences, with numpy only.

Deliberately independent of the gradharness checks (which test these layers
too): every declared layer is built through its own declaration, its params
are redrawn, and dx and every grad are compared with numerical derivatives of
``L = sum(forward(x) * dout)`` in float64. The protocol details the harness
relies on (shapes, float32 preservation, no mutation, repeatable backward,
params read at call time) are checked along the way.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import reference_layers
from gradharness._declare import declared_in

DECLS = {d.name: d for d in declared_in(reference_layers)}
EXPECTED = {
    "Linear", "OctaveLinear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "SoftmaxCrossEntropy", "MSELoss", "BatchNorm1d", "LayerNorm", "Conv2d", "MaxPool2d", "AvgPool2d",
    "Embedding", "Dropout", "RNN", "LSTM", "Attention", "TwoLayerNet", "MLP",
}
DEFAULT_RANGE = (1, 6)
H = 1e-6  # finite-difference step
RTOL = 1e-6


# ---------------------------------------------------------------- drawing examples

def _names(spec: str) -> list[str]:
    return spec.split()


def _assignments(opts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every valid assignment of dims and hyper-parameters, derived dims filled in."""
    derived = opts.get("derived", {})
    hyper = opts.get("hyper", {})
    names = [n for n in dict.fromkeys(_names(opts["input"]) + _names(opts.get("output", "")) + list(opts.get("dims", {})))
             if n not in derived and n not in hyper]
    pools: list[Any] = []
    for n in names:
        lo, hi = opts.get("dims", {}).get(n, DEFAULT_RANGE)
        pools.append(range(lo, hi + 1))
    for n, src in hyper.items():
        pools.append(list(src) if isinstance(src, list) else range(src[0], src[1] + 1))
    keys = names + list(hyper)
    out = []
    for values in itertools.product(*pools):
        a = dict(zip(keys, values))
        for n, fn in derived.items():
            a[n] = fn(dict(a))
        if all(a[n] >= 1 for n in derived) and all(c(dict(a)) for c in opts.get("constraints", ())):
            out.append(a)
    return out


def _shape_dims(opts: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(_names(opts["input"]) + _names(opts.get("output", ""))
                              + [n for n in opts.get("dims", {})]))


def _distinct(opts: Mapping[str, Any], a: Mapping[str, Any]) -> bool:
    """All dims (drawn and derived, not hyper-parameters) pairwise distinct and >= 2."""
    values = [a[n] for n in _shape_dims(opts)]
    return len(set(values)) == len(values) and min(values) >= 2


def _cases() -> list[Any]:
    cases = []
    for name in sorted(DECLS):
        opts = DECLS[name].options
        valid = _assignments(opts)
        assert valid, f"{name}: no assignment satisfies the declared ranges and constraints"
        rng = np.random.default_rng(len(name))
        picks = [("random", valid[i]) for i in rng.choice(len(valid), size=3)]
        distinct = [a for a in valid if _distinct(opts, a)]
        picks += [("distinct", distinct[i]) for i in rng.choice(len(distinct), size=2)] if distinct else []
        # one example for every combination of hyper-parameters (every stride/pad/k of conv)
        hyper = list(opts.get("hyper", {}))
        for combo in sorted({tuple(a[h] for h in hyper) for a in valid}) if hyper else []:
            same = [a for a in valid if tuple(a[h] for h in hyper) == combo]
            picks.append(("hyper", same[rng.integers(len(same))]))
        for k, (kind, a) in enumerate(picks):
            cases.append(pytest.param(name, a, k, id=f"{name}-{kind}-{k}"))
    return cases


CASES = _cases()


def test_every_layer_is_declared() -> None:
    assert set(DECLS) == EXPECTED
    assert set(reference_layers.__all__) == EXPECTED | {"Sequential"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dims_can_be_pairwise_distinct(name: str) -> None:
    opts = DECLS[name].options
    assert any(_distinct(opts, a) for a in _assignments(opts))


# ---------------------------------------------------------------- helpers

def _build(name: str, a: Mapping[str, Any], seed: int) -> tuple[Any, np.ndarray, np.random.Generator]:
    opts = DECLS[name].options
    rng = np.random.default_rng(seed)
    lay = DECLS[name].make(dict(a), rng)
    for key in list(lay.params):
        # non-trivial values, like the harness: no zero biases, no unit gains
        lay.params[key] = rng.standard_normal(lay.params[key].shape) * 0.8
    shape = tuple(a[n] for n in _names(opts["input"]))
    x: np.ndarray
    if opts.get("index_input"):
        x = rng.integers(0, a[opts["index_input"]], size=shape)
    else:
        lo, hi = opts.get("domain", (-3.0, 3.0))
        x = rng.uniform(lo, hi, size=shape)
    return lay, x, rng


def _numerical(f, arr: np.ndarray, assign) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of arr."""
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += H
        minus[idx] -= H
        assign(plus)
        fp = f()
        assign(minus)
        fm = f()
        grad[idx] = (fp - fm) / (2 * H)
    assign(arr)
    return grad


def _close(what: str, analytic: np.ndarray, numeric: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=RTOL * scale, err_msg=what)


# ---------------------------------------------------------------- the test

@pytest.mark.parametrize(("name", "a", "seed"), CASES)
def test_gradients_shapes_dtypes(name: str, a: dict[str, Any], seed: int) -> None:
    opts = DECLS[name].options
    lay, x, rng = _build(name, a, seed)
    index_input = bool(opts.get("index_input"))

    out = lay.forward(x)
    out_shape = tuple(a[n] for n in _names(opts.get("output", "")))
    assert isinstance(out, np.ndarray) and out.shape == out_shape and out.dtype == np.float64
    dout = np.asarray(rng.standard_normal(out_shape))
    if dout.ndim == 0:
        dout = np.asarray(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8))  # a loss must scale by dout
    x0, dout0 = x.copy(), dout.copy()
    params0 = {k: v.copy() for k, v in lay.params.items()}

    dx = lay.backward(dout)
    dx = None if dx is None else dx.copy()
    grads = {k: np.array(v, copy=True) for k, v in lay.grads.items()}
    assert set(grads) == set(lay.params)
    for k, g in grads.items():
        assert g.shape == lay.params[k].shape, k
    if index_input:
        assert dx is None
    else:
        assert dx is not None and dx.shape == x.shape

    # neither call mutates its inputs or the params
    assert np.array_equal(x, x0) and np.array_equal(dout, dout0)
    for k, p in params0.items():
        assert np.array_equal(lay.params[k], p), k

    # backward is repeatable (grads set, not accumulated) and linear in dout
    dx2 = lay.backward(dout)
    for k, g in grads.items():
        np.testing.assert_allclose(lay.grads[k], g, rtol=1e-12, atol=1e-12, err_msg=k)
    lay.backward(2.5 * dout)
    for k, g in grads.items():
        np.testing.assert_allclose(lay.grads[k], 2.5 * g, rtol=1e-10, atol=1e-10, err_msg=k)
    if dx is not None:
        np.testing.assert_allclose(dx2, dx, rtol=1e-12, atol=1e-12)

    # forward is deterministic and does not hand out a buffer a later call overwrites
    out_again = lay.forward(x)
    np.testing.assert_array_equal(out_again, out)
    if not index_input:
        lay.forward(x + 0.5)
    np.testing.assert_array_equal(out_again, out)

    def loss() -> float:
        return float(np.sum(lay.forward(x_cur[0]) * dout))

    x_cur = [x]
    if dx is not None:
        def set_x(v: np.ndarray) -> None:
            x_cur[0] = v
        _close(f"{name} dx", dx, _numerical(loss, x.copy(), set_x))
    for k, p in params0.items():
        # replacing the array (not editing it) is what the harness does: forward must see it
        def set_p(v: np.ndarray, k: str = k) -> None:
            lay.params[k] = v
        _close(f"{name} d{k}", grads[k], _numerical(loss, p.copy(), set_p))

    # float32 in, float32 everywhere out
    for k in list(lay.params):
        lay.params[k] = lay.params[k].astype(np.float32)
    x32 = x if index_input else x.astype(np.float32)
    out32 = lay.forward(x32)
    assert out32.dtype == np.float32 and out32.shape == out_shape
    dx32 = lay.backward(dout.astype(np.float32))
    if not index_input:
        assert dx32.dtype == np.float32
    for k, g in lay.grads.items():
        assert g.dtype == np.float32, k


# ---------------------------------------------------------------- cases finite differences cannot probe

def test_maxpool_ties_pick_one_input_and_overlaps_accumulate() -> None:
    pool = reference_layers.MaxPool2d(k=3, stride=1)
    x = np.zeros((1, 1, 4, 4))
    out = pool.forward(x)  # every window is a tie
    dx = pool.backward(np.ones_like(out))
    # each of the 4 windows sends its whole gradient to one input: its first, in row-major order
    expected = np.zeros_like(x)
    expected[0, 0, :2, :2] = 1
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_array_equal(pool.backward(np.ones_like(out)), dx)
    x[0, 0, 1, 1] = 5.0  # the maximum of all four overlapping windows
    pool.forward(x)
    dout = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = pool.backward(dout)
    assert dx[0, 0, 1, 1] == 10.0 and dx.sum() == 10.0


def test_embedding_repeated_indices_accumulate() -> None:
    emb = reference_layers.Embedding(vocab=3, d=2, rng=np.random.default_rng(0))
    idx = np.array([[1, 1, 2]])
    emb.forward(idx)
    dout = np.arange(6.0).reshape(1, 3, 2)
    emb.backward(dout)
    np.testing.assert_array_equal(emb.grads["W"], [[0, 0], [2, 4], [4, 5]])


def test_dropout_mask_is_fixed_and_typed() -> None:
    drop = reference_layers.Dropout(p=0.5, rng=np.random.default_rng(0))
    x = np.ones((4, 6), dtype=np.float32)
    a, b = drop.forward(x), drop.forward(x)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 2.0} and 0 < np.count_nonzero(a) < a.size


def test_sequential_params_write_through() -> None:
    rng = np.random.default_rng(0)
    seq = DECLS["MLP"].make({"d_in": 3, "hidden": 4, "d_out": 2}, rng)
    assert list(seq.params) == ["0.W", "0.b", "2.W", "2.b"]
    x = rng.standard_normal((5, 3))
    new_w = rng.standard_normal((3, 4))
    seq.params["0.W"] = new_w
    assert seq.layers[0].params["W"] is new_w and seq.params["0.W"] is new_w
    expected = np.tanh(np.maximum(x @ new_w + seq.params["0.b"], 0) @ seq.params["2.W"] + seq.params["2.b"])
    np.testing.assert_allclose(seq.forward(x), expected)
    seq.backward(np.ones((5, 2)))
    assert set(seq.grads) == set(seq.params) and seq.grads["2.b"] is seq.layers[2].grads["b"]
    # assigning a whole mapping hands every child its share
    seq.params = {k: v * 2 for k, v in seq.params.items()}
    np.testing.assert_array_equal(seq.layers[0].params["W"], 2 * new_w)
    with pytest.raises(KeyError):
        seq.params["7.W"] = new_w
