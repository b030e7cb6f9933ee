"""PyTorch modules and autograd Functions as object-protocol layers (the ``torch`` extra).

    layer = from_torch(nn.Linear(4, 3))                                  # params: weight, bias
    layer = from_torch(MyMatmul, params={"w": (4, 3)})                   # MyMatmul.apply(x, w)
    make = torch_factory(lambda dims, rng: nn.Linear(dims["d_in"], dims["d_out"]))
    make = torch_factory(MyMatmul, params={"w": "d_in d_out"})

torch itself is imported only when one of these is called, never when this
module (or gradharness) is imported.

The numpy arrays in ``params`` are the source of truth: every forward builds
fresh leaf tensors from them (in their dtype, on the layer's device) and runs
the module through ``torch.func.functional_call``, so replacing or editing an
entry takes effect on the next forward, each forward has a graph of its own,
and the harness's many forwards leave the module's own parameters and
buffers untouched.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Union

import numpy as np

from . import LayerProtocolError, ShapeSpec, as_array, describe, layer_name, shape_of
from .functional import Static, _static_kwargs
from .objects import _build

if TYPE_CHECKING:  # pragma: no cover
    import torch as torch_module

__all__ = ["TorchFunctionLayer", "TorchModuleLayer", "from_torch", "torch_factory"]

Dims = Mapping[str, int]
#: how to get one parameter of a function layer: a symbolic or concrete shape (Gaussian), an array, or init(dims, rng)
ParamInit = Union[ShapeSpec, np.ndarray, Callable[[Dims, np.random.Generator], np.ndarray]]
Device = Union[str, "torch_module.device", None]


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "gradharness.adapters.torch needs PyTorch: pip install 'gradharness[torch]' (or pip install torch)"
        ) from exc
    return torch


def _is_function_class(torch: Any, target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, torch.autograd.Function)


def _is_module_class(torch: Any, target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, torch.nn.Module)


def _tensor(torch: Any, array: Any, device: Any, *, leaf: bool) -> Any:
    """A tensor of a numpy array (its dtype kept) on `device`, optionally a grad-requiring leaf.

    A float leaf on the CPU shares the array's memory (a copy cost a third of a small layer's
    call): autograd refuses in-place writes to a leaf that requires grad, so the layer cannot
    write through it, and the harness never edits an array it passed in. Anything else is copied.
    """
    a = np.asarray(array)
    if (leaf and device.type == "cpu" and a.dtype.kind == "f" and a.flags.writeable
            and all(st >= 0 for st in a.strides)):
        return torch.from_numpy(a).requires_grad_(True)
    t = torch.tensor(a, device=device)
    if leaf and t.is_floating_point():
        t.requires_grad_(True)
    return t


def _numpy(t: Any) -> np.ndarray:
    # a copy: the harness may keep or edit the array, which must not reach tensors saved in the graph
    return t.detach().cpu().numpy().copy()


class _TorchLayerBase:
    """The shared backward: torch.autograd.grad of the latest forward's output."""

    name: str
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]

    def __init__(self) -> None:
        self._torch = _import_torch()
        self._graph: tuple[Any, Any, list[Any]] | None = None  # (out, x, param leaves in params order)

    def _keep(self, out: Any, x_t: Any, leaves: list[Any]) -> np.ndarray:
        if not isinstance(out, self._torch.Tensor):
            raise LayerProtocolError(
                f"torch layer {self.name} returned {describe(out)}, expected one Tensor; "
                f"wrap it so forward returns the output only (e.g. lambda x: module(x)[0])"
            )
        self._graph = (out, x_t, leaves)
        return _numpy(out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dL/dx and every parameter's gradient for the latest forward, as numpy arrays of their dtypes."""
        if self._graph is None:
            raise RuntimeError(f"{self.name}: backward called before forward; call forward(x) first")
        torch = self._torch
        out, x_t, leaves = self._graph
        dout_t = torch.as_tensor(np.asarray(dout), device=out.device).to(out.dtype)
        wrt = [t for t in [x_t, *leaves] if t.requires_grad]
        found: list[Any] = []
        if wrt and out.requires_grad:
            # retain_graph: the harness calls backward more than once on one forward (linearity, repeatability)
            found = list(torch.autograd.grad(out, wrt, grad_outputs=dout_t, retain_graph=True, allow_unused=True))
        by_leaf = {id(t): g for t, g in zip(wrt, found)}

        def grad_of(t: Any) -> np.ndarray:
            g = by_leaf.get(id(t))
            # unused by the output (or not differentiable): the gradient is exactly zero
            return _numpy(g if g is not None else torch.zeros_like(t))

        self.grads = {k: grad_of(t) for k, t in zip(self.params, leaves)}
        return grad_of(x_t)


class TorchModuleLayer(_TorchLayerBase):
    """An nn.Module as an object-protocol layer: params are its trainable named_parameters as numpy."""

    def __init__(
        self,
        module: Any,
        *,
        device: Device = None,
        static: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        torch = self._torch
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"TorchModuleLayer(module={describe(module)}): expected an nn.Module instance")
        if device is not None:
            module.to(device)
            self.device = torch.device(device)
        else:
            tensors = [*module.parameters(), *module.buffers()]
            self.device = tensors[0].device if tensors else torch.device("cpu")
        self.module = module
        self.name = name or type(module).__name__
        self.static = dict(static or {})
        # frozen parameters are constants of the layer, not parameters the harness should differentiate
        self._trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        self.params = {n: _numpy(p) for n, p in module.named_parameters() if p.requires_grad}
        self.grads = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the module on x with the current params (fresh leaves) and keep the graph for backward."""
        torch = self._torch
        x = as_array(x, layer=self.name, what="x")
        x_t = _tensor(torch, x, self.device, leaf=True)
        leaves = [_tensor(torch, self.params[n], self.device, leaf=True) for n in self.params]
        tensors: dict[str, Any] = dict(zip(self.params, leaves))
        trainable = set(self._trainable)
        for n, t in [*self.module.named_parameters(), *self.module.named_buffers()]:
            if n in trainable:
                continue
            c = t.detach().clone()
            # constants follow the run's dtype like the params do, so a float64 run stays float64
            if c.is_floating_point() and x_t.is_floating_point():
                c = c.to(x_t.dtype)
            tensors[n] = c
        out = torch.func.functional_call(self.module, tensors, (x_t,), dict(self.static))
        return self._keep(out, x_t, leaves)

    def __repr__(self) -> str:
        return f"from_torch({self.module!r})"


class TorchFunctionLayer(_TorchLayerBase):
    """A torch.autograd.Function subclass (fn.apply(x, *params)) or torch function fn(x, *params) as a layer."""

    def __init__(
        self,
        fn: Any,
        params: Mapping[str, ParamInit] | None = None,
        *,
        dims: Dims | None = None,
        rng: np.random.Generator | None = None,
        device: Device = None,
        static: Static = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        torch = self._torch
        if _is_function_class(torch, fn):
            self._call: Callable[..., Any] = fn.apply
        elif callable(fn) and not _is_module_class(torch, fn) and not isinstance(fn, torch.nn.Module):
            self._call = fn
        else:
            raise TypeError(
                f"TorchFunctionLayer(fn={describe(fn)}): expected a torch.autograd.Function subclass or a "
                f"function of tensors; for an nn.Module use from_torch(module)"
            )
        self.fn = fn
        self.name = name or layer_name(fn)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dims = dict(dims or {})
        self.static = _static_kwargs(static, self.dims, layer=self.name)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params = {k: self._draw(k, spec, rng) for k, spec in dict(params or {}).items()}
        self.grads = {}

    def _draw(self, key: str, spec: ParamInit, rng: np.random.Generator) -> np.ndarray:
        if isinstance(spec, np.ndarray):
            return spec.copy()
        if callable(spec):
            return as_array(spec(self.dims, rng), layer=self.name, what=f"init of params[{key!r}]")
        if isinstance(spec, (str, Sequence)):
            return rng.standard_normal(shape_of(spec, self.dims, layer=self.name, what=f"params[{key!r}]"))
        raise TypeError(
            f"{self.name}: params[{key!r}]={describe(spec)}; expected a shape ('d_in d_out' or (4, 3)), "
            f"an array, or init(dims, rng) -> array"
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the function to x and the current params (fresh leaves) and keep the graph for backward."""
        torch = self._torch
        x = as_array(x, layer=self.name, what="x")
        x_t = _tensor(torch, x, self.device, leaf=True)
        leaves = [_tensor(torch, self.params[k], self.device, leaf=True) for k in self.params]
        out = self._call(x_t, *leaves, **self.static)
        return self._keep(out, x_t, leaves)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape}" for k, v in self.params.items())
        return f"from_torch({self.name}, {shapes})"


