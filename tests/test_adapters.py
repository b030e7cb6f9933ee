"""The numpy adapters: each style of layer, correct and buggy, seen through the object protocol."""
from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradharness.adapters import (
    AdaptedLayer,
    FunctionalLayer,
    LayerProtocolError,
    adapt,
    adapted_factory,
    check_function,
    functional_factory,
    require_protocol,
)
from gradharness.adapters.functional import affine_backward, affine_forward

ROOT = Path(__file__).resolve().parents[1]
AFFINE = {"x": "n d", "w": "d m", "b": "m"}


# -- a small finite-difference reference: central differences of L = sum(out * dout) ------------

def fd_problems(layer: Any, x: np.ndarray, *, seed: int = 0, eps: float = 1e-6, tol: float = 1e-6) -> list[str]:
    """Names ("dx", param names) whose analytic gradient disagrees with central differences."""
    rng = np.random.default_rng(seed)
    out = layer.forward(x.copy())
    dout = rng.standard_normal(np.shape(out))
    dx = layer.backward(dout.copy())
    grads = {k: np.array(v, copy=True) for k, v in layer.grads.items()}

    def loss(xv: np.ndarray) -> float:
        return float(np.sum(layer.forward(xv) * dout))

    numeric: dict[str, np.ndarray] = {}
    xv = x.astype(np.float64, copy=True)
    num = np.zeros_like(xv)
    for i in np.ndindex(xv.shape):
        old = xv[i]
        xv[i] = old + eps
        hi = loss(xv)
        xv[i] = old - eps
        lo = loss(xv)
        xv[i] = old
        num[i] = (hi - lo) / (2 * eps)
    numeric["dx"] = num
    for k in list(layer.params):
        p = layer.params[k]  # edited in place: the adapters must pass the harness's own arrays through
        num = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            hi = loss(x)
            p[i] = old - eps
            lo = loss(x)
            p[i] = old
            num[i] = (hi - lo) / (2 * eps)
        numeric[k] = num
    analytic = {"dx": dx, **grads}
    problems = []
    for k, n in numeric.items():
        a = analytic.get(k)
        scale = max(1.0, float(np.max(np.abs(n), initial=0.0)))
        if a is None or np.shape(a) != n.shape or np.max(np.abs(a - n), initial=0.0) > tol * scale:
            problems.append(k)
    return problems


def gaussian(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# -- 1. functional pairs -------------------------------------------------------------------------

def affine_backward_db_row0(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout[0]  # the bug: db from the first row instead of summed over the batch


def affine_backward_two(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray]:
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Any]:
    return np.maximum(x, 0), x


def relu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    return dout * (cache > 0)


def conv1d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: Mapping[str, int]) -> tuple[np.ndarray, Any]:
    """Naive 1-d convolution, CS231n style: x (n, c, l), w (f, c, k), b (f,), conv_param={'stride': s}."""
    s = conv_param["stride"]
    n, _, length = x.shape
    f, _, k = w.shape
    steps = (length - k) // s + 1
    out = np.zeros((n, f, steps), dtype=np.result_type(x, w))
    for t in range(steps):
        window = x[:, :, t * s:t * s + k]
        out[:, :, t] = np.einsum("nck,fck->nf", window, w) + b
    return out, (x, w, s)


def conv1d_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, s = cache
    k = w.shape[2]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for t in range(dout.shape[2]):
        window = x[:, :, t * s:t * s + k]
        dw += np.einsum("nf,nck->fck", dout[:, :, t], window)
        dx[:, :, t * s:t * s + k] += np.einsum("nf,fck->nck", dout[:, :, t], w)
    return dx, dw, dout.sum(axis=(0, 2))


def make_affine(bw: Any = affine_backward, **dims: int) -> FunctionalLayer:
    dims = {"n": 4, "d": 3, "m": 5, **dims}
    return FunctionalLayer(affine_forward, bw, AFFINE, dims=dims, rng=np.random.default_rng(0))


def test_functional_affine_correct_matches_finite_differences() -> None:
    layer = make_affine()
    assert set(layer.params) == {"w", "b"} and layer.params["w"].shape == (3, 5)
    assert fd_problems(layer, gaussian(4, 3)) == []


def test_functional_affine_db_from_first_row_is_detected() -> None:
    assert fd_problems(make_affine(affine_backward_db_row0), gaussian(4, 3)) == ["b"]


