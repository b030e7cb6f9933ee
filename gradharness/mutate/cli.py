"""`gradharness mutate TARGET...`: a CI gate on the strength of the gate itself.

    gradharness mutate reference_layers --min-score 90 --json mutation.json --html mutation.html

Exit codes (as `gradharness check`): 0 the score reaches --min-score, 1 it does not (or an
original layer fails its own checks, so its mutants cannot be judged), 2 interrupted,
3 internal error, 4 usage error, 5 nothing to mutate.

`add_subcommand(subparsers)` adds the `mutate` parser to the `gradharness` command and sets
``handler`` on it: ``args.handler(args, out) -> exit code`` (a usage error is raised as the
command's UsageError). `main(argv)` runs it standalone (``python -m gradharness.mutate``).
With no TARGET, the targets listed under ``[tool.gradharness]`` in pyproject.toml.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

OK, FAILED, INTERRUPTED, INTERNAL, USAGE, NO_TESTS = 0, 1, 2, 3, 4, 5


def _score(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"expected a score in [0, 100], got {text}")
    return value


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an int >= {low}, got {text}")
        return value

    return parse


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="a package or module (every declared layer in it), or module:Layer")
    p.add_argument("--json", metavar="PATH", help="write the Stryker mutation-testing-report-schema v2 JSON here")
    p.add_argument("--html", metavar="PATH", help="write the self-contained HTML report here")
    p.add_argument("--min-score", type=_score, default=None, metavar="N",
                   help="exit 1 when the mutation score (percent) is below N")
    p.add_argument("--max-examples", type=_int_at_least(1), default=None, metavar="N",
                   help="examples per check_layer run on each mutant (default 20)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="seed of every run (default 0)")
    p.add_argument("--jobs", "-j", type=_int_at_least(0), default=None, metavar="N",
                   help="worker processes (default: the local cores; 0 runs in this process)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per-mutant time limit (default: max(60 s, 30x the original's run))")
    p.add_argument("--kinds", choices=("auto", "source", "runtime", "all"), default="auto",
                   help="source mutations of the layer's code, runtime wrappers, or both (default auto: "
                        "source where the layer's code can be mutated, else runtime)")
    p.add_argument("--operators", type=_csv, default=None, metavar="NAMES",
                   help="comma-separated operators (default: all; see --list-mutators)")
    p.add_argument("--checks", type=_csv, default=None, metavar="NAMES", help="comma-separated checks to run")
    p.add_argument("--skip", type=_csv, default=None, metavar="NAMES", help="comma-separated checks to skip")
    p.add_argument("--sensitivity", action="store_true",
                   help="bisect the smallest gradient noise the checks catch, per tensor")
    p.add_argument("--include-init", action="store_true", help="mutate __init__ too (params are redrawn anyway)")
    p.add_argument("--no-equivalence", action="store_true",
                   help="do not compare survivors with the original (every survivor counts as survived)")
    p.add_argument("--list-mutators", action="store_true", help="print the mutation operators and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="print the summary only, not the mutants x checks table")
    return p


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `mutate` subcommand to the `gradharness` command's subparsers; sets ``handler``."""
    p = subparsers.add_parser("mutate", help="inject bugs into declared layers and report which checks catch them",
                              description="Inject bugs into declared layers and report which checks catch them.")
    configure(p)
    p.set_defaults(handler=run)
    return p


def _usage_error_class() -> type[Exception]:
    """The gradharness command's UsageError (printed as one line, exit code 4)."""
    try:
        from .._options import UsageError
    except ImportError:  # an older core: the CLI module holds it
        from ..cli import UsageError
    return UsageError


def _project_targets() -> list[str]:
    """The targets listed under [tool.gradharness] in the pyproject.toml of the current directory or its parents."""
    try:
        from .._targets import load_project
    except ImportError:
        return []
    targets = load_project(os.getcwd()).settings.get("targets")
    return list(targets) if isinstance(targets, list) else []


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The `mutate` subcommand: returns the exit code."""
    out = out or sys.stdout
    from .._errors import InvalidArgument
    from .runner import list_mutators, mutate

    if args.list_mutators:
        muts = list_mutators()
        width = max(len(n) for n in muts)
        for name, doc in muts.items():
            print(f"{name:<{width}}  {doc}", file=out)
        return OK
    usage = _usage_error_class()
    targets = list(args.targets) or _project_targets()
    if not targets:
        raise usage("no targets: name a module, a package or module:Layer (e.g. reference_layers), or list them "
                    "under [tool.gradharness] targets in pyproject.toml")
    overrides: dict[str, Any] = {}
    if args.checks:
        overrides["checks"] = tuple(args.checks)
    if args.skip:
        overrides["skip"] = tuple(args.skip)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        report = mutate(targets, kinds=args.kinds, operators=args.operators,
                        max_examples=args.max_examples or 20, seed=0 if args.seed is None else args.seed,
                        jobs=args.jobs, timeout=args.timeout, equivalence=not args.no_equivalence,
                        sensitivity=True if args.sensitivity else None, include_init=args.include_init, **overrides)
    except InvalidArgument as exc:
        # a bad target keeps the resolver's own one-line message
        cause = exc.__cause__ if isinstance(exc.__cause__, usage) else exc
        raise usage(str(cause)) from exc
    if not report.layers:
        print(f"gradharness: no declared layers in {', '.join(targets)}", file=out)
        return NO_TESTS
    color = bool(getattr(out, "isatty", lambda: False)())
    print(report.format(color=color, verbose=not args.quiet), file=out)
    if args.json:
        report.write_json(args.json)
        print(f"wrote {args.json}", file=out)
    if args.html:
        report.write_html(args.html)
        print(f"wrote {args.html}", file=out)
    if report.baseline_failed:
        names = ", ".join(lr.name for lr in report.baseline_failed)
        print(f"FAILED: {names} fail(s) its own checks; fix it before mutating it", file=out)
        return FAILED
    if not report.results:
        print("gradharness: no mutants: no operator applies to these layers", file=out)
        return NO_TESTS
    score = report.score
    if args.min_score is not None:
        value = 100.0 if score is None else score
        if value < args.min_score:
            print(f"FAILED: mutation score {value:.1f}% is below --min-score {args.min_score:g}", file=out)
            return FAILED
        print(f"passed: mutation score {value:.1f}% >= --min-score {args.min_score:g}", file=out)
    return OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradharness mutate",
                                description="Inject bugs into declared layers and report which checks catch them.")
    return configure(p)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    p = parser()

    usage = _usage_error_class()

    def usage_error(message: str) -> Any:
        raise usage(message)

    p.error = usage_error  # type: ignore[method-assign]
    from ..cli import guarded

    return guarded("gradharness mutate", lambda: run(p.parse_args(argv), out))


if __name__ == "__main__":
    sys.exit(main())