def from_torch(
    module_or_function: Any,
    *,
    params: Mapping[str, ParamInit] | None = None,
    dims: Dims | None = None,
    rng: np.random.Generator | None = None,
    device: Device = None,
    static: Static = None,
    name: str | None = None,
) -> TorchModuleLayer | TorchFunctionLayer:
    """An object-protocol layer from an nn.Module instance or an autograd.Function subclass / torch function."""
    torch = _import_torch()
    target = module_or_function
    if isinstance(target, torch.nn.Module):
        if params is not None:
            raise TypeError(
                f"from_torch({type(target).__name__}, params={params!r}): a module's params are its "
                f"named_parameters; drop params="
            )
        fixed = _static_kwargs(static, dict(dims or {}), layer=type(target).__name__)
        return TorchModuleLayer(target, device=device, static=fixed, name=name)
    if _is_module_class(torch, target):
        raise TypeError(
            f"from_torch({target.__name__}): got the class, expected an instance like {target.__name__}(...); "
            f"to build one per example from the dims use torch_factory({target.__name__})"
        )
    return TorchFunctionLayer(target, params, dims=dims, rng=rng, device=device, static=static, name=name)


def torch_factory(
    module_or_function: Any,
    *,
    params: Mapping[str, ParamInit] | None = None,
    device: Device = None,
    static: Static = None,
    name: str | None = None,
) -> Callable[[Dims, np.random.Generator], TorchModuleLayer | TorchFunctionLayer]:
    """A factory make(dims, rng) for check_layer from an nn.Module class, a builder, or a Function with params.

    An nn.Module subclass is constructed from the dims its constructor names; an
    autograd.Function subclass (or, given ``params``, any torch function) gets
    its params from the declared shapes; any other callable is a builder
    ``build(dims, rng) -> nn.Module``. Module weights are drawn with torch's
    generator seeded from ``rng``, without disturbing torch's global state.
    """
    torch = _import_torch()
    target = module_or_function
    label = name or layer_name(target)
    if isinstance(target, torch.nn.Module):
        raise TypeError(
            f"torch_factory({type(target).__name__}(...)): got one module instance, but each example draws "
            f"its own dims; pass the class or a builder, e.g. torch_factory(lambda dims, rng: "
            f"nn.Linear(dims['d_in'], dims['d_out'])), or use from_torch(module) for this one"
        )
    as_function = _is_function_class(torch, target) or (params is not None and not _is_module_class(torch, target))

    def make(dims: Dims, rng: np.random.Generator) -> TorchModuleLayer | TorchFunctionLayer:
        if as_function:
            return TorchFunctionLayer(target, params, dims=dims, rng=rng, device=device, static=static, name=label)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            module = _build(target, dims, rng)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"torch_factory({label}): called as a builder build(dims, rng), it returned {describe(module)}, "
                f"not an nn.Module; for a function f(x, *params) pass params={{...}} (params={{}} for none)"
            )
        fixed = _static_kwargs(static, dims, layer=label)
        return TorchModuleLayer(module, device=device, static=fixed, name=label)

    make.__name__ = make.__qualname__ = label
    return make
