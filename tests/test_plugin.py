"""The pytest plugin, run as a user runs it (through pytester): items, outcomes, messages, summary,
options, JUnit properties, xdist."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from gradharness.checks import CHECK_ORDER
from gradharness.cli import table_row
from tests.user_layers import LAYERS as USER_LAYERS

pytest_plugins = ["pytester"]

LAYERS = USER_LAYERS + '''

@gradharness.layer(input="n d_in", output="n d_out")
class Crashing(Good):
    def backward(self, dout):
        raise RuntimeError("boom")
'''

TESTS = '''
import gradharness
from mylayers import FirstSampleBias, Good

test_good = gradharness.pytest_checks(Good)
test_buggy = gradharness.pytest_checks(FirstSampleBias)
'''

FAST = ("-p", "no:cacheprovider", "--gradharness-max-examples", "8", "--gradharness-seed", "1")
ALL_BUT_ELEMENTWISE = [c for c in CHECK_ORDER if c != "elementwise"]
ROW_GOOD = r"Good +(\.  ){10}-  (\.  ){6}- +passed \(\d+ examples, \d+f/\d+b, [\d.]+s\)"
ROW_BUGGY = (r"FirstSampleBias +\.  \.  \.  \.  \.  \.  F  F  F  \.  -  \.  \.  \.  \.  \.  \.  - +"
             r"FAILED \(\d+ examples, \d+f/\d+b, [\d.]+s\)")


def row(name: str, cells: dict[str, str]) -> str:
    """The regex of a summary-table row: these cells, the others blank (not selected)."""
    return re.escape(table_row(name, cells, "")) + r"(passed|FAILED) \(\d+ examples, \d+f/\d+b, [\d.]+s\)$"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(mylayers=LAYERS, test_layers=TESTS)
    pytester.syspathinsert()
    return pytester


def test_one_item_per_check_with_readable_ids(project: pytest.Pytester) -> None:
    result = project.runpytest("--collect-only", "-q", *FAST)
    ids = [ln for ln in result.outlines if ln.startswith("test_layers.py::")]
    assert ids == ([f"test_layers.py::test_good[{c}]" for c in CHECK_ORDER]
                   + [f"test_layers.py::test_buggy[{c}]" for c in CHECK_ORDER])


def test_outcomes_messages_and_summary(project: pytest.Pytester) -> None:
    result = project.runpytest(*FAST, "-rfs")
    result.assert_outcomes(passed=29, failed=3, skipped=4)
    result.stdout.re_match_lines([
        r"_+ test_buggy\[grad-params\] _+",
        re.escape("[grad-params] FirstSampleBias, array 'b' (float64): grads['b'] does not match the numerical "
                  "derivative"),
        r"  Mismatched elements: 4 / 4 \(100%\)",
        re.escape("  Reproduce: gradharness.check_layer(mylayers.FirstSampleBias, checks=('grad-params',), "
                  "dtypes=('float64',), example={'dims': {'n': 2, 'd_in': 3, 'd_out': 4}, 'hyper': {}, 'seed': 2, "
                  "'values': 'uniform'})"),
        r"_+ test_buggy\[bias\] _+",
        re.escape("[bias] FirstSampleBias, array 'b' (float64): grads['b'] of the batch is not the sum over its "
                  "sub-batches: the bias gradient is not summed over the batch axis"),
        r"_+ test_buggy\[param-grad-additivity\] _+",
        r"=+ gradharness =+",
        r"checks: 1=protocol  2=forward-shape  3=backward-shape .*  17=determinism",
        r"layer +1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18  result",
        ROW_GOOD,
        ROW_BUGGY,
        re.escape(". passed  F failed  - not applicable  s skipped  E error  x xfailed  X xpassed  (blank) not selected"),
        r"2 layers: 1 passed, 1 failed; \d+ forward and \d+ backward calls",
        r"=+ short test summary info =+",
        r"FAILED test_layers.py::test_buggy\[grad-params\] - .*",
        r"SKIPPED \[1\] test_layers.py:4: not applicable: elementwise does not apply to this layer's declaration",
        r"SKIPPED \[1\] test_layers.py:5: not applicable: elementwise does not apply to this layer's declaration",
    ])
    # the layered message only: no traceback through the harness
    text = result.stdout.str()
    for internal in ("Traceback", "_core.py", "plugin.py", "checks.py", "CheckFailed", "def runtest"):
        assert internal not in text
    assert "gradharness: seed 1" in text  # the header


def test_several_layers_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS, test_layers='''
import gradharness
import mylayers

test_layers = gradharness.pytest_checks(mylayers.Good, "mylayers:FirstSampleBias", max_examples=5)
''')
    pytester.syspathinsert()
    result = pytester.runpytest(*FAST, "-v", "-k", "grad-params")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([re.escape("test_layers.py::test_layers[Good-grad-params] PASSED"),
                                  re.escape("test_layers.py::test_layers[FirstSampleBias-grad-params] FAILED")])


def test_k_selects_checks_and_runs_only_those(project: pytest.Pytester) -> None:
    result = project.runpytest(*FAST, "-k", "bias", "--gradharness-json", "r.json")
    result.assert_outcomes(passed=1, failed=1, deselected=34)
    result.stdout.re_match_lines([row("Good", {"bias": "."}), row("FirstSampleBias", {"bias": "F"})])
    doc = json.loads((project.path / "r.json").read_text())
    good = doc["layers"][0]
    assert good["selected"] == ["bias"] and list(good["tests"]) == ["bias"]
    assert good["checks"]["bias"]["status"] == "passed" and good["checks"]["grad-input"]["status"] == "skipped"


def test_json_report(project: pytest.Pytester) -> None:
    result = project.runpytest(*FAST, "--gradharness-json", "out/report.json")
    result.assert_outcomes(passed=29, failed=3, skipped=4)
    doc = json.loads((project.path / "out" / "report.json").read_text())
    assert doc["schema_version"] == 1 and doc["front_end"] == "pytest" and doc["passed"] is False
    assert doc["seed"] == 1 and doc["settings"] == {"max_examples": 8, "seed": 1}
    assert doc["summary"]["layers"] == 2 and doc["summary"]["failed"] == 1
    good, bad = doc["layers"]
    assert (good["layer"], good["target"], good["test"]) == ("Good", "mylayers:Good", "test_layers.py::test_good")
    assert good["passed"] is True and good["tests"]["elementwise"]["outcome"] == "not-applicable"
    assert bad["tests"]["bias"] == {"nodeid": "test_layers.py::test_buggy[bias]", "outcome": "failed"}
    assert [f["check"] for f in bad["failures"]] == ["grad-params", "bias", "param-grad-additivity"]
    assert bad["failures"][0]["example"] == {"dims": {"n": 2, "d_in": 3, "d_out": 4}, "hyper": {}, "seed": 2,
                                             "values": "uniform", "dtype": "float64"}
    assert not list((project.path / "out").glob(".gradharness-*"))


def test_junit_properties(project: pytest.Pytester) -> None:
    project.runpytest(*FAST, "--junitxml", "junit.xml")
    root = ET.parse(project.path / "junit.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert len(cases) == 36

    def props(name: str) -> dict[str, str]:
        return {p.get("name"): p.get("value") for p in cases[name].iter("property")}

    p = props("test_buggy[grad-params]")
    assert (p["check"], p["layer"], p["status"], p["tensor"]) == ("grad-params", "FirstSampleBias", "failed", "b")
    assert float(p["max_rel_error"]) > 0.1
    assert json.loads(p["example"]) == {"dims": {"n": 2, "d_in": 3, "d_out": 4}, "hyper": {}, "seed": 2,
                                        "values": "uniform", "dtype": "float64"}
    assert p["reproduce"].startswith("gradharness.check_layer(mylayers.FirstSampleBias, checks=('grad-params',)")
    failure = cases["test_buggy[grad-params]"].find("failure")
    assert failure is not None and failure.text.startswith("[grad-params] FirstSampleBias, array 'b'")
    good = props("test_good[grad-input]")
    assert good["status"] == "passed" and re.match(r"float64: x \S+; float32: x \S+$", good["sensitivity"])
    assert props("test_good[elementwise]")["status"] == "not-applicable"


def test_xdist_same_outcomes_and_one_aggregated_json(project: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    # no seed given: the controller draws one and every worker uses it
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--gradharness-max-examples", "8", "-n", "2",
                                          "--gradharness-json", "dist.json")
    result.assert_outcomes(passed=29, failed=3, skipped=4)
    result.stdout.re_match_lines([r"gradharness: seed \d+ \(random; --gradharness-seed \d+ repeats this run\)",
                                  r"=+ gradharness =+", ROW_GOOD, ROW_BUGGY,
                                  r"2 layers: 1 passed, 1 failed; \d+ forward and \d+ backward calls"])
    dist = json.loads((project.path / "dist.json").read_text())
    seed = dist["seed"]
    assert isinstance(seed, int) and f"gradharness: seed {seed} " in result.stdout.str()
    assert [e["seed"] for e in dist["layers"]] == [seed, seed]
    # one process, the same seed: the same outcomes, checks and failures
    single = project.runpytest("-p", "no:cacheprovider", "--gradharness-max-examples", "8", "--gradharness-seed",
                               str(seed), "--gradharness-json", "single.json")
    single.assert_outcomes(passed=29, failed=3, skipped=4)
    one = json.loads((project.path / "single.json").read_text())
    assert len(dist["layers"]) == 2
    for x, y in zip(one["layers"], dist["layers"]):
        assert (x["layer"], x["tests"], x["checks"], x["failures"]) == (y["layer"], y["tests"], y["checks"],
                                                                        y["failures"])


def test_project_settings_ini_and_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS, test_layers=TESTS)
    pytester.syspathinsert()
    pytester.makepyprojecttoml('''
[tool.gradharness]
max_examples = 3
seed = 7
skip = ["no-aliasing"]

[tool.pytest.ini_options]
gradharness_seed = "11"
gradharness_skip = "determinism"
gradharness_json = "from-ini.json"
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    ids = [ln for ln in result.outlines if ln.startswith("test_layers.py::test_good")]
    assert ids == [f"test_layers.py::test_good[{c}]" for c in CHECK_ORDER if c not in ("no-aliasing", "determinism")]
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradharness-skip", "params-live")
    result.assert_outcomes(passed=23, failed=3, skipped=4)
    doc = json.loads((pytester.path / "from-ini.json").read_text())
    assert doc["seed"] == 11  # the ini key wins over [tool.gradharness]
    assert doc["settings"] == {"max_examples": 3, "seed": 11, "skip": ["no-aliasing", "determinism", "params-live"]}
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradharness-seed", "5", "--gradharness-json", "cli.json",
                                "-k", "grad-input")
    assert json.loads((pytester.path / "cli.json").read_text())["seed"] == 5  # the command line wins


def test_bad_settings_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.gradharness]\nmax_exampels = 3\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: gradharness: pyproject.toml [tool.gradharness]: unknown setting 'max_exampels'. Did you mean " \
           "'max_examples'?" in result.stderr.lines
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\ngradharness_max_examples = \"0\"\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([("ERROR: gradharness: pyproject.toml (pytest ini): gradharness_max_examples = '0': "
                                 "expected an int >= 1, got 0")])
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradharness-checks", "grad-parms")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([("*argument --gradharness-checks: ('grad-parms',): expected names of checks. "
                                 "'grad-parms' is not a check. Did you mean 'grad-params'?")])


def test_strict_markers_and_marker_selection(project: pytest.Pytester) -> None:
    # -W error is for this plugin's warnings; pytest-benchmark warns whenever the outer run is
    # under xdist (python -m pytest -n 2), so it stays out of this inner run
    result = project.runpytest(*FAST, "--strict-markers", "-W", "error", "-p", "no:benchmark", "-m", "gradharness",
                               "--gradharness-checks", "bias,grad-input")
    result.assert_outcomes(passed=3, failed=1)
    result = project.runpytest(*FAST, "--strict-markers", "-m", "not gradharness")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.gradharness(layer, check): a check of a declared layer*"])


def test_options_group_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "gradharness: property-based gradient checks of declared layers:",
        "  --gradharness-max-examples=N",
        "*--gradharness-json=PATH*",
    ])
    result.stdout.fnmatch_lines(["*gradharness_max_examples (string):*"])


def test_crashing_layer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS, test_layers='''
import gradharness
from mylayers import Crashing

test_crash = gradharness.pytest_checks(Crashing)
''')
    pytester.syspathinsert()
    result = pytester.runpytest(*FAST, "-rs")
    result.assert_outcomes(failed=1, passed=2, skipped=15)  # protocol and forward-shape held
    result.stdout.re_match_lines([
        r"_+ test_crash\[backward-shape\] _+",
        r"\[backward-shape\] Crashing \(float64\): backward raised RuntimeError: boom",
        r"SKIPPED \[\d+\] test_layers.py:4: not run: the layer failed backward-shape",
    ])
    # a crash is reported whatever -k selects: on the first selected item
    result = pytester.runpytest(*FAST, "-k", "grad-input")
    result.assert_outcomes(failed=1, deselected=17)
    result.stdout.re_match_lines([
        re.escape("[grad-input] Crashing: not run, but the layer failed checks not selected in this run "
                  "(backward-shape):"),
        r"\[backward-shape\] Crashing \(float64\): backward raised RuntimeError: boom",
    ])


def test_invalid_declaration_fails_each_item_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS, test_layers='''
import gradharness
from mylayers import Good

test_good = gradharness.pytest_checks(Good, bias=("beta",))
''')
    pytester.syspathinsert()
    result = pytester.runpytest(*FAST, "-k", "protocol or bias")
    result.assert_outcomes(failed=2)
    result.stdout.re_match_lines([re.escape("[bias] Good: cannot check this layer: bias=('beta',): expected names "
                                            "of params; 'beta' is not one (params: ['W', 'b'])")])
    assert "Traceback" not in result.stdout.str()


def test_undeclared_layer_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_layers='''
import gradharness

class Plain:
    pass

test_plain = gradharness.pytest_checks(Plain)
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([("*layers='Plain': expected declared layers. Plain is not declared: decorate it "
                                 "with @gradharness.layer(...)")])
    pytester.makepyfile(test_layers='import gradharness\ntest_x = gradharness.pytest_checks(object, max_exampels=3)\n')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([("*max_exampels=3: expected a keyword option of pytest_checks. "
                                 "Did you mean 'max_examples'?")])


def test_plays_well_with_hypothesis(project: pytest.Pytester) -> None:
    project.makepyfile(test_more='''
from hypothesis import given, strategies as st
import gradharness
from mylayers import Good

test_good = gradharness.pytest_checks(Good, checks=("grad-input", "bias"))


@given(st.integers())
def test_own_property(n):
    assert n == n
''')
    result = project.runpytest("test_more.py", *FAST, "--hypothesis-show-statistics", "--hypothesis-seed", "0",
                               "--hypothesis-verbosity", "quiet")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_more.py::test_own_property:*", "*- during generate phase*"])
    result.stdout.fnmatch_lines(["gradharness: seed 1"])


RARE = '''
import gradharness
from mylayers import Good


@gradharness.layer(input="n d_in", output="n d_out", bias=("b",))
class RareBug(Good):
    def backward(self, dout):
        dx = super().backward(dout)
        if self.x.shape[0] >= 5 and self.x.shape[1] >= 5:  # wrong only for big batches of wide inputs
            self.grads["W"] = 2 * self.grads["W"]
        return dx
'''


def test_a_failure_found_once_is_replayed_first(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS, rare=RARE, test_rare='''
import gradharness
from rare import RareBug

test_rare = gradharness.pytest_checks(RareBug, checks=("grad-params",))
''')
    pytester.syspathinsert()
    example = "  Example: dims={'n': 5, 'd_in': 5, 'd_out': 1}, hyper={}, seed=0, values='uniform', dtype='float64'"
    found = pytester.runpytest("--gradharness-max-examples", "40", "--gradharness-seed", "0")
    found.assert_outcomes(failed=1)
    assert example in found.stdout.lines
    # two examples and another seed would miss it; the example stored in pytest's cache is replayed first
    again = pytester.runpytest("--gradharness-max-examples", "2", "--gradharness-seed", "1")
    again.assert_outcomes(failed=1)
    assert example in again.stdout.lines
    forgotten = pytester.runpytest("--gradharness-max-examples", "2", "--gradharness-seed", "1", "--cache-clear")
    forgotten.assert_outcomes(passed=1)
