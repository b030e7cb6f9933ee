"""Mutation reports: the terminal table, Stryker's mutation-testing-report-schema v2 JSON, and HTML.

The HTML report is one self-contained file (inline CSS and JS, no network): the
score, a heat map of operators x checks, the mutants x checks matrix, and for every
mutant its diff and the message of the check that killed it (or the evidence it is
probably equivalent, or why it survived).
"""
from __future__ import annotations

import html
import json
import os
import platform
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..checks import CHECK_ORDER, REGISTRY

if TYPE_CHECKING:
    from .runner import LayerResult, MutantResult, MutationReport

#: Stryker's default thresholds: a score >= high is good, < low is bad
THRESHOLDS = {"high": 80, "low": 60}
STATUS_WORD = {"Killed": "killed", "Survived": "SURVIVED", "Timeout": "timeout", "Ignored": "equivalent?",
               "CompileError": "compile-error", "RuntimeError": "incompetent", "NoCoverage": "no-coverage"}
RUNTIME_DIR = "runtime"


def write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradharness-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _cell(r: Any, check: str) -> str:
    """One cell of the mutants x checks matrix: the check killed the mutant, ran on it, or did not apply."""
    return "killed" if check in r.killed_by else "ran" if check in r.covered_by else "n/a"


_CELL_MARK = {"killed": "K", "ran": ".", "n/a": "-"}
_CELL_HTML = {"killed": "<td class='k' title='killed by this check'>K</td>", "ran": "<td class='p'>.</td>",
              "n/a": "<td class='na'>-</td>"}


def _score_text(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.1f}%"


def _cols(report: MutationReport) -> list[str]:
    """The checks that appear in the report: every check that ran on some mutant, in report order."""
    used = {c for r in report.results for c in (*r.covered_by, *r.killed_by)}
    return [c for c in CHECK_ORDER if c in used] or list(CHECK_ORDER)


def _short(r: MutantResult) -> str:
    return r.mutant.id.split(":", 1)[1] if ":" in r.mutant.id else r.mutant.id


# ----- terminal --------------------------------------------------------------------------------------
def _mutant_section(title: str, results: list[Any], *, operator: bool) -> list[str]:
    """A titled block of mutants: each one's id and location, its diff and why it is listed."""
    out = ["", title]
    for r in results:
        out.append(f"  {r.mutant.id}  {r.mutant.location}" + (f"  [{r.mutant.operator}]" if operator else ""))
        out += [f"    {ln}" for ln in r.mutant.diff().splitlines()]
        out.append(f"    {r.reason}")
    return out


