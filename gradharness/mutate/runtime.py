"""Runtime mutations: wrap a built layer and corrupt what its backward hands back.

For layers whose source is unavailable (compiled ops, torch adapters, layers
built by closures) the bugs are injected around the object instead of inside its
code: the wrapper calls the real forward and backward and then scales,
transposes, zeroes, perturbs, accumulates or upcasts one gradient, replaces a
bias gradient by the first sample's share, or writes into the caller's dout.
Each wrapper keeps the object protocol (``params`` is the inner layer's own
mapping, so the harness's writes reach the real forward).
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: the factor scale-grad multiplies a gradient by (a mean over a batch of 2, a dropped factor 2)
SCALE = 0.5
#: relative noise of the fixed noisy-grad mutant: the gradient error the README says is caught
NOISE_LEVEL = 1e-6
#: the factor the in-place write multiplies dout by
DOUT_FACTOR = 0.5


@dataclass(frozen=True)
class RuntimeOperator:
    name: str
    description: str
    #: "tensor": one mutant per gradient (dx and every param); "param": per param; "bias": per bias; "layer": one
    per: str


RUNTIME_OPERATORS: dict[str, RuntimeOperator] = {op.name: op for op in (
    RuntimeOperator("scale-grad", f"a gradient scaled by {SCALE} (a mean where the loss sums, a lost factor 2)", "tensor"),
    RuntimeOperator("transpose-grad", "a square gradient transposed (left alone when not square, as the bug would be)",
                    "tensor"),
    RuntimeOperator("zero-grad", "a gradient replaced by zeros (a path that is never back-propagated)", "tensor"),
    RuntimeOperator("noisy-grad", f"a gradient with a fixed relative error of {NOISE_LEVEL:g} per element (the gate's "
                    "sensitivity is found by bisection on this level)", "tensor"),
    RuntimeOperator("accumulate-grad", "a param gradient accumulated across backward calls instead of set", "param"),
    RuntimeOperator("upcast-grad", "a gradient returned as float64 whatever the input dtype", "tensor"),
    RuntimeOperator("first-sample-bias", "a bias gradient from the first sample only (dout[0], not summed over the batch)",
                    "bias"),
    RuntimeOperator("overwrite-dout", f"backward multiplies the caller's dout by {DOUT_FACTOR} in place", "layer"),
)}


def _fixed_noise(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The same standard normal noise for a given tensor name and shape, on every call."""
    seed = [zlib.crc32(name.encode()), *[int(s) for s in shape]]
    return np.random.default_rng(seed).standard_normal(shape)


def corrupt(op: str, name: str, g: np.ndarray, level: float = NOISE_LEVEL) -> np.ndarray:
    """`g` (the gradient of tensor `name`) as operator `op` corrupts it."""
    if op == "scale-grad":
        return (g * SCALE).astype(g.dtype, copy=False)
    if op == "transpose-grad":
        if g.ndim >= 2 and g.shape[-1] == g.shape[-2]:
            return np.swapaxes(g, -1, -2).copy()
        return g
    if op == "zero-grad":
        return np.zeros_like(g)
    if op == "noisy-grad":
        if g.dtype.kind != "f":
            return g
        # dx: the same noise for every row, so the noise is batch-consistent (a sub-batch's dx is the
        # rows of the batch's) and only the gradient checks can see it; a param: noise of its shape.
        # Either way the corruption is linear in dout.
        shape = g.shape[1:] if name == "x" and g.ndim >= 1 else g.shape
        return (g * (1.0 + level * _fixed_noise(name, shape))).astype(g.dtype)
    if op == "upcast-grad":
        return g.astype(np.float64)
    raise ValueError(f"not a per-gradient operator: {op!r}")


