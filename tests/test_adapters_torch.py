"""The torch adapter: nn.Module and autograd.Function layers through the object protocol."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from gradharness.adapters import (
    FunctionalLayer,
    LayerProtocolError,
    TorchFunctionLayer,
    TorchModuleLayer,
    from_torch,
    torch_factory,
)
from gradharness.adapters.functional import affine_backward, affine_forward

try:  # tests/ is a rootdir-relative folder or a package, depending on the layout pytest sees
    from test_adapters import fd_problems, gaussian
except ImportError:  # pragma: no cover
    from tests.test_adapters import fd_problems, gaussian


class MyLinear(nn.Module):
    """A Linear-like module written out by hand."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in))
        self.bias = nn.Parameter(torch.randn(d_out))

    def forward(self, x: Any) -> Any:
        return torch.tanh(x @ self.weight.T + self.bias)


class MatMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any, w: Any) -> Any:
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g


class MatMulWrongBackward(MatMul):
    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w = ctx.saved_tensors
        return g @ w.T, 0.5 * (x.T @ g)  # the bug: a stray factor on dw


class Scaled(torch.autograd.Function):
    """A non-tensor argument passed through `static`."""

    @staticmethod
    def forward(ctx: Any, x: Any, scale: float = 1.0) -> Any:
        ctx.scale = scale
        return x * scale

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g * ctx.scale, None


class Pair(nn.Module):
    def forward(self, x: Any) -> Any:
        return x, x


def as_float64(layer: Any) -> Any:
    for k in list(layer.params):
        layer.params[k] = layer.params[k].astype(np.float64)  # replacement: read by the next forward
    return layer


def test_linear_module_matches_finite_differences() -> None:
    torch.manual_seed(0)
    for module in (nn.Linear(3, 4), MyLinear(3, 4)):
        layer = as_float64(from_torch(module))
        assert isinstance(layer, TorchModuleLayer) and sorted(layer.params) == ["bias", "weight"]
        assert fd_problems(layer, gaussian(5, 3)) == []


def test_autograd_function_correct_and_wrong_backward() -> None:
    good = from_torch(MatMul, params={"w": (3, 4)}, rng=np.random.default_rng(0))
    assert isinstance(good, TorchFunctionLayer) and good.params["w"].dtype == np.float64
    assert fd_problems(good, gaussian(5, 3)) == []
    bad = from_torch(MatMulWrongBackward, params={"w": (3, 4)}, rng=np.random.default_rng(0))
    assert fd_problems(bad, gaussian(5, 3)) == ["w"]


def test_float32_is_preserved() -> None:
    layer = from_torch(nn.Linear(3, 4))
    assert {v.dtype for v in layer.params.values()} == {np.dtype(np.float32)}
    out = layer.forward(gaussian(2, 3).astype(np.float32))
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == np.float32
    assert {g.dtype for g in layer.grads.values()} == {np.dtype(np.float32)}
    fn = from_torch(MatMul, params={"w": np.ones((3, 2), dtype=np.float32)})
    out = fn.forward(np.ones((2, 3), dtype=np.float32))
    assert out.dtype == fn.backward(np.ones_like(out)).dtype == fn.grads["w"].dtype == np.float32


def test_torch_adapter_agrees_with_numpy_linear() -> None:
    rng = np.random.default_rng(3)
    w, b, x = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((5, 3))
    dout = rng.standard_normal((5, 4))
    ref = FunctionalLayer(affine_forward, affine_backward, {"x": "n d", "w": "d m", "b": "m"},
                          params={"w": w, "b": b})
    tl = from_torch(nn.Linear(3, 4))
    tl.params["weight"] = w.T.copy()
    tl.params["bias"] = b.copy()
    np.testing.assert_allclose(tl.forward(x), ref.forward(x), rtol=1e-12)
    np.testing.assert_allclose(tl.backward(dout), ref.backward(dout), rtol=1e-12)
    np.testing.assert_allclose(tl.grads["weight"], ref.grads["w"].T, rtol=1e-12)
    np.testing.assert_allclose(tl.grads["bias"], ref.grads["b"], rtol=1e-12)