def format_terminal(report: MutationReport, *, color: bool = False, verbose: bool = True) -> str:
    cols = _cols(report)
    nums = {c: CHECK_ORDER.index(c) + 1 for c in cols}
    out: list[str] = []
    cfg = report.config
    out.append(f"gradharness mutate: {len(report.layers)} layer(s), {len(report.results)} mutants; "
               f"{cfg.get('max_examples')} examples per run, seed {cfg.get('seed')}, {cfg.get('jobs')} job(s)")
    out.append("checks: " + "  ".join(f"{nums[c]}={c}" for c in cols))
    width = max([len(_short(r)) for r in report.results] + [30])
    width = min(width, 56)
    for lr in report.layers:
        c = lr.counts()
        out.append("")
        out.append(f"{lr.name}: mutation score {_score_text(lr.score)}  ({c['Killed']} killed, {c['Survived']} survived, "
                   f"{c['Timeout']} timeout, {c['Ignored']} equivalent, {c['RuntimeError'] + c['CompileError']} "
                   f"incompetent; {lr.seconds:.1f}s of mutant runs)")
        for note in lr.notes:
            out.append(f"  note: {note}")
        if not lr.results:
            continue
        out.append(f"  {'mutant':<{width}} " + " ".join(f"{nums[c]:>2}" for c in cols) + "  status")
        for r in lr.results:
            cells = [" " + _CELL_MARK[_cell(r, col)] for col in cols]
            word = STATUS_WORD.get(r.status, r.status)
            if color and r.status == "Survived":
                word = f"\x1b[31m{word}\x1b[0m"
            out.append(f"  {_short(r)[:width]:<{width}} " + " ".join(cells) + f"  {word}")
        for s in lr.sensitivity:
            claimed = f"; the harness reports {s.claimed:.1e}" if s.claimed is not None else ""
            if s.caught is None:
                out.append(f"  sensitivity {s.tensor}: relative noise up to {s.missed:g} is NOT caught")
            else:
                missed = f" (missed at {s.missed:.1e})" if s.missed is not None else ""
                out.append(f"  sensitivity {s.tensor}: relative noise {s.caught:.1e} caught by "
                           f"{', '.join(s.killed_by) or '?'}{missed}{claimed}")
    survivors = report.survivors()
    if survivors:
        out += _mutant_section(f"SURVIVORS ({len(survivors)}): a check is blind to these", survivors, operator=True)
    eq = report.equivalents()
    if eq and verbose:
        out += _mutant_section(f"PROBABLY EQUIVALENT ({len(eq)}): not counted in the score", eq, operator=False)
    bad = [r for r in report.results if r.status in ("CompileError", "RuntimeError")]
    if bad and verbose:
        out.append("")
        out.append(f"INCOMPETENT ({len(bad)}): not counted in the score")
        for r in bad:
            out.append(f"  {r.mutant.id}  {r.mutant.location}: {r.reason}")
    for lr in report.baseline_failed:
        out.append("")
        out.append(f"BASELINE FAILED: {lr.name}: {lr.baseline.summary if lr.baseline else ''}")
    counts = {s: sum(r.status == s for r in report.results) for s in ("Killed", "Survived", "Timeout", "Ignored")}
    incompetent = sum(r.status in ("CompileError", "RuntimeError") for r in report.results)
    out.append("")
    out.append(f"mutation score {_score_text(report.score)}: {counts['Killed']} killed, {counts['Timeout']} timeout, "
               f"{counts['Survived']} survived; {counts['Ignored']} probably equivalent and {incompetent} incompetent "
               f"left out; {report.seconds:.1f}s")
    return "\n".join(out)


# ----- Stryker JSON ---------------------------------------------------------------------------------
def _file_key(path: str | None) -> str:
    if not path:
        return ""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def _runtime_source(lr: LayerResult) -> str:
    lines = []
    for r in lr.results:
        if r.mutant.kind == "runtime":
            while len(lines) < r.mutant.line - 1:
                lines.append("")
            lines.append(r.mutant.mutated)
    return "\n".join(lines) + "\n"


def _mutant_json(r: MutantResult) -> dict[str, Any]:
    m = r.mutant
    d: dict[str, Any] = {
        "id": m.id,
        "mutatorName": m.operator,
        "replacement": m.replacement,
        "location": {"start": {"line": m.line, "column": m.column}, "end": {"line": m.end_line, "column": m.end_column}},
        "status": r.status,
        "description": m.description,
        "statusReason": _status_reason(r),
        "killedBy": list(r.killed_by),
        "coveredBy": list(r.covered_by),
        "testsCompleted": len(r.covered_by),
        "duration": round(r.seconds * 1000.0, 1),
        "static": False,
    }
    return d


def _status_reason(r: MutantResult) -> str:
    if r.status == "Killed" and r.message:
        extra = f"\ndiagnosis: {r.diagnosis}" if r.diagnosis else ""
        return f"{r.reason}{extra}\n\n{r.message}"
    return r.reason


