"""check_layer: Hypothesis drives the examples, the checks judge them, the report tells."""
from __future__ import annotations

import inspect
import time
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import FlakyFailure

from ._context import Counter, Session, Trace, example_guard, warm_allocator
from ._declare import _default_make, declaration_of
from ._errors import InvalidArgument, LayerCallError
from ._report import NOT_APPLICABLE, CheckStat, Failure, Finding, Report, format_failure
from ._spec import DEFAULT_INPUT, DimRange, LayerSpec, build_spec, validate_option_names
from ._strategies import Example, examples, guaranteed_examples, reproducible_generation
from .checks import CHECK_ORDER, REGISTRY, Check, applicable
from .diagnose import diagnose

#: examples per Hypothesis search in the `thorough` profile, as a multiple of max_examples
THOROUGH_FACTOR = 10
_UNSET: Any = object()

_BASE_CHECK = {"factory": "protocol", "forward": "forward-shape", "backward": "backward-shape"}


class _Found(Exception):
    """Raised inside the Hypothesis test so it shrinks; carries the example and its findings."""

    def __init__(self, ex: Example, findings: list[Finding]) -> None:
        super().__init__(", ".join(sorted({f.check for f in findings})))
        self.example = ex
        self.findings = findings


class _BudgetSpent(BaseException):
    """Ends a Hypothesis search when the time budget is spent (a BaseException: Hypothesis lets
    it through at once instead of shrinking it as a failure)."""


