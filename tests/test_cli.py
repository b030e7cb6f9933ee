"""The `gradharness` command, run as a user runs it: exit codes, output, the JSON report."""
from __future__ import annotations

import io
import json
import re
import sys
from typing import Any

import pytest

from tests.user_layers import LAYERS


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The command in a subprocess, exactly as a user runs it."""
    return pytester.run(sys.executable, "-m", "gradharness", *args)


class Result:
    def __init__(self, ret: int, out: str, err: str) -> None:
        self.ret = ret
        self.stdout = pytest.LineMatcher(out.splitlines())
        self.stderr = pytest.LineMatcher(err.splitlines())


@pytest.fixture
def cli(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The command in-process (faster): main(argv) in the pytester directory; modules it imported are
    forgotten afterwards, so the next test's `mylayers` is imported afresh."""
    from gradharness.cli import main

    monkeypatch.chdir(pytester.path)
    monkeypatch.syspath_prepend(str(pytester.path))
    before = set(sys.modules)

    def call(*args: str) -> Result:
        capsys.readouterr()
        try:
            ret = main(list(args))
        finally:
            for name in set(sys.modules) - before:
                if not name.startswith(("gradharness", "reference_layers")):
                    del sys.modules[name]
        out, err = capsys.readouterr()
        return Result(ret, out, err)

    return call


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
        ("checks: 1=protocol  2=forward-shape  3=backward-shape  4=dtype  5=finite  6=grad-input  7=grad-params  "
        "8=bias  9=param-grad-additivity  10=batch-independence  11=elementwise  12=backward-linearity  "
        "13=backward-repeatable  14=no-mutation  15=no-aliasing  16=params-live  17=determinism  18=forward-reference"),
        "layer                     1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 17 18  result",
        "Good                      .  .  .  .  .  .  .  .  .  .  -  .  .  .  .  .  .  -  passed (* examples, *f/*b, *s)",
        "",
        "1 layer: 1 passed, 0 failed; * forward and * backward calls in *s",
    ])


