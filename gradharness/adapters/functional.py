"""Functional pairs (CS231n style) as object-protocol layers.

A functional layer is two plain functions::

    out, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)

:class:`FunctionalLayer` holds the parameters (every argument after the
first) in ``params``, calls the forward with them at call time, and maps the
backward's tuple, in the same order, onto ``dx`` and ``grads``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Callable, Union

import numpy as np

from . import (
    LayerProtocolError,
    ShapeSpec,
    as_array,
    describe,
    dim_names,
    layer_name,
    shape_of,
)

__all__ = [
    "FunctionalLayer",
    "affine_backward",
    "affine_forward",
    "check_function",
    "functional_factory",
]

Dims = Mapping[str, int]
ForwardFn = Callable[..., Any]
BackwardFn = Callable[[np.ndarray, Any], Any]
InitFn = Callable[[Dims, np.random.Generator], Mapping[str, np.ndarray]]
#: non-differentiable keyword arguments of the forward: fixed, or drawn from the dims (a conv's stride)
Static = Union[Mapping[str, Any], Callable[[Dims], Mapping[str, Any]], None]
Factory = Callable[[Dims, np.random.Generator], "FunctionalLayer"]


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Affine map of each row of x (flattened past axis 0): out = x @ w + b."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout: np.ndarray, cache: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dw, db) of affine_forward given dL/dout."""
    x, w, _ = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def _static_kwargs(static: Static, dims: Dims, *, layer: str) -> dict[str, Any]:
    """The static keyword arguments for one layer built with `dims`."""
    if static is None:
        return {}
    value = static(dims) if callable(static) else static
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{layer}: static={describe(value)}; expected a mapping of keyword arguments "
            f"(static={{'conv_param': {{'stride': 1}}}}) or a callable of dims returning one"
        )
    # deep: forwards write into these dicts (bn_param's running mean), which must not leak between layers
    return copy.deepcopy(dict(value))


class FunctionalLayer:
    """An object-protocol layer around a functional pair forward(x, *params) / backward(dout, cache)."""

    def __init__(
        self,
        forward: ForwardFn,
        backward: BackwardFn,
        inputs: Mapping[str, ShapeSpec],
        init: InitFn | None = None,
        *,
        dims: Dims | None = None,
        rng: np.random.Generator | None = None,
        params: Mapping[str, np.ndarray] | None = None,
        static: Static = None,
        name: str | None = None,
    ) -> None:
        if not callable(forward) or not callable(backward):
            raise TypeError(
                f"FunctionalLayer(forward={forward!r}, backward={backward!r}): both must be callables, "
                f"e.g. FunctionalLayer(affine_forward, affine_backward, inputs={{'x': 'n d', 'w': 'd m', 'b': 'm'}})"
            )
        if not isinstance(inputs, Mapping) or len(inputs) == 0:
            raise TypeError(
                f"{layer_name(forward)}: inputs={inputs!r}; expected a mapping of argument names in call "
                f"order to symbolic shapes, the input first: inputs={{'x': 'n d', 'w': 'd m', 'b': 'm'}}"
            )
        self.forward_fn = forward
        self.backward_fn = backward
        self.inputs: dict[str, ShapeSpec] = dict(inputs)
        self.name = name or layer_name(forward)
        self.dims: dict[str, int] = dict(dims or {})
        names = list(self.inputs)
        self.input_name = names[0]
        self.param_names = names[1:]
        self.static = _static_kwargs(static, self.dims, layer=self.name)
        if params is None:
            params = self._draw(init, rng if rng is not None else np.random.default_rng(0))
        self._check_param_names(params, source="params")
        self.params: dict[str, np.ndarray] = {k: as_array(params[k], layer=self.name, what=f"params[{k!r}]")
                                               for k in self.param_names}
        self.grads: dict[str, np.ndarray] = {}
        self._cache: Any = None
        self._has_cache = False

    def _draw(self, init: InitFn | None, rng: np.random.Generator) -> Mapping[str, np.ndarray]:
        """Initial params: from `init`, else standard Gaussian of each declared shape."""
        if init is not None:
            drawn = init(self.dims, rng)
            if not isinstance(drawn, Mapping):
                raise LayerProtocolError(
                    f"{self.name}: init returned {describe(drawn)}; expected a mapping of "
                    f"{', '.join(self.param_names)} to arrays, e.g. {{'w': rng.standard_normal((d, m))}}"
                )
            self._check_param_names(drawn, source="init(dims, rng)")
            # copied: an init handing out the same arrays twice would let one example's edits reach the next
            return {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in drawn.items()}
        return {
            k: rng.standard_normal(shape_of(self.inputs[k], self.dims, layer=self.name, what=f"param {k!r}"))
            for k in self.param_names
        }

    def _check_param_names(self, params: Mapping[str, Any], *, source: str) -> None:
        missing = [k for k in self.param_names if k not in params]
        extra = [k for k in params if k not in self.param_names]
        if missing or extra:
            raise LayerProtocolError(
                f"{self.name}: {source} gave {sorted(params)}, expected exactly {self.param_names} "
                f"(the inputs after {self.input_name!r})"
                + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else "")
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the forward function with the current params and keep its cache for backward."""
        # params are looked up now, not at build time: the harness replaces and edits them between calls
        args = [x] + [self.params[k] for k in self.param_names]
        result = self.forward_fn(*args, **self.static)
        if not isinstance(result, tuple) or len(result) != 2:
            raise LayerProtocolError(
                f"{self.name} returned {describe(result)}, expected (out, cache): "
                f"a functional forward returns its output and what its backward needs"
            )
        out, self._cache = result
        self._has_cache = True
        return as_array(out, layer=self.name, what="out (first value returned)")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Run the backward function on the latest cache; set grads and return dx."""
        if not self._has_cache:
            raise RuntimeError(f"{self.name}: backward called before forward; call forward(x) first")
        result = self.backward_fn(dout, self._cache)
        who = layer_name(self.backward_fn)
        names = [self.input_name] + self.param_names
        expected = f"({', '.join('d' + n for n in names)}) for inputs {', '.join(names)}"
        if result is None:
            raise LayerProtocolError(
                f"{who} returned None, expected {len(names)} value{'s' if len(names) > 1 else ''}: "
                f"{expected}; return the gradients instead of (only) storing them"
            )
        if len(names) == 1 and not isinstance(result, (tuple, list)):
            # a parameter-free layer (relu_backward) returns dx alone rather than a 1-tuple
            result = (result,)
        if not isinstance(result, (tuple, list)):
            raise LayerProtocolError(
                f"{who} returned {describe(result)}, expected a tuple of {len(names)}: {expected}"
            )
        if len(result) != len(names):
            raise LayerProtocolError(
                f"{who} returned {len(result)} value{'s' if len(result) != 1 else ''}, "
                f"expected {len(names)}: {expected}"
            )
        arrays = [
            as_array(g, layer=who, what=f"value {i} (d{n})", fix=f"return d{n} with the shape of {n}")
            for i, (n, g) in enumerate(zip(names, result))
        ]
        # a fresh dict each call: gradients are set by backward, never accumulated
        self.grads = dict(zip(self.param_names, arrays[1:]))
        return arrays[0]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"FunctionalLayer({self.name}, {shapes})"