def test_functional_params_are_read_at_call_time() -> None:
    layer = make_affine()
    x = gaussian(4, 3)
    layer.params["w"] = np.zeros((3, 5))
    layer.params["b"] = np.ones(5)
    np.testing.assert_array_equal(layer.forward(x), np.ones((4, 5)))
    layer.params["b"][...] = 2.0
    np.testing.assert_array_equal(layer.forward(x), np.full((4, 5), 2.0))


def test_functional_grads_are_set_not_accumulated() -> None:
    layer = make_affine()
    out = layer.forward(gaussian(4, 3))
    dout = np.ones_like(out)
    layer.backward(dout)
    first = {k: v.copy() for k, v in layer.grads.items()}
    layer.backward(dout)
    for k, g in first.items():
        np.testing.assert_array_equal(layer.grads[k], g)


def test_functional_param_free_layer_returns_dx_alone() -> None:
    layer = FunctionalLayer(relu_forward, relu_backward, {"x": "n d"})
    assert layer.params == {}
    x = gaussian(3, 4) + 0.05 * np.sign(gaussian(3, 4))  # keep away from the kink at 0
    assert fd_problems(layer, x) == []


def test_functional_init_and_static_callable_of_dims() -> None:
    def init(dims: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"w": 0.5 * rng.standard_normal((dims["f"], dims["c"], dims["k"])), "b": np.zeros(dims["f"])}

    make = functional_factory(
        conv1d_forward, conv1d_backward, inputs={"x": "n c l", "w": "f c k", "b": "f"}, init=init,
        static=lambda dims: {"conv_param": {"stride": dims["stride"]}},
    )
    layer = make({"n": 2, "c": 3, "l": 7, "f": 2, "k": 3, "stride": 2}, np.random.default_rng(0))
    assert layer.static == {"conv_param": {"stride": 2}}
    assert layer.forward(gaussian(2, 3, 7)).shape == (2, 2, 3)
    assert fd_problems(layer, gaussian(2, 3, 7)) == []


def test_functional_static_dicts_are_not_shared_between_layers() -> None:
    make = functional_factory(conv1d_forward, conv1d_backward, inputs={"x": "n c l", "w": "f c k", "b": "f"},
                              static={"conv_param": {"stride": 1}})
    dims = {"n": 1, "c": 1, "l": 3, "f": 1, "k": 1}
    first = make(dims, RNG(0))
    first.static["conv_param"]["running_mean"] = np.zeros(3)  # what a CS231n batchnorm_forward does to bn_param
    assert make(dims, RNG(0)).static == {"conv_param": {"stride": 1}}


def test_functional_factory_is_deterministic_given_rng() -> None:
    make = functional_factory(affine_forward, affine_backward, inputs=AFFINE)
    dims = {"n": 2, "d": 3, "m": 4}
    a, b = make(dims, np.random.default_rng(7)), make(dims, np.random.default_rng(7))
    np.testing.assert_array_equal(a.params["w"], b.params["w"])
    assert make.__name__ == "affine_forward"


def test_functional_missing_dim_names_the_dim_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"dims has no 'm'.*dims=\{'m': \(1, 6\)\}"):
        FunctionalLayer(affine_forward, affine_backward, AFFINE, dims={"n": 2, "d": 3})


# -- 2. objects with other conventions -----------------------------------------------------------

