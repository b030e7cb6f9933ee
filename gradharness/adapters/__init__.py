"""Adapters: turn other layer conventions into the object protocol the checks see.

The object protocol::

    layer.params: dict[str, np.ndarray]   # read by forward at call time
    layer.grads:  dict[str, np.ndarray]   # set (not accumulated) by backward
    layer.forward(x) -> out
    layer.backward(dout) -> dx            # dx.shape == x.shape

* :mod:`~gradharness.adapters.functional` — CS231n style pairs
  ``f(x, w, b) -> (out, cache)`` / ``f_backward(dout, cache) -> (dx, dw, db)``.
* :mod:`~gradharness.adapters.objects` — objects with other names, accumulating
  gradients, lazily created weights or an optimizer step inside backward.
* :mod:`~gradharness.adapters.torch` — ``nn.Module`` and ``autograd.Function``
  (the ``torch`` extra; torch is imported only when one is adapted).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np

__all__ = [
    "AdaptedLayer",
    "FunctionalLayer",
    "LayerProtocolError",
    "TorchFunctionLayer",
    "TorchModuleLayer",
    "adapt",
    "adapted_factory",
    "check_function",
    "from_torch",
    "functional_factory",
    "require_protocol",
    "torch_factory",
]

#: a symbolic shape: dim names (or literal sizes) separated by spaces, "" for a scalar; or concrete sizes
ShapeSpec = Union[str, Sequence[int]]


# Defined before the submodule imports below because every submodule raises it.
class LayerProtocolError(TypeError):
    """A layer (or what it returned) does not follow the object protocol the checks rely on."""


def layer_name(obj: Any) -> str:
    """The name a person knows `obj` by: its function or class name."""
    name = getattr(obj, "name", None)
    if isinstance(name, str) and name:
        return name
    if hasattr(obj, "__qualname__") and not isinstance(obj, np.ndarray):
        return str(obj.__qualname__)
    return type(obj).__name__


def describe(value: Any) -> str:
    """A short description of a value for error messages: type and, for arrays, shape and dtype."""
    if isinstance(value, np.ndarray):
        return f"ndarray(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, tuple):
        return f"tuple of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def as_array(value: Any, *, layer: str, what: str, fix: str = "") -> np.ndarray:
    """`value` as an ndarray, or a LayerProtocolError naming the layer and what was expected."""
    if isinstance(value, np.ndarray):
        return value
    # numpy scalars come out of reductions (a loss's sum); a 0-d array is what they mean
    if isinstance(value, np.generic) and np.issubdtype(value.dtype, np.number):
        return np.asarray(value)
    hint = f"; {fix}" if fix else ""
    raise LayerProtocolError(f"{layer}: {what} is {describe(value)}, expected a numpy ndarray{hint}")


def shape_of(spec: ShapeSpec, dims: Mapping[str, int], *, layer: str, what: str) -> tuple[int, ...]:
    """Concrete sizes of a symbolic shape like "n d_in" (literal ints allowed) given drawn `dims`."""
    if not isinstance(spec, str):
        return tuple(int(s) for s in spec)
    sizes = []
    for token in spec.split():
        if token.lstrip("-").isdigit():
            sizes.append(int(token))
        elif token in dims:
            sizes.append(int(dims[token]))
        else:
            raise ValueError(
                f"{layer}: {what} has shape {spec!r} but dims has no {token!r} "
                f"(dims={dict(dims)!r}); name it, e.g. check_layer(..., dims={{{token!r}: (1, 6)}})"
            )
    return tuple(sizes)


def dim_names(spec: ShapeSpec) -> list[str]:
    """The dim names (not literal sizes) in a symbolic shape, in order."""
    if not isinstance(spec, str):
        return []
    return [t for t in spec.split() if not t.lstrip("-").isdigit()]


def require_protocol(layer: Any, *, name: str | None = None) -> None:
    """Raise LayerProtocolError unless `layer` has params/grads dicts and forward/backward methods."""
    who = name or layer_name(layer)
    for method, fix in (("forward", "forward='...'"), ("backward", "backward='backward_pass'")):
        if not callable(getattr(layer, method, None)):
            raise LayerProtocolError(missing_method_message(layer, method, who=who, fix=fix))
    for attr in ("params", "grads"):
        value = getattr(layer, attr, None)
        if not isinstance(value, Mapping):
            fix = "params='parameters'" if attr == "params" else "grads='gradients'"
            found = f"{attr}={describe(value)}" if hasattr(layer, attr) else f"no attribute {attr!r}"
            raise LayerProtocolError(
                f"layer {who} has {found}: "
                f"expected a dict[str, np.ndarray]; map other names with adapt(..., {fix}) "
                f"or plain attributes with adapt(..., params={{'W': 'W'}}, grads={{'W': 'dW'}})"
            )


def missing_method_message(obj: Any, method: str, *, who: str | None = None, fix: str) -> str:
    """The message for a layer lacking `method`, suggesting a similarly named one when there is one."""
    who = who or layer_name(obj)
    stem = method.rstrip("_")
    alike = sorted(
        n for n in dir(obj)
        if not n.startswith("__") and stem[:4] in n.lower() and callable(getattr(obj, n, None))
    )
    seen = f" (it has {', '.join(repr(n) for n in alike)})" if alike else ""
    example = f"{method}={alike[0]!r}" if alike else fix
    return (
        f"layer {who} has no method {method!r}{seen}: expected forward(x) -> out and "
        f"backward(dout) -> dx; map other names with adapt(..., {example})"
    )


from .functional import FunctionalLayer, check_function, functional_factory
from .objects import AdaptedLayer, adapt, adapted_factory

_TORCH_NAMES = ("from_torch", "torch_factory", "TorchModuleLayer", "TorchFunctionLayer")


def __getattr__(name: str) -> Any:
    # the torch adapter is loaded on first use so that numpy-only users never import torch
    if name in _TORCH_NAMES:
        from . import torch as torch_adapter

        return getattr(torch_adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_NAMES))