def test_check_failing_layer_exit_1_with_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = run(pytester, "check", "mylayers", "--max-examples", "10", "--seed", "1")
    assert result.ret == 1
    result.stdout.re_match_lines([
        r"Good +(\.  ){10}-  (\.  ){6}- +passed \(",
        r"FirstSampleBias +\.  \.  \.  \.  \.  \.  F  F  F  \.  -  \.  \.  \.  \.  \.  \.  - +FAILED \(",
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
    result.stderr.fnmatch_lines([("gradharness: error: argument --checks: ('grad-parms',): expected names of checks. "
                                 "'grad-parms' is not a check. Did you mean 'grad-params'?")])


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
    result.stderr.fnmatch_lines([("gradharness: error: no targets: name a module, a package or module:Layer (e.g. "
                                 "reference_layers), or list them as targets = [...] under [tool.gradharness] in a "
                                 "pyproject.toml")])


def test_interrupted_exit_2(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS + INTERRUPTING)
    result = cli("check", "mylayers", "--max-examples", "3", "--seed", "1", "--json", "r.json")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["Good *passed (*", "gradharness: interrupted after 2 of 3 layers"])
    result.stderr.fnmatch_lines(["gradharness: interrupted"])
    doc = json.loads((pytester.path / "r.json").read_text())  # what ran is still reported
    assert doc["interrupted"] is True and doc["passed"] is False
    assert [(e["layer"], e["ran"]) for e in doc["layers"]] == [("Good", True), ("FirstSampleBias", True),
                                                                 ("Interrupting", False)]


INTERRUPTING = """

@gradharness.layer(input="n d_in")
def Interrupting(dims, rng):
    raise KeyboardInterrupt
"""


def test_internal_error_exit_3(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(broken=LAYERS + """
from hypothesis import strategies as st


@gradharness.layer(input="n d_in", output="n d_out", dims={"d_in": st.integers(1, 3).map(lambda v: v // 0)})
class BrokenStrategy(Good):
    pass
""")
    result = cli("check", "broken:BrokenStrategy", "--max-examples", "2")
    assert result.ret == 3
    result.stderr.fnmatch_lines(["gradharness: internal error", "Traceback (most recent call last):",
                                 "ZeroDivisionError*"])


def test_json_schema(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = cli("check", "mylayers", "--max-examples", "5", "--seed", "1", "--skip", "determinism",
                 "--json", "r.json")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["JSON report: r.json"])
    doc = json.loads((pytester.path / "r.json").read_text())
    assert set(doc) == {"schema_version", "tool", "version", "front_end", "created", "passed", "interrupted", "seed",
                        "settings", "summary", "layers"}
    assert (doc["schema_version"], doc["tool"], doc["front_end"], doc["seed"]) == (1, "gradharness", "cli", 1)
    assert doc["settings"] == {"max_examples": 5, "seed": 1, "skip": ["determinism"]}
    assert doc["summary"]["layers"] == 2 and doc["summary"]["passed"] == 1 and doc["summary"]["failed"] == 1
    assert doc["summary"]["calls"]["forward"] == sum(e["calls"]["forward"] for e in doc["layers"])
    good, bad = doc["layers"]
    assert {"layer", "target", "ran", "passed", "selected", "checks", "failures", "examples", "calls", "sensitivity",
            "seconds", "seed"} <= set(good)
    assert (good["layer"], good["target"], good["ran"]) == ("Good", "mylayers:Good", True)
    assert "determinism" not in good["selected"] and good["checks"]["determinism"]["status"] == "skipped"
    assert good["checks"]["elementwise"]["status"] == "not-applicable"
    assert set(good["checks"]["bias"]) >= {"status", "ran", "not_applicable", "failed"}
    f = bad["failures"][0]
    assert {"check", "message", "example", "layer", "tensor", "evidence", "reproduce"} <= set(f)
    assert f["example"] == {"dims": {"n": 2, "d_in": 3, "d_out": 4}, "hyper": {}, "seed": 2, "values": "uniform",
                            "dtype": "float64"}
    assert f["message"].splitlines()[-1] == "  Reproduce: " + f["reproduce"]


def test_reproduce_line_reruns_the_example(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    pytester.syspathinsert()
    cli("check", "mylayers:FirstSampleBias", "--max-examples", "5", "--seed", "1", "--json", "r.json")
    f = json.loads((pytester.path / "r.json").read_text())["layers"][0]["failures"][0]
    import mylayers

    import gradharness

    report = eval(f["reproduce"], {"gradharness": gradharness, "mylayers": mylayers})
    assert [g.check for g in report.failures] == [f["check"]]
    assert report.failures[0].example == f["example"]


def test_junitxml(pytester: pytest.Pytester, cli: Any) -> None:
    import xml.etree.ElementTree as ET

    pytester.makepyfile(mylayers=LAYERS)
    result = cli("check", "mylayers", "--max-examples", "5", "--seed", "1", "--junitxml", "out/j.xml")
    assert result.ret == 1
    root = ET.parse(pytester.path / "out" / "j.xml").getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("36", "3", "4", "0")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert len(cases) == 36
    bad = cases[("mylayers.FirstSampleBias", "grad-params")]
    failure = bad.find("failure")
    assert failure is not None
    assert failure.get("message") == ("[grad-params] FirstSampleBias, array 'b' (float64): grads['b'] does not match "
                                      "the numerical derivative")
    assert failure.text.splitlines()[-1].startswith("  Reproduce: gradharness.check_layer(mylayers.FirstSampleBias")
    props = {p.get("name"): p.get("value") for p in bad.iter("property")}
    assert props["check"] == "grad-params" and props["layer"] == "FirstSampleBias" and float(props["max_rel_error"]) > 0
    assert json.loads(props["example"])["dims"] == {"n": 2, "d_in": 3, "d_out": 4}
    assert cases[("mylayers.Good", "elementwise")].find("skipped") is not None
    assert cases[("mylayers.Good", "grad-params")].find("failure") is None


PYPROJECT = """
[project]
name = "mine"

[tool.gradharness]
targets = ["mylayers:Good", "mylayers.py"]
max_examples = 4
seed = 3
skip = ["no-aliasing"]
json = "build/gradharness.json"
"""


def test_pyproject_targets_and_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    pytester.makepyprojecttoml(PYPROJECT)
    sub = pytester.mkdir("sub")
    with pytest.MonkeyPatch.context() as mp:  # from a subdirectory: the pyproject.toml of a parent
        mp.chdir(sub)
        result = run(pytester, "check")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gradharness 0.1.0: 2 layers; seed 3", "Good *", "FirstSampleBias *FAILED*"])
    doc = json.loads((pytester.path / "build" / "gradharness.json").read_text())  # relative to the project root
    assert doc["settings"] == {"max_examples": 4, "seed": 3, "skip": ["no-aliasing"]}
    assert [e["target"] for e in doc["layers"]] == ["mylayers:Good", "mylayers:FirstSampleBias"]
    # the command line wins over the project settings
    result = run(pytester, "check", "mylayers:Good", "--seed", "9", "--json", "cli.json")
    assert result.ret == 0
    assert json.loads((pytester.path / "cli.json").read_text())["seed"] == 9


def test_pyproject_errors_are_usage_errors(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyprojecttoml("[tool.gradharness]\ntargets = \"mylayers\"\n")
    result = cli("check")
    assert result.ret == 4
    assert result.stderr.lines == [("gradharness: error: pyproject.toml [tool.gradharness]: targets = 'mylayers': "
                                   'expected a list of targets, e.g. targets = ["mypkg.layers"]')]
    pytester.makepyprojecttoml("[tool.gradharness]\nmax_exampels = 3\n")
    result = cli("check", "reference_layers")
    assert result.ret == 4
    assert result.stderr.lines == [("gradharness: error: pyproject.toml [tool.gradharness]: unknown setting "
                                   "'max_exampels'. Did you mean 'max_examples'?")]
    pytester.makepyprojecttoml("[tool.gradharness]\nprofile = \"fast\"\n")
    result = cli("check", "reference_layers")
    assert result.ret == 4
    assert result.stderr.lines == [("gradharness: error: pyproject.toml [tool.gradharness]: profile = 'fast': "
                                   "expected one of dev, ci, thorough, got fast")]


def test_usage_errors_are_one_line(cli: Any) -> None:
    result = cli("check", "reference_layers", "--bogus")
    assert result.ret == 4
    assert result.stderr.lines == ["gradharness: error: unrecognized arguments: --bogus"]
    result = cli("check", "reference_layers", "--profile", "fast")
    assert result.ret == 4
    assert result.stderr.lines == ["gradharness: error: argument --profile: expected one of dev, ci, thorough, got fast"]
    result = cli("check", "no_such.py")
    assert result.ret == 4
    assert result.stderr.lines == ["gradharness: error: target 'no_such.py': no such file"]


def test_path_targets(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = cli("check", "mylayers.py:Good", "--max-examples", "3", "--seed", "1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["Good *passed*"])


def test_nothing_selected_exit_5(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = cli("check", "mylayers", "--checks", "bias", "--skip", "bias")
    assert result.ret == 5
    result.stdout.fnmatch_lines(["gradharness: nothing to check: the checks and skip settings leave no check to run"])


def test_checks_option_runs_only_those(pytester: pytest.Pytester, cli: Any) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = cli("check", "mylayers", "--checks", "grad-input,determinism", "--max-examples", "3",
                 "--seed", "1")
    assert result.ret == 0
    result.stdout.re_match_lines([r"Good +s  s  s  s  s  \.  s  s  s  s  s  s  s  s  s  s  \.  s  passed \("])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradharness.cli import main

    pytester.makepyfile(mylayers=LAYERS)
    pytester.syspathinsert()
    monkeypatch.chdir(pytester.path)
    monkeypatch.setenv("TERM", "xterm")
    out = _Tty()
    assert main(["check", "mylayers:Good", "reference_layers:ReLU", "--max-examples", "2", "--seed", "1"], out) == 0
    text = out.getvalue()
    assert "\r\x1b[K[1/2] checking Good ...\r\x1b[KGood " in text
    assert "\r\x1b[K[2/2] checking ReLU ...\r\x1b[KReLU " in text
    plain = io.StringIO()  # not a terminal (CI logs): no control characters, one line per layer
    assert main(["check", "mylayers:Good", "--max-examples", "2", "--seed", "1"], plain) == 0
    assert "\r" not in plain.getvalue() and "\x1b" not in plain.getvalue()


def test_list_hooks_for_mutators_and_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from gradharness.cli import main

    mutate = types.ModuleType("gradharness.mutate")
    mutate.list_mutators = lambda: {"sum-to-mean": "replace a sum over the batch by a mean"}  # type: ignore[attr-defined]
    mcli = types.ModuleType("gradharness.mutate.cli")

    def add_subcommand(subparsers: Any) -> None:
        p = subparsers.add_parser("mutate", help="inject bugs")
        p.add_argument("target")
        p.set_defaults(handler=lambda args, out: print(f"mutating {args.target}", file=out) or 0)

    mcli.add_subcommand = add_subcommand  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gradharness.mutate", mutate)
    monkeypatch.setitem(sys.modules, "gradharness.mutate.cli", mcli)
    out = io.StringIO()
    assert main(["list"], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[-3:] == ["", "mutators:", "  sum-to-mean  replace a sum over the batch by a mean"]
    out = io.StringIO()
    assert main(["mutate", "mylayers"], out) == 0
    assert out.getvalue() == "mutating mylayers\n"
    assert main(["mutate"], io.StringIO()) == 4  # its usage errors are ours


def test_version(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--version")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["gradharness 0.1.0"])


def test_budget_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mylayers=LAYERS)
    result = run(pytester, "check", "mylayers:Good", "--max-examples", "100000", "--budget", "1s", "--seed", "1")
    assert result.ret == 0
    result.stdout.re_match_lines([r"Good +.*passed \("])
    bad = run(pytester, "check", "mylayers:Good", "--budget", "soon")
    assert bad.ret == 4
    bad.stderr.fnmatch_lines(["gradharness: error: argument --budget: expected a duration such as 30s or 2m, got soon"])
