"""`gradharness mutate`: the CI gate on the gate's own strength (standalone and through the main command)."""
from __future__ import annotations

import argparse
import io
import json

import pytest

import gradharness.cli
from gradharness.mutate import cli

DENSE = "tests.fixtures_mutate.layers:Dense"
BLIND = "tests.fixtures_mutate.layers:ShapesOnlyDouble"
FAST = ["--max-examples", "8", "--jobs", "1"]


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return cli.main(argv, out=out), out.getvalue()


def test_a_score_at_or_above_min_score_passes_and_writes_the_reports(tmp_path) -> None:
    js, page = tmp_path / "m.json", tmp_path / "m.html"
    code, text = _run([DENSE, "--operators", "first-sample-only,drop-transpose", "--min-score", "100",
                       "--json", str(js), "--html", str(page), *FAST])
    assert code == cli.OK, text
    assert "Dense: mutation score 100.0%" in text and "passed: mutation score 100.0% >= --min-score 100" in text
    doc = json.loads(js.read_text())
    assert doc["schemaVersion"] == "2" and doc["mutationScore"] == 100.0
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_a_score_below_min_score_exits_1() -> None:
    code, text = _run([BLIND, "--operators", "drop-factor", "--min-score", "50", *FAST])
    assert code == cli.FAILED
    assert "FAILED: mutation score 0.0% is below --min-score 50" in text
    assert "SURVIVORS (2)" in text


def test_without_min_score_survivors_are_reported_but_do_not_fail() -> None:
    code, text = _run([BLIND, "--operators", "drop-factor", "--quiet", *FAST])
    assert code == cli.OK and "SURVIVORS (2)" in text and "PROBABLY EQUIVALENT" not in text


def test_list_mutators_usage_errors_and_nothing_to_mutate(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["--list-mutators"])
    assert code == cli.OK
    assert text.splitlines()[0].startswith("matmul-to-mul ") and "overwrite-dout" in text
    assert _run(["no_such_module_xyz"])[0] == cli.USAGE
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert _run([DENSE, "--operators", "sum-to-men"])[0] == cli.USAGE
    assert "Did you mean 'sum-to-mean'" in capsys.readouterr().err
    assert _run([DENSE, "--min-score", "101"])[0] == cli.USAGE
    assert _run(["tests.fixtures_mutate.empty"])[0] == cli.NO_TESTS
    code, text = _run([DENSE, "--operators", "einsum-transpose", *FAST])
    assert code == cli.NO_TESTS and "no mutants" in text


def test_an_original_that_fails_its_own_checks_exits_1() -> None:
    code, text = _run(["tests.fixtures_mutate.layers:Broken", *FAST])
    assert code == cli.FAILED and "Broken fail(s) its own checks" in text
    assert "BASELINE FAILED: Broken" in text and "needs a passing baseline" in text


def test_add_subcommand_adds_a_mutate_parser_with_a_handler() -> None:
    p = argparse.ArgumentParser(prog="gradharness")
    sub = p.add_subparsers(dest="command")
    cli.add_subcommand(sub)
    args = p.parse_args(["mutate", DENSE, "--min-score", "90", "--jobs", "0", "--seed", "3"])
    assert args.handler is cli.run
    assert (args.targets, args.min_score, args.jobs, args.seed) == ([DENSE], 90.0, 0, 3)


def test_the_gradharness_command_runs_mutate_through_its_hook() -> None:
    if "mutate" not in gradharness.cli.parser()._subparsers._group_actions[0].choices:
        pytest.skip("the gradharness command does not load the mutate subcommand yet")
    out = io.StringIO()
    code = gradharness.cli.main(["mutate", DENSE, "--operators", "first-sample-only", "--min-score", "100", *FAST],
                                out=out)
    assert code == 0 and "Dense: mutation score 100.0%" in out.getvalue()