class AttrLinear:
    """W/dW attributes; W stored (d_out, d_in) as in torch, so dW needs a transpose."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((d_out, d_in))
        self.b = rng.standard_normal(d_out)
        self.dW: Any = None
        self.db: Any = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = dout.T @ self.x
        self.db = dout.sum(axis=0)
        return dout @ self.W


class AttrLinearMissingTranspose(AttrLinear):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.dW = self.x.T @ dout  # the bug: (dout.T @ x) transposed; right shape only when square
        return dx


class DictLinear:
    """Parameters in `parameters`, gradients in `gradients`."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.parameters = {"W": rng.standard_normal((d_in, d_out)), "b": rng.standard_normal(d_out)}
        self.gradients: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.parameters["W"] + self.parameters["b"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.gradients = {"W": self.x.T @ dout, "b": dout.sum(axis=0)}
        return dout @ self.parameters["W"].T


class AccumLinear:
    """Gradients accumulate (+=) as in most training loops; zero_grad resets them."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((d_in, d_out))
        self.dW = np.zeros_like(self.W)
        self.zeroed = 0

    def zero_grad(self) -> None:
        self.zeroed += 1
        self.dW = np.zeros_like(self.W)  # in W's current dtype: the harness casts W per run

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.tanh(x @ self.W)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dz = dout * (1 - np.tanh(self.x @ self.W) ** 2)
        self.dW += self.x.T @ dz
        return dz @ self.W.T


class AccumNoFlush(AccumLinear):
    """No zero_grad: the adapter zeroes dW in place, so dW must already have W's dtype."""

    zero_grad = None  # type: ignore[assignment]


class LazyLinear:
    """Creates W on the first forward, from the input's width."""

    def __init__(self, d_out: int, rng: np.random.Generator) -> None:
        self.d_out, self.rng = d_out, rng
        self.W: Any = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.W is None:
            self.W = self.rng.standard_normal((x.shape[1], self.d_out))
        self.x = x
        return x @ self.W

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = self.x.T @ dout
        return dout @ self.W.T


class SGDLinear:
    """Backward takes an SGD step instead of storing gradients (W in place, b rebound)."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator, lr: float = 0.1) -> None:
        self.W = rng.standard_normal((d_in, d_out))
        self.b = rng.standard_normal(d_out)
        self.lr = lr

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = dout @ self.W.T
        self.W -= self.lr * (self.x.T @ dout)
        self.b = self.b - self.lr * dout.sum(axis=0)
        return dx


class SGDLinearStepsFirst(SGDLinear):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.W -= self.lr * (self.x.T @ dout)
        self.b = self.b - self.lr * dout.sum(axis=0)
        return dout @ self.W.T  # the bug: dx from the already-updated W


class FixedRateSGD:
    """A hard-coded learning rate with no attribute to read."""

    def __init__(self, d_in: int, d_out: int, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((d_in, d_out))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = dout @ self.W.T
        self.W = self.W - 0.05 * (self.x.T @ dout)
        return dx


class PassNamed:
    """forward_pass / backward_pass instead of forward / backward."""

    def __init__(self, d: int, rng: np.random.Generator) -> None:
        self.params = {"g": rng.standard_normal(d)}
        self.grads: dict[str, np.ndarray] = {}

    def forward_pass(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x * self.params["g"]

    def backward_pass(self, dout: np.ndarray) -> np.ndarray:
        self.grads["g"] = (dout * self.x).sum(axis=0)
        return dout * self.params["g"]


RNG = np.random.default_rng


def test_attribute_layer_correct() -> None:
    layer = adapt(AttrLinear(3, 4, RNG(0)), params={"W": "W", "b": "b"}, grads={"W": "dW", "b": "db"})
    assert isinstance(layer.params, dict) and sorted(layer.params) == ["W", "b"]
    assert fd_problems(layer, gaussian(5, 3)) == []


@pytest.mark.parametrize("d_in,d_out", [(3, 3), (3, 4)])
def test_attribute_layer_missing_transpose_is_detected(d_in: int, d_out: int) -> None:
    layer = adapt(AttrLinearMissingTranspose(d_in, d_out, RNG(0)), params=["W", "b"], grads="d{}")
    assert fd_problems(layer, gaussian(5, d_in)) == ["W"]


def test_dict_layer_with_other_names() -> None:
    obj = DictLinear(3, 2, RNG(0))
    layer = adapt(obj, params="parameters", grads="gradients")
    assert layer.params is obj.parameters
    assert fd_problems(layer, gaussian(4, 3)) == []


def test_params_dict_is_live() -> None:
    obj = AttrLinear(3, 4, RNG(0))
    layer = adapt(obj, params={"W": "W", "b": "b"}, grads={"W": "dW", "b": "db"})
    new = np.zeros((4, 3))
    layer.params["W"] = new
    assert obj.W is new
    layer.params["W"][0, 0] = 5.0
    assert obj.W[0, 0] == 5.0
    dict.update(layer.params, {"b": np.ones(4)})  # a route that skips __setitem__ still reaches the layer
    np.testing.assert_array_equal(layer.forward(np.zeros((2, 3))), np.ones((2, 4)))
    assert obj.b is layer.params["b"]
    obj.W = np.full((4, 3), 2.0)  # the layer rebinding its own attribute is seen through the dict
    assert layer.params["W"] is obj.W
    snapshot = copy.deepcopy(layer.params)
    assert type(snapshot) is dict and snapshot["W"] is not obj.W
    with pytest.raises(KeyError, match="not a mapped parameter"):
        layer.params["V"] = np.zeros(1)


def test_adapted_layer_deepcopy_stays_live_and_independent() -> None:
    layer = adapt(AttrLinear(3, 4, RNG(0)), params=["W", "b"], grads="d{}")
    twin = copy.deepcopy(layer)
    twin.params["W"] = np.zeros((4, 3))
    assert twin.wrapped.W is twin.params["W"]
    assert not np.all(layer.wrapped.W == 0)
    assert fd_problems(twin, gaussian(2, 3)) == []


def test_accumulating_layer_is_flushed_before_each_backward() -> None:
    obj = AccumLinear(3, 2, RNG(0))
    layer = adapt(obj, params=["W"], grads="d{}", accumulates=True)
    out = layer.forward(gaussian(4, 3))
    layer.backward(np.ones_like(out))
    first = layer.grads["W"]
    layer.backward(np.ones_like(out))
    np.testing.assert_allclose(layer.grads["W"], first)
    assert obj.zeroed == 2
    assert layer.grads["W"] is not obj.dW  # copied: the next flush must not zero grads already handed out
    assert fd_problems(layer, gaussian(4, 3)) == []


def test_accumulating_layer_without_flag_shows_the_accumulation() -> None:
    layer = adapt(AccumLinear(3, 2, RNG(0)), params=["W"], grads="d{}")
    out = layer.forward(gaussian(4, 3))
    layer.backward(np.ones_like(out))
    first = layer.grads["W"]
    layer.backward(np.ones_like(out))
    np.testing.assert_allclose(layer.grads["W"], 2 * first)


def test_accumulating_layer_without_flush_method_is_zeroed_in_place() -> None:
    layer = adapt(AccumNoFlush(3, 2, RNG(0)), params=["W"], grads="d{}", accumulates=True)
    assert fd_problems(layer, gaussian(4, 3)) == []
    out = layer.forward(gaussian(4, 3))
    layer.backward(np.ones_like(out))
    first = layer.grads["W"]
    layer.backward(np.ones_like(out))
    np.testing.assert_allclose(layer.grads["W"], first)


def test_lazy_layer_materialized_by_a_sample_forward() -> None:
    obj = LazyLinear(4, RNG(0))
    layer = adapt(obj, params=["W"], grads="d{}", lazy=np.zeros((1, 3)))
    assert layer.params["W"].shape == (3, 4) and layer.params["W"] is obj.W
    assert fd_problems(layer, gaussian(5, 3)) == []


def test_lazy_layer_without_sample_materializes_on_first_forward() -> None:
    layer = adapt(LazyLinear(4, RNG(0)), params=["W"], grads="d{}", lazy=True)
    with pytest.raises(LayerProtocolError, match="creates its weights on the first forward.*lazy="):
        _ = layer.params
    layer.forward(gaussian(2, 3))
    assert layer.params["W"].shape == (3, 4)


def test_lazy_layer_materialized_on_first_access_of_params() -> None:
    obj = LazyLinear(4, RNG(0))
    layer = adapt(obj, params=["W"], grads="d{}", lazy=lambda: np.ones((1, 3)))
    assert obj.W is None  # nothing has run yet
    assert layer.params["W"].shape == (3, 4) and layer.params["W"] is obj.W
    assert fd_problems(layer, gaussian(2, 3)) == []


def test_lazy_layer_without_lazy_flag_says_how_to_fix() -> None:
    with pytest.raises(LayerProtocolError, match=r"lazy=sample_x"):
        adapt(LazyLinear(4, RNG(0)), params=["W"], grads="d{}")


def test_adapted_factory_lazy_sample_from_dims() -> None:
    make = adapted_factory(LazyLinear, params=["W"], grads="d{}", lazy="n d_in")
    layer = make({"n": 2, "d_in": 3, "d_out": 5}, RNG(0))
    assert layer.params["W"].shape == (3, 5)
    assert fd_problems(layer, gaussian(2, 3)) == []


@pytest.mark.parametrize("update", [{"lr": "lr"}, 0.1, {"lr": 0.1}])
def test_update_layer_gradients_recovered_and_step_undone(update: Any) -> None:
    obj = SGDLinear(3, 4, RNG(0))
    layer = adapt(obj, params=["W", "b"], update=update)
    w_obj, w0, b_obj, b0 = obj.W, obj.W.copy(), obj.b, obj.b.copy()
    x = gaussian(5, 3)
    out = layer.forward(x)
    dout = gaussian(*out.shape, seed=2)
    layer.backward(dout)
    np.testing.assert_allclose(layer.grads["W"], x.T @ dout, rtol=1e-10)
    np.testing.assert_allclose(layer.grads["b"], dout.sum(axis=0), rtol=1e-10)
    assert obj.W is w_obj and obj.b is b_obj  # the harness's array objects, values restored
    np.testing.assert_array_equal(obj.W, w0)
    np.testing.assert_array_equal(obj.b, b0)
    assert obj.lr == 0.1
    assert fd_problems(layer, x) == []


def test_update_layer_keeps_float32() -> None:
    layer = adapt(SGDLinear(3, 4, RNG(0)), params=["W", "b"], update={"lr": "lr"})
    layer.params["W"] = layer.params["W"].astype(np.float32)
    layer.params["b"] = layer.params["b"].astype(np.float32)
    out = layer.forward(gaussian(2, 3).astype(np.float32))
    layer.backward(np.ones_like(out))
    assert {g.dtype for g in layer.grads.values()} == {np.dtype(np.float32)}


def test_update_layer_stepping_before_dx_is_detected() -> None:
    layer = adapt(SGDLinearStepsFirst(3, 4, RNG(0)), params=["W", "b"], update={"lr": "lr"})
    assert fd_problems(layer, gaussian(5, 3)) == ["dx"]


def test_update_layer_with_fixed_rate() -> None:
    layer = adapt(FixedRateSGD(3, 2, RNG(0)), params=["W"], update=0.05)
    assert fd_problems(layer, gaussian(4, 3)) == []


def test_renamed_methods() -> None:
    layer = adapt(PassNamed(3, RNG(0)), forward="forward_pass", backward="backward_pass")
    assert fd_problems(layer, gaussian(4, 3)) == []


def test_adapted_factory_builds_class_from_dims() -> None:
    make = adapted_factory(AttrLinear, params=["W", "b"], grads="d{}")
    layer = make({"n": 2, "d_in": 3, "d_out": 4}, RNG(0))
    assert isinstance(layer, AdaptedLayer) and layer.params["W"].shape == (4, 3)
    with pytest.raises(TypeError, match=r"needs d_out.*dims=\{'d_out': \(1, 6\)\}"):
        make({"n": 2, "d_in": 3}, RNG(0))


# -- 4. protocol violations ----------------------------------------------------------------------

class MyLayer:
    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x


def test_missing_backward_message() -> None:
    expected = (
        "layer MyLayer has no method 'backward': expected forward(x) -> out and backward(dout) -> dx; "
        "map other names with adapt(..., backward='backward_pass')"
    )
    with pytest.raises(LayerProtocolError) as err:
        require_protocol(MyLayer())
    assert str(err.value) == expected
    with pytest.raises(LayerProtocolError) as err:
        adapt(MyLayer())
    assert str(err.value) == expected
    assert issubclass(LayerProtocolError, TypeError)


def test_missing_method_suggests_a_similar_name() -> None:
    with pytest.raises(LayerProtocolError, match=r"\(it has 'backward_pass'\).*backward='backward_pass'"):
        adapt(PassNamed(3, RNG(0)), forward="forward_pass")


def test_require_protocol_accepts_a_protocol_layer_and_rejects_missing_dicts() -> None:
    require_protocol(make_affine())
    obj = AttrLinear(3, 4, RNG(0))
    with pytest.raises(LayerProtocolError, match=r"has no attribute 'params'.*params=\{'W': 'W'\}"):
        require_protocol(obj)


def test_functional_backward_wrong_tuple_length() -> None:
    layer = make_affine(affine_backward_two)
    layer.forward(gaussian(4, 3))
    with pytest.raises(LayerProtocolError) as err:
        layer.backward(np.ones((4, 5)))
    assert str(err.value) == "affine_backward_two returned 2 values, expected 3: (dx, dw, db) for inputs x, w, b"


def test_functional_backward_none_and_non_arrays() -> None:
    layer = make_affine(lambda dout, cache: None)
    layer.forward(gaussian(4, 3))
    with pytest.raises(LayerProtocolError, match=r"returned None, expected 3 values: \(dx, dw, db\)"):
        layer.backward(np.ones((4, 5)))
    layer = make_affine(lambda dout, cache: (dout, [1.0], 0))
    layer.forward(gaussian(4, 3))
    with pytest.raises(LayerProtocolError, match=r"value 1 \(dw\) is list .* expected a numpy ndarray"):
        layer.backward(np.ones((4, 5)))


def test_functional_forward_without_cache() -> None:
    layer = FunctionalLayer(lambda x: np.tanh(x), relu_backward, {"x": "n d"}, name="tanh_forward")
    with pytest.raises(LayerProtocolError, match=r"tanh_forward returned ndarray.*expected \(out, cache\)"):
        layer.forward(gaussian(2, 2))


class NoDx(AttrLinear):
    def backward(self, dout: np.ndarray) -> None:  # type: ignore[override]
        super().backward(dout)


class ForgetsDb(AttrLinear):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.db = None
        return dx


class ListOut(AttrLinear):
    def forward(self, x: np.ndarray) -> Any:  # type: ignore[override]
        return (super().forward(x)).tolist()


def test_object_protocol_violations() -> None:
    x = gaussian(2, 3)
    layer = adapt(NoDx(3, 4, RNG(0)), params=["W", "b"], grads="d{}")
    out = layer.forward(x)
    with pytest.raises(LayerProtocolError, match=r"backward of NoDx \(backward\) returned None: expected dx"):
        layer.backward(np.ones_like(out))
    layer = adapt(ForgetsDb(3, 4, RNG(0)), params=["W", "b"], grads="d{}")
    layer.forward(x)
    with pytest.raises(LayerProtocolError, match=r"no gradient for params\['b'\] at db \(None\)"):
        layer.backward(np.ones_like(out))
    layer = adapt(ListOut(3, 4, RNG(0)), params=["W", "b"], grads="d{}")
    with pytest.raises(LayerProtocolError, match=r"forward of ListOut: the returned value is list"):
        layer.forward(x)
    with pytest.raises(LayerProtocolError, match=r"has no 'V' for params\['V'\].*its array attributes: W, b"):
        adapt(AttrLinear(3, 4, RNG(0)), params={"V": "V"}, grads={"V": "dV"})
    with pytest.raises(TypeError, match=r"no gradient place for params \['b'\]"):
        adapt(AttrLinear(3, 4, RNG(0)), params=["W", "b"], grads={"W": "dW"})
    with pytest.raises(TypeError, match="give one"):
        adapt(SGDLinear(3, 4, RNG(0)), params=["W"], grads="d{}", update=0.1)


def test_importing_adapters_does_not_import_torch() -> None:
    code = (
        "import sys, gradharness.adapters, gradharness.adapters.torch; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# -- through check_layer, once the core provides it ----------------------------------------------

def _check_layer() -> Any:
    try:
        from gradharness import check_layer
    except ImportError:
        pytest.skip("gradharness.check_layer is not available yet")
    return check_layer


FAST: dict[str, Any] = {"max_examples": 10, "seed": 0}


# the harness feeds non-finite values on purpose (finite-output check); numpy's warnings are expected
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_function_affine_passes_and_db_bug_fails() -> None:
    _check_layer()
    good = check_function(affine_forward, affine_backward, inputs=AFFINE, bias=("b",), **FAST)
    assert good.passed, [f.message for f in good.failures]
    bad = check_function(affine_forward, affine_backward_db_row0, inputs=AFFINE, bias=("b",), **FAST)
    assert not bad.passed and "b" in bad.failures[0].message


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_layer_on_adapted_objects() -> None:
    check_layer = _check_layer()
    dims = {"d_in": (1, 5), "d_out": (1, 5)}
    cases = [
        (adapted_factory(AttrLinear, params=["W", "b"], grads="d{}"), True),
        (adapted_factory(AttrLinearMissingTranspose, params=["W", "b"], grads="d{}"), False),
        (adapted_factory(DictLinear, params="parameters", grads="gradients"), True),
        (adapted_factory(AccumLinear, params=["W"], grads="d{}", accumulates=True), True),
        (adapted_factory(AccumLinear, params=["W"], grads="d{}"), False),  # accumulating, not declared so
        (adapted_factory(LazyLinear, params=["W"], grads="d{}", lazy="n d_in"), True),
        (adapted_factory(SGDLinear, params=["W", "b"], update={"lr": "lr"}), True),
        (adapted_factory(SGDLinearStepsFirst, params=["W", "b"], update={"lr": "lr"}), False),
    ]
    for make, should_pass in cases:
        bias = ("b",) if "b" in make({"n": 2, "d_in": 2, "d_out": 3}, RNG(0)).params else ()
        report = check_layer(make, "n d_in", dims=dims, bias=bias, **FAST)
        assert report.passed is should_pass, (make.__name__, [f.message for f in report.failures])