def to_stryker(report: MutationReport) -> dict[str, Any]:
    """The report in Stryker's mutation-testing-report-schema, schemaVersion 2."""
    files: dict[str, Any] = {}
    for lr in report.layers:
        by_file: dict[str, list[Any]] = {}
        for r in lr.results:
            if r.mutant.kind == "source":
                key = _file_key(r.mutant.file)
            else:
                key = f"{RUNTIME_DIR}/{lr.name}.py"
            by_file.setdefault(key, []).append(r)
        for key, results in by_file.items():
            entry = files.get(key)
            if entry is None:
                if key.startswith(RUNTIME_DIR + "/"):
                    source = _runtime_source(lr)
                else:
                    path = results[0].mutant.file
                    with open(path, encoding="utf-8") as fh:
                        source = fh.read()
                entry = files[key] = {"language": "python", "source": source, "mutants": []}
            entry["mutants"].extend(_mutant_json(r) for r in results)
    tests = [{"id": c, "name": f"{c}: {REGISTRY[c].doc}"} for c in CHECK_ORDER]
    layers = []
    for lr in report.layers:
        layers.append({
            "name": lr.name, "target": lr.ref, "score": lr.score, "counts": lr.counts(), "notes": lr.notes,
            "baseline": None if lr.baseline is None else {"passed": lr.baseline.passed, "summary": lr.baseline.summary,
                                                          "failedChecks": lr.baseline.failed_checks},
            "equivalents": [{"id": r.mutant.id, "evidence": r.reason} for r in lr.equivalents()],
            "survivors": [{"id": r.mutant.id, "line": r.mutant.line, "reason": r.reason} for r in lr.survivors()],
            "sensitivity": [{"tensor": s.tensor, "caught": s.caught, "missed": s.missed, "killedBy": s.killed_by,
                             "claimed": s.claimed, "runs": s.runs} for s in lr.sensitivity],
        })
    return {
        "schemaVersion": "2",
        "thresholds": dict(THRESHOLDS),
        "projectRoot": os.getcwd(),
        "files": files,
        "testFiles": {"gradharness checks": {"tests": tests}},
        "config": report.config,
        "framework": {"name": "gradharness", "version": __version__,
                      "dependencies": _dependencies()},
        "system": {"ci": bool(os.environ.get("CI")), "os": {"platform": sys.platform,
                                                            "description": platform.platform()},
                   "cpu": {"logicalCores": os.cpu_count() or 1}},
        "performance": {"setup": round(report.setup_seconds * 1000.0), "initialRun": round(report.baseline_seconds * 1000.0),
                        "mutation": round(max(report.seconds - report.setup_seconds - report.baseline_seconds, 0.0) * 1000.0)},
        "mutationScore": report.score,
        "gradharness": {"layers": layers},
    }


def _dependencies() -> dict[str, str]:
    deps = {}
    for name in ("numpy", "hypothesis"):
        mod = sys.modules.get(name)
        if mod is not None:
            deps[name] = str(getattr(mod, "__version__", "?"))
    return deps


# ----- HTML -----------------------------------------------------------------------------------------
_CSS = """
:root { --killed:#2e7d32; --survived:#c62828; --ignored:#757575; --timeout:#ef6c00; --bad:#6a1b9a; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0; color: #212121; background: #fafafa; }
header { background: #263238; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { opacity: .8; font-size: 12px; }
main { padding: 16px 24px; }
.score { display: inline-block; font-size: 28px; font-weight: 700; padding: 6px 14px; border-radius: 6px; color: #fff; }
.score.good { background: var(--killed); } .score.warn { background: var(--timeout); } .score.bad { background: var(--survived); }
.score.na { background: var(--ignored); }
section.layer { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; margin: 16px 0; padding: 12px 16px; }
section.layer h2 { margin: 0 0 8px; font-size: 17px; display: flex; gap: 12px; align-items: center; }
section.layer h2 .score { font-size: 15px; padding: 2px 8px; }
.counts span { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #e0e0e0; padding: 2px 6px; text-align: center; font-size: 12px; }
th.rot { height: 130px; white-space: nowrap; vertical-align: bottom; padding: 4px 2px; }
th.rot div { transform: rotate(-60deg); transform-origin: left bottom; width: 18px; translate: 10px 0; }
th.after-rot { padding-left: 48px; vertical-align: bottom; }
td.name, th.name { text-align: left; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: nowrap; }
td.k { background: var(--killed); color: #fff; font-weight: 700; }
td.p { background: #f1f8e9; color: #9e9e9e; }
td.na { background: #f5f5f5; color: #bdbdbd; }
tr.Survived td.name { color: var(--survived); font-weight: 700; }
.status { font-weight: 700; }
.status.Killed { color: var(--killed); } .status.Survived { color: var(--survived); }
.status.Ignored { color: var(--ignored); } .status.Timeout { color: var(--timeout); }
.status.CompileError, .status.RuntimeError { color: var(--bad); }
.heat td.cell { min-width: 34px; }
details.mutant { border-left: 4px solid #e0e0e0; margin: 6px 0; padding: 4px 10px; background: #fcfcfc; }
details.mutant.Killed { border-color: var(--killed); } details.mutant.Survived { border-color: var(--survived); }
details.mutant.Ignored { border-color: var(--ignored); } details.mutant.Timeout { border-color: var(--timeout); }
details.mutant.CompileError, details.mutant.RuntimeError { border-color: var(--bad); }
details.mutant summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 12px; }
pre { background: #f5f5f5; padding: 8px; overflow-x: auto; font-size: 12px; margin: 6px 0; }
pre.diff .del { background: #ffebee; color: #b71c1c; display: block; }
pre.diff .add { background: #e8f5e9; color: #1b5e20; display: block; }
.filters button { margin-right: 6px; border: 1px solid #90a4ae; background: #fff; border-radius: 4px; padding: 3px 10px; cursor: pointer; }
.filters button.on { background: #263238; color: #fff; }
.note { color: #616161; font-style: italic; }
.hidden { display: none !important; }
"""

