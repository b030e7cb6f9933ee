"""The layer spec: every `check_layer` option, validated at the boundary."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from hypothesis.strategies import SearchStrategy

from ._errors import InvalidArgument

DEFAULT_INPUT = "n d_in"
DEFAULT_RANGE = (1, 6)
DEFAULT_DOMAIN = (-3.0, 3.0)
DEFAULT_DTYPES = (np.float64, np.float32)
DEFAULT_MAX_EXAMPLES = 50
#: params with these names (optionally suffixed: b1, b_out, bias2) are biases unless `bias=` says otherwise
AUTO_BIAS = re.compile(r"^(b|bias|beta)(\d+|_\w+)?$")
PROFILES = ("dev", "ci", "thorough")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: every keyword option of check_layer / assert_layer / layer()
OPTION_NAMES = (
    "input", "output", "dims", "hyper", "derived", "constraints", "bias", "elementwise",
    "batch_independent", "domain", "index_input", "dtypes", "max_examples", "seed", "checks",
    "skip", "profile", "redraw_params", "name", "example", "timeout", "reference", "budget",
)
#: seconds one call into the layer (factory, forward or backward) may take
DEFAULT_TIMEOUT = 60.0


def validate_option_names(options: Mapping[str, Any], *, where: str) -> None:
    """Reject unknown option names with the closest known one."""
    import difflib

    for key in options:
        if key not in OPTION_NAMES:
            close = difflib.get_close_matches(key, OPTION_NAMES, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known options: {', '.join(OPTION_NAMES)}."
            raise InvalidArgument(key, options[key], f"a keyword option of {where}", hint)


def parse_shape(text: Any, *, argname: str) -> tuple[str | int, ...]:
    """Parse a symbolic shape such as ``"n c h w"`` ("" is a scalar; integers are fixed sizes)."""
    if not isinstance(text, str):
        raise InvalidArgument(argname, text, 'a symbolic shape string such as "n d_in" ("" for a scalar)')
    out: list[str | int] = []
    for tok in text.replace(",", " ").split():
        if tok.isdigit():
            out.append(int(tok))
        elif _NAME.match(tok):
            out.append(tok)
        else:
            raise InvalidArgument(argname, text, "dim names (identifiers) or integers separated by spaces",
                                  f"{tok!r} is neither")
    return tuple(out)


@dataclass(frozen=True)
class DimRange:
    """An inclusive integer range for a dim or hyper-parameter."""

    lo: int
    hi: int

    def values(self) -> range:
        return range(self.lo, self.hi + 1)


DimSource = "DimRange | tuple[Any, ...] | SearchStrategy[Any]"


def _dim_source(argname: str, key: str, value: Any, *, allow_values: bool) -> DimRange | tuple[Any, ...] | SearchStrategy[Any]:
    if isinstance(value, SearchStrategy):
        return value
    if isinstance(value, bool):
        raise InvalidArgument(f"{argname}[{key!r}]", value, "a range (lo, hi), a list of values or a Hypothesis strategy")
    if isinstance(value, int):
        if value < 0 and not allow_values:
            raise InvalidArgument(f"{argname}[{key!r}]", value, "a size >= 0")
        return DimRange(value, value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        lo, hi = value
        if lo > hi:
            raise InvalidArgument(f"{argname}[{key!r}]", value, "a range (lo, hi) with lo <= hi",
                                  f"Did you mean ({hi}, {lo})?")
        if lo < 0 and not allow_values:
            raise InvalidArgument(f"{argname}[{key!r}]", value, "sizes >= 0", f"Use ({max(lo, 1)}, {hi}).")
        return DimRange(lo, hi)
    if allow_values and isinstance(value, (list, tuple)) and len(value) > 0:
        return tuple(value)
    expected = "an inclusive range (lo, hi) of ints or a Hypothesis strategy"
    if allow_values:
        expected = "an inclusive range (lo, hi) of ints, a non-empty list of values, or a Hypothesis strategy"
    raise InvalidArgument(f"{argname}[{key!r}]", value, expected)


@dataclass(frozen=True)
class LayerSpec:
    """Validated options of one `check_layer` call."""

    make: Callable[[Mapping[str, Any], np.random.Generator], Any]
    name: str
    input: tuple[str | int, ...]
    output: tuple[str | int, ...] | None
    dims: Mapping[str, Any]
    hyper: Mapping[str, Any]
    derived: Mapping[str, Callable[[Mapping[str, Any]], int]]
    constraints: tuple[Callable[[Mapping[str, Any]], bool], ...]
    bias: tuple[str, ...] | None
    elementwise: bool
    batch_independent: bool
    domain: tuple[float, float]
    index_input: str | int | None
    dtypes: tuple[np.dtype, ...]
    max_examples: int
    seed: int | None
    checks: tuple[str, ...] | None
    skip: tuple[str, ...]
    profile: str
    redraw_params: bool
    example: Any = None
    timeout: float | None = DEFAULT_TIMEOUT
    #: reference(layer, x) -> out: what forward should compute (a known-value oracle), or None
    reference: Callable[[Any, np.ndarray], Any] | None = None
    #: seconds the search may spend on this layer (None: max_examples decides alone)
    budget: float | None = None
    input_text: str = ""
    output_text: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def batch_axis(self) -> str | int | None:
        """Name of the batch dim: the first of `input` (None for a scalar input)."""
        return self.input[0] if self.input else None

    @property
    def dtype(self) -> np.dtype:
        """The first dtype: every check runs in it."""
        return self.dtypes[0]

    @property
    def differentiable_input(self) -> bool:
        return self.index_input is None

    def bias_names(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The declared biases, or those auto-detected by name when `bias` was not given."""
        if self.bias is not None:
            return self.bias
        return tuple(k for k in params if AUTO_BIAS.match(k))


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(name, value, "True or False")
    return bool(value)


