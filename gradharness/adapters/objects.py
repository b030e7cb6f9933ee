"""Object layers with other conventions, adapted by a declarative mapping (no subclassing).

    adapt(layer, params={"W": "W", "b": "b"}, grads={"W": "dW", "b": "db"})
    adapt(layer, params="parameters", grads="gradients")
    adapt(layer, params="params", grads="grads", accumulates=True, flush="zero_grad")
    adapt(layer, backward="backward_pass")
    adapt(layer, lazy=x_sample)                       # weights created by the first forward: run one now
    adapt(layer, lazy=lambda: x_sample)               # ... or on the first access of params
    adapted_factory(MyLazy, lazy="n d_in")            # ... a sample shaped from the drawn dims
    adapt(layer, update={"lr": "lr"})                 # backward takes an SGD step instead of storing grads

A place is an attribute path: ``"W"``, ``"fc.W"`` or ``"parameters['W']"``;
``grads="d{}"`` formats each parameter name (``W`` -> ``dW``).
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

from . import (
    LayerProtocolError,
    ShapeSpec,
    as_array,
    describe,
    layer_name,
    missing_method_message,
    shape_of,
)

__all__ = ["AdaptedLayer", "adapt", "adapted_factory"]

Dims = Mapping[str, int]
#: where the params live: one dict (its path), or a path per param name, or names that are attributes
ParamSpec = Union[str, Mapping[str, str], Sequence[str]]
#: where backward leaves the grads: one dict, a path per param name, or a format like "d{}"
GradSpec = Union[str, Mapping[str, str]]
#: the learning rate of an update-in-backward layer: a number, or {"lr": number or attribute path}
UpdateSpec = Union[float, Mapping[str, Union[str, float]], None]
Flush = Union[str, Callable[[Any], Any], None]
#: weights made by the first forward: a sample input now, a zero-argument maker of one for the first access, or True
Lazy = Union[bool, np.ndarray, Callable[[], np.ndarray]]

_MISSING = object()  # "no such place" in returned values
_RAISE = object()  # get() without a default raises


class _Path:
    """An attribute/item path into an object: "W", "fc.W", "parameters['W']", "layers[0].W"."""

    _TOKEN = re.compile(r"\s*(?:\.?\s*([A-Za-z_]\w*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|([^\]]*?))\s*\])")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise TypeError(f"place={text!r}: expected an attribute path like 'W', 'fc.W' or \"parameters['W']\"")
        self.text = text
        self.steps: list[tuple[str, Any]] = []
        pos = 0
        while pos < len(text):
            m = self._TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"place={text!r}: cannot parse at {text[pos:]!r}; use 'W', 'fc.W' or \"parameters['W']\"")
            attr, sq, dq, bare = m.groups()
            if attr is not None:
                self.steps.append(("attr", attr))
            else:
                key = sq if sq is not None else dq if dq is not None else bare
                if sq is None and dq is None and key.lstrip("-").isdigit():
                    self.steps.append(("item", int(key)))
                else:
                    self.steps.append(("item", key))
            pos = m.end()

    @staticmethod
    def _step(obj: Any, step: tuple[str, Any]) -> Any:
        kind, key = step
        return getattr(obj, key) if kind == "attr" else obj[key]

    def get(self, obj: Any, default: Any = _RAISE) -> Any:
        try:
            for step in self.steps:
                obj = self._step(obj, step)
            return obj
        except (AttributeError, KeyError, IndexError, TypeError):
            if default is _RAISE:
                raise
            return default

    def set(self, obj: Any, value: Any) -> None:
        for step in self.steps[:-1]:
            obj = self._step(obj, step)
        kind, key = self.steps[-1]
        if kind == "attr":
            setattr(obj, key, value)
        else:
            obj[key] = value

    def __repr__(self) -> str:
        return repr(self.text)


class _LiveParams(dict):  # type: ignore[type-arg]
    """The adapter's params when they are attributes: a real dict whose writes reach the layer.

    A dict subclass (not a Mapping) so `isinstance(params, dict)` and every dict
    operation hold; entries are kept identical (same array objects) to the
    wrapped attributes and re-synced around every call, by object identity, in
    whichever direction changed.
    """

    def __init__(self, owner: AdaptedLayer) -> None:
        super().__init__()
        self._owner = owner
        self._known: dict[str, Any] = {}  # the object both sides agreed on at the last sync

    def sync(self) -> None:
        owner = self._owner
        for k, path in owner._param_paths.items():
            mine = dict.get(self, k, _MISSING)
            theirs = path.get(owner.wrapped, _MISSING)
            known = self._known.get(k, _MISSING)
            if mine is not known and mine is not _MISSING:
                path.set(owner.wrapped, mine)  # written here by a route that skips __setitem__ (dict.update)
                self._known[k] = mine
            elif theirs is not known and theirs is not _MISSING:
                dict.__setitem__(self, k, theirs)  # the layer rebound its attribute (self.W = ...)
                self._known[k] = theirs

    def __setitem__(self, key: str, value: Any) -> None:
        owner = self._owner
        if key not in owner._param_paths:
            raise KeyError(
                f"{owner.name}: params[{key!r}] is not a mapped parameter (mapped: {list(owner._param_paths)}); "
                f"add it to adapt(..., params={{{key!r}: 'attribute'}})"
            )
        owner._param_paths[key].set(owner.wrapped, value)
        dict.__setitem__(self, key, value)
        self._known[key] = value

    def __getitem__(self, key: str) -> Any:
        self.sync()
        return dict.__getitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        raise LayerProtocolError(f"{self._owner.name}: params[{key!r}] cannot be deleted from an adapted layer")

    def __reduce_ex__(self, protocol: Any) -> Any:
        # a copy of the params (copy.deepcopy(layer.params)) is a snapshot, not a second live view
        return (dict, (dict(self),))


class AdaptedLayer:
    """An object-protocol view of a layer with other names or gradient conventions; see adapt()."""

    def __init__(
        self,
        obj: Any,
        *,
        params: ParamSpec = "params",
        grads: GradSpec | None = None,
        forward: str = "forward",
        backward: str = "backward",
        accumulates: bool = False,
        flush: Flush = None,
        lazy: Lazy = False,
        update: UpdateSpec = None,
        name: str | None = None,
    ) -> None:
        self.wrapped = obj
        self.name = name or layer_name(obj)
        self._forward = self._method(forward, role="forward")
        self._backward = self._method(backward, role="backward")
        self._forward_name = forward
        self._backward_name = backward

        # params: one dict at a path, or a path per name
        self._params_dict: _Path | None = None
        self._param_paths: dict[str, _Path] = {}
        if isinstance(params, str):
            self._params_dict = _Path(params)
        elif isinstance(params, Mapping):
            self._param_paths = {str(k): _Path(v) for k, v in params.items()}
        elif isinstance(params, Sequence):
            self._param_paths = {str(k): _Path(str(k)) for k in params}
        else:
            raise TypeError(
                f"adapt({self.name}, params={params!r}): expected the name of a dict attribute "
                f"('parameters'), a mapping {{'W': 'W', 'b': 'b'}} or a list of attribute names"
            )
        self._live: _LiveParams | None = _LiveParams(self) if self._params_dict is None else None

        # grads: derived from the update, or read from a dict, a path per name, or a "d{}" format
        self._lr = self._parse_update(update)
        if self._lr is not None and grads is not None:
            raise TypeError(
                f"adapt({self.name}, grads={grads!r}, update={update!r}): give one; with update= the "
                f"gradients are recovered from the parameter step, so drop grads="
            )
        self._grads_dict: _Path | None = None
        self._grads_format: str | None = None
        self._grad_paths: dict[str, _Path] = {}
        if self._lr is None:
            spec = "grads" if grads is None else grads
            if isinstance(spec, str) and "{}" in spec:
                self._grads_format = spec
            elif isinstance(spec, str):
                self._grads_dict = _Path(spec)
            elif isinstance(spec, Mapping):
                self._grad_paths = {str(k): _Path(v) for k, v in spec.items()}
                unmapped = [k for k in self._param_paths if k not in self._grad_paths]
                if unmapped:
                    raise TypeError(
                        f"adapt({self.name}, grads={spec!r}): no gradient place for params {unmapped}; "
                        f"add e.g. grads={{{unmapped[0]!r}: 'd{unmapped[0]}'}}"
                    )
            else:
                raise TypeError(
                    f"adapt({self.name}, grads={spec!r}): expected the name of a dict attribute ('gradients'), "
                    f"a mapping {{'W': 'dW'}} or a format like 'd{{}}'"
                )

        self._flush_spec = (flush, accumulates)
        self._flush = self._parse_flush(flush, accumulates)
        self.grads: dict[str, np.ndarray] = {}
        self._materialized = lazy is False or lazy is None
        self._sample: Callable[[], np.ndarray] | None = None
        if isinstance(lazy, np.ndarray):
            # run the forward once so the weights exist before anyone reads or casts them
            self._call_forward(lazy)
            self._materialized = True
        elif callable(lazy):
            self._sample = lazy  # run on the first access of params, unless a real forward comes first
        elif not (isinstance(lazy, bool) or lazy is None):
            raise TypeError(
                f"adapt({self.name}, lazy={describe(lazy)}): expected False, True, a sample input array or a "
                f"callable returning one; for a sample drawn from the dims use adapted_factory(..., lazy='n d_in')"
            )
        if self._materialized:
            self._check_params()

    # -- building -------------------------------------------------------------------------------

    def _method(self, attr: str, *, role: str) -> Callable[..., Any]:
        method = getattr(self.wrapped, attr, None) if isinstance(attr, str) else None
        if not callable(method):
            fix = "forward='predict'" if role == "forward" else "backward='backward_pass'"
            raise LayerProtocolError(missing_method_message(self.wrapped, attr, who=self.name, fix=fix))
        return method

    def _parse_update(self, update: UpdateSpec) -> _Path | float | None:
        if update is None:
            return None
        lr = update.get("lr", _MISSING) if isinstance(update, Mapping) else update
        if isinstance(lr, str):
            path = _Path(lr)
            if path.get(self.wrapped, _MISSING) is _MISSING:
                raise TypeError(f"adapt({self.name}, update={update!r}): the layer has no attribute {lr!r} to read lr from")
            return path
        if isinstance(lr, (int, float, np.floating)) and not isinstance(lr, bool) and float(lr) > 0:
            return float(lr)
        raise TypeError(
            f"adapt({self.name}, update={update!r}): expected a positive lr, or {{'lr': 'lr'}} naming the "
            f"layer's learning-rate attribute, or {{'lr': 0.1}}"
        )

    def _parse_flush(self, flush: Flush, accumulates: bool) -> Callable[[], Any] | None:
        if flush is None and not accumulates:
            return None
        if callable(flush):
            return lambda: flush(self.wrapped)
        if isinstance(flush, str):
            method = getattr(self.wrapped, flush, None)
            if not callable(method):
                raise LayerProtocolError(
                    f"adapt({self.name}, flush={flush!r}): the layer has no method {flush!r}; name its "
                    f"gradient-reset method, or leave flush=None to zero the gradient arrays in place"
                )
            return method
        if flush is not None:
            raise TypeError(f"adapt({self.name}, flush={flush!r}): expected a method name or a callable(layer)")
        method = getattr(self.wrapped, "zero_grad", None)
        return method if callable(method) else self._zero_grads_in_place

    def _check_params(self) -> None:
        """Every mapped parameter exists and is an ndarray (after the weights were materialized)."""
        if self._params_dict is not None:
            d = self._params_dict.get(self.wrapped, _MISSING)
            if not isinstance(d, Mapping):
                found = (f"no attribute {self._params_dict.text!r}" if d is _MISSING
                         else f"{self._params_dict.text}={describe(d)}")
                raise LayerProtocolError(
                    f"layer {self.name} has {found}: expected a dict of parameter arrays; "
                    f"name another with adapt(..., params='parameters') or attributes with params={{'W': 'W'}}"
                    + self._array_attrs_hint()
                )
            items = dict(d)
        else:
            items = {}
            for k, path in self._param_paths.items():
                value = path.get(self.wrapped, _MISSING)
                if value is _MISSING:
                    raise LayerProtocolError(
                        f"layer {self.name} has no {path.text!r} for params[{k!r}]: expected params= to map "
                        f"names to the layer's attributes{self._array_attrs_hint()}; if the weights are created "
                        f"by the first forward, pass lazy=sample_x"
                    )
                items[k] = value
            assert self._live is not None
            self._live.sync()
        for k, v in items.items():
            fix = "parameters must be numpy arrays"
            if v is None:
                fix += "; if the weights are created by the first forward, pass lazy=sample_x"
            as_array(v, layer=f"layer {self.name}", what=f"params[{k!r}]", fix=fix)

    def _array_attrs_hint(self) -> str:
        attrs = sorted(k for k, v in getattr(self.wrapped, "__dict__", {}).items() if isinstance(v, np.ndarray))
        return f" (its array attributes: {', '.join(attrs)})" if attrs else ""

    # -- the protocol ---------------------------------------------------------------------------

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The live parameter dict: replacing or editing an entry changes the wrapped layer."""
        if not self._materialized and self._sample is not None:
            self._call_forward(np.asarray(self._sample()))
        if not self._materialized:
            raise LayerProtocolError(
                f"layer {self.name} creates its weights on the first forward, and none has run: "
                f"give a sample input, adapt(..., lazy=x_sample or lambda: x_sample) or "
                f"adapted_factory(..., lazy='n d_in')"
            )
        if self._params_dict is not None:
            return self._params_dict.get(self.wrapped)  # the layer's own dict: live by identity
        assert self._live is not None
        self._live.sync()
        return self._live

    def _param_items(self) -> dict[str, Any]:
        return dict(self.params)

    def _set_param(self, key: str, value: Any) -> None:
        self.params[key] = value

    def _sync(self) -> None:
        if self._live is not None and self._materialized:
            self._live.sync()

    def _call_forward(self, x: np.ndarray) -> Any:
        self._sync()
        out = self._forward(x)
        if not self._materialized:
            self._materialized = True
            self._check_params()
        self._sync()
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Call the wrapped forward with the current params and return its output."""
        out = self._call_forward(x)
        if isinstance(out, tuple):
            raise LayerProtocolError(
                f"forward of {self.name} returned {describe(out)}, expected out alone; "
                f"for a functional pair (out, cache) use FunctionalLayer"
            )
        return as_array(out, layer=f"forward of {self.name}", what="the returned value")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Call the wrapped backward; set grads (fresh, not accumulated) and return dx."""
        if not self._materialized:
            raise RuntimeError(f"{self.name}: backward called before forward; call forward(x) first")
        self._sync()
        if self._lr is not None:
            dx = self._backward_with_update(dout)
        else:
            if self._flush is not None:
                # the layer adds to its gradients; zeroing first makes each backward report only its own
                self._flush()
            dx = self._backward(dout)
            self.grads = self._read_grads()
        self._sync()
        return self._check_dx(dx)

    def _check_dx(self, dx: Any) -> np.ndarray:
        who = f"backward of {self.name} ({self._backward_name})"
        if dx is None:
            raise LayerProtocolError(
                f"{who} returned None: expected dx, dL/dx with the shape of x; end backward with `return dx` "
                f"(the parameter gradients go to grads, dx is returned)"
            )
        if isinstance(dx, tuple):
            raise LayerProtocolError(
                f"{who} returned {describe(dx)}: expected dx alone, with parameter gradients stored on the layer "
                f"(grads= names where); for a functional pair returning (dx, dw, db) use FunctionalLayer"
            )
        return as_array(dx, layer=who, what="the returned dx")

    def _grad_place(self, key: str) -> tuple[str, Any]:
        """(description, value or _MISSING) of the gradient of params[key] on the wrapped layer."""
        if self._grads_dict is not None:
            d = self._grads_dict.get(self.wrapped, _MISSING)
            if not isinstance(d, Mapping):
                return f"{self._grads_dict.text}[{key!r}] (no dict {self._grads_dict.text!r})", _MISSING
            return f"{self._grads_dict.text}[{key!r}]", d.get(key, _MISSING)
        if self._grads_format is not None:
            path = _Path(self._grads_format.format(key))
        else:
            path = self._grad_paths[key]
        return path.text, path.get(self.wrapped, _MISSING)

    def _read_grads(self) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        for k in self._param_items():
            where, g = self._grad_place(k)
            if g is _MISSING or g is None:
                raise LayerProtocolError(
                    f"backward of {self.name} left no gradient for params[{k!r}] at {where} "
                    f"({'None' if g is None else 'missing'}): expected an array with the shape of params[{k!r}]; "
                    f"set it in backward, or map the place with adapt(..., grads={{{k!r}: 'd{k}'}})"
                )
            g = as_array(g, layer=f"backward of {self.name}", what=f"the gradient at {where}")
            # copied: a layer reusing (or zeroing) its gradient buffers must not change grads already handed out
            grads[k] = np.array(g, copy=True)
        return grads

    def _zero_grads_in_place(self) -> None:
        for k in self._param_items():
            _, g = self._grad_place(k)
            if isinstance(g, np.ndarray):
                g[...] = 0

    def _backward_with_update(self, dout: np.ndarray) -> Any:
        """Run a backward that steps the params; recover grad = (before - after) / lr, then undo the step."""
        originals = self._param_items()
        before = {k: np.array(v, copy=True) for k, v in originals.items()}
        lr = 1.0
        if isinstance(self._lr, _Path):
            # a unit step recovers the gradient exactly; dividing a float32 step by a small lr would not
            saved_lr = self._lr.get(self.wrapped)
            self._lr.set(self.wrapped, 1.0)
        else:
            lr = float(self._lr)  # type: ignore[arg-type]
        try:
            dx = self._backward(dout)
            after = {k: self._param_after_step(k) for k in originals}
        finally:
            if isinstance(self._lr, _Path):
                self._lr.set(self.wrapped, saved_lr)
        grads = {}
        for k in originals:
            step = before[k] - after[k]
            grads[k] = step if lr == 1.0 else step / lr
        # undo the step in the very array objects the harness holds, whether updated in place or rebound
        for k, original in originals.items():
            if isinstance(original, np.ndarray) and original.flags.writeable:
                original[...] = before[k]
                self._set_param(k, original)
            else:
                self._set_param(k, before[k])
        self.grads = grads
        return dx

    def _param_after_step(self, key: str) -> np.ndarray:
        if self._params_dict is not None:
            value = self._params_dict.get(self.wrapped)[key]
        else:
            value = self._param_paths[key].get(self.wrapped)
        return as_array(value, layer=f"backward of {self.name}", what=f"params[{key!r}] after the update step")

    # -- copying keeps the params live on the copy ----------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # bound methods and the live dict point at this layer; the copy rebuilds its own from the specs
        state = {k: v for k, v in self.__dict__.items() if k not in ("_live", "_forward", "_backward", "_flush")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._forward = self._method(self._forward_name, role="forward")
        self._backward = self._method(self._backward_name, role="backward")
        self._flush = self._parse_flush(*self._flush_spec)
        self._live = _LiveParams(self) if self._params_dict is None else None
        if self._live is not None and self._materialized:
            self._live.sync()

    def __repr__(self) -> str:
        return f"adapt({type(self.wrapped).__name__})"


def adapt(
    obj: Any,
    *,
    params: ParamSpec = "params",
    grads: GradSpec | None = None,
    forward: str = "forward",
    backward: str = "backward",
    accumulates: bool = False,
    flush: Flush = None,
    lazy: Lazy = False,
    update: UpdateSpec = None,
    name: str | None = None,
) -> AdaptedLayer:
    """Wrap `obj` so it follows the object protocol, given where its params, grads and methods are."""
    return AdaptedLayer(
        obj, params=params, grads=grads, forward=forward, backward=backward, accumulates=accumulates,
        flush=flush, lazy=lazy, update=update, name=name,
    )


def _build(make: Any, dims: Dims, rng: np.random.Generator) -> Any:
    """Call a factory make(dims, rng), or construct a class from the dims its constructor names."""
    if not inspect.isclass(make):
        return make(dims, rng)
    sig = inspect.signature(make)
    kwargs: dict[str, Any] = {}
    missing = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name == "rng":
            kwargs["rng"] = rng
        elif p.name == "dims":
            kwargs["dims"] = dims
        elif p.name in dims:
            kwargs[p.name] = dims[p.name]
        elif p.default is p.empty:
            missing.append(p.name)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        kwargs.update({k: v for k, v in dims.items() if k not in kwargs})
    if missing:
        raise TypeError(
            f"{make.__qualname__}({', '.join(sig.parameters)}) needs {', '.join(missing)} but dims has only "
            f"{', '.join(dims) or 'nothing'}: name them, e.g. check_layer(..., dims={{{missing[0]!r}: (1, 6)}}), "
            f"or pass a factory make(dims, rng)"
        )
    return make(**kwargs)


def adapted_factory(
    make: Any,
    *,
    params: ParamSpec = "params",
    grads: GradSpec | None = None,
    forward: str = "forward",
    backward: str = "backward",
    accumulates: bool = False,
    flush: Flush = None,
    lazy: bool | ShapeSpec | Callable[[Dims, np.random.Generator], np.ndarray] = False,
    update: UpdateSpec = None,
    name: str | None = None,
) -> Callable[[Dims, np.random.Generator], AdaptedLayer]:
    """A factory make(dims, rng) -> adapt(built layer, ...) for check_layer; `make` may be a class."""
    # lazy here: a symbolic shape of the sample input, or sample(dims, rng) -> x; either runs at build time
    label = name or getattr(make, "__qualname__", None) or layer_name(make)

    def factory(dims: Dims, rng: np.random.Generator) -> AdaptedLayer:
        obj = _build(make, dims, rng)
        sample: Lazy
        if isinstance(lazy, bool) or lazy is None:
            sample = bool(lazy)
        elif callable(lazy):
            sample = np.asarray(lazy(dims, rng))
        else:
            # its own generator: drawing the sample from rng would shift every later draw of the layer
            shape = shape_of(lazy, dims, layer=label, what="the lazy sample input")
            sample = np.random.default_rng(0).standard_normal(shape)
        return adapt(
            obj, params=params, grads=grads, forward=forward, backward=backward, accumulates=accumulates,
            flush=flush, lazy=sample, update=update, name=label,
        )

    factory.__name__ = factory.__qualname__ = str(label)
    return factory