_JS = """
(function () {
  var data = JSON.parse(document.getElementById('mutation-data').textContent);
  var buttons = document.querySelectorAll('.filters button');
  function apply(status) {
    buttons.forEach(function (b) { b.classList.toggle('on', b.dataset.status === status); });
    document.querySelectorAll('[data-status]').forEach(function (el) {
      if (el.tagName === 'BUTTON') return;
      el.classList.toggle('hidden', status !== 'all' && el.dataset.status !== status);
    });
  }
  buttons.forEach(function (b) { b.addEventListener('click', function () { apply(b.dataset.status); }); });
  document.querySelectorAll('td.name a').forEach(function (a) {
    a.addEventListener('click', function () {
      var d = document.getElementById(a.getAttribute('href').slice(1));
      if (d) { d.open = true; }
    });
  });
  var total = data.mutants, shown = document.querySelectorAll('details.mutant').length;
  document.getElementById('js-status').textContent = shown + ' of ' + total + ' mutants listed';
  document.body.setAttribute('data-rendered', shown === total ? 'ok' : 'mismatch');
})();
"""


def _score_class(score: float | None) -> str:
    if score is None:
        return "na"
    if score >= THRESHOLDS["high"]:
        return "good"
    return "warn" if score >= THRESHOLDS["low"] else "bad"


def _heat_color(frac: float) -> str:
    # white -> green as more of an operator's mutants are killed by the check
    light = 97 - 60 * frac
    return f"background: hsl(122, 45%, {light:.0f}%); color: {'#fff' if frac > 0.55 else '#212121'}"


def to_html(report: MutationReport) -> str:
    e = html.escape
    cols = _cols(report)
    parts: list[str] = []
    cfg = report.config
    score = report.score
    parts.append(f"<header><h1>gradharness mutation report</h1><div class='meta'>{len(report.layers)} layer(s), "
                 f"{len(report.results)} mutants; {e(str(cfg.get('max_examples')))} examples per run, seed "
                 f"{e(str(cfg.get('seed')))}; {report.seconds:.1f}s; gradharness {e(__version__)}</div></header><main>")
    counts = {s: sum(r.status == s for r in report.results) for s in
              ("Killed", "Survived", "Timeout", "Ignored", "CompileError", "RuntimeError")}
    parts.append(f"<p><span class='score {_score_class(score)}' id='total-score'>{_score_text(score)}</span> "
                 f"<span class='counts'>" + "".join(
                     f"<span class='status {s}'>{STATUS_WORD[s]}: {n}</span>" for s, n in counts.items()) +
                 "</span></p>")
    parts.append("<p class='note'>Score = (killed + timeout) / (killed + timeout + survived). Probably equivalent "
                 "and incompetent mutants are left out. <span id='js-status'></span></p>")
    parts.append("<div class='filters'>Show: " + "".join(
        f"<button data-status='{s}'{' class=on' if s == 'all' else ''}>{e(w)}</button>"
        for s, w in (("all", "all"), ("Killed", "killed"), ("Survived", "survived"), ("Ignored", "equivalent"),
                     ("Timeout", "timeout"), ("RuntimeError", "incompetent"))) + "</div>")
    parts.append(_heat_map(report, cols))
    index = 0
    for lr in report.layers:
        parts.append(f"<section class='layer' id='layer-{e(lr.name)}'><h2>{e(lr.name)} <span class='score "
                     f"{_score_class(lr.score)}'>{_score_text(lr.score)}</span></h2>")
        if lr.ref:
            parts.append(f"<div class='note'>{e(lr.ref)}</div>")
        for note in lr.notes:
            parts.append(f"<p class='note'>{e(note)}</p>")
        if lr.sensitivity:
            parts.append("<table><tr><th>tensor</th><th>smallest noise caught</th><th>largest missed</th>"
                         "<th>caught by</th><th>harness's own estimate</th></tr>")
            for s in lr.sensitivity:
                parts.append(f"<tr><td class='name'>{e(s.tensor)}</td><td>{'-' if s.caught is None else f'{s.caught:.1e}'}"
                             f"</td><td>{'-' if s.missed is None else f'{s.missed:.1e}'}</td><td>{e(', '.join(s.killed_by))}"
                             f"</td><td>{'-' if s.claimed is None else f'{s.claimed:.1e}'}</td></tr>")
            parts.append("</table>")
        if lr.results:
            parts.append("<table class='matrix'><tr><th class='name'>mutant</th>" + "".join(
                f"<th class='rot' title='{e(REGISTRY[c].doc)}'><div>{e(c)}</div></th>" for c in cols) +
                "<th class='after-rot'>status</th></tr>")
            start = index
            for r in lr.results:
                cells = [_CELL_HTML[_cell(r, c)] for c in cols]
                parts.append(f"<tr class='{r.status}' data-status='{r.status}'><td class='name'><a href='#m{index}'>"
                             f"{e(_short(r))}</a></td>{''.join(cells)}<td class='status {r.status}'>"
                             f"{e(STATUS_WORD.get(r.status, r.status))}</td></tr>")
                index += 1
            parts.append("</table>")
            index = start
            for r in lr.results:
                parts.append(_mutant_details(r, index))
                index += 1
        parts.append("</section>")
    parts.append("</main>")
    data = json.dumps({"mutants": len(report.results), "score": score}).replace("</", "<\\/")
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>gradharness mutation report"
            f"</title>\n<style>{_CSS}</style></head>\n<body>\n{body}\n"
            f"<script type='application/json' id='mutation-data'>{data}</script>\n<script>{_JS}</script>\n</body></html>\n")


