"""gradharness's pytest plugin (entry point ``pytest11``): every check of a declared layer is a test.

One line in a test module turns declared layers into tests::

    import gradharness
    from mypkg.layers import Linear, ReLU, Tanh

    test_linear = gradharness.pytest_checks(Linear)      # test_linear[protocol] ... test_linear[determinism]
    test_activations = gradharness.pytest_checks(ReLU, Tanh, max_examples=20)
                                                         # test_activations[ReLU-grad-input] ...

``check_layer`` runs once per layer and session (per worker under xdist), with every selected
check; each item reports its check's outcome: passed, failed with the layered message, or skipped
when the check does not apply. Options: ``--gradharness-*`` flags, ``gradharness_*`` ini keys and
``[tool.gradharness]`` in pyproject.toml, defined once in ``gradharness._options``.
"""
from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ._core import check_layer
from ._declare import Declaration
from ._errors import InvalidArgument
from ._options import (
    OPTIONS,
    SECTION,
    UsageError,
    argument_specs,
    from_ini,
    layer_options,
    merge,
    overrides,
    selected_checks,
    with_session_seed,
)
from ._report import CheckStat, Failure, Report
from ._targets import LayerChecks, project_from, target_of
from .checks import CHECK_ORDER

__all__ = ["CheckItem", "LayerChecks"]

#: checks whose failure means the others could not run on that example
BASE_CHECKS = ("protocol", "forward-shape", "backward-shape")
OUTCOME_WORDS = {".": "passed", "F": "failed", "E": "error", "-": "not-applicable", "s": "skipped",
                 "x": "xfailed", "X": "xpassed"}
LEGEND = ". passed  F failed  - not applicable  s skipped  E error  x xfailed  X xpassed  (blank) not selected"
_HARNESS = pytest.StashKey["_Harness"]()
#: pytest cache key of the failing examples replayed first next session
CACHE_KEY = "gradharness/failures"


# ----- items ---------------------------------------------------------------------------------
class CheckFailed(AssertionError):
    """A check failed: its text is the layered message, shown as is (no traceback)."""


