"""Strategies: consistent dims, guaranteed distinct and minimal examples, special values."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings

from gradharness import check_layer
from gradharness._spec import build_spec
from gradharness._strategies import (Example, draw_dout, draw_input, examples, guaranteed_examples, redraw_param,
                                     reproducible_generation)
from tests import planted


def _spec(**opts: Any) -> Any:
    return build_spec(planted.linear(None), opts.pop("input", "n d_in"), {"output": "n d_out", **opts})


def test_guaranteed_examples_minimal_and_pairwise_distinct() -> None:
    spec = _spec(dims={"n": (1, 6), "d_in": (1, 6), "d_out": (1, 6)})
    ex = guaranteed_examples(spec, 0)
    assert ex[0].dims == {"n": 1, "d_in": 1, "d_out": 1}
    distinct = ex[1].dims
    assert len(set(distinct.values())) == 3 and min(distinct.values()) >= 2


def test_guaranteed_examples_respect_constraints_and_derived() -> None:
    spec = build_spec(planted.linear(None), "n h", {
        "output": "n ho", "dims": {"h": (1, 6)}, "hyper": {"k": [2, 3]},
        "derived": {"ho": lambda d: d["h"] - d["k"] + 1}, "constraints": (lambda d: d["h"] >= d["k"],)})
    for ex in guaranteed_examples(spec, 0):
        sizes = ex.sizes(spec)
        assert sizes["h"] >= sizes["k"] and sizes["ho"] == sizes["h"] - sizes["k"] + 1


def test_strategy_draws_distinct_and_coincident_dims() -> None:
    spec = _spec()
    seen: list[dict[str, int]] = []

    @settings(max_examples=80, database=None)
    @given(ex=examples(spec))
    def collect(ex: Example) -> None:
        seen.append(dict(ex.dims))

    collect()
    assert any(len(set(d.values())) == 3 and min(d.values()) >= 2 for d in seen)
    assert any(d["n"] == 1 for d in seen) and any(d["n"] > 1 for d in seen)


def test_special_values_include_zeros_ties_and_ends() -> None:
    spec = _spec(domain=(-2.0, 2.0))
    x = draw_input(spec, (40, 40), {}, np.random.default_rng(0), "special")
    assert (x == 0).any() and (x == -2.0).any() and (x == 2.0).any()
    assert len(np.unique(x)) < x.size * 0.9
    assert x.min() >= -2.0 and x.max() <= 2.0


def test_dout_never_all_ones_and_scalar_not_one() -> None:
    rng = np.random.default_rng(0)
    assert not np.all(draw_dout((3, 4), rng) == 1)
    d = draw_dout((), rng)
    assert d.shape == () and 0.2 < abs(float(d)) < 0.9


def test_redrawn_params_are_non_trivial() -> None:
    rng = np.random.default_rng(0)
    b = redraw_param(np.zeros(5), rng)
    g = redraw_param(np.ones(5), rng)
    assert np.all(b != 0) and np.all(g != 1)
    assert abs(np.mean(g) - 1) < 1.0


def test_index_input_has_repeats_in_special_mode() -> None:
    spec = build_spec(planted.linear(None), "n", {"dims": {"vocab": (2, 6)}, "index_input": "vocab"})
    idx = draw_input(spec, (8,), {"vocab": 5}, np.random.default_rng(0), "special")
    assert idx.dtype.kind == "i" and len(np.unique(idx)) < idx.size and idx.max() < 5


def test_one_seed_draws_the_same_examples_whatever_modules_are_imported(tmp_path: Any, monkeypatch: Any) -> None:
    # Hypothesis reads constants from every local module imported; a module of big integers
    # changed which examples a seed drew (a pytest run vs an xdist worker). Seed 17 is one whose
    # examples it changed (with Hypothesis 6.155)
    seen: list[tuple[Any, ...]] = []

    def make(dims: Any, rng: np.random.Generator) -> Any:
        layer = planted.Linear(dims["d_in"], dims["d_out"], rng, None)
        forward = layer.forward

        def spy(x: np.ndarray) -> np.ndarray:
            seen.append((x.shape, float(x.flat[0])))
            return forward(x)

        layer.forward = spy  # type: ignore[method-assign]
        return layer

    def drawn() -> list[tuple[Any, ...]]:
        seen.clear()
        check_layer(make, **planted.LINEAR, checks=("forward-shape",), dtypes=("float64",), seed=17, max_examples=30)
        return list(seen)

    before = drawn()
    numbers = ", ".join(str(v) for v in [*range(1, 9), 17, 31, 1000, 65535, 2**31 - 7, 123456789, 3054198966])
    (tmp_path / "constants_heavy_module.py").write_text(f"SIZES = ({numbers})\nSCALES = (0.37, 2.5e-3, 7.25)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import constants_heavy_module  # noqa: F401
        assert drawn() == before
    finally:
        sys.modules.pop("constants_heavy_module", None)


def test_reproducible_generation_empties_the_local_constants_pool_and_restores_it() -> None:
    providers = pytest.importorskip("hypothesis.internal.conjecture.providers")
    before = providers._get_local_constants
    with reproducible_generation():
        assert len(providers._get_local_constants()) == 0
    assert providers._get_local_constants is before