def _heat_map(report: MutationReport, cols: list[str]) -> str:
    e = html.escape
    valid = [r for r in report.results if r.status not in ("CompileError", "RuntimeError")]
    operators = list(dict.fromkeys(r.mutant.operator for r in valid))
    if not operators:
        return ""
    rows = ["<h2>Which checks catch which bugs</h2><p class='note'>Share of each operator's mutants that each check "
            "kills (all layers).</p><table class='heat'><tr><th class='name'>operator</th><th>mutants</th>" +
            "".join(f"<th class='rot'><div>{e(c)}</div></th>" for c in cols) + "<th class='after-rot'>score</th></tr>"]
    for op in operators:
        rs = [r for r in valid if r.mutant.operator == op]
        cells = []
        for c in cols:
            k = sum(c in r.killed_by for r in rs)
            frac = k / len(rs)
            cells.append(f"<td class='cell' style='{_heat_color(frac)}' title='{k} of {len(rs)}'>"
                         f"{'' if k == 0 else k}</td>")
        from .runner import score_of

        s = score_of(rs)
        rows.append(f"<tr><td class='name'>{e(op)}</td><td>{len(rs)}</td>{''.join(cells)}"
                    f"<td class='{_score_class(s)}'>{_score_text(s)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _mutant_details(r: MutantResult, index: int) -> str:
    e = html.escape
    m = r.mutant
    diff = (f"<pre class='diff'><span class='del'>- {e(m.original.strip())}</span>"
            f"<span class='add'>+ {e(m.mutated.strip())}</span></pre>")
    body = [f"<div>{e(m.description)}</div>", f"<div class='note'>{e(m.location)}</div>", diff,
            f"<div><b>{e(STATUS_WORD.get(r.status, r.status))}</b>: {e(r.reason)}</div>"]
    if r.diagnosis:
        body.append(f"<div>diagnosis: <code>{e(r.diagnosis)}</code></div>")
    if r.message:
        body.append(f"<pre class='message'>{e(r.message)}</pre>")
    open_attr = " open" if r.status == "Survived" else ""
    return (f"<details class='mutant {r.status}' id='m{index}' data-status='{r.status}'{open_attr}><summary>"
            f"<span class='status {r.status}'>{e(STATUS_WORD.get(r.status, r.status))}</span> {e(m.id)}"
            f"{' (killed by ' + e(', '.join(r.killed_by)) + ')' if r.killed_by else ''}</summary>{''.join(body)}</details>")
