"""Hypothesis strategies: dims, hyper-parameters and a seed for the numpy-drawn values.

Hypothesis draws what shrinking should act on (sizes, hyper-parameters, the
value mode); arrays are drawn with numpy from a drawn seed, which is fast and
keeps a failing example reproducible from a few integers.
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from ._errors import InvalidArgument
from ._spec import DimRange, LayerSpec
from ._tolerance import LARGE_TENSOR

VALUE_MODES = ("uniform", "special")
SEED_BITS = 32
#: share of elements replaced by a special value (zero, tie, end of the domain) in "special" mode
SPECIAL_RATE = 0.25
#: assignments tried when searching for the guaranteed examples
SEARCH_LIMIT = 20000


@dataclass(frozen=True)
class Example:
    """One drawn example: sizes, hyper-parameters, a seed for every array, and the value mode."""

    dims: Mapping[str, int]
    hyper: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    values: str = "uniform"

    def sizes(self, spec: LayerSpec) -> dict[str, Any]:
        """Dims, hyper-parameters and derived dims in one mapping: what the factory receives."""
        sizes: dict[str, Any] = {**self.dims, **self.hyper}
        for key, fn in spec.derived.items():
            try:
                sizes[key] = int(fn(dict(sizes)))
            except Exception as exc:  # noqa: BLE001 - the user's callable
                raise InvalidArgument(f"derived[{key!r}]", fn, "a callable(dims) -> int",
                                      f"it raised {type(exc).__name__}: {exc} for dims={sizes}") from exc
        return sizes

    def as_dict(self) -> dict[str, Any]:
        return {"dims": dict(self.dims), "hyper": dict(self.hyper), "seed": self.seed, "values": self.values}

    @classmethod
    def from_value(cls, value: Any) -> "Example":
        """An Example from an Example or its `as_dict` form (as printed in a reproduction line)."""
        if isinstance(value, Example):
            return value
        if isinstance(value, Mapping) and "dims" in value:
            mode = value.get("values", "uniform")
            if mode not in VALUE_MODES:
                raise InvalidArgument("example['values']", mode, f"one of {VALUE_MODES}")
            return cls(dims=dict(value["dims"]), hyper=dict(value.get("hyper") or {}),
                       seed=int(value.get("seed", 0)), values=mode)
        raise InvalidArgument("example", value, "an Example or a dict {'dims': ..., 'hyper': ..., 'seed': ..., "
                              "'values': ...} as printed in a failure's reproduction line")


def _satisfies(spec: LayerSpec, sizes: Mapping[str, Any]) -> bool:
    try:
        return all(bool(c(dict(sizes))) for c in spec.constraints)
    except Exception as exc:  # noqa: BLE001 - the user's callable
        raise InvalidArgument("constraints", spec.constraints, "callables(dims) -> bool that do not raise",
                              f"one raised {type(exc).__name__}: {exc} for dims={dict(sizes)}") from exc


def _with_derived(spec: LayerSpec, sizes: dict[str, Any]) -> dict[str, Any]:
    return Example(dims={}, hyper=sizes).sizes(spec)


def _derived_ok(spec: LayerSpec, sizes: Mapping[str, Any]) -> bool:
    return all(int(sizes[k]) >= 1 for k in spec.derived)


@contextlib.contextmanager
def reproducible_generation() -> Iterator[None]:
    """Hypothesis draws that depend only on the seed, not on which modules are imported.

    Hypothesis (6.131+) mixes constants read from the source of every local module loaded
    into its draws, so one seed gave other examples in a pytest run that had imported more
    test modules than a worker or a CLI run. Inside this block that pool is empty; the
    library's own constants (0, 1, powers of two, ...) still come up. The pool is the module's,
    so a Hypothesis test running in another thread meanwhile draws without it too. Without
    those internals (another Hypothesis) it does nothing.
    """
    try:
        from hypothesis.internal.conjecture import providers
        empty = providers.Constants()
        saved = providers._get_local_constants
        cache = providers.CONSTANTS_CACHE.cache
    except (ImportError, AttributeError):
        yield
        return
    # the cache holds allowed constants per draw kind, the local ones included: clear it on
    # the way in (drop the caller's) and out (drop ours, so the caller's are rebuilt)
    cache.clear()
    providers._get_local_constants = lambda *a, **k: empty
    try:
        yield
    finally:
        providers._get_local_constants = saved
        cache.clear()


@st.composite
def examples(draw: Any, spec: LayerSpec) -> Example:
    """Examples of `spec`: about half with all range dims pairwise distinct and >= 2."""
    distinct = draw(st.booleans())
    dims: dict[str, int] = {}
    for key, src in spec.dims.items():
        if isinstance(src, DimRange):
            if distinct:
                allowed = [v for v in src.values() if v >= 2 and v not in dims.values()]
                if allowed:
                    dims[key] = draw(st.sampled_from(allowed))
                    continue
            dims[key] = draw(st.integers(src.lo, src.hi))
        else:
            dims[key] = int(draw(src))
    hyper: dict[str, Any] = {}
    for key, src in spec.hyper.items():
        if isinstance(src, DimRange):
            hyper[key] = draw(st.integers(src.lo, src.hi))
        elif isinstance(src, tuple):
            hyper[key] = draw(st.sampled_from(src))
        else:
            hyper[key] = draw(src)
    sizes = _with_derived(spec, {**dims, **hyper})
    assume(_derived_ok(spec, sizes) and _satisfies(spec, sizes))
    seed = draw(st.integers(0, 2**SEED_BITS - 1))
    values = draw(st.sampled_from(VALUE_MODES))
    return Example(dims=dims, hyper=hyper, seed=seed, values=values)


def _candidates(src: Any) -> list[Any] | None:
    if isinstance(src, DimRange):
        return list(src.values())
    if isinstance(src, tuple):
        return list(src)
    return None


def guaranteed_examples(spec: LayerSpec, seed: int, *, floor: int = 2) -> list[Example]:
    """Examples run on every call, whatever Hypothesis draws: the smallest sizes (batch of 1,
    size-1 dims), and the smallest sizes with all dims pairwise distinct and >= `floor`."""
    dim_c = {k: _candidates(v) for k, v in spec.dims.items()}
    hyp_c = {k: _candidates(v) for k, v in spec.hyper.items()}
    if any(c is None for c in (*dim_c.values(), *hyp_c.values())):
        return []
    names = list(dim_c) + list(hyp_c)
    pools = [dim_c[k] for k in dim_c] + [hyp_c[k] for k in hyp_c]

    def search(distinct: bool) -> dict[str, Any] | None:
        dpools = [[v for v in p if v >= floor] if distinct else p for p in pools[: len(dim_c)]]
        allp = dpools + pools[len(dim_c):]
        if any(not p for p in allp):
            return None
        # ordered by total size so the first hit is the smallest assignment
        combos = sorted(itertools.islice(itertools.product(*[range(len(p)) for p in allp]), SEARCH_LIMIT), key=sum)
        for idx in combos:
            values = [allp[j][i] for j, i in enumerate(idx)]
            dvals = values[: len(dim_c)]
            if distinct and len(set(dvals)) != len(dvals):
                continue
            sizes = _with_derived(spec, dict(zip(names, values)))
            if _derived_ok(spec, sizes) and _satisfies(spec, sizes):
                return dict(zip(names, values))
        return None

    out: list[Example] = []
    for k, distinct in enumerate((False, True)):
        found = search(distinct)
        if found is None:
            continue
        dims = {n: found[n] for n in dim_c}
        hyper = {n: found[n] for n in hyp_c}
        ex = Example(dims=dims, hyper=hyper, seed=(seed + k) % 2**SEED_BITS, values="uniform")
        if ex not in out:
            out.append(ex)
    return out


def draw_input(spec: LayerSpec, shape: tuple[int, ...], sizes: Mapping[str, Any],
               rng: np.random.Generator, mode: str) -> np.ndarray:
    """The input x in float64 (or int64 indices), with special values in "special" mode."""
    if spec.index_input is not None:
        bound = spec.index_input if isinstance(spec.index_input, int) else int(sizes[spec.index_input])
        bound = max(bound, 1)
        if mode == "special":
            # few distinct indices, so repeats (the accumulation bug) are certain
            pool = rng.integers(0, bound, size=max(1, min(bound, 2)))
            return rng.choice(pool, size=shape).astype(np.int64)
        return rng.integers(0, bound, size=shape).astype(np.int64)
    lo, hi = spec.domain
    x = rng.uniform(lo, hi, size=shape)
    if mode == "special" and x.size:
        specials = [lo, hi, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo)]
        if lo <= 0.0 <= hi:
            specials.append(0.0)
        mask = rng.random(shape) < SPECIAL_RATE
        picks = np.asarray(specials)[rng.integers(0, len(specials), size=shape)]
        x = np.where(mask, picks, x)
        # ties: copy some elements onto others (max and pooling break ties here)
        flat = x.reshape(-1)
        k = max(1, int(SPECIAL_RATE * flat.size))
        src = rng.integers(0, flat.size, size=k)
        dst = rng.integers(0, flat.size, size=k)
        flat[dst] = flat[src]
        x = flat.reshape(shape)
    return x


def unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance noise, uniform on [-sqrt(3), sqrt(3)).

    The directions of the probes and of the checks' perturbations are drawn with it: numpy's
    uniform draws cost a fifth of its normal ones (the largest cost of probing a big tensor
    was drawing them), and they are continuous all the same, so two errors cancel exactly on
    a probe with probability zero (random signs would cancel half the time).
    """
    v = rng.random(shape)
    v -= 0.5
    v *= 2.0 * np.sqrt(3.0)
    return v


