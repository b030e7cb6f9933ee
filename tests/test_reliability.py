"""Bad layers are reported as that layer's failure and the run goes on; runs are reproducible."""
from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradharness as gh
import reference_layers as rl
from tests import planted

FAST = {"max_examples": 8, "seed": 0}


class Returns(planted.ReLU):
    """forward returns whatever `value(x)` makes of x."""

    def __init__(self, value: Callable[[np.ndarray], Any]) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: np.ndarray) -> Any:
        super().forward(x)
        return self.value(x)


BAD_FORWARD = [
    ("none", lambda x: None, "forward-shape", "returned NoneType, expected a numpy array"),
    ("list", lambda x: x.tolist(), "forward-shape", "returned list, expected a numpy array"),
    ("tuple", lambda x: (x, x), "forward-shape", "returned tuple, expected a numpy array"),
    ("python-float", lambda x: float(x.sum()), "forward-shape", "(0-d for a loss: np.asarray(value))"),
    ("int-array", lambda x: np.maximum(x, 0).astype(np.int64), "dtype", "out is int64"),
    ("nan", lambda x: np.where(x > 0, x, np.nan), "finite", "non-finite values"),
    ("inf", lambda x: x / (x * 0), "finite", "non-finite values"),
]


@pytest.mark.parametrize(("value", "check", "text"), [b[1:] for b in BAD_FORWARD], ids=[b[0] for b in BAD_FORWARD])
def test_bad_forward_is_the_layers_failure(value: Callable[[np.ndarray], Any], check: str, text: str) -> None:
    report = gh.check_layer(lambda d, rng: Returns(value), "n d", **FAST)
    assert check in report.failed_checks(), str(report)
    assert any(text in f.message for f in report.failures), str(report)


def test_backward_never_setting_grads() -> None:
    class NoGrads(planted.Linear):
        def backward(self, dout: np.ndarray) -> Any:
            dx = super().backward(dout)
            del self.grads
            return dx

    report = gh.check_layer(lambda d, rng: NoGrads(d["d_in"], d["d_out"], rng), **planted.LINEAR, **FAST)
    assert report.failed_checks() == ["backward-shape"]
    assert "left layer.grads as NoneType, expected a dict with keys ['W', 'b']" in report.failures[0].message


def test_a_hanging_layer_is_cut_by_the_timeout() -> None:
    class Hangs(planted.ReLU):
        def backward(self, dout: np.ndarray) -> np.ndarray:
            while True:
                pass

    report = gh.check_layer(lambda d, rng: Hangs(), "n d", timeout=0.2, max_examples=2, seed=0)
    assert report.failed_checks() == ["backward-shape"]
    assert "backward did not return within 0.2 s (called with dout: float64[1, 1])" in report.failures[0].message


def test_printing_and_global_numpy_state_are_restored_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    class Noisy(planted.ReLU):
        def forward(self, x: np.ndarray) -> np.ndarray:
            print("x" * 1000)
            np.seterr(over="raise")
            return super().forward(x)

    before = np.geterr()
    report = gh.check_layer(lambda d, rng: Noisy(), "n d", **FAST)
    assert np.geterr() == before
    assert report.passed
    assert capsys.readouterr().out == ""
    assert any(n.startswith("the layer printed to stdout (silenced): ") for n in report.notes)
    assert any(n.startswith("the layer changed numpy's error state") for n in report.notes)
    assert "note: the layer printed" in report.summary()


def test_global_rng_is_restored_reported_and_fails_determinism() -> None:
    state = np.random.get_state()
    report = gh.check_layer(lambda d, rng: planted.Dropout(rng, "global-rng"), "n d", batch_independent=False, **FAST)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]
    assert "determinism" in report.failed_checks()
    assert any("numpy's global random state" in n for n in report.notes)


def test_global_rng_mark_moves_with_every_draw_and_only_then() -> None:
    from gradharness._context import global_rng_mark

    np.random.seed(0)
    np.random.random()
    mark = global_rng_mark()
    assert global_rng_mark() == mark
    draws: list[Callable[[], Any]] = [
        np.random.random, lambda: np.random.standard_normal(3), lambda: np.random.seed(0),
        # 624 words: the position comes back where it was, the key does not
        lambda: np.random.bytes(624 * 4)]
    for draw in draws:
        before = global_rng_mark()
        draw()
        assert global_rng_mark() != before, draw


def test_global_rng_drawn_after_the_base_trace_is_restored_and_reported() -> None:
    class LateDraw(planted.Linear):
        calls = 0

        def forward(self, x: np.ndarray) -> np.ndarray:
            LateDraw.calls += 1
            if LateDraw.calls % 3 == 0:
                np.random.random()
            return super().forward(x)

    state = np.random.get_state()
    report = gh.check_layer(lambda d, rng: LateDraw(d["d_in"], d["d_out"], rng), **planted.LINEAR, **FAST)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2] == after[2]
    assert any("forward used numpy's global random state" in n for n in report.notes)


