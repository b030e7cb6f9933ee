"""Per-example cost of a verdict against the cost of one training step of the same layer.

One example is replayed with ``check_layer(..., example={...})``: exactly one example,
no Hypothesis search, no shrinking. The baseline is one forward + one backward of the
same layer called directly, timed in the same test (before and after the verdict).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import Timing, check_target, measure, run_benchmark

import gradharness
from reference_layers import LSTM, Conv2d, Linear

try:  # the floor follows the probe policy of the error model, when it is where it was
    from gradharness import _tolerance
except ImportError:  # pragma: no cover
    _tolerance = None  # type: ignore[assignment]
PROBES_PER_TENSOR = getattr(_tolerance, "PROBES_PER_TENSOR", 2)
#: tensors of at least this many elements get one probe (None: every tensor gets PROBES_PER_TENSOR)
LARGE_TENSOR = getattr(_tolerance, "LARGE_TENSOR", None)


def probes_for(size: int) -> int:
    return 1 if LARGE_TENSOR is not None and size >= LARGE_TENSOR else PROBES_PER_TENSOR

GRAD_CHECKS = ("grad-input", "grad-params")


@dataclass(frozen=True)
class Case:
    layer: Any
    dims: dict[str, int]
    hyper: dict[str, Any] = field(default_factory=dict)
    rounds: int = 5

    def example(self) -> dict[str, Any]:
        return {"dims": dict(self.dims), "hyper": dict(self.hyper), "seed": 0, "values": "uniform"}


CASES = {
    "Linear-256": Case(Linear, {"n": 64, "d_in": 256, "d_out": 256}, rounds=10),
    "Conv2d-16": Case(Conv2d, {"n": 8, "c": 16, "f": 16, "h": 16, "w": 16}, {"k": 3, "stride": 1, "pad": 1}),
    "LSTM-32": Case(LSTM, {"n": 16, "t": 8, "d": 32, "hdim": 32}),
}
#: name -> (checks=, dtypes=, target ratio)
MODES = {
    "all": (None, (np.float64,), 15.0),
    "grad": (GRAD_CHECKS, (np.float64,), 6.0),
    # informational: the default dtypes (the float32 run repeats the every-dtype checks)
    "all-f64+f32": (None, (np.float64, np.float32), None),
}


class Plain:
    """The layer called directly: one forward, one backward, no harness."""

    def __init__(self, case: Case) -> None:
        decl = gradharness.declaration_of(case.layer)
        assert decl is not None
        rng = np.random.default_rng(0)
        self.layer = decl.make({**case.dims, **case.hyper}, rng)
        spec = decl.options.get("input", "n d_in")
        shape = tuple(case.dims[d] for d in spec.split())
        lo, hi = decl.options.get("domain", (-3.0, 3.0))
        self.x = rng.uniform(lo, hi, size=shape)
        out = self.layer.forward(self.x)
        self.dout = rng.standard_normal(out.shape)
        # tensors probed by the gradient checks: x and every param
        sizes = [self.x.size] + [v.size for v in self.layer.params.values() if v.size]
        self.tensors = len(sizes)
        self.probes = sum(probes_for(n) for n in sizes)

    def forward(self) -> None:
        self.layer.forward(self.x)

    def backward(self) -> None:
        self.layer.backward(self.dout)

    def step(self) -> None:
        self.layer.forward(self.x)
        self.layer.backward(self.dout)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case_name", list(CASES))
def test_example_vs_training_step(benchmark: Any, record: Any, case_name: str, mode: str) -> None:
    case = CASES[case_name]
    checks, dtypes, target = MODES[mode]
    plain = Plain(case)
    benchmark.group = f"per-example {case_name}"
    ex = case.example()

    def verdict() -> gradharness.Report:
        return gradharness.check_layer(case.layer, dtypes=dtypes, example=ex, checks=checks)

    baselines: list[float] = []

    def baseline() -> None:  # untimed setup of every round: this round's forward + backward
        baselines.append(measure(plain.step, repeat=3, min_sample=0.005).min)

    report, t, per_round = run_benchmark(benchmark, verdict, rounds=case.rounds, setup=baseline)
    fb = measure(plain.step)
    tf, tb = measure(plain.forward), measure(plain.backward)
    assert report.passed, report.summary()
    assert report.examples == 1
    nf, nb = report.calls["forward"], report.calls["backward"]
    paired = [v / f for v, f in zip(per_round, baselines[-len(per_round):])]
    ratio = statistics.median(paired)
    fb_min = min(fb.min, *baselines)
    floor_f = 2 * plain.probes + 1
    floor = (floor_f * tf.min + tb.min) / (tf.min + tb.min)
    met = check_target(ratio, target, f"{case_name} {mode}: example / (forward + backward)")
    record("per-example", case=case_name, mode=mode, example_s=t.median, example_min_s=t.min,
           fb_s=statistics.median(baselines), fb_min_s=fb_min, forward_s=tf.min, backward_s=tb.min, ratio=ratio,
           ratio_min=t.min / fb_min, rounds=len(paired),
           target=target, met=met, forward_calls=nf, backward_calls=nb,
           layer_share=(nf * tf.min + nb * tb.min) / t.min, floor_ratio=floor, floor_calls=f"{floor_f}f/1b",
           tensors=plain.tensors, probes=plain.probes)


def test_default_search_linear(benchmark: Any, record: Any) -> None:
    """check_layer(Linear, seed=0) at the default dims (1-6), profile and dtypes: the search as users run it."""
    benchmark.group = "default search"
    report, t, _ = run_benchmark(benchmark, lambda: gradharness.check_layer(Linear, seed=0), rounds=3)
    assert report.passed, report.summary()
    nf, nb = report.calls["forward"], report.calls["backward"]
    record("search", what="check_layer(reference_layers.Linear, seed=0)", examples=report.examples,
           forward_calls=nf, backward_calls=nb, seconds=t.min, per_example_s=t.min / max(report.examples, 1),
           calls_per_example=(nf + nb) / max(report.examples, 1))


def test_timing_helper_is_sane() -> None:
    """measure() returns a per-call time (guards the baseline every ratio divides by)."""
    t = measure(lambda: sum(range(1000)), repeat=3, min_sample=0.005)
    assert isinstance(t, Timing) and 0 < t.min <= t.median < 0.01
