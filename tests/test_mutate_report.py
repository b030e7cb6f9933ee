"""Mutation reports: the terminal table, Stryker's schema v2 JSON (required fields), the HTML in a browser."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

import gradharness.mutate as gm
from gradharness.checks import CHECK_ORDER
from gradharness.mutate import runner
from tests.fixtures_mutate import layers as L

STATUSES = ["Killed", "Survived", "NoCoverage", "CompileError", "RuntimeError", "Timeout", "Ignored", "Pending"]
_POSITION = {"type": "object", "required": ["line", "column"],
             "properties": {"line": {"type": "integer", "minimum": 1}, "column": {"type": "integer", "minimum": 1}}}
#: the required structure of Stryker's mutation-testing-report-schema (schemaVersion 2), written out here
STRYKER_REQUIRED = {
    "type": "object",
    "required": ["schemaVersion", "thresholds", "files"],
    "properties": {
        "schemaVersion": {"type": "string", "pattern": r"^2(\.\d+){0,2}$"},
        "thresholds": {"type": "object", "required": ["high", "low"],
                       "properties": {"high": {"type": "integer", "minimum": 0, "maximum": 100},
                                      "low": {"type": "integer", "minimum": 0, "maximum": 100}}},
        "files": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["language", "source", "mutants"],
            "properties": {
                "language": {"type": "string"}, "source": {"type": "string"},
                "mutants": {"type": "array", "uniqueItems": True, "items": {
                    "type": "object", "required": ["id", "mutatorName", "location", "status"],
                    "properties": {
                        "id": {"type": "string"}, "mutatorName": {"type": "string"},
                        "replacement": {"type": "string"}, "description": {"type": "string"},
                        "statusReason": {"type": "string"},
                        "killedBy": {"type": "array", "items": {"type": "string"}},
                        "coveredBy": {"type": "array", "items": {"type": "string"}},
                        "status": {"enum": STATUSES},
                        "location": {"type": "object", "required": ["start", "end"],
                                     "properties": {"start": _POSITION, "end": _POSITION}}}}}}}},
        "testFiles": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["tests"],
            "properties": {"tests": {"type": "array", "items": {"type": "object", "required": ["id", "name"]}}}}},
        "framework": {"type": "object", "required": ["name"]},
        "system": {"type": "object", "required": ["ci"]},
        "performance": {"type": "object", "required": ["setup", "initialRun", "mutation"]},
    },
}


@pytest.fixture(scope="module")
def report() -> gm.MutationReport:
    rep = gm.mutate([L.Dense, L.ShiftedSoftmax, L.ShapesOnlyDouble, L.InitCrash, L.CompiledScale],
                    operators=["first-sample-only", "drop-term", "drop-factor", "swap-axis", "zero-grad"],
                    include_init=True, max_examples=8, seed=0, jobs=2, sensitivity=False)
    # every status shows up in the reports: add a timed-out and a non-compiling mutant
    spin = gm.mutants_of(L.Spin, operators=["sub-to-add"])[0]
    rep.layers.append(runner.LayerResult("Spin", "tests.fixtures_mutate.layers:Spin", L.__file__, [
        gm.MutantResult(spin, "Timeout", reason="ran over the 2s per-mutant limit (2.1s): a hang", seconds=2.1)]))
    rep.layers[0].results.append(gm.MutantResult(
        gm.mutants_of(L.Dense, operators=["matmul-to-mul"])[0], "CompileError", reason="SyntaxError: invalid syntax"))
    return rep


def test_the_fixture_report_has_every_status(report: gm.MutationReport) -> None:
    assert {r.status for r in report.results} == {"Killed", "Survived", "Ignored", "RuntimeError", "CompileError",
                                                  "Timeout"}


def test_terminal_report_has_score_and_mutants_by_checks_table(report: gm.MutationReport) -> None:
    text = report.format()
    assert re.search(r"^Dense: mutation score 100\.0%", text, re.MULTILINE)
    assert re.search(r"^ShapesOnlyDouble: mutation score 0\.0%", text, re.MULTILINE)
    header = next(ln for ln in text.splitlines() if ln.strip().startswith("mutant "))
    assert header.split()[-1] == "status"
    row = next(ln for ln in text.splitlines() if "first-sample-only:L" in ln)
    assert " K " in row and row.endswith("killed")
    survived = sum(r.status == "Survived" for r in report.results)
    assert f"SURVIVORS ({survived})" in text and "PROBABLY EQUIVALENT (1)" in text and "INCOMPETENT (2)" in text
    assert re.search(r"^mutation score \d+\.\d%: ", text.splitlines()[-1])


def _validate_required(doc: dict, schema: dict, where: str = "$") -> None:
    """The subset of JSON Schema STRYKER_REQUIRED uses, for machines without jsonschema."""
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "integer": int}
    if t:
        assert isinstance(doc, types[t]) and not isinstance(doc, bool), f"{where}: not a {t}"
    if "enum" in schema:
        assert doc in schema["enum"], f"{where}: {doc!r} not in {schema['enum']}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], doc), where
    if "minimum" in schema:
        assert doc >= schema["minimum"], where
    if "maximum" in schema:
        assert doc <= schema["maximum"], where
    for key in schema.get("required", ()):
        assert key in doc, f"{where}: missing {key!r}"
    for key, sub in schema.get("properties", {}).items():
        if key in doc:
            _validate_required(doc[key], sub, f"{where}.{key}")
    if "additionalProperties" in schema:
        for key, value in doc.items():
            _validate_required(value, schema["additionalProperties"], f"{where}[{key!r}]")
    if "items" in schema:
        for i, item in enumerate(doc):
            _validate_required(item, schema["items"], f"{where}[{i}]")
    if schema.get("uniqueItems"):
        dumped = [json.dumps(x, sort_keys=True) for x in doc]
        assert len(set(dumped)) == len(dumped), f"{where}: duplicate items"


def test_stryker_json_has_the_schema_v2_required_fields(report: gm.MutationReport, tmp_path) -> None:
    path = tmp_path / "mutation.json"
    report.write_json(str(path))
    doc = json.loads(path.read_text())
    _validate_required(doc, STRYKER_REQUIRED)
    try:
        import jsonschema
    except ImportError:
        pass
    else:
        jsonschema.validate(doc, STRYKER_REQUIRED)
    assert doc["schemaVersion"] == "2" and doc["thresholds"] == {"high": 80, "low": 60}
    mutants = [m for f in doc["files"].values() for m in f["mutants"]]
    assert len(mutants) == len(report.results)
    assert len({m["id"] for m in mutants}) == len(mutants)
    tests = {t["id"] for f in doc["testFiles"].values() for t in f["tests"]}
    assert tests == set(CHECK_ORDER)
    for m in mutants:
        assert set(m["killedBy"]) <= tests
        assert (m["status"] == "Killed") == bool(m["killedBy"])
        assert m["description"] and m["statusReason"] and "replacement" in m


def test_stryker_locations_point_at_the_original_text_in_the_file_source(report: gm.MutationReport) -> None:
    doc = report.to_stryker()
    key = os.path.relpath(L.__file__)
    f = doc["files"][key]
    with open(L.__file__) as fh:
        assert f["language"] == "python" and f["source"] == fh.read()
    lines = f["source"].splitlines()
    for m in f["mutants"]:
        s, e = m["location"]["start"], m["location"]["end"]
        assert s["line"] == e["line"]  # one-line sites in these fixtures
        line = lines[s["line"] - 1]
        mutated = line[: s["column"] - 1] + m["replacement"] + line[e["column"] - 1:]
        result = next(r for r in report.results if r.id == m["id"])
        assert mutated.strip() == result.mutant.mutated.strip()


def test_stryker_json_statuses_reasons_and_runtime_file(report: gm.MutationReport) -> None:
    doc = report.to_stryker()
    by_id = {m["id"]: m for f in doc["files"].values() for m in f["mutants"]}
    eq = next(m for m in by_id.values() if m["status"] == "Ignored")
    assert eq["statusReason"].startswith("probably equivalent: ") and "identical to the original's" in eq["statusReason"]
    killed = by_id[next(r.id for r in report.results if r.mutant.operator == "first-sample-only")]
    assert killed["statusReason"].startswith("killed by ") and "Reproduce: gradharness.check_layer(" in killed["statusReason"]
    runtime = doc["files"]["runtime/CompiledScale.py"]
    rlines = runtime["source"].splitlines()
    for m in runtime["mutants"]:
        assert m["mutatorName"] == "zero-grad" and m["status"] == "Killed"
        assert rlines[m["location"]["start"]["line"] - 1].startswith("backward -> ")
    assert {m["status"] for m in by_id.values()} == {"Killed", "Survived", "Ignored", "RuntimeError", "CompileError",
                                                     "Timeout"}
    layers = {lr["name"]: lr for lr in doc["gradharness"]["layers"]}
    assert [e["id"] for e in layers["ShiftedSoftmax"]["equivalents"]] == [eq["id"]]
    assert len(layers["ShapesOnlyDouble"]["survivors"]) == 2


def test_html_report_is_self_contained(report: gm.MutationReport) -> None:
    page = report.to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://|<link\b|\bsrc\s*=|@import", page), "the report must not reach the network"
    for r in report.results:
        assert r.id in page
    assert "- self.grads[&quot;b&quot;] = dout.sum(axis=0)" in page and "+ self.grads[&quot;b&quot;] = dout[0]" in page
    first_kill = next(r for r in report.results if r.status == "Killed")
    assert first_kill.message.splitlines()[0].replace("'", "&#x27;") in page
    assert "class='heat'" in page and "class='matrix'" in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _run_chromium(profile: os.PathLike, *args: str) -> subprocess.CompletedProcess:
    exe = _chromium()
    assert exe
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (Debian package `chromium`; "
                                                 "`apt-get install -y chromium`): the HTML report is not rendered")
def test_html_report_renders_in_headless_chromium(report: gm.MutationReport, tmp_path) -> None:
    path = tmp_path / "mutation.html"
    report.write_html(str(path))
    started = time.perf_counter()
    dom = _run_chromium(tmp_path / "profile", "--dump-dom", path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the script ran (it marks the body) and found every mutant's details
    assert 'data-rendered="ok"' in dom.stdout, dom.stdout[:500]
    assert f"{len(report.results)} of {len(report.results)} mutants listed" in dom.stdout
    assert "mutation report" in dom.stdout and 'id="total-score"' in dom.stdout
    shot = tmp_path / "shot.png"
    res = _run_chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1600", path.as_uri())
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000
    assert time.perf_counter() - started < 120
