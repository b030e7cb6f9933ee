"""The `gradharness` command: `check` gates CI on declared layers, `list` prints the checks.

    gradharness check [TARGET...] [--max-examples N] [--seed N] [--profile P] [--checks A,B] [--skip A,B]
                      [--json PATH] [--junitxml PATH]
    gradharness list

A target is ``pkg.module:Name`` (one declared layer), a module or a package (every declared layer
in it), or a path to one; with no target, the ``targets`` listed under ``[tool.gradharness]`` in
the pyproject.toml of the current directory or its parents. That table may also set every run
option (``max_examples = 20``...); the command line wins.

Exit codes follow pytest: 0 all passed, 1 a check failed, 2 interrupted, 3 internal error,
4 usage error, 5 nothing to check.

Extension hook: if the module ``gradharness.mutate.cli`` exists and has
``add_subcommand(subparsers)``, it is called while the parser is built; the subcommand it adds
sets ``handler=fn`` (``parser.set_defaults(handler=fn)``), and ``fn(args, out) -> int`` runs it
(it may raise UsageError for a one-line usage error). ``gradharness list`` also prints
``gradharness.mutate.list_mutators()`` when that exists.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, TextIO

from ._core import check_layer
from ._declare import Declaration
from ._errors import InvalidArgument
from ._options import (
    UsageError,
    add_arguments,
    layer_options,
    merge,
    overrides,
    selected_checks,
    with_session_seed,
)
from ._report import Report
from ._targets import load_project, resolve, resolve_all, target_of
from .checks import CHECK_ORDER, REGISTRY

__all__ = ["UsageError", "main", "parser", "resolve"]

OK, FAILED, INTERRUPTED, INTERNAL, USAGE, NO_TESTS = 0, 1, 2, 3, 4, 5
JSON_SCHEMA_VERSION = 1
SYMBOLS = {"passed": ".", "failed": "F", "not-applicable": "-", "skipped": "s"}
GRADIENT_CHECKS = {"grad-input": ("x",), "grad-params": None}
NAME_WIDTH = 24


# ----- presentation shared with the pytest plugin ---------------------------------------
def table_header() -> list[str]:
    """The legend and the column header of the layer x check table."""
    legend = "  ".join(f"{i + 1}={n}" for i, n in enumerate(CHECK_ORDER))
    cols = " ".join(f"{i + 1:>2}" for i in range(len(CHECK_ORDER)))
    return [f"checks: {legend}", f"{'layer':<{NAME_WIDTH}} {cols}  result"]


def table_row(name: str, cells: Mapping[str, str], result: str) -> str:
    """One row: a symbol per check (`cells`, missing ones blank) and the result text."""
    body = " ".join(f"{cells.get(n, ' '):>2}" for n in CHECK_ORDER)
    return f"{name[:NAME_WIDTH]:<{NAME_WIDTH}} {body}  {result}"


def report_stats(report: Report) -> str:
    """``22 examples, 1553f/280b, 0.3s``: what one layer's run spent."""
    return (f"{report.examples} examples, {report.calls['forward']}f/{report.calls['backward']}b, "
            f"{report.seconds:.1f}s")


def _row(report: Report) -> str:
    cells = {n: SYMBOLS.get(report.checks[n].status, "?") for n in CHECK_ORDER if n in report.checks}
    return table_row(report.layer, cells, f"{'passed' if report.passed else 'FAILED'} ({report_stats(report)})")


def sensitivity_text(report: Report, check: str) -> str:
    """The gradient sensitivity a passing verdict of a gradient check achieved, per dtype and tensor."""
    tensors = GRADIENT_CHECKS.get(check, ())
    parts = []
    for dt, per in report.sensitivity.items():
        chosen = {k: v for k, v in per.items() if (k in tensors if tensors is not None else k != "x")}
        if chosen:
            parts.append(f"{dt}: " + ", ".join(f"{k} {v:.1e}" for k, v in chosen.items()))
    return "; ".join(parts)