class CheckItem(pytest.Item):
    """One check of one declared layer."""

    def __init__(self, *, checks: LayerChecks, decl: Declaration, check: str, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer_checks = checks
        self.decl = decl
        self.check = check
        #: the table row (this test and layer) and the run shared by every item of the same layer and options
        self.row_key = f"{base}|{decl.name}"
        self.run_key = (id(decl), repr(sorted(checks.options.items())))

    def runtest(self) -> None:
        __tracebackhide__ = True
        self.config.stash[_HARNESS].run_item(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return Path(self.layer_checks.path), self.layer_checks.lineno, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[CheckItem] | None:
    if not isinstance(obj, LayerChecks):
        return None
    base = f"{collector.nodeid}::{name}"
    several = len(obj.layers) > 1
    items: list[CheckItem] = []
    used: set[str] = set()
    harness = collector.config.stash[_HARNESS]
    for decl in obj.layers:
        label = decl.name
        k = 2
        while several and label in used:
            label, k = f"{decl.name}{k}", k + 1
        used.add(label)
        merged = harness.merged(decl, obj.options)
        for check in selected_checks(merged):
            item_name = f"{name}[{label}-{check}]" if several else f"{name}[{check}]"
            item = CheckItem.from_parent(collector, name=item_name, checks=obj, decl=decl, check=check, base=base)
            item.add_marker(pytest.mark.gradharness(layer=decl.name, check=check))
            if harness.xdist:
                item.add_marker(pytest.mark.xdist_group(f"gradharness-{decl.name}"))
            items.append(item)
    return items


# ----- the session: runs, outcomes, the summary, the JSON report --------------------------------
class _Run:
    def __init__(self, report: Report | None = None, error: BaseException | None = None) -> None:
        self.report = report
        self.error = error


def _pyproject(config: pytest.Config) -> Path | None:
    inipath = getattr(config, "inipath", None)
    if inipath is not None and Path(inipath).name == "pyproject.toml":
        return Path(inipath)
    candidate = Path(config.rootpath) / "pyproject.toml"
    return candidate if candidate.is_file() else None


class _Harness:
    """The plugin's per-session state (registered as a plugin: its methods are hooks)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            path = _pyproject(config)
            project = project_from(path, cli=False).settings if path is not None else {}
            inipath = getattr(config, "inipath", None)
            ini = from_ini(config.getini, f"{Path(inipath).name} (pytest ini)" if inipath else "pytest ini")
            self.cli = overrides(config.option, pytest=True)
        except UsageError as exc:
            raise pytest.UsageError(f"gradharness: {exc}") from None
        #: project settings: below each declaration; the command line: above it
        self.project = merge(project, ini)
        self.run_level = merge(self.project, self.cli)
        # the report path: from the command line relative to the current directory; from a
        # config file relative to that file's directory
        self.json_path = self.cli.get("json")
        if self.json_path is None and ini.get("json"):
            self.json_path = str(Path(inipath).parent / ini["json"] if inipath else Path(config.rootpath) / ini["json"])
        elif self.json_path is None and project.get("json") and path is not None:
            self.json_path = str(path.parent / project["json"])
        self.xdist = config.pluginmanager.hasplugin("xdist")
        self.worker = hasattr(config, "workerinput")
        if self.worker:
            self.seed = config.workerinput.get("gradharness_seed")  # type: ignore[attr-defined]
        elif self.run_level.get("seed") is not None:
            self.seed = self.run_level["seed"]
        elif self.run_level.get("profile") == "ci":
            self.seed = None
        else:
            self.seed = random.SystemRandom().randrange(1_000_000)
        self.runs: dict[Any, _Run] = {}
        self.plan: dict[Any, dict[str, Any]] | None = None
        self.outcomes: dict[str, str] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.items: dict[str, list[str]] = {}

    # -- options and runs --
    def merged(self, decl: Declaration, options: Mapping[str, Any]) -> dict[str, Any]:
        return merge(self.project, decl.options, options, self.cli)

    def _plan(self, session: pytest.Session) -> dict[Any, dict[str, Any]]:
        if self.plan is None:
            plan: dict[Any, dict[str, Any]] = {}
            for it in session.items:
                if isinstance(it, CheckItem):
                    p = plan.setdefault(it.run_key, {"checks": set(), "first": it.nodeid})
                    p["checks"].add(it.check)
            self.plan = plan
        return self.plan

    def _run(self, item: CheckItem) -> _Run:
        run = self.runs.get(item.run_key)
        if run is not None:
            return run
        selected = self._plan(item.session).get(item.run_key, {}).get("checks", {item.check})
        merged = self.merged(item.decl, item.layer_checks.options)
        opts = with_session_seed(layer_options(merged), self.seed)
        opts["checks"] = tuple(n for n in CHECK_ORDER if n in selected)
        target = item.decl.target if item.decl.target is not None else item.decl.make
        try:
            run = _Run(report=self._check(item, target, opts, merged))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - reported by every item of the layer
            run = _Run(error=exc)
        self.runs[item.run_key] = run
        return run

    def _check(self, item: CheckItem, target: Any, opts: dict[str, Any], merged: Mapping[str, Any]) -> Report:
        """check_layer, after replaying the examples that failed last time (pytest's cache): a failure
        found once is reported again until it is fixed, whatever the seed."""
        replayed: list[Failure] = []
        stats: dict[str, CheckStat] = {}
        spent = {"forward": 0, "backward": 0, "build": 0, "examples": 0}
        seconds = 0.0
        for entry in self._stored(item, merged):
            check = entry["check"]
            if check not in opts["checks"] or check in stats:
                continue
            example = {k: v for k, v in entry["example"].items() if k != "dtype"}
            dtype = entry["example"].get("dtype")
            try:
                rep = check_layer(target, **{**opts, "checks": (check,), "example": example,
                                             **({"dtypes": (dtype,)} if dtype else {})})
            except InvalidArgument:
                continue  # the declaration changed under the stored example: search afresh
            for k in ("forward", "backward", "build"):
                spent[k] += rep.calls.get(k, 0)
            spent["examples"] += rep.examples
            seconds += rep.seconds
            found = [f for f in rep.failures if f.check == check]
            if found:
                replayed.append(found[0])
                stats[check] = dataclasses.replace(rep.checks[check], status="failed", failed=1)
        rest = tuple(c for c in opts["checks"] if c not in stats)
        report = check_layer(target, **{**opts, "checks": rest})
        if not replayed:
            return report
        failures = sorted(replayed + report.failures,
                          key=lambda f: CHECK_ORDER.index(f.check) if f.check in CHECK_ORDER else len(CHECK_ORDER))
        calls = {k: report.calls.get(k, 0) + spent[k] for k in ("forward", "backward", "build")}
        return dataclasses.replace(report, passed=False, failures=failures, checks={**report.checks, **stats},
                                   calls=calls, examples=report.examples + spent["examples"],
                                   seconds=report.seconds + seconds)

    # -- the failing examples kept between sessions --
    @staticmethod
    def _replay_key(item: CheckItem) -> str:
        return f"{target_of(item.decl)}|{','.join(sorted(item.layer_checks.options))}"

    @staticmethod
    def _fingerprint(merged: Mapping[str, Any]) -> str:
        """What a stored example depends on: the shapes and the names of the drawn sizes."""
        keys = {k: sorted(merged.get(k) or {}) for k in ("dims", "hyper", "derived")}
        dtypes = merged.get("dtypes")
        return repr((merged.get("input"), merged.get("output"), keys,
                     None if dtypes is None else [str(np.dtype(d)) for d in dtypes]))

    def _cache(self) -> Any:
        return getattr(self.config, "cache", None)

    def _stored(self, item: CheckItem, merged: Mapping[str, Any]) -> list[dict[str, Any]]:
        cache = self._cache()
        if cache is None:
            return []
        entry = (cache.get(CACHE_KEY, {}) or {}).get(self._replay_key(item))
        if not isinstance(entry, dict) or entry.get("fingerprint") != self._fingerprint(merged):
            return []
        return [f for f in entry.get("failures", []) if isinstance(f, dict) and isinstance(f.get("example"), dict)
                and isinstance(f.get("check"), str)]

    def _store(self) -> None:
        """Remember this session's failing examples (on the controller only: workers would race)."""
        cache = self._cache()
        if cache is None or not self.rows:
            return
        before = cache.get(CACHE_KEY, {}) or {}
        data = dict(before)
        for row in self.rows.values():
            key, report = row.get("replay_key"), row.get("report")
            if key is None or report is None:
                continue
            selected = set(row.get("checks", []))
            old: dict[str, Any] = data.get(key) or {}
            if not isinstance(old, dict):
                old = {}
            kept = [f for f in old.get("failures", []) if old.get("fingerprint") == row["fingerprint"]
                    and f.get("check") not in selected]
            new = [{"check": f["check"], "example": f["example"]} for f in report.get("failures", [])]
            if kept or new:
                data[key] = {"fingerprint": row["fingerprint"], "failures": kept + new}
            else:
                data.pop(key, None)
        if data != before:
            cache.set(CACHE_KEY, data)

    def run_item(self, item: CheckItem) -> None:
        __tracebackhide__ = True
        run = self._run(item)
        check, name = item.check, item.decl.name
        if run.error is not None:
            item.user_properties += [("check", check), ("layer", name), ("status", "error")]
            if isinstance(run.error, InvalidArgument):
                raise CheckFailed(f"[{check}] {name}: cannot check this layer: {run.error}")
            raise run.error
        report = run.report
        assert report is not None
        item.user_properties += [(k, v) for k, v in _properties(report, check)]
        plan = self._plan(item.session).get(item.run_key, {})
        selected = plan.get("checks", set())
        own = [f for f in report.failures if f.check == check]
        orphans = [f for f in report.failures if f.check not in selected] if plan.get("first") == item.nodeid else []
        if own or orphans:
            parts = [f.message for f in own]
            if orphans:
                names = ", ".join(dict.fromkeys(f.check for f in orphans))
                head = "failed too" if own else "passed" if report.checks[check].status == "passed" else "not run"
                parts.append(f"[{check}] {name}: {head}, but the layer failed checks not selected in this run "
                             f"({names}):")
                parts += [f.message for f in orphans]
            raise CheckFailed("\n\n".join(parts))
        stat = report.checks.get(check)
        if stat is None or stat.status == "passed":
            return
        if stat.status == "skipped":
            _skip(f"gradharness: {check} skipped")
        base_failed = [f.check for f in report.failures if f.check in BASE_CHECKS]
        if stat.ran == 0 and base_failed:
            _skip(f"not run: the layer failed {', '.join(dict.fromkeys(base_failed))}")
        if stat.not_applicable:
            _skip("not applicable: no drawn example could exercise this check")
        _skip(f"not applicable: {check} does not apply to this layer's declaration")

    # -- what ran: local rows and reports; the controller merges the workers' --
    def _payload(self, session: pytest.Session) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = {}
        items: dict[str, list[str]] = {}
        for order, it in enumerate(session.items):
            if not isinstance(it, CheckItem):
                continue
            items[it.nodeid] = [it.row_key, it.check]
            row = rows.get(it.row_key)
            if row is None:
                row = rows[it.row_key] = {
                    "layer": it.decl.name, "test": it.row_key.rsplit("|", 1)[0], "target": target_of(it.decl),
                    "order": order, "checks": [], "report": None, "replay_key": self._replay_key(it),
                    "fingerprint": self._fingerprint(self.merged(it.decl, it.layer_checks.options))}
            row["checks"].append(it.check)
            run = self.runs.get(it.run_key)
            if run is not None and run.report is not None and row["report"] is None:
                row["report"] = run.report.to_dict()
        return {"rows": rows, "items": items}

    def absorb(self, payload: Mapping[str, Any]) -> None:
        for key, row in payload.get("rows", {}).items():
            have = self.rows.get(key)
            if have is None:
                self.rows[key] = dict(row)
            elif have.get("report") is None and row.get("report") is not None:
                have["report"] = row["report"]
        self.items.update(payload.get("items", {}))

    # -- hooks --
    def pytest_report_header(self, config: pytest.Config) -> str:
        if self.run_level.get("seed") is not None:
            text = f"seed {self.seed}"
        elif self.seed is None:
            text = "derandomized (profile ci)"
        else:
            text = f"seed {self.seed} (random; --gradharness-seed {self.seed} repeats this run)"
        return f"gradharness: {text}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["gradharness_seed"] = self.seed

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        text = getattr(node, "workeroutput", {}).get("gradharness")
        if text:
            self.absorb(json.loads(text))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "[" not in report.nodeid:
            return
        if report.passed:
            sym = "X" if hasattr(report, "wasxfail") else "." if report.when == "call" else None
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                sym = "x"
            else:
                status = dict(report.user_properties).get("status")
                sym = "-" if status == "not-applicable" else "s"
        else:
            sym = "F" if report.when == "call" else "E"
        if sym is None:
            return
        prev = self.outcomes.get(report.nodeid)
        if prev in ("F", "E") and sym not in ("F", "E"):
            return
        self.outcomes[report.nodeid] = sym

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        payload = self._payload(session)
        if self.worker:
            session.config.workeroutput["gradharness"] = json.dumps(payload)  # type: ignore[attr-defined]
            return
        self.absorb(payload)
        self._store()
        if self.json_path and self.rows:
            from .cli import json_document, write_atomic

            settings = {k: v for k, v in self.run_level.items() if k != "json"}
            doc = json_document(self._entries(), front_end="pytest", settings=settings, seed=self.seed,
                                seconds=0.0, interrupted=int(exitstatus) == int(pytest.ExitCode.INTERRUPTED))
            total = sum(e.get("seconds", 0.0) for e in doc["layers"])
            doc["summary"]["seconds"] = round(total, 3)
            write_atomic(self.json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def _tests(self) -> dict[str, dict[str, dict[str, str]]]:
        tests: dict[str, dict[str, dict[str, str]]] = {}
        for nodeid, (row_key, check) in self.items.items():
            outcome = OUTCOME_WORDS.get(self.outcomes.get(nodeid, ""), "not-run")
            tests.setdefault(row_key, {})[check] = {"nodeid": nodeid, "outcome": outcome}
        return tests

    def _entries(self) -> list[dict[str, Any]]:
        tests = self._tests()
        entries = []
        for key, row in sorted(self.rows.items(), key=lambda kv: kv[1]["order"]):
            report = row.get("report")
            entry: dict[str, Any] = dict(report) if report else {"layer": row["layer"], "failures": []}
            entry.pop("replay_key", None)
            entry.pop("fingerprint", None)
            mine = tests.get(key, {})
            entry.update({"layer": row["layer"], "test": row["test"], "target": row["target"],
                          "ran": report is not None, "selected": row["checks"], "tests": mine,
                          "passed": not any(t["outcome"] in ("failed", "error") for t in mine.values())})
            entries.append(entry)
        return entries

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or not self.rows or not any(n in self.outcomes for n in self.items):
            return
        from .cli import layers_text, table_header, table_row

        tr = terminalreporter
        tr.write_sep("=", "gradharness")
        for line in table_header():
            tr.write_line(line)
        tests = self._tests()
        n_failed = 0
        calls = {"forward": 0, "backward": 0}
        entries = self._entries()
        for key, entry in zip(sorted(self.rows, key=lambda k: self.rows[k]["order"]), entries):
            cells = {c: next((s for s, w in OUTCOME_WORDS.items() if w == t["outcome"]), "?")
                     for c, t in tests.get(key, {}).items() if t["outcome"] != "not-run"}
            failed = any(s in ("F", "E") for s in cells.values())
            n_failed += failed
            if entry["ran"]:
                for k in calls:
                    calls[k] += entry.get("calls", {}).get(k, 0)
                stats = (f"{entry['examples']} examples, {entry['calls']['forward']}f/{entry['calls']['backward']}b, "
                         f"{entry['seconds']:.1f}s")
                result = f"{'FAILED' if failed else 'passed'} ({stats})"
            else:
                result = "FAILED" if failed else "not run"
            tr.write_line(table_row(entry["layer"], cells, result), red=failed)
        tr.write_line(LEGEND)
        n = len(entries)
        tr.write_line(f"{layers_text(n)}: {n - n_failed} passed, {n_failed} failed; {calls['forward']} forward and "
                      f"{calls['backward']} backward calls")


def _skip(reason: str) -> None:
    __tracebackhide__ = True
    # reported at the item's location (the pytest_checks line), not inside the plugin
    raise pytest.skip.Exception(reason, _use_item_location=True)


def _properties(report: Report, check: str) -> Iterable[tuple[str, str]]:
    from .cli import check_properties

    return check_properties(report, check)


# ----- plugin hooks ----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradharness", "gradharness: property-based gradient checks of declared layers")
    for flag, kwargs in argument_specs(pytest=True):
        group.addoption(flag, **kwargs)
    for opt in OPTIONS:
        parser.addini(opt.ini, f"gradharness: {opt.help} (as {SECTION} {opt.key})", type="string", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gradharness(layer, check): a check of a declared layer, made by "
                                       "gradharness.pytest_checks (select them all with -m gradharness)")
    harness = _Harness(config)
    config.stash[_HARNESS] = harness
    config.pluginmanager.register(harness, "gradharness-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    harness = config.stash.get(_HARNESS, None)
    if harness is not None and config.pluginmanager.is_registered(harness):
        config.pluginmanager.unregister(harness)