class RuntimeMutant:
    """A layer whose backward result is corrupted by one runtime operator on one tensor."""

    def __init__(self, inner: Any, op: str, tensor: str | None, *, level: float = NOISE_LEVEL) -> None:
        self._inner = inner
        self._op = op
        self._tensor = tensor
        self._level = level
        self._acc: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    # ----- the protocol, delegated -------------------------------------------------
    @property
    def params(self) -> Any:
        return self._inner.params

    @params.setter
    def params(self, value: Any) -> None:
        self._inner.params = value

    def __getattr__(self, name: str) -> Any:
        # only called for attributes the wrapper does not have: the inner layer's own
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def forward(self, x: Any) -> Any:
        return self._inner.forward(x)

    def backward(self, dout: Any) -> Any:
        op, tensor = self._op, self._tensor
        first: np.ndarray | None = None
        if op == "first-sample-bias" and isinstance(dout, np.ndarray) and dout.ndim >= 1 and dout.shape[0] > 0:
            only_first = np.zeros_like(dout)
            only_first[:1] = dout[:1]
            self._inner.backward(only_first)
            g = _grads_of(self._inner).get(tensor)
            first = None if g is None else np.array(g, copy=True)
        dx = self._inner.backward(dout)
        grads = {k: v for k, v in _grads_of(self._inner).items()}
        if op == "first-sample-bias" and first is not None:
            grads[tensor] = first  # type: ignore[index]
        elif op == "accumulate-grad" and tensor in grads:
            g = np.asarray(grads[tensor])
            prev = self._acc.get(tensor)  # type: ignore[arg-type]
            total = g.copy() if prev is None or prev.shape != g.shape else prev + g
            self._acc[tensor] = total  # type: ignore[index]
            grads[tensor] = total.copy()  # type: ignore[index]
        elif op == "overwrite-dout":
            if isinstance(dout, np.ndarray) and dout.dtype.kind == "f" and dout.flags.writeable:
                dout *= DOUT_FACTOR
        elif op in ("scale-grad", "transpose-grad", "zero-grad", "noisy-grad", "upcast-grad"):
            if tensor == "x":
                if isinstance(dx, np.ndarray):
                    dx = corrupt(op, "x", dx, self._level)
            elif tensor in grads and isinstance(grads[tensor], np.ndarray):
                grads[tensor] = corrupt(op, tensor, grads[tensor], self._level)  # type: ignore[arg-type]
        self.grads = grads
        return dx


def _grads_of(layer: Any) -> Mapping[str, Any]:
    g = getattr(layer, "grads", None)
    return g if isinstance(g, Mapping) else {}


def wrap_factory(make: Callable[..., Any], op: str, tensor: str | None, *, level: float = NOISE_LEVEL) -> Callable[..., Any]:
    """A factory building the inner layer and wrapping it in the runtime mutant."""

    def mutant_make(dims: Mapping[str, Any], rng: np.random.Generator) -> RuntimeMutant:
        return RuntimeMutant(make(dims, rng), op, tensor, level=level)

    mutant_make.__name__ = getattr(make, "__name__", "make")
    mutant_make.__qualname__ = getattr(make, "__qualname__", "make")
    mutant_make.__module__ = getattr(make, "__module__", __name__)
    return mutant_make


def runtime_sites(params: list[str], bias: list[str], has_dx: bool, operators: list[str] | None = None,
                  ndim: Mapping[str, int] | None = None) -> list[tuple[str, str | None]]:
    """(operator, tensor) of every runtime mutant for a layer with these params and biases
    (`ndim`: the rank of "x" and of each param; transpose-grad needs at least 2)."""
    names = list(RUNTIME_OPERATORS) if operators is None else [o for o in operators if o in RUNTIME_OPERATORS]
    tensors = (["x"] if has_dx else []) + list(params)
    ndim = ndim or {}
    out: list[tuple[str, str | None]] = []
    for name in names:
        per = RUNTIME_OPERATORS[name].per
        if name == "transpose-grad":
            out += [(name, t) for t in tensors if ndim.get(t, 2) >= 2]
        elif per == "tensor":
            out += [(name, t) for t in tensors]
        elif per == "param":
            out += [(name, t) for t in params]
        elif per == "bias":
            out += [(name, t) for t in bias]
        else:
            out.append((name, None))
    return out


def tensor_label(tensor: str | None) -> str:
    if tensor is None:
        return "dout"
    return "dx" if tensor == "x" else f"grads[{tensor!r}]"


def operator_descriptions() -> dict[str, str]:
    return {name: op.description for name, op in RUNTIME_OPERATORS.items()}