def check_properties(report: Report, check: str) -> list[tuple[str, str]]:
    """Per-test properties of one check of one layer (JUnit XML): check, layer, status, and for a
    failure the worst relative error, the diagnosis, the shrunk example and its reproduction."""
    stat = report.checks.get(check)
    props = [("check", check), ("layer", report.layer), ("status", stat.status if stat else "skipped")]
    for f in report.failures:
        if f.check != check:
            continue
        ev = f.evidence or {}
        rel = ev.get("max_rel", ev.get("probe_relative_error"))
        if isinstance(rel, (int, float)):
            props.append(("max_rel_error", f"{rel:.3g}"))
        diagnosis = getattr(f, "diagnosis", None)
        if diagnosis:
            props.append(("diagnosis", str(diagnosis)))
        if f.tensor:
            props.append(("tensor", str(f.tensor)))
        props.append(("example", json.dumps(f.example, sort_keys=True, default=repr)))
        props.append(("reproduce", f.reproduce))
        break
    if check in GRADIENT_CHECKS and stat is not None and stat.status == "passed":
        sens = sensitivity_text(report, check)
        if sens:
            props.append(("sensitivity", sens))
    return props


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a report: a temp file in the same directory, then os.replace (readers never see half)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradharness-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_write_atomic = write_atomic  # the name earlier code used


def json_document(layers: list[dict[str, Any]], *, front_end: str, settings: Mapping[str, Any], seed: int | None,
                  seconds: float, interrupted: bool = False) -> dict[str, Any]:
    """The JSON report (schema_version 1): a header, totals, and one entry per layer."""
    from . import __version__

    ran = [e for e in layers if e.get("ran")]
    failed = [e for e in ran if not e.get("passed")]
    calls = {k: sum(e.get("calls", {}).get(k, 0) for e in ran) for k in ("forward", "backward", "build")}
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "tool": "gradharness", "version": __version__, "front_end": front_end,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "passed": not failed and not interrupted, "interrupted": interrupted,
        "seed": seed, "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "summary": {"layers": len(layers), "passed": len(ran) - len(failed), "failed": len(failed),
                    "not_run": len(layers) - len(ran), "calls": calls, "seconds": round(seconds, 3)},
        "layers": layers,
    }


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    return _XML_BAD.sub("?", text)