def build_spec(make: Any, input: Any, options: Mapping[str, Any]) -> LayerSpec:
    """Validate `check_layer`'s arguments into a LayerSpec; raise InvalidArgument naming the bad one."""
    from .checks import REGISTRY

    validate_option_names(options, where="check_layer")
    if not callable(make):
        raise InvalidArgument("make", make, "a factory make(dims, rng) -> layer (a class or a function)",
                              "Pass the class or a function building the layer, not an instance.")
    in_shape = parse_shape(input, argname="input")
    out_text = options.get("output")
    out_shape = None if out_text is None else parse_shape(out_text, argname="output")

    dims_in = options.get("dims") or {}
    if not isinstance(dims_in, Mapping):
        raise InvalidArgument("dims", dims_in, "a mapping {dim name: (lo, hi) or strategy}")
    hyper_in = options.get("hyper") or {}
    if not isinstance(hyper_in, Mapping):
        raise InvalidArgument("hyper", hyper_in, "a mapping {name: (lo, hi), list of values or strategy}")
    derived_in = options.get("derived") or {}
    if not isinstance(derived_in, Mapping) or not all(callable(f) for f in derived_in.values()):
        raise InvalidArgument("derived", derived_in, "a mapping {dim name: callable(dims) -> int}")
    constraints_in = options.get("constraints") or ()
    if callable(constraints_in):
        constraints_in = (constraints_in,)
    if not isinstance(constraints_in, (list, tuple)) or not all(callable(f) for f in constraints_in):
        raise InvalidArgument("constraints", constraints_in, "a sequence of callables(dims) -> bool")

    symbolic = [t for t in in_shape if isinstance(t, str)] + [t for t in (out_shape or ()) if isinstance(t, str)]
    for table, argname in ((dims_in, "dims"), (hyper_in, "hyper"), (derived_in, "derived")):
        for key in table:
            if not isinstance(key, str) or not _NAME.match(key):
                raise InvalidArgument(f"{argname} key", key, "an identifier naming a dim")
    clash = (set(dims_in) & set(hyper_in)) | (set(dims_in) & set(derived_in)) | (set(hyper_in) & set(derived_in))
    if clash:
        k = sorted(clash)[0]
        raise InvalidArgument("dims", k, "each name in only one of dims, hyper and derived")
    for key in derived_in:
        if key in in_shape:
            raise InvalidArgument(f"derived[{key!r}]", key, "a dim of `output` only",
                                  "Input dims are drawn; give them a range in dims= instead.")
    dims: dict[str, Any] = {}
    for key in dict.fromkeys(symbolic):
        if key in derived_in or key in hyper_in:
            continue
        dims[key] = _dim_source("dims", key, dims_in.get(key, DEFAULT_RANGE), allow_values=False)
    for key, value in dims_in.items():
        if key not in dims:
            dims[key] = _dim_source("dims", key, value, allow_values=False)
    hyper = {k: _dim_source("hyper", k, v, allow_values=True) for k, v in hyper_in.items()}
    known = set(dims) | set(hyper) | set(derived_in)
    for tok in (out_shape or ()):
        if isinstance(tok, str) and tok not in known:
            raise InvalidArgument("output", out_text, f"dims that are drawn or derived; {tok!r} is neither")

    bias_in = options.get("bias")
    if bias_in is not None:
        if isinstance(bias_in, str):
            bias_in = (bias_in,)
        if not isinstance(bias_in, (list, tuple)) or not all(isinstance(b, str) for b in bias_in):
            raise InvalidArgument("bias", bias_in, "a tuple of parameter names, e.g. ('b',), or () for none")
        bias_in = tuple(bias_in)

    elementwise = _as_bool("elementwise", options.get("elementwise", False))
    batch_independent = _as_bool("batch_independent", options.get("batch_independent", True))
    if elementwise and out_shape is not None and out_shape != in_shape:
        raise InvalidArgument("elementwise", True, f"output == input for an element-wise layer (input={input!r}, "
                              f"output={out_text!r})", "Drop elementwise=True or fix output=.")
    if batch_independent and not in_shape:
        batch_independent = False

    domain = options.get("domain", DEFAULT_DOMAIN)
    if (not isinstance(domain, (tuple, list)) or len(domain) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in domain)):
        raise InvalidArgument("domain", domain, "a pair (lo, hi) of finite numbers")
    lo, hi = float(domain[0]), float(domain[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise InvalidArgument("domain", domain, "lo < hi, both finite", f"Did you mean ({min(lo, hi)}, {max(lo, hi)})?")

    index_input = options.get("index_input")
    if index_input is not None:
        if isinstance(index_input, str):
            if index_input not in dims and index_input not in hyper:
                raise InvalidArgument("index_input", index_input, "the name of a drawn dim bounding the indices",
                                      f"Add it to dims=, e.g. dims={{{index_input!r}: (2, 6)}}.")
        elif not (isinstance(index_input, int) and not isinstance(index_input, bool) and index_input > 0):
            raise InvalidArgument("index_input", index_input, "a dim name or a positive int bound")

    dtypes_in = options.get("dtypes", DEFAULT_DTYPES)
    if isinstance(dtypes_in, (str, type, np.dtype)):
        dtypes_in = (dtypes_in,)
    if not isinstance(dtypes_in, (list, tuple)) or not dtypes_in:
        raise InvalidArgument("dtypes", dtypes_in, "a non-empty tuple of float dtypes, e.g. (np.float64, np.float32)")
    dtypes: list[np.dtype] = []
    for dt in dtypes_in:
        try:
            d = np.dtype(dt)
        except TypeError:
            raise InvalidArgument("dtypes", dtypes_in, "numpy float dtypes", f"{dt!r} is not a dtype") from None
        if d.kind != "f" or d.itemsize < 4:
            raise InvalidArgument("dtypes", dtypes_in, "float32 or float64 dtypes",
                                  f"{d} has too little precision to check gradients")
        if d not in dtypes:
            dtypes.append(d)

    max_examples = options.get("max_examples", DEFAULT_MAX_EXAMPLES)
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise InvalidArgument("max_examples", max_examples, "an int >= 1")
    seed = options.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidArgument("seed", seed, "an int or None")

    def _names(argname: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = (value,)
        if not isinstance(value, (list, tuple)):
            raise InvalidArgument(argname, value, "a tuple of check names")
        for c in value:
            if c not in REGISTRY:
                import difflib
                close = difflib.get_close_matches(str(c), list(REGISTRY), n=1)
                hint = f"Did you mean {close[0]!r}?" if close else "`gradharness list` prints them."
                raise InvalidArgument(argname, value, "names of checks", f"{c!r} is not a check. {hint}")
        return tuple(value)

    checks = options.get("checks")
    checks_t = None if checks is None else _names("checks", checks)
    skip = _names("skip", options.get("skip") or ())
    profile = options.get("profile") or "dev"
    if profile not in PROFILES:
        raise InvalidArgument("profile", profile, f"one of {', '.join(PROFILES)}")
    redraw = _as_bool("redraw_params", options.get("redraw_params", True))
    reference = options.get("reference")
    if reference is not None and not callable(reference):
        raise InvalidArgument("reference", reference, "a callable reference(layer, x) -> out computing what forward "
                              "should, or None")
    budget = options.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not budget > 0 or not math.isfinite(budget)):
        raise InvalidArgument("budget", budget, "seconds > 0 for the search of this layer, or None",
                              "From a command line: --budget 30s (or 2m).")
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not timeout > 0 or not math.isfinite(timeout)):
        raise InvalidArgument("timeout", timeout, "seconds > 0 per call into the layer, or None for no limit")
    name = options.get("name") or getattr(make, "__qualname__", None) or type(make).__name__
    return LayerSpec(
        make=make, name=str(name), input=in_shape, output=out_shape, dims=dims, hyper=hyper,
        derived=dict(derived_in), constraints=tuple(constraints_in), bias=bias_in,
        elementwise=elementwise, batch_independent=batch_independent, domain=(lo, hi),
        index_input=index_input, dtypes=tuple(dtypes), max_examples=max_examples, seed=seed,
        checks=checks_t, skip=skip, profile=profile, redraw_params=redraw,
        example=options.get("example"), timeout=None if timeout is None else float(timeout), reference=reference,
        budget=None if budget is None else float(budget), input_text=input,
        output_text=out_text,
    )


def resolve_shape(shape: Sequence[str | int], sizes: Mapping[str, Any]) -> tuple[int, ...]:
    """Concrete shape of a symbolic one for drawn sizes."""
    return tuple(t if isinstance(t, int) else int(sizes[t]) for t in shape)
