"""Memory of one example on a layer with 10^6 parameters: O(params), never a dense Jacobian.

tracemalloc sees numpy's array allocations, so its peak during one replayed example is
the harness's working set above what was allocated before (the timing under tracemalloc
is inflated and only shown for scale). A dense Jacobian of Linear 1000 x 1000 at n=4
would be 4,000 x 1,001,000 float64 = 32 GB; the bound asserted here is a fixed multiple
of the parameter bytes, measured at two sizes so a cost growing faster than the params
shows up.
"""
from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from conftest import check_target, clock, measure, run_benchmark

import gradharness
from reference_layers import Linear

#: peak traced bytes allowed per byte of parameters (x, out, dout and params are ~1x each;
#: every probe, copy and trace adds one more)
PEAK_PER_PARAM_BYTE = 40.0

SIZES = {"1e6": (4, 1000), "2.5e5": (4, 500)}


def _example(n: int, d: int, seed: int = 0) -> dict[str, Any]:
    return {"dims": {"n": n, "d_in": d, "d_out": d}, "hyper": {}, "seed": seed, "values": "uniform"}


def _perturbed_forward(n: int, d: int) -> float:
    """One element-wise difference's unit of work: W plus a step along e_i, then a forward."""
    rng = np.random.default_rng(0)
    layer = Linear(d, d, rng)
    x = rng.uniform(-3, 3, (n, d))
    W = layer.params["W"]  # noqa: N806

    def step() -> None:
        e = np.zeros(W.size)
        e[0] = 1.0
        layer.params["W"] = W + 1e-4 * e.reshape(W.shape)
        layer.forward(x)

    return measure(step).min


def _traced(fn: Any) -> tuple[Any, int, float]:
    tracemalloc.start()
    try:
        t0 = clock()
        result = fn()
        seconds = clock() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, seconds


@pytest.mark.parametrize("dtypes", ("float64", "float64+float32"))
@pytest.mark.parametrize("size", list(SIZES))
def test_peak_memory_one_example(benchmark: Any, record: Any, size: str, dtypes: str) -> None:
    n, d = SIZES[size]
    dts = tuple(np.dtype(t) for t in dtypes.split("+"))
    benchmark.group = "memory"
    params = d * d + d
    param_bytes = 8 * params
    runs: list[tuple[Any, int, float]] = []

    def run() -> None:
        runs.append(_traced(lambda: gradharness.check_layer(Linear, dtypes=dts, example=_example(n, d))))

    run_benchmark(benchmark, run, rounds=1, warmup=0)
    report, peak, seconds = runs[-1]
    assert report.passed, report.summary()
    ratio = peak / param_bytes
    jacobian = 8.0 * (n * d) * (params + n * d)
    met = check_target(ratio, PEAK_PER_PARAM_BYTE, f"peak traced bytes per parameter byte ({size})")
    record("memory", what=f"one example, Linear {d}x{d} n={n}, {dtypes}, all checks", params=params,
           param_mb=param_bytes / 1e6, peak_mb=peak / 1e6, peak_per_param_bytes=ratio, jacobian_gb=jacobian / 1e9,
           seconds=seconds, forward_calls=report.calls["forward"], backward_calls=report.calls["backward"], met=met)
    assert peak < jacobian / 100, "the peak is on the scale of a dense Jacobian"


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class ScaledWLinear(Linear):
    """Linear whose dW is 0.1% too large: fails grad-params, so the replay localizes W."""

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.grads["W"] = self.grads["W"] * 1.001
        return dx


def test_localize_large_tensor(benchmark: Any, record: Any) -> None:
    """A failing W of 90,000 elements: element-wise differences on a bounded subset, memory O(params)."""
    n, d = 4, 300
    benchmark.group = "memory"
    params = d * d + d
    runs: list[tuple[Any, int, float]] = []

    def run() -> None:
        runs.append(_traced(lambda: gradharness.check_layer(ScaledWLinear, dtypes=(np.float64,),
                                                            checks=("grad-params",), example=_example(n, d))))

    run_benchmark(benchmark, run, rounds=1, warmup=0)
    report, peak, _ = runs[-1]
    assert not report.passed and report.failures[0].tensor == "W"
    ev = report.failures[0].evidence
    compared = int(ev.get("compared", 0))
    assert 0 < compared < d * d, "a large tensor is localized on a bounded subset"
    # untraced time; at 10^6 params each of those forwards perturbs and runs a 1000 x 1000 W
    t0 = clock()
    gradharness.check_layer(ScaledWLinear, dtypes=(np.float64,), checks=("grad-params",), example=_example(n, d))
    seconds = clock() - t0
    fwd = report.calls["forward"]
    estimate = seconds * _perturbed_forward(n, 1000) / _perturbed_forward(n, d)
    record("memory", kind="localize", what=f"Linear {d}x{d} n={n}, grad-params, replayed failing example",
           params=params, seconds=seconds, forward_calls=fwd, compared=compared, peak_mb=peak / 1e6,
           peak_per_param_bytes=peak / (8 * params), estimate_1m_s=estimate)
    check_target(peak / (8 * params), PEAK_PER_PARAM_BYTE, "peak traced bytes per parameter byte (localize)")