def functional_factory(
    forward: ForwardFn,
    backward: BackwardFn,
    *,
    inputs: Mapping[str, ShapeSpec],
    init: InitFn | None = None,
    static: Static = None,
    name: str | None = None,
) -> Factory:
    """A factory make(dims, rng) -> FunctionalLayer for check_layer."""
    label = name or layer_name(forward)

    def make(dims: Dims, rng: np.random.Generator) -> FunctionalLayer:
        return FunctionalLayer(forward, backward, inputs, init, dims=dims, rng=rng, static=static, name=label)

    make.__name__ = make.__qualname__ = label
    return make


def check_function(
    forward: ForwardFn,
    backward: BackwardFn,
    *,
    inputs: Mapping[str, ShapeSpec],
    init: InitFn | None = None,
    static: Static = None,
    **check_layer_options: Any,
) -> Any:
    """Run gradharness.check_layer on a functional pair and return its Report."""
    from gradharness import (
        check_layer,  # the core imports adapters, so import it only when called
    )

    first = next(iter(inputs), None)
    input_spec = inputs[first] if first is not None else None
    if first is None or not isinstance(input_spec, str):
        raise TypeError(
            f"check_function: inputs={inputs!r}; the first entry must be the input's symbolic shape, "
            f"e.g. inputs={{'x': 'n d', 'w': 'd m', 'b': 'm'}}"
        )
    options = dict(check_layer_options)
    options.setdefault("name", layer_name(forward))
    make = functional_factory(forward, backward, inputs=inputs, init=init, static=static, name=options["name"])
    # dims named only by the params (d_out of w) are drawn only if check_layer is told about them
    declared = options.get("dims")
    if declared is None or isinstance(declared, Mapping):
        dims = dict(declared or {})
        in_input = set(dim_names(input_spec))
        for arg in list(inputs)[1:]:
            for d in dim_names(inputs[arg]):
                if d not in in_input and d not in dims:
                    dims[d] = (1, 6)
        if dims:
            options["dims"] = dims
    return check_layer(make, input_spec, **options)