class GradientCheckError(AssertionError):
    """Raised by assert_layer: the report is attached as `.report`."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(str(report))


class _Stats:
    def __init__(self, checks: Sequence[Check]) -> None:
        self.checks = {c.name: CheckStat(c.name) for c in checks}
        self.examples = 0
        self.sensitivity: dict[str, dict[str, float]] = {}
        self.inconclusive = 0
        self.budget_exhausted = False


def _base_finding(err: LayerCallError, dtype: np.dtype | None) -> Finding:
    check = _BASE_CHECK.get(err.what, "protocol")
    if err.what == "factory":
        summary = err.detail if err.detail.startswith("layer ") else f"the factory {err.detail}"
    else:
        summary = f"{err.what} {err.detail}"
    return Finding(check, summary, None, [], {"call": err.what}, "" if dtype is None else str(dtype))


def run_example(spec: LayerSpec, ex: Example, active: set[str], counter: Counter, stats: _Stats | None,
                *, detail: bool = False) -> list[Finding]:
    """Every active check on one example, in every dtype it runs in."""
    with example_guard(counter):
        return _run_example(spec, ex, active, counter, stats, detail=detail)


def _run_example(spec: LayerSpec, ex: Example, active: set[str], counter: Counter, stats: _Stats | None,
                 *, detail: bool) -> list[Finding]:
    findings: list[Finding] = []
    try:
        session = Session(spec, ex, counter)
    except LayerCallError as err:
        return [_base_finding(err, None)]
    checks = [c for c in applicable(spec) if c.name in active]
    if stats is not None:
        stats.examples += 1
    for i, dt in enumerate(spec.dtypes):
        ctx = session.new_context(dt)
        try:
            session.run_base(ctx)
        except LayerCallError as err:
            findings.append(_base_finding(err, dt))
            if stats is not None and "protocol" in stats.checks:
                stats.checks["protocol"].ran += 1  # the factory built a layer: that much held
            if err.what == "backward" and ctx.base_out is not None and "forward-shape" in active:
                # the output is known: a wrong output shape is often why backward failed
                ctx.base = Trace(ctx.base_out, None, {})
                shape = REGISTRY["forward-shape"].fn(ctx)
                if stats is not None and "forward-shape" in stats.checks:
                    stats.checks["forward-shape"].ran += 1
                if isinstance(shape, Finding):
                    shape.dtype = str(ctx.dtype)
                    findings.insert(len(findings) - 1, shape)
            continue
        ctx.detail = detail
        for chk in checks:
            if i > 0 and not chk.every_dtype:
                continue
            # each check draws from its own stream, so running a subset reproduces the same numbers
            ctx.rng = np.random.default_rng([ex.seed, zlib.crc32(chk.name.encode()), i])
            try:
                result = chk.fn(ctx)
            except LayerCallError as err:
                result = Finding(chk.name, f"{err.what} {err.detail}", None, ["(during this check)"], {"call": err.what})
            if stats is not None:
                st = stats.checks[chk.name]
                if result is NOT_APPLICABLE:
                    st.not_applicable += 1
                else:
                    st.ran += 1
            if isinstance(result, Finding):
                result.dtype = str(ctx.dtype)
                if detail:
                    result.diagnosis = diagnose(ctx, result)
                findings.append(result)
        if stats is not None:
            per_dtype = stats.sensitivity.setdefault(str(ctx.dtype), {})
            for k, v in ctx.memo.get("sensitivity", {}).items():
                per_dtype[k] = max(per_dtype.get(k, 0.0), v)
            stats.inconclusive += ctx.memo.get("inconclusive", 0)
    return findings


def check_findings(spec: LayerSpec, ex: Example, check: str, dtype: np.dtype,
                   counter: Counter) -> list[tuple[Finding, Any]]:
    """One check on one example in one dtype, with localization: (finding, its context) pairs."""
    with example_guard(counter):
        return _check_findings(spec, ex, check, dtype, counter)


def _check_findings(spec: LayerSpec, ex: Example, check: str, dtype: np.dtype,
                    counter: Counter) -> list[tuple[Finding, Any]]:
    try:
        session = Session(spec, ex, counter)
        ctx = session.context(dtype)
    except LayerCallError:
        return []
    ctx.detail = True
    ctx.rng = np.random.default_rng([ex.seed, zlib.crc32(check.encode()), list(spec.dtypes).index(dtype)])
    try:
        result = REGISTRY[check].fn(ctx)
    except LayerCallError:
        return []
    return [(result, ctx)] if isinstance(result, Finding) else []


def _settings(spec: LayerSpec) -> settings:
    n = spec.max_examples * (THOROUGH_FACTOR if spec.profile == "thorough" else 1)
    return settings(
        max_examples=n, deadline=None, database=None, derandomize=spec.profile == "ci" and spec.seed is None,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False,
        print_blob=False, phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


def _search(spec: LayerSpec, active: set[str], counter: Counter, stats: _Stats,
            deadline: float | None = None) -> _Found | None:
    """One Hypothesis search; the shrunk failing example, or None when every example passed.

    Past the `deadline` (the time budget) the search ends, except while shrinking a failure
    already found.
    """
    target: dict[str, set[str]] = {}

    def test(ex: Example) -> None:
        if deadline is not None and "checks" not in target and time.perf_counter() > deadline:
            raise _BudgetSpent()
        # after the first failure only its checks are run, so shrinking chases that failure cheaply
        checks = target.get("checks", active)
        # a crash already reported under its check only makes this example useless for the others
        findings = [f for f in run_example(spec, ex, checks, counter, stats) if f.check in checks]
        if findings:
            target.setdefault("checks", {f.check for f in findings})
            raise _Found(ex, findings)

    inner = given(ex=examples(spec))(test)
    for g in reversed(_edge_examples(spec)):
        inner = example(ex=g)(inner)
    inner = _settings(spec)(inner)
    if spec.seed is not None:
        inner = hypothesis_seed(spec.seed)(inner)
    try:
        with reproducible_generation():
            inner()
    except _BudgetSpent:
        stats.budget_exhausted = True
        return None
    except _Found as found:
        return found
    except FlakyFailure as flaky:
        for exc in flaky.exceptions:
            if isinstance(exc, _Found):
                return exc
        raise
    return None


def _parameters(cls: type) -> Mapping[str, Any]:
    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {"dims": None}  # no signature to read: call it as make(dims, rng)


def _edge_examples(spec: LayerSpec) -> list[Example]:
    """The explicit examples run before Hypothesis draws: the smallest sizes, the smallest
    pairwise-distinct ones, and, under a time budget, the largest sizes too (where failures
    are likelier, so a short budget is spent there first)."""
    out = guaranteed_examples(spec, spec.seed or 0)
    if spec.budget is not None:
        largest = {k: v.hi for k, v in spec.dims.items() if isinstance(v, DimRange)}
        if len(largest) == len(spec.dims):
            hyper = out[-1].hyper if out else {}
            ex = Example(dims=largest, hyper=hyper, seed=(spec.seed or 0) + 2, values="special")
            sizes = ex.sizes(spec)
            if all(int(sizes[k]) >= 1 for k in spec.derived) and all(c(dict(sizes)) for c in spec.constraints):
                out.append(ex)
    return out


def _make_path(make: Any) -> str:
    mod = getattr(make, "__module__", None)
    qual = getattr(make, "__qualname__", None)
    if mod and qual and all(part.isidentifier() for part in f"{mod}.{qual}".split(".")):
        return f"{mod}.{qual}" if mod != "__main__" else qual
    return "make"


#: options a reproduction line leaves out: the example fixes them, or they only steer the search
_NOT_REPRODUCED = {"input", "output", "checks", "skip", "dtypes", "example", "max_examples", "seed", "profile", "dims",
                   "hyper", "name", "timeout"}


def _same_option(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


def _literal(value: Any) -> bool:
    """Whether repr(value) reads back as the same value (so a reproduction line can carry it)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_literal(v) for v in value)
    return False


