"""The `gradharness` command, run as a user runs it: exit codes, output, the JSON report."""
from __future__ import annotations

import json
import re
import sys

import pytest

LAYERS = '''
import numpy as np
import gradharness


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class Good:
    def __init__(self, d_in, d_out, rng):
        self.params = {"W": rng.standard_normal((d_in, d_out)), "b": np.zeros(d_out)}
        self.grads = {}

    def forward(self, x):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, dout):
        self.grads = {"W": self.x.T @ dout, "b": dout.sum(axis=0)}
        return dout @ self.params["W"].T


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class FirstSampleBias(Good):
    def backward(self, dout):
        dx = super().backward(dout)
        self.grads["b"] = dout[0]
        return dx
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.run(sys.executable, "-m", "gradharness", *args)


def test_list_prints_every_check(pytester: pytest.Pytester) -> None:
    result = run(pytester, "list")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "protocol               the factory builds a layer with forward, backward and a params dict",
        "grad-params            every param's gradient matches its numerical derivative (each tensor probed separately)",
        "determinism            forward on the same x and params twice gives the same output",
    ])


def test_check_passing_layer_exit_0(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = run(pytester, "check", "mylayers:Good", "--max-examples", "5", "--seed", "1")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "checks: 1=protocol  2=forward-shape  3=backward-shape  4=dtype  5=finite  6=grad-input  7=grad-params  "
        "8=bias  9=param-grad-additivity  10=batch-independence  11=elementwise  12=backward-linearity  "
        "13=backward-repeatable  14=no-mutation  15=no-aliasing  16=params-live  17=determinism",
        "layer                     1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17  result",
        "Good                      .  .  .  .  .  .  .  .  .  .  -  .  .  .  .  .  .  passed (* examples, *f/*b, *s)",
        "",
        "1 layers: 1 passed, 0 failed; * forward and * backward calls in *s",
    ])


def test_check_failing_layer_exit_1_with_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = run(pytester, "check", "mylayers", "--max-examples", "10", "--seed", "1")
    assert result.ret == 1
    result.stdout.re_match_lines([
        r"Good +(\.  ){10}-  (\.  ){5}\. +passed \(",
        r"FirstSampleBias +\.  \.  \.  \.  \.  \.  F  F  F  \.  -  \.  \.  \.  \.  \.  \. +FAILED \(",
        re.escape("[grad-params] FirstSampleBias, array 'b' (float64): grads['b'] does not match the numerical derivative"),
        re.escape("  Reproduce: gradharness.check_layer(mylayers.FirstSampleBias, checks=('grad-params',), "
                  "dtypes=('float64',), example={'dims': {'n': 2, 'd_in': 3, 'd_out': 4}, 'hyper': {}, 'seed': 2, "
                  "'values': 'uniform'})"),
        re.escape("[bias] FirstSampleBias, array 'b' (float64): grads['b'] of the batch is not the sum over its "
                  "sub-batches: the bias gradient is not summed over the batch axis"),
        r"2 layers: 1 passed, 1 failed; \d+ forward and \d+ backward calls in [\d.]+s",
    ])


def test_check_json_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = run(pytester, "check", "mylayers", "--max-examples", "5", "--seed", "1", "--json", "out/report.json")
    assert result.ret == 1
    doc = json.loads((pytester.path / "out" / "report.json").read_text())
    assert doc["schema_version"] == 1 and doc["passed"] is False
    by_name = {r["layer"]: r for r in doc["layers"]}
    assert by_name["Good"]["passed"] is True
    bad = by_name["FirstSampleBias"]
    assert {f["check"] for f in bad["failures"]} >= {"grad-params", "bias"}
    f = bad["failures"][0]
    assert set(f["example"]) == {"dims", "hyper", "seed", "values", "dtype"}
    assert f["reproduce"].startswith("gradharness.check_layer(mylayers.FirstSampleBias")
    assert not list((pytester.path / "out").glob(".gradharness-*"))  # written atomically, no temp left


def test_unknown_target_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, "check", "no_such_module")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["gradharness: error: target 'no_such_module': cannot import module 'no_such_module'*"])


def test_unknown_attribute_and_undeclared_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS + "\nclass Plain:\n    pass\n")
    assert run(pytester, "check", "mylayers:Nope").ret == 4
    result = run(pytester, "check", "mylayers:Plain")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*is not a declared layer: decorate it with @gradharness.layer(...)"])


def test_bad_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, "check", "reference_layers", "--max-examples", "0")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["gradharness: error: argument --max-examples: expected an int >= 1, got 0"])
    result = run(pytester, "check", "reference_layers", "--checks", "grad-parms", "--max-examples", "1")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*checks=('grad-parms',): expected names of checks. 'grad-parms' is not a check. "
                                 "Did you mean 'grad-params'?"])


def test_nothing_to_check_exit_5(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(empty="X = 1\n")
    result = run(pytester, "check", "empty")
    assert result.ret == 5
    result.stdout.fnmatch_lines(["gradharness: no declared layers in empty"])


def test_no_command_prints_help_exit_4(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    assert result.ret == 4
    result.stdout.fnmatch_lines(["usage: gradharness*"])


def test_no_targets_exit_4(pytester: pytest.Pytester) -> None:
    result = run(pytester, "check")
    assert result.ret == 4
