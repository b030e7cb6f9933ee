"""The `gradharness` command: `check` gates CI on declared layers, `list` prints the checks.

Exit codes follow pytest: 0 all passed, 1 a check failed, 2 interrupted, 3 internal
error, 4 usage error, 5 nothing to check.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from typing import Any, Sequence, TextIO

from ._core import check_layer
from ._declare import Declaration, declaration_of, declared_in
from ._errors import InvalidArgument
from ._options import add_arguments, overrides
from ._report import Report
from .checks import CHECK_ORDER, REGISTRY

OK, FAILED, INTERRUPTED, INTERNAL, USAGE, NO_TESTS = 0, 1, 2, 3, 4, 5
JSON_SCHEMA_VERSION = 1
SYMBOLS = {"passed": ".", "failed": "F", "not-applicable": "-", "skipped": "s"}


class UsageError(Exception):
    """A bad target or option: printed as one line, exit code 4."""


def resolve(target: str) -> list[Declaration]:
    """Declared layers of a target: ``pkg.mod:Name`` or a module or package."""
    mod_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd()) if os.getcwd() not in sys.path else None
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UsageError(f"target {target!r}: cannot import module {mod_name!r} ({exc})") from exc
    if attr:
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise UsageError(f"target {target!r}: module {mod_name!r} has no attribute {part!r}")
            obj = getattr(obj, part)
        decl = declaration_of(obj)
        if decl is None:
            raise UsageError(f"target {target!r} is not a declared layer: decorate it with @gradharness.layer(...)")
        return [decl]
    return list(declared_in(module))


def _table_header() -> list[str]:
    legend = "  ".join(f"{i + 1}={n}" for i, n in enumerate(CHECK_ORDER))
    cols = " ".join(f"{i + 1:>2}" for i in range(len(CHECK_ORDER)))
    return [f"checks: {legend}", f"{'layer':<24} {cols}  result"]


def _row(report: Report) -> str:
    cells = " ".join(f"{SYMBOLS.get(report.checks[n].status, '?'):>2}" for n in CHECK_ORDER)
    result = "passed" if report.passed else "FAILED"
    return (f"{report.layer[:24]:<24} {cells}  {result} ({report.examples} examples, "
            f"{report.calls['forward']}f/{report.calls['backward']}b, {report.seconds:.1f}s)")


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gradharness-", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    targets = args.targets or []
    if not targets:
        raise UsageError("no targets: name a module, a package or module:Layer (e.g. reference_layers)")
    decls: list[Declaration] = []
    for t in targets:
        decls.extend(resolve(t))
    if not decls:
        print(f"gradharness: no declared layers in {', '.join(targets)}", file=out)
        return NO_TESTS
    opts = overrides(args)
    started = time.perf_counter()
    print("\n".join(_table_header()), file=out, flush=True)
    reports: list[Report] = []
    for decl in decls:
        try:
            report = check_layer(decl.target if decl.target is not None else decl.make, **opts)
        except InvalidArgument as exc:
            raise UsageError(f"layer {decl.name}: {exc}") from exc
        reports.append(report)
        print(_row(report), file=out, flush=True)
    failed = [r for r in reports if not r.passed]
    for r in failed:
        for f in r.failures:
            print("\n" + f.message, file=out)
    calls_f = sum(r.calls["forward"] for r in reports)
    calls_b = sum(r.calls["backward"] for r in reports)
    print(f"\n{len(reports)} layers: {len(reports) - len(failed)} passed, {len(failed)} failed; "
          f"{calls_f} forward and {calls_b} backward calls in {time.perf_counter() - started:.1f}s", file=out)
    if args.json:
        doc = {"schema_version": JSON_SCHEMA_VERSION, "passed": not failed,
               "layers": [r.to_dict() for r in reports]}
        _write_atomic(args.json, json.dumps(doc, indent=2, sort_keys=True))
    return FAILED if failed else OK


def run_list(out: TextIO) -> int:
    width = max(len(n) for n in CHECK_ORDER)
    for n in CHECK_ORDER:
        print(f"{n:<{width}}  {REGISTRY[n].doc}", file=out)
    return OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradharness", description="Property-based gradient checks for layers.")
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("check", help="check declared layers (a module, a package or module:Layer)")
    c.add_argument("targets", nargs="*", metavar="TARGET")
    add_arguments(c)
    c.add_argument("--json", metavar="PATH", help="write the machine-readable report here")
    sub.add_parser("list", help="print the checks and what each catches")
    return p




def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    p = parser()

    def usage_error(message: str) -> Any:
        raise UsageError(message)

    p.error = usage_error  # type: ignore[method-assign]
    for action in p._subparsers._group_actions if p._subparsers else []:  # noqa: SLF001
        for subp in getattr(action, "choices", {}).values():
            subp.error = usage_error
    try:
        args = p.parse_args(argv)
        if args.command == "check":
            return run_check(args, out)
        if args.command == "list":
            return run_list(out)
        p.print_help(out)
        return USAGE
    except UsageError as exc:
        print(f"gradharness: error: {exc}", file=sys.stderr)
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