def _reproduce(target: Any, spec: LayerSpec, check: str, ex: Example, dtype: str, declared: bool,
               given: Mapping[str, Any]) -> str:
    head = f"gradharness.check_layer({_make_path(target)}"
    if not declared:
        head += f", {spec.input_text!r}"
        if spec.output_text is not None:
            head += f", output={spec.output_text!r}"
    # options given at the call (not in a declaration) that change what the example computes
    extra = "".join(f", {k}={v!r}" for k, v in given.items() if k not in _NOT_REPRODUCED and _literal(v))
    dt = f", dtypes=({dtype!r},)" if dtype else ""
    return f"{head}{extra}, checks=({check!r},){dt}, example={ex.as_dict()!r})"


def _validate_first(spec: LayerSpec, ex: Example) -> None:
    """Spec errors that need a built layer (bias names) are raised before any search."""
    if spec.bias is None or not spec.bias:
        return
    try:
        counter = Counter()
        with example_guard(counter):
            session = Session(spec, ex, counter)
    except LayerCallError:
        return  # reported as the layer's failure by the search
    unknown = [b for b in spec.bias if b not in session.params64]
    if unknown:
        raise InvalidArgument("bias", spec.bias, f"names of params; {unknown[0]!r} is not one "
                              f"(params: {sorted(session.params64)})", "Pass bias=() for a layer without biases.")


def check_layer(make: Callable[..., Any], input: str = _UNSET, *, output: str | None = _UNSET,
                dims: Mapping[str, Any] = _UNSET, hyper: Mapping[str, Any] = _UNSET,
                derived: Mapping[str, Callable[[Mapping[str, Any]], int]] = _UNSET,
                constraints: Sequence[Callable[[Mapping[str, Any]], bool]] = _UNSET,
                bias: Sequence[str] | None = _UNSET, elementwise: bool = _UNSET,
                batch_independent: bool = _UNSET, domain: tuple[float, float] = _UNSET,
                index_input: str | int | None = _UNSET, dtypes: Sequence[Any] = _UNSET,
                max_examples: int = _UNSET, seed: int | None = _UNSET, checks: Sequence[str] | None = _UNSET,
                skip: Sequence[str] = _UNSET, profile: str = _UNSET, redraw_params: bool = _UNSET,
                name: str | None = _UNSET, example: Any = _UNSET, timeout: float | None = _UNSET,
                reference: Callable[[Any, np.ndarray], Any] | None = _UNSET, budget: float | None = _UNSET,
                **unknown: Any) -> Report:
    """Check a layer built by ``make(dims, rng)`` against its contracts; return a Report.

    ``input`` defaults to "n d_in"; options left out come from the layer's declaration
    (`gradharness.layer`) when it has one, else from the defaults of DESIGN.md.
    """
    given_opts = {k: v for k, v in dict(
        input=input, output=output, dims=dims, hyper=hyper, derived=derived, constraints=constraints, bias=bias,
        elementwise=elementwise, batch_independent=batch_independent, domain=domain, index_input=index_input,
        dtypes=dtypes, max_examples=max_examples, seed=seed, checks=checks, skip=skip, profile=profile,
        redraw_params=redraw_params, name=name, example=example, timeout=timeout,
        reference=reference, budget=budget).items() if v is not _UNSET}
    # unknown keywords get the closest known one, not Python's bare TypeError
    validate_option_names(unknown, where="check_layer")
    return _check(make, given_opts)