def value_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance values for the upstream gradient and redrawn params: normal
    for a tensor of fewer than LARGE_TENSOR elements, unit_noise for a larger one.

    Measured over seeds of the default search, uniform values made the worst example's
    tolerance for a small bias several times looser (float32: 0.02 against 0.0009 relative);
    on tensors of thousands of elements the two gave the same sensitivities (within 7%), and
    there the normal draw was the largest single cost of an example after the layer's calls.
    """
    if int(np.prod(shape, dtype=np.int64)) >= LARGE_TENSOR:
        return unit_noise(rng, shape)
    return rng.standard_normal(shape)


def draw_dout(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random upstream gradient (never all ones: ones hide diagonal-only softmax backwards)."""
    d = value_noise(rng, shape)
    if d.ndim == 0:
        # a scalar dout far from 0 and from 1, so a loss that ignores dout is caught
        d = np.asarray(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8))
    return d


def redraw_param(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-trivial value of a parameter with its factory's location and scale
    (biases never all 0, gains never all 1)."""
    p64 = np.asarray(p, dtype=np.float64)
    if p64.size == 0:
        return p64.copy()
    mu = float(np.mean(p64))
    sd = float(np.std(p64))
    if not np.isfinite(mu) or not np.isfinite(sd):
        mu, sd = 0.0, 1.0
    if sd < 1e-12:
        sd = 0.5 * max(1.0, abs(mu))
    out = value_noise(rng, p64.shape)
    out *= sd
    out += mu
    return out
