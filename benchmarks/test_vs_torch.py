"""torch.autograd.gradcheck (slow and fast mode) against gradharness, on one numpy layer.

The numpy ``reference_layers.Linear`` is wrapped as a ``torch.autograd.Function``
(float64); each forward builds its own Linear so a later forward never changes what an
earlier graph's backward reads. gradharness checks the same Function through
``gradharness.adapters.torch.torch_factory`` (grad-input + grad-params, one replayed
example), and, for reference, the numpy Linear directly.

Slow mode differences every input element (2 forwards each) and backpropagates every
output element: at 256 -> 256, n=64 that is ~164,000 forwards, so there it is
estimated from the calls it makes (counted at the smaller sizes) times the measured
cost of one call, and marked ``~``.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import THREADS, measure, run_benchmark

torch = pytest.importorskip("torch")

import gradharness  # noqa: E402
from gradharness.adapters.torch import torch_factory  # noqa: E402
from reference_layers import Linear  # noqa: E402

if THREADS != "0":
    torch.set_num_threads(int(THREADS))

GRAD_CHECKS = ("grad-input", "grad-params")
CALLS = {"forward": 0, "backward": 0}
#: relative error planted in dW by the buggy variant
BUG = 1e-2


def _numpy_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    layer = Linear.__new__(Linear)
    layer.params = {"W": W, "b": b}
    layer.grads = {}
    return layer


class LinearFn(torch.autograd.Function):
    """out = x @ W + b by the numpy reference Linear; backward by its hand-written backward."""

    @staticmethod
    def forward(ctx: Any, x: Any, W: Any, b: Any) -> Any:  # noqa: N803
        CALLS["forward"] += 1
        layer = _numpy_linear(W.detach().numpy(), b.detach().numpy())
        ctx.layer = layer
        return torch.from_numpy(layer.forward(x.detach().numpy()))

    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        CALLS["backward"] += 1
        layer = ctx.layer
        dx = layer.backward(dout.detach().numpy())
        return (torch.from_numpy(dx), torch.from_numpy(layer.grads["W"]),
                torch.from_numpy(layer.grads["b"]))


class BuggyLinearFn(LinearFn):
    """The same with dW off by a relative BUG."""

    @staticmethod
    def backward(ctx: Any, dout: Any) -> Any:
        dx, dW, db = LinearFn.backward(ctx, dout)  # noqa: N806
        return dx, dW * (1 + BUG), db


@dataclass(frozen=True)
class Size:
    n: int
    d: int
    slow: bool  # slow mode is run (else estimated)

    @property
    def label(self) -> str:
        return f"n={self.n} {self.d}x{self.d}"

    def example(self) -> dict[str, Any]:
        return {"dims": {"n": self.n, "d_in": self.d, "d_out": self.d}, "hyper": {}, "seed": 0, "values": "uniform"}

    def inputs(self) -> tuple[Any, Any, Any]:
        rng = np.random.default_rng(0)
        x = torch.tensor(rng.uniform(-3, 3, (self.n, self.d)), requires_grad=True)
        W = torch.tensor(rng.standard_normal((self.d, self.d)) / np.sqrt(self.d), requires_grad=True)  # noqa: N806
        b = torch.tensor(rng.standard_normal(self.d), requires_grad=True)
        return x, W, b

    @property
    def numel_in(self) -> int:
        return self.n * self.d + self.d * self.d + self.d

    @property
    def numel_out(self) -> int:
        return self.n * self.d


SIZES = {"small": Size(8, 32, True), "medium": Size(16, 64, True), "large": Size(64, 256, False)}
METHODS = ("fb", "slow", "fast", "gradharness", "gradharness-numpy")


def _factory(fn: Any) -> Any:
    return torch_factory(fn, params={"W": "d_in d_out", "b": "d_out"}, name=fn.__name__)


def _gradharness(fn: Any, size: Size, detail_checks: tuple[str, ...] = GRAD_CHECKS) -> gradharness.Report:
    return gradharness.check_layer(_factory(fn), "n d_in", output="n d_out", bias=("b",), dtypes=(np.float64,),
                                   checks=detail_checks, example=size.example())


def _step_costs(size: Size) -> tuple[float, float]:
    """Seconds of one Function forward and of one backward (through autograd)."""
    x, W, b = size.inputs()  # noqa: N806
    dout = torch.randn(size.n, size.d, dtype=torch.float64)
    tf = measure(lambda: LinearFn.apply(x, W, b)).min

    def fb() -> None:
        out = LinearFn.apply(x, W, b)
        torch.autograd.grad(out, (x, W, b), dout)

    return tf, max(measure(fb).min - tf, 0.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size_name", list(SIZES))
def test_gradcheck_side_by_side(benchmark: Any, record: Any, size_name: str, method: str) -> None:
    size = SIZES[size_name]
    benchmark.group = f"vs torch {size.label}"
    x, W, b = size.inputs()  # noqa: N806
    dout = torch.randn(size.n, size.d, dtype=torch.float64)
    estimated = False

    def fb_step() -> Any:
        out = LinearFn.apply(x, W, b)
        return torch.autograd.grad(out, (x, W, b), dout)

    if method == "fb":
        run = fb_step
        rounds = 20
    elif method == "slow":
        if not size.slow:
            # about 164,000 forwards: estimated from the calls slow mode makes (2 per input element
            # + 1 backward per output element, as counted at the smaller sizes) and the cost of each
            tf, tb = _step_costs(size)
            nf, nb = 2 * size.numel_in + 1, size.numel_out
            seconds = nf * tf + nb * tb
            record("torch", size=size.label, method=method, seconds=seconds, estimated=True, per_fb=seconds / (tf + tb),
                   forward_calls=nf, backward_calls=nb)
            pytest.skip(f"slow mode at {size.label} not run: ~{seconds:.0f}s estimated from {nf} forward and "
                        f"{nb} backward calls (in the summary)")

        def run() -> Any:
            return torch.autograd.gradcheck(LinearFn.apply, (x, W, b))
        rounds = 1 if size.d >= 64 else 3
    elif method == "fast":
        def run() -> Any:
            return torch.autograd.gradcheck(LinearFn.apply, (x, W, b), fast_mode=True)
        rounds = 10
    elif method == "gradharness":
        def run() -> Any:
            return _gradharness(LinearFn, size)
        rounds = 5
    else:
        ex = size.example()

        def run() -> Any:
            return gradharness.check_layer(Linear, dtypes=(np.float64,), checks=GRAD_CHECKS, example=ex)
        rounds = 5
    run()  # warm, and the call counts of one run
    CALLS.update(forward=0, backward=0)
    result = run()
    calls = dict(CALLS)
    if isinstance(result, gradharness.Report):
        calls = dict(result.calls)
        assert result.passed, result.summary()
    elif method in ("slow", "fast"):
        assert result is True
    if method == "slow":
        # the estimate at the large size relies on this count
        assert calls["forward"] >= 2 * size.numel_in
    baselines: list[float] = []

    def baseline() -> None:  # untimed setup of every round: this round's Function forward + backward
        baselines.append(measure(fb_step, repeat=3, min_sample=0.005).min)

    _, t, per_round = run_benchmark(benchmark, run, rounds=rounds, setup=baseline)
    per_fb = statistics.median(v / f for v, f in zip(per_round, baselines[-len(per_round):]))
    record("torch", size=size.label, method=method, seconds=t.median, min_s=t.min, per_fb=per_fb,
           fb_s=statistics.median(baselines), estimated=estimated, forward_calls=calls["forward"],
           backward_calls=calls["backward"])


@pytest.mark.parametrize("method", ("slow", "fast", "gradharness"))
def test_localize_a_bug(benchmark: Any, record: Any, method: str) -> None:
    """A relative error of BUG in dW (medium size): the cost of a failing verdict that names elements.

    Slow mode compares every element of the Jacobian; fast mode only says that some
    directional derivative disagrees; gradharness's replayed failing example probes, then
    differences W element by element (up to LOCALIZE_MAX of them) for the message.
    """
    size = SIZES["medium"]
    benchmark.group = "vs torch: a planted bug"
    x, W, b = size.inputs()  # noqa: N806
    note = ""
    if method == "gradharness":
        def run() -> Any:
            return _gradharness(BuggyLinearFn, size, ("grad-params",))
    else:
        def run() -> Any:
            return torch.autograd.gradcheck(BuggyLinearFn.apply, (x, W, b), fast_mode=method == "fast",
                                            raise_exception=False)
    result, t, _ = run_benchmark(benchmark, run, rounds=1, warmup=0)
    if isinstance(result, gradharness.Report):
        detected = not result.passed
        if detected:
            ev = result.failures[0].evidence
            note = f"{ev.get('mismatched', '?')}/{ev.get('compared', '?')} elements of W named"
    else:
        detected = result is False
        note = "every Jacobian element compared" if method == "slow" else "one directional derivative"
    record("torch", size=size.label, method=f"bug-{method}", seconds=t.min, detected=detected, note=note)
    assert detected