def test_factory_using_global_rng_is_only_a_note() -> None:
    def make(d: Any, rng: np.random.Generator) -> planted.Linear:
        layer = planted.Linear(d["d_in"], d["d_out"], rng)
        layer.params["W"] = np.random.standard_normal(layer.params["W"].shape)
        return layer

    report = gh.check_layer(make, **planted.LINEAR, **FAST)
    assert report.passed, str(report)
    assert any(n.startswith("factory used numpy's global random state") for n in report.notes)


def test_factory_failing_for_some_dims_is_reported_with_them() -> None:
    def make(d: Any, rng: np.random.Generator) -> planted.Linear:
        if d["d_out"] == 3:
            raise MemoryError("no room")
        return planted.Linear(d["d_in"], d["d_out"], rng)

    report = gh.check_layer(make, **planted.LINEAR, max_examples=30, seed=0)
    assert report.failed_checks() == ["protocol"]
    f = report.failures[0]
    assert "the factory raised MemoryError: no room (called with dims={" in f.message
    assert f.example["dims"]["d_out"] == 3


def test_same_seed_same_report_byte_for_byte() -> None:
    def run() -> str:
        d = gh.check_layer(planted.linear("db-first"), **planted.LINEAR, max_examples=10, seed=5).to_dict()
        d.pop("seconds")
        return json.dumps(d, sort_keys=True)

    assert run() == run()


def test_user_arrays_are_never_modified() -> None:
    shared = np.arange(6.0).reshape(2, 3)
    keep = shared.copy()

    def make(d: Any, rng: np.random.Generator) -> planted.Linear:
        layer = planted.Linear(2, 3, rng)
        layer.params["W"] = shared
        return layer

    gh.check_layer(make, **planted.LINEAR, dims={"d_in": (2, 2), "d_out": (3, 3)}, redraw_params=False, **FAST)
    assert np.array_equal(shared, keep)


# ----- meta-tests: random compositions of reference layers ----------------------------
def _blocks(d: int, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    return {"linear": lambda: rl.Linear(d, d, rng), "relu": rl.ReLU, "tanh": rl.Tanh, "sigmoid": rl.Sigmoid,
            "leaky": lambda: rl.LeakyReLU(0.1), "layernorm": lambda: rl.LayerNorm(d),
            "softmax": rl.Softmax}


KINDS = ["linear", "relu", "tanh", "sigmoid", "leaky", "layernorm", "softmax"]


class Corrupted:
    """Wraps a layer and scales its dx: one wrong backward somewhere in the chain."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner, self.factor = inner, factor

    @property
    def params(self) -> Any:
        return self.inner.params

    @property
    def grads(self) -> Any:
        return self.inner.grads

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.inner.forward(x)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.factor * self.inner.backward(dout)


def _network(kinds: list[str], corrupt: int | None, factor: float) -> Callable[[Any, np.random.Generator], Any]:
    def make(d: Any, rng: np.random.Generator) -> rl.Sequential:
        blocks = _blocks(d["d"], rng)
        layers = [blocks[k]() for k in kinds]
        if corrupt is not None:
            layers[corrupt] = Corrupted(layers[corrupt], factor)
        return rl.Sequential(layers)

    return make


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.nested_given])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_random_compositions_of_reference_layers_pass(kinds: list[str], seed: int) -> None:
    report = gh.check_layer(_network(kinds, None, 1.0), "n d", output="n d", dims={"d": (3, 5)}, bias=(),
                            max_examples=8, seed=seed, checks=("grad-input", "grad-params", "backward-linearity"))
    assert report.passed, str(report)


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.nested_given])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), data=st.data())
def test_the_same_compositions_with_one_corrupted_gradient_fail(kinds: list[str], data: st.DataObject) -> None:
    corrupt = data.draw(st.integers(0, len(kinds) - 1))
    factor = data.draw(st.sampled_from([-1.0, 0.5, 1.5]))
    report = gh.check_layer(_network(kinds, corrupt, factor), "n d", output="n d", dims={"d": (3, 5)}, bias=(),
                            max_examples=8, seed=0, checks=("grad-input",))
    assert "grad-input" in report.failed_checks(), str(report)


def test_layernorm_on_a_constant_row_in_float32_is_not_a_false_alarm() -> None:
    # seed 2538 in special mode draws x = [[2.94, 2.94, 2.94]]: x - mean is exactly 0 in float64,
    # and in float32 the rounding residue, amplified by 1/sqrt(eps), is all of dgamma (~1e-4)
    example = {"dims": {"n": 1, "d": 3}, "hyper": {"eps": 1e-05}, "seed": 2538, "values": "special"}
    for dtypes in ((np.float32,), (np.float64, np.float32)):
        report = gh.check_layer(rl.LayerNorm, checks=("grad-params",), dtypes=dtypes, example=example)
        assert report.passed, report
