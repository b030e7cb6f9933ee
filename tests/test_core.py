"""check_layer's public contract: arguments, Report fields, messages, reproducibility."""
from __future__ import annotations

import re

import numpy as np
import pytest

import gradharness as gh
import reference_layers
from tests import planted

OPTS = dict(planted.LINEAR, max_examples=15, seed=7)


def test_report_contract_fields() -> None:
    report = gh.check_layer(planted.linear("db-first"), **OPTS)
    assert isinstance(report, gh.Report)
    assert report.passed is False
    assert report.failures and all(isinstance(f, gh.Failure) for f in report.failures)
    f = report.failures[0]
    assert isinstance(f.check, str) and isinstance(f.message, str)
    assert set(f.example) >= {"dims", "seed"}
    assert report.calls["forward"] > 0 and report.calls["backward"] > 0


def test_positional_input_and_design_signature() -> None:
    report = gh.check_layer(planted.linear(None), "n d_in", dims={"d_in": (1, 8), "d_out": (1, 8)}, bias=("b",),
                            elementwise=False, batch_independent=True, domain=(-3.0, 3.0),
                            dtypes=(np.float64, np.float32), max_examples=10, seed=1, checks=None)
    assert report.passed, report


def test_assert_layer_raises_assertion_error_with_report() -> None:
    with pytest.raises(AssertionError) as info:
        gh.assert_layer(planted.linear("dW-sign"), **OPTS)
    assert isinstance(info.value, gh.GradientCheckError)
    assert info.value.report.failed_checks() == ["grad-params"]
    assert "[grad-params]" in str(info.value)
    assert gh.assert_layer(planted.linear(None), **OPTS).passed


def test_failure_message_is_layered() -> None:
    report = gh.check_layer(planted.linear("dW-sign"), **OPTS)
    msg = report.failures[0].message
    lines = msg.splitlines()
    assert lines[0] == "[grad-params] linear[dW-sign], array 'W' (float64): grads['W'] does not match the numerical derivative"
    assert lines[1].startswith("  Diagnosis: sign flip: grads['W'] = -numeric everywhere")
    assert re.match(r"  shape \(\d+, \d+\), dtype float64; L = sum\(out \* dout\)", lines[2])
    assert re.match(r"  Mismatched elements: \d+ / \d+ \(", lines[3])
    assert "ANALYTIC" in lines[4] and "NUMERIC" in lines[4]
    assert any(ln.startswith("  Max absolute difference: ") for ln in lines)
    assert any(ln.startswith("  Max relative difference: 2") for ln in lines)  # a sign flip: rel error 2
    assert lines[-2].startswith("  Example: dims={")
    assert lines[-1].startswith("  Reproduce: gradharness.check_layer(")


def test_same_seed_same_report() -> None:
    a = gh.check_layer(planted.linear("db-mean"), **OPTS)
    b = gh.check_layer(planted.linear("db-mean"), **OPTS)
    assert [f.message for f in a.failures] == [f.message for f in b.failures]
    assert a.calls == b.calls


def test_example_replays_the_failure_with_the_same_numbers() -> None:
    report = gh.check_layer(planted.linear("dW-sign"), **OPTS)
    f = report.failures[0]
    again = gh.check_layer(planted.linear("dW-sign"), **planted.LINEAR, checks=(f.check,), dtypes=(f.example["dtype"],),
                           example=f.example)
    assert again.failures[0].message == f.message


def test_reproduce_line_of_a_declared_layer_runs() -> None:
    import tests

    report = gh.check_layer(planted.declared_db_zero, max_examples=10, seed=0)
    f = report.failures[0]
    assert f.reproduce.startswith("gradharness.check_layer(tests.planted.declared_db_zero, checks=(")
    replay = eval(f.reproduce, {"gradharness": gh, "tests": tests})  # noqa: S307
    assert replay.failures[0].message == f.message


def test_declaration_supplies_options() -> None:
    report = gh.check_layer(reference_layers.Linear, max_examples=5, seed=0)
    assert report.passed and report.layer == "Linear"
    assert report.checks["bias"].status == "passed"


def test_checks_and_skip_select() -> None:
    report = gh.check_layer(planted.linear("db-first"), **OPTS | {"checks": ("grad-input", "bias")})
    assert report.failed_checks() == ["bias"]
    assert report.checks["grad-params"].status == "skipped"
    report = gh.check_layer(planted.linear("db-first"), **OPTS | {"skip": ("grad-params", "bias", "param-grad-additivity")})
    assert report.passed