def _check(make: Any, given_opts: Mapping[str, Any]) -> Report:
    decl = declaration_of(make)
    opts: dict[str, Any] = {}
    target = make
    if decl is not None:
        opts.update(decl.options)
        opts.setdefault("name", decl.name)
        make = decl.make
    elif inspect.isclass(make) and "dims" not in _parameters(make):
        # an undeclared class is built as a declared one would be: the dims its constructor names, and rng
        make = _default_make(make)
    opts.update(given_opts)
    input_text = opts.pop("input", DEFAULT_INPUT)
    spec = build_spec(make, input_text, opts)
    warm_allocator()
    started = time.perf_counter()
    counter = Counter()
    active_checks = applicable(spec)
    stats = _Stats(active_checks)
    active = {c.name for c in active_checks}
    failures: list[Failure] = []
    declared = decl is not None
    # what the call says beyond the declaration (front-ends may pass declared options again)
    call_only = {k: v for k, v in given_opts.items() if not (declared and _same_option(decl.options.get(k, _UNSET), v))}

    def record(ex: Example, findings: list[Finding]) -> None:
        for f in findings:
            if any(x.check == f.check for x in failures):
                continue
            exd = {**ex.as_dict(), "dtype": f.dtype or None}
            repro = _reproduce(target, spec, f.check, ex, f.dtype, declared, call_only)
            d = f.diagnosis
            failures.append(Failure(check=f.check, message=format_failure(spec.name, f, exd, repro), example=exd,
                                    layer=spec.name, tensor=f.tensor, summary=f.summary, evidence=f.evidence,
                                    reproduce=repro, diagnosis=None if d is None else d.code,
                                    diagnosis_params={} if d is None else dict(d.params),
                                    diagnosis_text="" if d is None else d.text))

    if spec.example is not None:
        ex = Example.from_value(spec.example)
        record(ex, run_example(spec, ex, active, counter, stats, detail=True))
    else:
        first = guaranteed_examples(spec, spec.seed or 0)
        if first:
            _validate_first(spec, first[0])
        # crashes are reported whatever `checks=` selects
        remaining = active | set(_BASE_CHECK.values())
        deadline = None if spec.budget is None else started + spec.budget
        while remaining:
            found = _search(spec, remaining, counter, stats, deadline)
            if found is None:
                break
            final = [f for f in run_example(spec, found.example, remaining, counter, None, detail=True)
                     if f.check in remaining]
            if not final:
                final = found.findings  # a failure that did not repeat: reported as found
            before = len(failures)
            record(found.example, final)
            new = {f.check for f in final}
            if not (new & remaining) or len(failures) == before:
                break
            remaining -= new
            if deadline is not None and time.perf_counter() > deadline:
                stats.budget_exhausted = True
                break
    for f in failures:
        if f.check in stats.checks:
            stats.checks[f.check].failed += 1
            stats.checks[f.check].status = "failed"
    for st in stats.checks.values():
        if st.status != "failed" and st.ran == 0:
            st.status = "not-applicable"
    all_stats = {n: stats.checks.get(n, CheckStat(n, status="not-applicable")) for n in CHECK_ORDER}
    for n in CHECK_ORDER:
        if n not in stats.checks and (spec.checks is not None and n not in spec.checks or n in spec.skip):
            all_stats[n].status = "skipped"
    failures.sort(key=lambda f: CHECK_ORDER.index(f.check) if f.check in CHECK_ORDER else len(CHECK_ORDER))
    return Report(layer=spec.name, passed=not failures, failures=failures, checks=all_stats,
                  examples=stats.examples, calls={"forward": counter.forward, "backward": counter.backward,
                                                  "build": counter.build},
                  sensitivity={k: v for k, v in stats.sensitivity.items() if v}, inconclusive_probes=stats.inconclusive,
                  notes=[f"{text} ({n}x)" if not text.endswith("(silenced)") else f"{text}: {n} characters"
                         for text, n in counter.notes.items()],
                  seconds=time.perf_counter() - started, seed=spec.seed, budget_exhausted=stats.budget_exhausted)


def assert_layer(make: Callable[..., Any], input: str = _UNSET, **options: Any) -> Report:
    """check_layer with the same arguments; raises GradientCheckError (an AssertionError) on failure."""
    __tracebackhide__ = True
    report = check_layer(make, input, **options) if input is not _UNSET else check_layer(make, **options)
    if not report.passed:
        raise GradientCheckError(report)
    return report
