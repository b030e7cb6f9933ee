"""Each check fails on the bug it is named for (planted) and passes the correct layer."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradharness as gh
from gradharness.checks import CHECK_ORDER, REGISTRY
from tests import planted

FAST = {"max_examples": 15, "seed": 3}


def _linear(bug: str | None, **extra: Any) -> gh.Report:
    return gh.check_layer(planted.linear(bug), **planted.LINEAR, **FAST, **extra)


# (check that must fail, bug planted in planted.Linear)
LINEAR_BUGS = [
    ("forward-shape", "forward-transposed"),
    ("forward-shape", "forward-list"),
    ("forward-shape", "forward-raises"),
    ("backward-shape", "db-keepdims"),
    ("backward-shape", "missing-grad"),
    ("backward-shape", "extra-grad"),
    ("backward-shape", "backward-none"),
    ("backward-shape", "backward-raises"),
    ("dtype", "forward-float64"),
    ("dtype", "backward-float64"),
    ("finite", "forward-nan"),
    ("grad-input", "dx-no-transpose"),
    ("grad-params", "dW-1e-6"),
    ("grad-params", "dW-sign"),
    ("grad-params", "db-zero"),
    ("bias", "db-first"),
    ("bias", "db-mean"),
    ("bias", "db-zero"),
    ("bias", "bias-unused"),
    ("param-grad-additivity", "dW-mean"),
    ("param-grad-additivity", "db-first"),
    ("batch-independence", "batch-centered"),
    ("backward-linearity", "dout-sign"),
    ("backward-repeatable", "accumulate"),
    ("no-mutation", "mutates-dout"),
    ("no-mutation", "mutates-x"),
    ("no-aliasing", "aliased"),
    ("params-live", "stale-copy"),
    ("params-live", "stale-inplace"),
    ("determinism", "random"),
]


@pytest.mark.parametrize(("check", "bug"), LINEAR_BUGS, ids=[f"{c}-{b}" for c, b in LINEAR_BUGS])
def test_check_catches_planted_bug(check: str, bug: str) -> None:
    report = _linear(bug)
    assert not report.passed
    assert check in report.failed_checks(), report


@pytest.mark.parametrize(("check", "bug", "tensor"), [("grad-params", "dW-float32-only", "W"),
                                                    ("grad-input", "dx-float32-only", "x")])
def test_a_float32_only_gradient_bug_is_caught_in_float32(check: str, bug: str, tensor: str) -> None:
    # the float32 run compares with the float64 gradient the float64 run verified; a gap falls
    # back to the probes, which name the tensor and the dtype
    report = _linear(bug, checks=("grad-input", "grad-params"), dtypes=(np.float64, np.float32))
    assert report.failed_checks() == [check]
    failure = report.failures[0]
    assert failure.example["dtype"] == "float32" and failure.tensor == tensor


def test_float32_gradients_of_verified_tensors_cost_no_probes() -> None:
    opts = dict(checks=("grad-input", "grad-params"), max_examples=10, seed=0)
    f64 = gh.check_layer(planted.linear(None), **planted.LINEAR, **opts, dtypes=(np.float64,))
    both = gh.check_layer(planted.linear(None), **planted.LINEAR, **opts, dtypes=(np.float64, np.float32))
    assert f64.passed and both.passed and both.examples == f64.examples
    # per example the float32 run adds its base forward and the float64 reference trace (and,
    # now and then, a jittered re-run measuring round-off), not two forwards per probe
    extra = (both.calls["forward"] - f64.calls["forward"]) / both.examples
    assert extra <= 3, (both.calls, f64.calls)
    assert set(both.sensitivity["float32"]) == {"x", "W", "b"}


def test_correct_linear_passes_every_check() -> None:
    report = _linear(None)
    assert report.passed, report
    ran = {n for n, s in report.checks.items() if s.status == "passed"}
    assert ran >= set(CHECK_ORDER) - {"elementwise", "forward-reference"}


def test_batch_centered_layer_passes_gradient_checks() -> None:
    # the gradients are right; only batch-independence can see that rows influence each other
    report = _linear("batch-centered")
    failed = report.failed_checks()
    assert "batch-independence" in failed
    assert "grad-input" not in failed and "grad-params" not in failed
    # centering removes the bias from out and its gradient alike: consistent, so not a bias failure
    assert "bias" not in failed


def test_protocol_missing_backward() -> None:
    class NoBackward:
        params: dict[str, np.ndarray] = {}

        def forward(self, x: np.ndarray) -> np.ndarray:
            return x

    report = gh.check_layer(lambda d, rng: NoBackward(), "n d", **FAST)
    assert report.failed_checks() == ["protocol"]
    assert "no method 'backward'" in report.failures[0].message


def test_protocol_factory_raises_reports_dims() -> None:
    def make(dims: Any, rng: np.random.Generator) -> Any:
        if dims["d"] > 2:
            raise RuntimeError("unsupported width")
        return planted.ReLU()

    report = gh.check_layer(make, "n d", **FAST)
    assert report.failed_checks() == ["protocol"]
    assert "unsupported width" in report.failures[0].message
    assert "dims={" in report.failures[0].message


def test_elementwise_catches_softmax_declared_elementwise() -> None:
    report = gh.check_layer(lambda d, rng: planted.Softmax(), "n d", output="n d", elementwise=True, **FAST)
    assert "elementwise" in report.failed_checks()


def test_elementwise_catches_non_diagonal_backward() -> None:
    report = gh.check_layer(lambda d, rng: planted.ReLU("not-elementwise"), "n d", elementwise=True, **FAST)
    assert "elementwise" in report.failed_checks()


def test_elementwise_passes_relu() -> None:
    report = gh.check_layer(lambda d, rng: planted.ReLU(), "n d", elementwise=True, **FAST)
    assert report.passed, report
    assert report.checks["elementwise"].status == "passed"


def test_grad_input_catches_diagonal_softmax_backward() -> None:
    report = gh.check_layer(lambda d, rng: planted.Softmax("diagonal"), "n d", output="n d", **FAST)
    assert "grad-input" in report.failed_checks()


def test_no_mutation_catches_relu_writing_into_dout() -> None:
    report = gh.check_layer(lambda d, rng: planted.ReLU("inplace"), "n d", elementwise=True, **FAST)
    assert "no-mutation" in report.failed_checks()
    assert "backward wrote into dout in place" in report.failures[0].message or any(
        "dout" in f.message for f in report.failures)


def test_determinism_catches_global_rng_dropout() -> None:
    report = gh.check_layer(lambda d, rng: planted.Dropout(rng, "global-rng"), "n d", batch_independent=False, **FAST)
    assert "determinism" in report.failed_checks()
    good = gh.check_layer(lambda d, rng: planted.Dropout(rng), "n d", batch_independent=False, **FAST)
    assert good.passed, good


def test_backward_linearity_catches_loss_ignoring_dout() -> None:
    def make(d: Any, rng: np.random.Generator) -> planted.Loss:
        return planted.Loss(d["n"], d["d"], rng, "ignores-dout")

    report = gh.check_layer(make, "n d", output="", batch_independent=False, **FAST)
    assert "backward-linearity" in report.failed_checks()
    assert "grad-input" in report.failed_checks()


def test_every_check_has_a_one_line_doc_and_kebab_name() -> None:
    assert set(CHECK_ORDER) == set(REGISTRY)
    for name, chk in REGISTRY.items():
        assert name == name.lower() and " " not in name and "_" not in name
        assert chk.doc and "\n" not in chk.doc


def test_list_checks_matches_registry() -> None:
    assert list(gh.list_checks()) == list(CHECK_ORDER)


def test_forward_reference_catches_a_forward_only_bug() -> None:
    # the mutant's backward is the exact derivative of its own (wrong) forward: only an oracle sees it
    import reference_layers as rl
    from reference_layers.losses import mse_reference

    class MSEWithoutTarget(rl.MSELoss):
        def forward(self, x: np.ndarray) -> np.ndarray:
            self.diff = x
            return np.asarray(np.mean(self.diff**2))

    decl = gh.declaration_of(rl.MSELoss)
    assert decl is not None and decl.options["reference"] is mse_reference
    report = gh.check_layer(gh.layer(**decl.options)(MSEWithoutTarget), **FAST)
    assert report.failed_checks() == ["forward-reference"]
    assert "out differs from the reference implementation" in report.failures[0].message
    assert gh.check_layer(rl.MSELoss, **FAST).checks["forward-reference"].status == "passed"


def test_forward_reference_not_applicable_without_one() -> None:
    assert _linear(None).checks["forward-reference"].status == "not-applicable"