def junit_document(entries: list[tuple[str, Report | None, list[str]]], seconds: float) -> str:
    """JUnit XML: one testcase per layer x selected check; the failure text is the layered message."""
    suite = ET.Element("testsuite", name="gradharness", hostname=platform.node(),
                       timestamp=datetime.datetime.now().isoformat(timespec="seconds"))
    counts = {"tests": 0, "failures": 0, "skipped": 0, "errors": 0}
    for target, report, selected in entries:
        classname = target.replace(":", ".")
        per = (report.seconds / max(len(selected), 1)) if report is not None else 0.0
        for check in selected:
            counts["tests"] += 1
            case = ET.SubElement(suite, "testcase", classname=classname, name=check, time=f"{per:.3f}")
            if report is None:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message="not run (interrupted)")
                continue
            props = ET.SubElement(case, "properties")
            for k, v in check_properties(report, check):
                ET.SubElement(props, "property", name=k, value=_xml(v))
            status = report.checks[check].status if check in report.checks else "skipped"
            failures = [f for f in report.failures if f.check == check]
            if failures:
                counts["failures"] += 1
                first = failures[0].message.splitlines()[0]
                node = ET.SubElement(case, "failure", message=_xml(first), type=f"gradharness.{check}")
                node.text = _xml("\n\n".join(f.message for f in failures))
            elif status in ("not-applicable", "skipped"):
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message="not applicable" if status == "not-applicable" else "skipped")
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", f"{seconds:.3f}")
    root = ET.Element("testsuites", name="gradharness")
    for k in ("tests", "failures", "skipped", "errors"):
        root.set(k, suite.get(k, "0"))
    root.set("time", f"{seconds:.3f}")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def layers_text(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


# ----- progress --------------------------------------------------------------------------
class Progress:
    """On a terminal, one status line rewritten in place (``\\r``) while a layer runs; elsewhere nothing
    (in CI logs each layer's row, printed as it finishes, is the progress)."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        isatty = getattr(out, "isatty", None)
        self.live = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self.shown = False

    def update(self, done: int, name: str) -> None:
        if self.live:
            self.out.write(f"\r\x1b[K[{done + 1}/{self.total}] checking {name} ...")
            self.out.flush()
            self.shown = True

    def clear(self) -> None:
        if self.live and self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.shown = False


# ----- gradharness check -----------------------------------------------------------------
def _session_seed(settings: Mapping[str, Any]) -> tuple[int | None, str]:
    """The seed shared by every layer of this run, and how the header describes it."""
    if settings.get("seed") is not None:
        return settings["seed"], f"seed {settings['seed']}"
    if settings.get("profile") == "ci":
        return None, "derandomized (profile ci)"
    seed = random.SystemRandom().randrange(1_000_000)
    return seed, f"seed {seed} (random; --seed {seed} repeats this run)"


def _under(root: Path, path: str | None) -> str | None:
    if path is None:
        return None
    return path if os.path.isabs(path) else str(root / path)


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    cwd = Path.cwd()
    project = load_project(cwd)
    cli = overrides(args)
    targets = list(args.targets or [])
    root = project.path.parent if project.path is not None else cwd
    search = [cwd] + ([root] if project.path is not None else [])
    base = cwd
    if not targets:
        targets = list(project.settings.get("targets") or [])
        base = root  # paths in pyproject.toml are relative to it
        if not targets:
            where = f"in {project.path}" if project.path else "in a pyproject.toml"
            raise UsageError("no targets: name a module, a package or module:Layer (e.g. reference_layers), "
                             f"or list them as targets = [...] under [tool.gradharness] {where}")
    decls = resolve_all(targets, search_path=search, base=base)
    if not decls:
        print(f"gradharness: no declared layers in {', '.join(targets)}", file=out)
        return NO_TESTS
    project_opts = {k: v for k, v in project.settings.items() if k not in ("targets", "junitxml")}
    run_level = merge(project_opts, cli)
    # report paths: from the command line relative to the current directory, from pyproject.toml to its directory
    json_path = cli.get("json") or _under(root, project.settings.get("json"))
    junit_path = args.junitxml or _under(root, project.settings.get("junitxml"))
    seed, seed_text = _session_seed(run_level)

    plans: list[tuple[Declaration, dict[str, Any], list[str]]] = []
    for decl in decls:
        merged = merge(project_opts, decl.options, cli)
        plans.append((decl, with_session_seed(layer_options(merged), seed), selected_checks(merged)))
    if not any(sel for _, _, sel in plans):
        print("gradharness: nothing to check: the checks and skip settings leave no check to run", file=out)
        return NO_TESTS

    from . import __version__

    started = time.perf_counter()
    print(f"gradharness {__version__}: {layers_text(len(decls))}; {seed_text}", file=out)
    print("\n".join(table_header()), file=out, flush=True)
    progress = Progress(out, len(plans))
    done: list[tuple[Declaration, Report | None, list[str]]] = []
    interrupted = False
    try:
        for i, (decl, opts, selected) in enumerate(plans):
            if not selected:
                done.append((decl, None, selected))
                progress.clear()
                print(table_row(decl.name, {n: "s" for n in CHECK_ORDER}, "nothing selected"), file=out, flush=True)
                continue
            progress.update(i, decl.name)
            target = decl.target if decl.target is not None else decl.make
            try:
                report = check_layer(target, **opts)
            except InvalidArgument as exc:
                raise UsageError(f"layer {decl.name}: {exc}") from exc
            done.append((decl, report, selected))
            progress.clear()
            print(_row(report), file=out, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.clear()
    seconds = time.perf_counter() - started
    reports = [r for _, r, _ in done if r is not None]
    failed = [r for r in reports if not r.passed]
    for r in failed:
        for f in r.failures:
            print("\n" + f.message, file=out)
    calls_f = sum(r.calls["forward"] for r in reports)
    calls_b = sum(r.calls["backward"] for r in reports)
    if interrupted:
        print(f"\ngradharness: interrupted after {len(done)} of {len(plans)} layers", file=out)
    print(f"\n{layers_text(len(reports))}: {len(reports) - len(failed)} passed, {len(failed)} failed; "
          f"{calls_f} forward and {calls_b} backward calls in {seconds:.1f}s", file=out)
    if json_path:
        entries = []
        for decl, rep, selected in done:
            entry: dict[str, Any] = rep.to_dict() if rep is not None else {
                "layer": decl.name, "passed": True, "failures": [],
                "checks": {n: {"name": n, "status": "skipped", "ran": 0, "not_applicable": 0, "failed": 0}
                           for n in CHECK_ORDER}}
            entry.update({"target": target_of(decl), "ran": rep is not None, "selected": selected})
            entries.append(entry)
        for decl, _, selected in plans[len(done):]:
            entries.append({"layer": decl.name, "target": target_of(decl), "ran": False, "passed": None,
                            "selected": selected, "failures": []})
        settings = {k: v for k, v in run_level.items() if k != "json"}
        doc = json_document(entries, front_end="cli", settings=settings, seed=seed, seconds=seconds,
                            interrupted=interrupted)
        write_atomic(json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        print(f"JSON report: {json_path}", file=out)
    if junit_path:
        entries_x = [(target_of(d), r, sel) for d, r, sel in done]
        entries_x += [(target_of(d), None, sel) for d, _, sel in plans[len(done):]]
        write_atomic(junit_path, junit_document(entries_x, seconds))
        print(f"JUnit XML: {junit_path}", file=out)
    if interrupted:
        raise KeyboardInterrupt
    return FAILED if failed else OK


# ----- gradharness list ------------------------------------------------------------------
def _mutators() -> list[tuple[str, str]] | None:
    """``gradharness.mutate.list_mutators()`` as (name, doc) pairs; None when there is no such module."""
    try:
        mod = importlib.import_module("gradharness.mutate")
    except ModuleNotFoundError as exc:
        if exc.name == "gradharness.mutate":
            return None
        raise
    fn = getattr(mod, "list_mutators", None)
    if fn is None:
        return None
    found = fn()
    items: Iterable[Any] = found.items() if isinstance(found, Mapping) else found
    pairs = []
    for item in items:
        if isinstance(item, str):
            pairs.append((item, ""))
        elif isinstance(item, tuple) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        else:
            pairs.append((str(getattr(item, "name", item)), str(getattr(item, "doc", "") or "")))
    return pairs


def run_list(out: TextIO) -> int:
    width = max(len(n) for n in CHECK_ORDER)
    for n in CHECK_ORDER:
        print(f"{n:<{width}}  {REGISTRY[n].doc}", file=out)
    mutators = _mutators()
    if mutators is not None:
        print("\nmutators:", file=out)
        w = max([len(n) for n, _ in mutators] or [0])
        for name, doc in mutators:
            print(f"  {name:<{w}}  {doc}".rstrip(), file=out)
    return OK


# ----- the parser ------------------------------------------------------------------------
def _subcommand_hook() -> Callable[[Any], Any] | None:
    try:
        mod = importlib.import_module("gradharness.mutate.cli")
    except ModuleNotFoundError as exc:
        if exc.name in ("gradharness.mutate", "gradharness.mutate.cli"):
            return None
        raise
    return getattr(mod, "add_subcommand", None)


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="gradharness", description="Property-based gradient checks for layers.")
    p.add_argument("--version", action="version", version=f"gradharness {__version__}")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("check", help="check declared layers (a module, a package or module:Layer)",
                       description="Check declared layers. With no TARGET, the targets listed under "
                                   "[tool.gradharness] in pyproject.toml.")
    c.add_argument("targets", nargs="*", metavar="TARGET",
                   help="pkg.module:Layer, a module, a package, or a path to one")
    add_arguments(c)
    c.add_argument("--junitxml", metavar="PATH", help="write a JUnit XML report here (one testcase per layer x check)")
    sub.add_parser("list", help="print the checks and what each catches")
    hook = _subcommand_hook()
    if hook is not None:
        hook(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        p = parser()
    except Exception:  # noqa: BLE001 - a broken extension: an internal error with its traceback
        print("gradharness: internal error\n" + traceback.format_exc(), file=sys.stderr)
        return INTERNAL

    def usage_error(message: str) -> Any:
        raise UsageError(message)

    p.error = usage_error  # type: ignore[method-assign]
    for action in p._subparsers._group_actions if p._subparsers else []:
        for subp in getattr(action, "choices", {}).values():
            subp.error = usage_error
    def dispatch() -> int:
        args = p.parse_args(argv)
        handler = getattr(args, "handler", None)
        if callable(handler):
            return int(handler(args, out))
        if args.command == "check":
            return run_check(args, out)
        if args.command == "list":
            return run_list(out)
        p.print_help(out)
        return USAGE

    return guarded("gradharness", dispatch)


def guarded(prog: str, command: Callable[[], int]) -> int:
    """Run a command, turning what it raises into pytest-style exit codes and one-line messages."""
    try:
        return command()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("gradharness: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # the reader (head, a pager) went away: stop quietly, as other Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK
    except Exception:  # noqa: BLE001 - an internal error, reported with its traceback
        print("gradharness: internal error\n" + traceback.format_exc(), file=sys.stderr)
        return INTERNAL


if __name__ == "__main__":
    sys.exit(main())