def test_params_replacement_and_in_place_edits_reach_forward() -> None:
    layer = as_float64(from_torch(nn.Linear(2, 2)))
    layer.params["weight"] = np.zeros((2, 2))
    layer.params["bias"][...] = 1.5
    np.testing.assert_array_equal(layer.forward(np.ones((3, 2))), np.full((3, 2), 1.5))


def test_backward_is_repeatable_and_unused_params_get_zeros() -> None:
    def uses_only_a(x: Any, a: Any, unused: Any) -> Any:
        return x * a

    layer = from_torch(uses_only_a, params={"a": (3,), "unused": (2,)})
    out = layer.forward(gaussian(4, 3))
    first = layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(layer.backward(np.ones_like(out)), first)  # graph retained
    np.testing.assert_array_equal(layer.grads["unused"], np.zeros(2))


def test_static_arguments() -> None:
    layer = from_torch(Scaled, static={"scale": 3.0})
    out = layer.forward(np.ones((2, 2)))
    np.testing.assert_array_equal(out, np.full((2, 2), 3.0))
    np.testing.assert_array_equal(layer.backward(np.ones((2, 2))), np.full((2, 2), 3.0))


def test_torch_factory_styles_and_determinism() -> None:
    dims = {"n": 2, "d_in": 3, "d_out": 4}
    builder = torch_factory(lambda dims, rng: nn.Linear(dims["d_in"], dims["d_out"]), name="linear")
    a, b = builder(dims, np.random.default_rng(5)), builder(dims, np.random.default_rng(5))
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    assert a.params["weight"].shape == (4, 3) and builder.__name__ == "linear"
    state = torch.random.get_rng_state()
    by_class = torch_factory(MyLinear)(dims, np.random.default_rng(0))
    assert torch.equal(torch.random.get_rng_state(), state)  # torch's global generator left alone
    assert by_class.params["weight"].shape == (4, 3)
    fn = torch_factory(MatMul, params={"w": "d_in d_out"})(dims, np.random.default_rng(0))
    assert fn.params["w"].shape == (3, 4)
    assert fd_problems(fn, gaussian(2, 3)) == []


def test_torch_protocol_errors() -> None:
    with pytest.raises(LayerProtocolError, match=r"torch layer Pair returned tuple of 2.*expected one Tensor"):
        from_torch(Pair()).forward(np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"got the class, expected an instance.*torch_factory\(Linear\)"):
        from_torch(nn.Linear)
    with pytest.raises(TypeError, match=r"one module instance.*pass the class or a builder"):
        torch_factory(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"returned .*not an nn.Module.*params=\{\}"):
        torch_factory(lambda dims, rng: 3)({"n": 1}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dims has no 'd_out'"):
        torch_factory(MatMul, params={"w": "d_in d_out"})({"n": 1, "d_in": 2}, np.random.default_rng(0))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_check_layer_on_torch_layers() -> None:
    try:
        from gradharness import check_layer
    except ImportError:
        pytest.skip("gradharness.check_layer is not available yet")
    dims = {"d_in": (1, 5), "d_out": (1, 5)}
    fast: dict[str, Any] = {"max_examples": 10, "seed": 0}
    linear = torch_factory(lambda dims, rng: nn.Linear(dims["d_in"], dims["d_out"]), name="linear")
    report = check_layer(linear, "n d_in", dims=dims, bias=("bias",), **fast)
    assert report.passed, [f.message for f in report.failures]
    good = check_layer(torch_factory(MatMul, params={"w": "d_in d_out"}), "n d_in", dims=dims, bias=(), **fast)
    assert good.passed, [f.message for f in good.failures]
    bad = check_layer(torch_factory(MatMulWrongBackward, params={"w": "d_in d_out"}), "n d_in", dims=dims,
                      bias=(), **fast)
    assert not bad.passed
