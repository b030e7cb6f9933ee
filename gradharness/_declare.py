"""Declaring a layer once: the spec lives next to the factory."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np

T = TypeVar("T")

#: attribute under which a declaration is attached to a class or factory
DECLARATION_ATTR = "__gradharness__"


@dataclass(frozen=True)
class Declaration:
    """A layer's factory together with the `check_layer` options that describe it."""

    name: str
    make: Callable[[Mapping[str, Any], np.random.Generator], Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    target: Any = None

    def __repr__(self) -> str:
        return f"Declaration({self.name!r})"


def _default_make(cls: type) -> Callable[[Mapping[str, Any], np.random.Generator], Any]:
    """Build `cls` from the dims and hyper-parameters its constructor names, plus `rng`."""
    sig = inspect.signature(cls)
    names = list(sig.parameters)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())

    def make(dims: Mapping[str, Any], rng: np.random.Generator) -> Any:
        kwargs = {k: v for k, v in dims.items() if k in names or accepts_kwargs}
        if "rng" in names or accepts_kwargs:
            kwargs["rng"] = rng
        return cls(**kwargs)

    make.__name__ = cls.__name__
    make.__qualname__ = cls.__qualname__
    return make


def layer(
    *, make: Callable[[Mapping[str, Any], np.random.Generator], Any] | None = None,
    name: str | None = None, **options: Any,
) -> Callable[[T], T]:
    """Declare a layer class or factory with its `check_layer` options.

    On a class, the factory defaults to calling the class with the dims (and
    hyper-parameters) its constructor names, plus ``rng`` when it takes one.
    On a function, the function is the factory ``make(dims, rng)``.
    """
    from ._spec import validate_option_names

    validate_option_names(options, where="gradharness.layer")

    def decorate(target: T) -> T:
        factory = make
        if factory is None:
            factory = _default_make(target) if inspect.isclass(target) else target  # type: ignore[assignment]
        decl = Declaration(
            name=name or getattr(target, "__qualname__", repr(target)),
            make=factory,  # type: ignore[arg-type]
            options=dict(options),
            target=target,
        )
        setattr(target, DECLARATION_ATTR, decl)
        return target

    return decorate


def declaration_of(obj: Any) -> Declaration | None:
    """The declaration attached to `obj` by `layer`, if any."""
    decl = getattr(obj, DECLARATION_ATTR, None)
    return decl if isinstance(decl, Declaration) else None


def declared_in(module: Any) -> Iterator[Declaration]:
    """Every declared layer of `module`: for a package, those it exports (in `__all__` order)
    and then those of its submodules; each once."""
    import importlib
    import pkgutil

    seen: set[int] = set()

    def emit(values: Any, owner: str | None) -> Iterator[Declaration]:
        for value in values:
            decl = declaration_of(value)
            if decl is None or id(decl) in seen:
                continue
            if owner is not None and getattr(value, "__module__", None) != owner:
                continue
            seen.add(id(decl))
            yield decl

    exported = getattr(module, "__all__", None)
    if exported is not None:
        yield from emit((getattr(module, n) for n in exported if hasattr(module, n)), None)
    yield from emit(list(vars(module).values()), module.__name__)
    if hasattr(module, "__path__"):
        for info in sorted(pkgutil.walk_packages(module.__path__, module.__name__ + "."), key=lambda i: i.name):
            sub = importlib.import_module(info.name)
            yield from emit(list(vars(sub).values()), sub.__name__)