def test_sensitivity_is_reported_per_dtype_and_tensor() -> None:
    report = gh.check_layer(planted.linear(None), **OPTS)
    assert set(report.sensitivity) == {"float64", "float32"}
    assert set(report.sensitivity["float64"]) == {"x", "W", "b"}
    assert report.sensitivity["float64"]["W"] < 1e-7 < report.sensitivity["float32"]["W"] < 1e-2
    assert "gradient sensitivity" in report.summary()


def test_every_failing_check_gets_its_own_shrunk_example() -> None:
    report = gh.check_layer(planted.linear("db-first"), **OPTS)
    assert {"grad-params", "bias", "param-grad-additivity"} <= set(report.failed_checks())
    for f in report.failures:
        assert f.example["dims"]["n"] == 2  # the smallest batch that shows the bug


def test_missing_transpose_cannot_hide_behind_square_shapes() -> None:
    report = gh.check_layer(planted.linear("dx-no-transpose"), **OPTS)
    f = report.failures[0]
    assert f.check == "backward-shape"
    dims = f.example["dims"]
    assert dims["d_in"] != dims["d_out"]
    # and when the shapes do line up (square W) the values are still caught
    square = gh.check_layer(planted.linear("dx-no-transpose"), **planted.LINEAR, dims={"d_in": (3, 3), "d_out": (3, 3)},
                            max_examples=10, seed=0)
    assert square.failed_checks() == ["grad-input"]


def test_transposed_param_gradient_gets_a_hint() -> None:
    report = gh.check_layer(planted.linear("dW-transposed"), **OPTS)
    f = report.failures[0]
    assert f.check == "backward-shape" and "missing or extra transpose" in f.message


def test_layer_printing_is_silenced(capsys: pytest.CaptureFixture[str]) -> None:
    class Chatty(planted.ReLU):
        def forward(self, x: np.ndarray) -> np.ndarray:
            print("forward called!")
            return super().forward(x)

    gh.check_layer(lambda d, rng: Chatty(), "n d", max_examples=3, seed=0)
    assert "forward called" not in capsys.readouterr().out


def test_numpy_error_state_is_restored() -> None:
    class Sets(planted.ReLU):
        def forward(self, x: np.ndarray) -> np.ndarray:
            np.seterr(all="raise")
            return super().forward(x)

    before = np.geterr()
    gh.check_layer(lambda d, rng: Sets(), "n d", max_examples=3, seed=0)
    assert np.geterr() == before


def test_float32_only_layer() -> None:
    report = gh.check_layer(planted.linear(None), **planted.LINEAR, dtypes=(np.float32,), max_examples=10, seed=0)
    assert report.passed, report


def test_budget_ends_the_search_after_the_edge_cases() -> None:
    import time

    started = time.perf_counter()
    report = gh.check_layer(planted.linear(None), **planted.LINEAR, max_examples=100_000, budget=0.5, seed=0)
    assert time.perf_counter() - started < 5
    assert report.passed and report.budget_exhausted
    assert "the time budget ran out first" in report.summary()
    # the edge cases run first: the smallest, the pairwise-distinct and the largest sizes
    assert report.examples >= 3


def test_budget_still_finds_and_shrinks_a_bug() -> None:
    report = gh.check_layer(planted.linear("db-first"), **planted.LINEAR, max_examples=100_000, budget=0.5, seed=0)
    assert "bias" in report.failed_checks()
    assert report.failures[0].example["dims"]["n"] == 2


def test_budget_is_validated() -> None:
    with pytest.raises(gh.InvalidArgument, match=r"budget=-1: expected seconds > 0"):
        gh.check_layer(planted.linear(None), **planted.LINEAR, budget=-1)


def test_an_undeclared_class_is_built_from_the_dims_its_constructor_names() -> None:
    # Linear(d_in, d_out, rng): passing the class itself works as a declaration's default factory does
    report = gh.check_layer(planted.Linear, **planted.LINEAR, max_examples=5, seed=0)
    assert report.passed, str(report)
    assert report.layer == "Linear"


def test_a_class_taking_dims_is_called_as_make_dims_rng() -> None:
    class ByDims(planted.Linear):
        def __init__(self, dims: dict, rng: np.random.Generator) -> None:
            super().__init__(dims["d_in"], dims["d_out"], rng)

    assert gh.check_layer(ByDims, **planted.LINEAR, max_examples=5, seed=0).passed
