"""The mutation runner's outcomes: killed, survived (blind spot), probably equivalent, incompetent, timeout."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time

import pytest

import gradharness
import gradharness.mutate as gm
from gradharness.mutate import runner
from tests.fixtures_mutate import layers as L

FAST = {"max_examples": 10, "seed": 0}


def _line_of(text: str, cls: str) -> int:
    """The 1-based line of `text` in the fixtures file, after `class <cls>`."""
    with open(L.__file__) as fh:
        lines = fh.read().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"class {cls}"))
    return next(i for i, ln in enumerate(lines) if i > start and text in ln) + 1


def test_a_killed_mutant_names_its_checks_the_shrunk_example_and_how_to_replay_it() -> None:
    rep = gm.mutate(L.Dense, operators=["first-sample-only"], jobs=0, **FAST)
    (r,) = rep.results
    assert r.status == "Killed" and r.detected
    line = _line_of('self.grads["b"] = dout.sum(axis=0)', "Dense")
    assert r.mutant.id == f"Dense:first-sample-only:L{line}:C27"
    assert (r.mutant.original.strip(), r.mutant.mutated.strip()) == (
        'self.grads["b"] = dout.sum(axis=0)', 'self.grads["b"] = dout[0]')
    assert r.mutant.file == L.__file__ and r.mutant.line == line and r.mutant.column == 27
    # a bias gradient from the first sample only is what these checks are for
    assert {"bias", "param-grad-additivity"} <= set(r.killed_by)
    assert r.message.startswith(f"[{r.killed_by[0]}] Dense")
    assert r.example is not None and r.example["dims"]["n"] >= 2
    assert f"gradharness.mutate.mutant_layer('tests.fixtures_mutate.layers:Dense', '{r.mutant.id}')" in r.message
    assert not r.crash
    # the reproduction line re-runs exactly that failure
    replay = eval(r.reproduce, {"gradharness": gradharness})
    assert replay.failed_checks() == [r.killed_by[0]]
    # the diagnosis, when the core gives one, is the killing failure's
    assert r.diagnosis == getattr(replay.failures[0], "diagnosis", None)
    assert rep.score == 100.0


def test_the_diagnosis_goes_into_the_status_reason() -> None:
    from gradharness.mutate.report import _status_reason

    m = gm.mutants_of(L.Dense, operators=["first-sample-only"])[0]
    r = gm.MutantResult(m, "Killed", killed_by=["bias"], message="[bias] Dense: ...", diagnosis="bias-first-sample",
                        reason="killed by bias")
    assert "diagnosis: bias-first-sample" in _status_reason(r)


def test_a_crash_on_valid_shapes_kills_and_is_flagged_as_a_crash() -> None:
    rep = gm.mutate(L.Dense, operators=["drop-transpose"], jobs=0, **FAST)
    dx = next(r for r in rep.results if "return dout @ W" in r.mutant.mutated)
    assert dx.status == "Killed"
    assert "backward-shape" in dx.killed_by


def test_an_equivalent_survivor_is_ignored_with_its_evidence() -> None:
    rep = gm.mutate(L.ShiftedSoftmax, operators=["drop-term"], jobs=0, **FAST)
    by_line = {r.mutant.mutated.strip(): r for r in rep.results}
    # softmax is shift-invariant: without the max shift only the round-off changes
    eq = by_line["e = np.exp(x)"]
    assert eq.status == "Ignored"
    assert eq.reason.startswith("probably equivalent: out, dx, every grad")
    assert eq.evidence["equivalent"] and eq.evidence["compared"] >= 2 * 10
    assert set(eq.evidence["max_relative_difference"]) == {"float64", "float32"}
    killed = by_line["return s * (dout)"]
    assert killed.status == "Killed" and "grad-input" in killed.killed_by
    # equivalents are left out of the score
    assert rep.score == 100.0
    assert rep.equivalents() == [eq]


def test_a_survivor_that_differs_is_reported_as_a_blind_spot_with_the_example() -> None:
    rep = gm.mutate(L.ShapesOnlyDouble, operators=["drop-factor"], jobs=0, **FAST)
    assert [r.status for r in rep.results] == ["Survived", "Survived"]
    fwd, bwd = rep.results
    assert fwd.mutant.mutated.strip() == "return x" and bwd.mutant.mutated.strip() == "return dout"
    for r in rep.results:
        assert r.evidence["equivalent"] is False and r.evidence["example"]["dims"]
    # a changed forward that backward still differentiates exactly is out of reach of gradient checks ...
    assert fwd.evidence["survivor_kind"] == "forward" and "out differs" in fwd.evidence["difference"]
    assert "only a reference for the output could catch it" in fwd.reason
    # ... a wrong backward behind an unchanged forward is the checks' blind spot
    assert bwd.evidence["survivor_kind"] == "backward" and bwd.evidence["arrays"] == ["dx"]
    assert "blind spot of the checks or of the configuration" in bwd.reason
    assert rep.score == 0.0
    text = rep.format()
    assert "SURVIVORS (2)" in text and "ShapesOnlyDouble:drop-factor:L" in text


def test_a_factory_that_raises_on_every_example_is_incompetent() -> None:
    rep = gm.mutate(L.InitCrash, operators=["swap-axis"], include_init=True, jobs=0, **FAST)
    (r,) = rep.results
    assert r.mutant.mutated.strip() == "self.scale = float(np.ones(d).sum(axis=1)) / d"
    assert r.status == "RuntimeError"
    assert r.reason.startswith("incompetent: the factory raised on every example")
    assert rep.score is None  # nothing valid to score


def test_a_mutant_that_does_not_compile_is_a_compile_error() -> None:
    lt = runner.layer_target(gradharness.declaration_of(L.Dense))
    m = gm.mutants_of(L.Dense, operators=["drop-term"])[0]
    broken = dataclasses.replace(m, source=m.source.replace("def backward(self, dout", "def backward(self, dout,,"))
    r = runner.run_mutant(lt, broken, runner.Budget(**FAST))
    assert r.status == "CompileError" and "SyntaxError" in r.reason


def test_a_hanging_mutant_times_out_in_its_worker() -> None:
    started = time.perf_counter()
    rep = gm.mutate(L.Spin, operators=["sub-to-add"], timeout=1.5, jobs=1, **FAST)
    (r,) = rep.results
    assert r.mutant.mutated.strip() == "k += 1"
    assert r.status == "Timeout" and r.detected
    assert "per-mutant limit" in r.reason
    assert time.perf_counter() - started < 30


def test_a_worker_stuck_where_the_soft_limit_cannot_reach_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    # without the in-worker alarm only the parent's hard limit can cut the mutant: the worker is killed
    monkeypatch.setattr(runner, "_soft_limit", lambda seconds: contextlib.nullcontext())
    monkeypatch.setattr(runner, "HARD_GRACE", 0.5)
    rep = gm.mutate(L.Spin, operators=["sub-to-add", "drop-factor"], timeout=3.0, jobs=2, **FAST)
    assert [(r.mutant.operator, r.status) for r in rep.results] == [
        ("drop-factor", "Killed"), ("sub-to-add", "Timeout"), ("drop-factor", "Killed")]
    # the mutants that shared the pool with the killed worker still ran to their own verdict


def test_progress_bar_on_a_tty_and_one_mutant_by_id() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    gm.mutate(L.Dense, operators=["first-sample-only", "swap-axis"], jobs=1, progress_stream=stream, **FAST)
    text = stream.getvalue()
    assert "mutants [" in text and "2/2" in text and "killed 2" in text
    quiet = io.StringIO()  # not a tty: no bar
    gm.mutate(L.Dense, operators=["swap-axis"], jobs=0, progress_stream=quiet, **FAST)
    assert quiet.getvalue() == ""
    mid = gm.mutants_of(L.Dense, operators=["swap-axis"])[0].id
    r = gm.run_one("tests.fixtures_mutate.layers:Dense", mid, **FAST)
    assert r.id == mid and r.status == "Killed" and "backward-shape" in r.killed_by


def test_an_undeclared_factory_with_options_is_mutated_at_runtime() -> None:
    rep = gm.mutate(L.plain_dense, input="n d_in", output="n d_out", dims={"n": (1, 4), "d_in": (1, 4),
                    "d_out": (1, 4)}, operators=["zero-grad", "first-sample-bias"], jobs=0, sensitivity=False,
                    **FAST)
    (lr,) = rep.layers
    assert lr.name == "plain_dense" and any("runtime mutations instead" in n for n in lr.notes)
    assert [r.id for r in lr.results] == ["plain_dense:zero-grad:dx", "plain_dense:zero-grad:W",
                                          "plain_dense:zero-grad:b", "plain_dense:first-sample-bias:b"]
    assert all(r.status == "Killed" for r in lr.results)
    assert not hasattr(L.plain_dense, "__gradharness__")  # the user's function is left alone


def test_without_a_per_mutant_limit_check_layers_per_call_limit_cuts_the_hang() -> None:
    mid = gm.mutants_of(L.Spin, operators=["sub-to-add"])[0].id
    r = gm.run_one("tests.fixtures_mutate.layers:Spin", mid, max_examples=3, call_timeout=0.2)
    assert r.status == "Timeout" and "per-call limit" in r.reason and "did not return within 0.2 s" in r.reason


def test_swap_cached_uses_the_shapes_recorded_on_real_examples() -> None:
    ms = gm.mutants_of(L.Norm, operators=["swap-cached"])
    # xhat is (n, d); inv_std and gamma are both (d,): only they can be swapped without a shape error
    assert [(m.id.split(":", 2)[2], m.mutated.strip()) for m in ms] == [
        (f"L{_line_of('= self.cache', 'Norm')}:C9:inv_std-gamma", "xhat, gamma, inv_std = self.cache")]
    (r,) = gm.mutate(L.Norm, operators=["swap-cached"], jobs=0, **FAST).results
    # both multiply each feature's column of dx: inv_std * (dout * gamma ...) == gamma * (dout * inv_std ...)
    assert r.status == "Ignored" and r.evidence["equivalent"]


def test_layers_without_source_get_runtime_mutations_and_a_measured_sensitivity() -> None:
    rep = gm.mutate(L.CompiledScale, operators=["scale-grad", "noisy-grad", "first-sample-bias", "overwrite-dout",
                                                "upcast-grad"], jobs=2, **FAST)
    (lr,) = rep.layers
    assert any("source mutation unavailable" in n for n in lr.notes)
    statuses = {r.mutant.id: (r.status, r.killed_by) for r in lr.results}
    assert all(s == "Killed" for s, _ in statuses.values()), statuses
    assert "no-mutation" in statuses["CompiledScale:overwrite-dout"][1]
    assert "dtype" in statuses["CompiledScale:upcast-grad:s"][1]
    assert "grad-params" in statuses["CompiledScale:noisy-grad:s"][1]
    sens = {s.tensor: s for s in lr.sensitivity}
    assert set(sens) == {"x", "s", "b"}
    for s in sens.values():
        # a level the checks catch, the one below it that they miss, within the bisection's resolution
        assert s.caught is not None and s.caught <= 1e-6 and s.killed_by
        assert s.missed is None or s.caught / s.missed <= runner.NOISE_RESOLUTION * 1.0001
    # dx noise is batch-consistent and linear in dout: only the gradient checks see it
    assert set(sens["x"].killed_by) <= {"grad-input"}


def test_runtime_mutants_can_be_asked_for_on_any_layer() -> None:
    ms = gm.mutants_of(L.Dense, kinds="runtime")
    ids = [m.id for m in ms]
    assert "Dense:transpose-grad:W" in ids and "Dense:transpose-grad:b" not in ids  # b is 1-D
    assert "Dense:first-sample-bias:b" in ids and "Dense:accumulate-grad:W" in ids
    assert all(m.kind == "runtime" for m in ms)
    both = gm.mutants_of(L.Dense, kinds="all")
    assert {m.kind for m in both} == {"source", "runtime"}


def test_unknown_operators_and_targets_are_rejected_with_a_suggestion() -> None:
    with pytest.raises(gradharness.InvalidArgument, match="Did you mean 'sum-to-mean'"):
        gm.mutants_of(L.Dense, operators=["sum-to-men"])
    with pytest.raises(gradharness.InvalidArgument, match="cannot import"):
        gm.mutate("no_such_module_xyz", jobs=0)


def test_an_original_that_fails_its_checks_is_not_mutated() -> None:
    rep = gm.mutate(L.ShiftedSoftmax, operators=["drop-term"], jobs=0, elementwise=True, **FAST)
    (lr,) = rep.layers
    assert lr.baseline is not None and not lr.baseline.passed and "elementwise" in lr.baseline.failed_checks
    assert lr.results == [] and rep.baseline_failed == [lr]
    assert any("needs a passing baseline" in n for n in lr.notes)


def test_the_whole_of_a_small_layer_is_killed() -> None:
    rep = gm.mutate(L.Dense, jobs=2, **FAST)
    assert len(rep.results) == 13
    assert [r.id for r in rep.survivors()] == [] and rep.equivalents() == []
    assert rep.score == 100.0
    # every mutant ran under the same seeded budget and took a bounded time
    assert all(r.seconds < 30 for r in rep.results)


@pytest.mark.skipif("xdist" not in sys.modules and not __import__("importlib").util.find_spec("xdist"),
                    reason="pytest-xdist is not installed (the test extra)")
def test_mutants_as_pytest_items_distributed_by_xdist(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_items="""
        from gradharness.mutate import pytest_mutants
        from tests.fixtures_mutate.layers import Dense, ShapesOnlyDouble, ShiftedSoftmax

        test_dense = pytest_mutants(Dense, operators=["first-sample-only", "drop-transpose"], max_examples=10)
        test_softmax = pytest_mutants(ShiftedSoftmax, operators=["drop-term"], max_examples=10)
        test_blind = pytest_mutants(ShapesOnlyDouble, operators=["drop-factor"], max_examples=5)
    """)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=4, skipped=1, failed=2)
    out = result.stdout.str()
    assert "Ignored: probably equivalent" in out
    assert out.count("mutant ShapesOnlyDouble:drop-factor:L") == 2 and "blind spot" in out
