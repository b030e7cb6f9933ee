"""The mutation runner: build every mutant of a layer, run the layer's checks on it, classify the outcome.

Outcomes (Stryker's statuses):

* ``Killed``: some check failed on the mutant (a check that reports a crash of forward or
  backward counts: the contract says they must not raise on valid shapes).
* ``Survived``: every check passed and the mutant's outputs or gradients differ from the
  original's on some example: a blind spot of the checks or of the configuration. The
  evidence says which kind (``survivor_kind``): "forward" (out differs: forward computes
  another function that backward still differentiates exactly, which no consistency check
  can see), "backward" (out is the same, a gradient differs: the checks' blind spot) or
  "behaviour" (a repeated call or an in-place write differs).
* ``Ignored``: every check passed and the mutant's outputs, gradients, in-place writes and
  a repeated call are identical to the original's within round-off on every example of
  the same seeded budget: probably equivalent (the evidence is in the status reason).
* ``CompileError``: the mutated code does not compile, or building the class raises.
* ``RuntimeError`` (incompetent): the mutant's factory raises on every example, so no
  check could run on it (check_layer reports that as a ``protocol`` failure with no
  example built); also a worker process that died on this mutant. A factory that raises
  on some examples only is a ``protocol`` kill: the layer fails for valid dims.
* ``Timeout``: the mutant ran over the per-mutant limit (a hang: counted as detected, as
  Stryker does, since a hanging layer fails any CI gate).

``__init__`` is not mutated unless asked (``include_init=True``): the harness redraws every
param at random, so a mutated initializer is equivalent by construction, and the rest
(hyper-parameters kept as attributes) seldom has a site an operator applies to.

Mutants run in worker processes (``concurrent.futures.ProcessPoolExecutor`` over fork)
so a hanging one can be cut: a soft limit raises inside the worker, a hard limit kills it.
"""
from __future__ import annotations
import __future__

import ast
import contextlib
import dataclasses
import inspect
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Unsatisfiable

from .._context import Counter, Session
from .._core import check_layer
from .._declare import (
    DECLARATION_ATTR,
    Declaration,
    _default_make,
    declaration_of,
    declared_in,
)
from .._declare import layer as _layer_decorator
from .._errors import InvalidArgument, LayerCallError
from .._report import Report, jsonable
from .._spec import DEFAULT_INPUT, LayerSpec, build_spec
from .._strategies import Example, examples, guaranteed_examples, reproducible_generation
from . import operators as ops
from . import runtime as rt

#: the fixed, seeded budget every mutant gets by default
DEFAULT_MAX_EXAMPLES = 20
DEFAULT_SEED = 0
#: per-mutant time limit: at least this, and at least TIMEOUT_FACTOR times the original's own run
TIMEOUT_FLOOR = 60.0
TIMEOUT_FACTOR = 30.0
#: the hard limit (worker killed) is the soft one plus this much
HARD_GRACE = 10.0
#: "identical within round-off": this many ulps of the array's scale, or 8x its measured round-off
EQUIV_ULPS = 64.0
EQUIV_ROUNDOFF = 8.0
#: noise levels searched by the sensitivity bisection (relative, per element)
NOISE_LO, NOISE_HI = 1e-13, 1.0
#: the bisection stops when the caught and missed levels are within this factor
NOISE_RESOLUTION = 2.0

STATUSES = ("Killed", "Survived", "Timeout", "Ignored", "CompileError", "RuntimeError", "NoCoverage")
#: statuses that count as detected, and those that are left out of the score
DETECTED = ("Killed", "Timeout")
INVALID = ("Ignored", "CompileError", "RuntimeError")


class MutantTimeout(KeyboardInterrupt):
    """Raised in a worker when a mutant runs over its soft limit.

    A KeyboardInterrupt subclass on purpose: the harness reports any other exception
    raised inside a layer call as that layer's failure, which would count a hang as a kill.
    """


class SourceUnavailable(Exception):
    """The target's source cannot be mutated (no source, nested class, a factory that hides the class)."""


# ----- mutants -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutant:
    """One injected bug: a stable id, the operator, where it is and the one line it changed."""

    id: str
    layer: str
    operator: str
    description: str
    kind: str                  # "source" | "runtime"
    file: str | None
    line: int                  # 1-based
    column: int                # 1-based
    end_line: int
    end_column: int            # 1-based, exclusive
    original: str              # the original line(s)
    mutated: str               # the same line(s) with the mutation
    replacement: str           # what replaced the site
    detail: str = ""
    tensor: str | None = None  # runtime mutants: "x" (dx) or the param
    source: str = field(default="", repr=False)  # source mutants: the whole mutated class/function

    @property
    def location(self) -> str:
        where = self.file or ""
        if where and not where.startswith("<"):
            rel = os.path.relpath(where)
            where = where if rel.startswith("..") else rel
        return f"{where}:{self.line}:{self.column}" if self.kind == "source" else f"runtime ({rt.tensor_label(self.tensor)})"

    def diff(self) -> str:
        return f"- {self.original.strip()}\n+ {self.mutated.strip()}"


@dataclass
class SourceTarget:
    """The module-level class or function whose code is mutated."""

    obj: Any
    name: str
    module: types.ModuleType
    file: str
    first_line: int
    source: str
    flags: int
    is_class: bool


@dataclass
class LayerTarget:
    """One declared layer to mutate."""

    decl: Declaration
    ref: str | None                 # "module:Name" when importable, for reproduction lines
    source: SourceTarget | None
    source_reason: str = ""         # why source mutation is unavailable
    file: str | None = None

    @property
    def name(self) -> str:
        return self.decl.name


def _declared_obj(decl: Declaration) -> Any:
    return decl.target if decl.target is not None else decl.make


def _ref_of(decl: Declaration) -> str | None:
    obj = _declared_obj(decl)
    if declaration_of(obj) is not decl:
        return None  # an undeclared factory: a "module:Name" string would not carry its options
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if mod and qual and mod != "__main__" and "<" not in qual and getattr(sys.modules.get(mod), qual.split(".")[0], None) is not None:
        return f"{mod}:{qual}"
    return None


class _Probe:
    pass


_DEFAULT_MAKE_CODE = _default_make(_Probe).__code__


def _future_flags(module: types.ModuleType) -> int:
    flags = 0
    for name in __future__.all_feature_names:
        feature = getattr(__future__, name)
        if getattr(module, name, None) is feature:
            flags |= feature.compiler_flag
    return flags


def source_target(decl: Declaration) -> tuple[SourceTarget | None, str]:
    """The mutable source of a declaration, or None and the reason."""
    obj = _declared_obj(decl)
    is_class = inspect.isclass(obj)
    if not (is_class or inspect.isfunction(obj)):
        return None, f"{decl.name} is declared on a {type(obj).__name__}, not on a class or function"
    if obj.__name__ == "<lambda>":
        return None, "a lambda's source cannot be re-run on its own"
    if obj.__qualname__ != obj.__name__:
        return None, f"{obj.__qualname__} is not defined at module level (its source cannot be re-run on its own)"
    module = sys.modules.get(obj.__module__)
    if module is None:
        return None, f"module {obj.__module__!r} of {obj.__qualname__} is not imported"
    try:
        lines, first = inspect.getsourcelines(obj)
        file = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except (OSError, TypeError) as exc:
        return None, f"the source of {obj.__qualname__} is unavailable ({exc})"
    source = "".join(lines)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return None, f"the source of {obj.__qualname__} does not parse on its own ({exc.msg})"
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.ClassDef, ast.FunctionDef)):
        return None, f"the source of {obj.__qualname__} is not a single definition"
    if is_class:
        make = decl.make
        if getattr(make, "__code__", None) is not _DEFAULT_MAKE_CODE and not (
                inspect.isfunction(make) and make.__globals__ is module.__dict__):
            return None, (f"the factory of {decl.name} is not the class's default one nor a module-level function "
                          "of its module, so a mutated class cannot be swapped in")
    elif decl.make is not obj:
        return None, f"{decl.name} is declared with a factory other than the function itself"
    return SourceTarget(obj, obj.__name__, module, file, first, source, _future_flags(module), is_class), ""


def _resolve_dotted(node: ast.AST, namespace: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve_dotted(node.value, namespace)
        return getattr(base, node.attr, None) if base is not None else None
    return None


def _strip_declaration(source: str, module: types.ModuleType) -> str:
    """The source with its @gradharness.layer(...) decorator blanked out (line numbers kept)."""
    tree = ast.parse(source)
    top = tree.body[0]
    lines = source.splitlines(keepends=True)
    for dec in getattr(top, "decorator_list", []):
        func = dec.func if isinstance(dec, ast.Call) else dec
        if _resolve_dotted(func, vars(module)) is _layer_decorator:
            for i in range(dec.lineno - 1, dec.end_lineno):  # type: ignore[attr-defined]
                lines[i] = "\n"
    return "".join(lines)


def _declare_built(lt: LayerTarget, new_obj: Any, ns: dict[str, Any]) -> Any:
    """Attach a declaration with the original's options to a rebuilt class or function."""
    st = lt.source
    assert st is not None
    decl = lt.decl
    if st.is_class:
        make = decl.make
        if getattr(make, "__code__", None) is _DEFAULT_MAKE_CODE:
            new_make = _default_make(new_obj)
        else:
            new_make = types.FunctionType(make.__code__, ns, make.__name__, make.__defaults__, make.__closure__)
            new_make.__kwdefaults__ = make.__kwdefaults__
            new_make.__qualname__ = make.__qualname__
    else:
        new_make = new_obj
    setattr(new_obj, DECLARATION_ATTR, Declaration(decl.name, new_make, dict(decl.options), new_obj))
    return new_obj


def compile_source(lt: LayerTarget, source: str, extra: Mapping[str, Any] | None = None,
                   tree: ast.Module | None = None) -> Any:
    """Run a (mutated) class or function definition in a copy of its module's namespace; the declared result."""
    st = lt.source
    assert st is not None
    if tree is None:
        text = "\n" * (st.first_line - 1) + _strip_declaration(source, st.module)
        code = compile(text, st.file, "exec", flags=st.flags, dont_inherit=True)
    else:
        ast.increment_lineno(tree, st.first_line - 1)
        code = compile(tree, st.file, "exec", flags=st.flags, dont_inherit=True)
    ns = dict(vars(st.module))
    ns.update(extra or {})
    exec(code, ns)  # noqa: S102 - the layer's own code with one site changed
    return _declare_built(lt, ns[st.name], ns)


def layer_target(decl: Declaration) -> LayerTarget:
    st, reason = source_target(decl)
    file = st.file if st is not None else None
    if file is None:
        with contextlib.suppress(TypeError, OSError):
            file = inspect.getsourcefile(_declared_obj(decl))
    return LayerTarget(decl=decl, ref=_ref_of(decl), source=st, source_reason=reason, file=file)


# ----- targets --------------------------------------------------------------------------------
def resolve(target: Any, **options: Any) -> list[Declaration]:
    """Declarations of a target: a declared class or function, a Declaration, a module or package,
    a "module" or "module:Name" string, a list of these, or an undeclared factory plus check_layer options."""
    if isinstance(target, (list, tuple)):
        out: list[Declaration] = []
        for t in target:
            out.extend(resolve(t, **options))
        return out
    if isinstance(target, Declaration):
        return [target]
    if isinstance(target, str):
        try:
            from .._options import UsageError
            from .._targets import resolve as resolve_target
        except ImportError:  # an older core: the CLI module holds both
            from ..cli import UsageError
            from ..cli import resolve as resolve_target
        try:
            return resolve_target(target)
        except UsageError as exc:
            raise InvalidArgument("target", target, "a module, a package or module:Layer", str(exc)) from exc
    if isinstance(target, types.ModuleType):
        return list(declared_in(target))
    decl = declaration_of(target)
    if decl is not None:
        return [decl]
    if callable(target):
        name = options.pop("name", None) or getattr(target, "__qualname__", "layer")
        return [Declaration(name=name, make=target, options=options, target=None)]
    raise InvalidArgument("target", target, "a declared layer, a module, 'module:Layer' or a factory")


# ----- budget ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """The fixed, seeded run every mutant gets, and the check_layer options on top of the declaration."""

    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int | None = DEFAULT_SEED
    overrides: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    equivalence: bool = True

    def check_options(self) -> dict[str, Any]:
        return {**dict(self.overrides), "max_examples": self.max_examples, "seed": self.seed}


def spec_of(decl: Declaration, budget: Budget) -> LayerSpec:
    opts: dict[str, Any] = dict(decl.options)
    opts.setdefault("name", decl.name)
    opts.update(budget.check_options())
    opts.pop("example", None)
    input_text = opts.pop("input", DEFAULT_INPUT)
    return build_spec(decl.make, input_text, opts)


def tried_examples(spec: LayerSpec, seed: int | None, n: int) -> list[Example]:
    """The examples a seeded search of `n` examples draws: the guaranteed ones, then Hypothesis's."""
    got: list[Example] = list(guaranteed_examples(spec, seed or 0))

    def collect(ex: Example) -> None:
        if ex not in got:
            got.append(ex)

    test = settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck))(given(ex=examples(spec))(collect))
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    try:
        with reproducible_generation():
            test()
    except Unsatisfiable:
        pass  # constraints no drawn example meets: the guaranteed examples are all there is
    return got


# ----- generating mutants ---------------------------------------------------------------------
def _signature(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ("array", tuple(value.shape), value.dtype.str)
    return None


def cache_signatures(lt: LayerTarget, budget: Budget, include_init: bool = False) -> dict[tuple[int, int], list[Any]]:
    """Shapes and dtypes of the names every tuple unpacking binds, recorded on a few real examples."""
    st = lt.source
    assert st is not None
    sites = ops.tuple_unpack_sites(st.source, include_init)
    if not sites:
        return {}
    records: dict[tuple[int, int], list[list[Any]]] = {}

    def probe(key: tuple[int, int], values: tuple[Any, ...]) -> None:
        records.setdefault(tuple(key), []).append([_signature(v) for v in values])  # type: ignore[arg-type]

    tree = ops.instrument_unpacks(_strip_declaration(st.source, st.module), "__gh_probe__", include_init)
    try:
        obj = compile_source(lt, "", extra={"__gh_probe__": probe}, tree=tree)
        spec = spec_of(declaration_of(obj), budget)  # type: ignore[arg-type]
        for ex in tried_examples(spec, 0, 4):
            try:
                session = Session(spec, ex, Counter())
                ctx = session.context(spec.dtypes[0])
                assert ctx.dout is not None
                ctx.trace(ctx.x, ctx.dout)
            except LayerCallError:
                continue
    except Exception:  # noqa: BLE001 - no signatures, no swap mutants; the rest still run
        return {}
    out: dict[tuple[int, int], list[Any]] = {}
    for key, recs in records.items():
        n = len(recs[0])
        if any(len(r) != n for r in recs):
            continue
        out[key] = [None if any(r[i] is None for r in recs) else tuple(r[i] for r in recs) for i in range(n)]
    return out


def source_mutants(lt: LayerTarget, operators: Sequence[str] | None = None, *, include_init: bool = False,
                   budget: Budget | None = None) -> list[Mutant]:
    st = lt.source
    if st is None:
        return []
    names = None if operators is None else [o for o in operators if o in ops.SOURCE_OPERATORS]
    if names is not None and not names:
        return []
    sigs = {}
    if names is None or "swap-cached" in names:
        sigs = cache_signatures(lt, budget or Budget(), include_init)
    edits = ops.find_sites(st.source, names, include_init=include_init, signatures=sigs)
    out: list[Mutant] = []
    seen: dict[str, int] = {}
    for e in edits:
        line = e.lineno + st.first_line - 1
        end_line = e.end_lineno + st.first_line - 1
        mid = f"{lt.name}:{e.operator}:L{line}:C{e.col + 1}" + (f":{e.tag}" if e.tag else "")
        # nested sites can start at the same column ((a - b) - c): number them in source order
        seen[mid] = seen.get(mid, 0) + 1
        if seen[mid] > 1:
            mid += f":{seen[mid]}"
        desc = ops.SOURCE_OPERATORS[e.operator].description
        if e.detail:
            desc = f"{desc} [{e.detail}]"
        out.append(Mutant(id=mid, layer=lt.name, operator=e.operator, description=desc, kind="source", file=st.file,
                          line=line, column=e.col + 1, end_line=end_line, end_column=e.end_col + 1,
                          original=e.original, mutated=e.mutated, replacement=e.replacement, detail=e.detail,
                          source=e.source))
    return out


def _layer_tensors(lt: LayerTarget, budget: Budget) -> tuple[list[str], list[str], bool, dict[str, int]]:
    """(param names, bias names, whether backward returns dx, rank of x and of each param) of the layer,
    from one built example."""
    spec = spec_of(lt.decl, budget)
    ranks = {"x": len(spec.input)}
    for ex in tried_examples(spec, 0, 3):
        try:
            session = Session(spec, ex, Counter())
        except LayerCallError:
            continue
        params = list(session.params64)
        ranks.update({k: v.ndim for k, v in session.params64.items()})
        bias = [b for b in spec.bias_names(session.params64) if b in session.params64]
        return params, bias, spec.index_input is None, ranks
    return [], [], spec.index_input is None, ranks


def runtime_mutants(lt: LayerTarget, operators: Sequence[str] | None = None, *, budget: Budget | None = None,
                    noise: float = rt.NOISE_LEVEL) -> list[Mutant]:
    names = None if operators is None else [o for o in operators if o in rt.RUNTIME_OPERATORS]
    if names is not None and not names:
        return []
    params, bias, has_dx, ranks = _layer_tensors(lt, budget or Budget())
    out = []
    for k, (op, tensor) in enumerate(rt.runtime_sites(params, bias, has_dx, names, ranks), start=1):
        label = rt.tensor_label(tensor)
        desc = rt.RUNTIME_OPERATORS[op].description
        if op == "noisy-grad":
            desc = desc.replace(f"{rt.NOISE_LEVEL:g}", f"{noise:g}")
        mid = f"{lt.name}:{op}" + ("" if tensor is None else f":{'dx' if tensor == 'x' else tensor}")
        mutated = f"backward -> {label}: {op}" + (f"(level={noise:g})" if op == "noisy-grad" else "")
        out.append(Mutant(id=mid, layer=lt.name, operator=op, description=desc, kind="runtime", file=None,
                          line=k, column=1, end_line=k, end_column=len(mutated) + 1,
                          original=f"backward -> {label}", mutated=mutated, replacement=mutated, tensor=tensor,
                          detail=f"level={noise:g}" if op == "noisy-grad" else ""))
    return out


KINDS = ("auto", "source", "runtime", "all")


def generate(lt: LayerTarget, *, kinds: str = "auto", operators: Sequence[str] | None = None,
             include_init: bool = False, budget: Budget | None = None, noise: float = rt.NOISE_LEVEL) -> tuple[list[Mutant], list[str]]:
    """The mutants of one layer and notes on what could not be done."""
    if kinds not in KINDS:
        raise InvalidArgument("kinds", kinds, f"one of {KINDS}")
    if operators is not None:
        unknown = [o for o in operators if o not in ops.SOURCE_OPERATORS and o not in rt.RUNTIME_OPERATORS]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list_mutators(), n=1)
            raise InvalidArgument("operators", list(operators), "names from gradharness.mutate.list_mutators()",
                                  f"Did you mean {close[0]!r}?" if close else "")
    notes: list[str] = []
    mutants: list[Mutant] = []
    if kinds in ("auto", "source", "all"):
        if lt.source is None:
            notes.append(f"source mutation unavailable: {lt.source_reason}")
        else:
            mutants += source_mutants(lt, operators, include_init=include_init, budget=budget)
    want_runtime = kinds in ("runtime", "all") or (kinds == "auto" and not mutants)
    if kinds == "auto" and want_runtime:
        if lt.source is not None:
            notes.append("no source mutation applies to this layer's own code: runtime mutations instead")
        else:
            notes.append("runtime mutations instead")
    if want_runtime:
        mutants += runtime_mutants(lt, operators, budget=budget, noise=noise)
    return mutants, notes


def build(lt: LayerTarget, mutant: Mutant, *, noise: float | None = None) -> Any:
    """The declared mutant layer (a class or a factory) ready for check_layer."""
    if mutant.kind == "source":
        return compile_source(lt, mutant.source)
    level = noise if noise is not None else (float(mutant.detail.split("=", 1)[1]) if mutant.detail.startswith("level=")
                                             else rt.NOISE_LEVEL)
    make = rt.wrap_factory(lt.decl.make, mutant.operator, mutant.tensor, level=level)
    setattr(make, DECLARATION_ATTR, Declaration(lt.decl.name, make, dict(lt.decl.options), None))
    return make


# ----- results --------------------------------------------------------------------------------
@dataclass
class MutantResult:
    mutant: Mutant
    status: str
    killed_by: list[str] = field(default_factory=list)
    #: checks that ran on the mutant (Stryker's coveredBy)
    covered_by: list[str] = field(default_factory=list)
    message: str = ""            # the first killing check's message
    example: dict[str, Any] | None = None   # its shrunk example
    diagnosis: str | None = None  # the killing failure's diagnosis code, when the core gives one
    diagnosis_text: str = ""
    reason: str = ""             # Stryker's statusReason: why it has this status, in one paragraph
    evidence: dict[str, Any] = field(default_factory=dict)
    crash: bool = False          # killed only because forward or backward raised
    reproduce: str = ""
    seconds: float = 0.0

    @property
    def id(self) -> str:
        return self.mutant.id

    @property
    def detected(self) -> bool:
        return self.status in DETECTED

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mutant"].pop("source", None)
        return jsonable(d)




@dataclass
class Baseline:
    passed: bool
    summary: str
    failed_checks: list[str]
    seconds: float
    checks: dict[str, str]                      # check -> status on the original
    sensitivity: dict[str, dict[str, float]]    # the harness's own estimate, per dtype and tensor
    message: str = ""


@dataclass
class Sensitivity:
    """The smallest relative gradient noise the gate catches on one tensor, found by bisection."""

    tensor: str
    caught: float | None        # the smallest level found that a check caught
    missed: float | None        # the largest level found that every check missed
    runs: int
    killed_by: list[str] = field(default_factory=list)
    claimed: float | None = None  # the harness's own reported sensitivity for this tensor (float64)


@dataclass
class LayerResult:
    name: str
    ref: str | None
    file: str | None
    results: list[MutantResult]
    notes: list[str] = field(default_factory=list)
    baseline: Baseline | None = None
    sensitivity: list[Sensitivity] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        c = {s: 0 for s in STATUSES}
        for r in self.results:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    @property
    def score(self) -> float | None:
        return score_of(self.results)

    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "Survived"]

    def equivalents(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "Ignored"]


def score_of(results: Iterable[MutantResult]) -> float | None:
    """Stryker's mutation score: detected / (detected + survived + no coverage), in percent."""
    results = list(results)
    detected = sum(r.status in DETECTED for r in results)
    valid = sum(r.status not in INVALID for r in results)
    return None if valid == 0 else 100.0 * detected / valid


@dataclass
class MutationReport:
    layers: list[LayerResult]
    config: dict[str, Any]
    seconds: float = 0.0
    setup_seconds: float = 0.0
    baseline_seconds: float = 0.0

    @property
    def results(self) -> list[MutantResult]:
        return [r for layer in self.layers for r in layer.results]

    @property
    def score(self) -> float | None:
        return score_of(self.results)

    @property
    def baseline_failed(self) -> list[LayerResult]:
        return [lr for lr in self.layers if lr.baseline is not None and not lr.baseline.passed]

    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "Survived"]

    def equivalents(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "Ignored"]

    def format(self, *, color: bool = False, verbose: bool = True) -> str:
        from .report import format_terminal

        return format_terminal(self, color=color, verbose=verbose)

    def to_stryker(self) -> dict[str, Any]:
        from .report import to_stryker

        return to_stryker(self)

    def to_html(self) -> str:
        from .report import to_html

        return to_html(self)

    def write_json(self, path: str) -> None:
        from .report import write_atomic

        write_atomic(path, json.dumps(self.to_stryker(), indent=2))

    def write_html(self, path: str) -> None:
        from .report import write_atomic

        write_atomic(path, self.to_html())

    def __str__(self) -> str:
        return self.format()


# ----- running one mutant -----------------------------------------------------------------------
def _reproduce_line(lt: LayerTarget, mutant: Mutant, check: str, example: Mapping[str, Any] | None) -> str:
    target = repr(lt.ref) if lt.ref else f"<{lt.name}, as passed to mutate, with its options>"
    head = f"gradharness.check_layer(gradharness.mutate.mutant_layer({target}, {mutant.id!r}), checks=({check!r},)"
    if example:
        ex = {k: v for k, v in example.items() if k != "dtype"}
        dt = example.get("dtype")
        if dt:
            head += f", dtypes=({dt!r},)"
        head += f", example={ex!r}"
    return head + ")"


def _with_reproduce(message: str, line: str) -> str:
    lines = message.splitlines()
    for i, ln in enumerate(lines):
        if ln.lstrip().startswith("Reproduce:"):
            lines[i] = ln[: len(ln) - len(ln.lstrip())] + "Reproduce: " + line
            return "\n".join(lines)
    return message + "\n  Reproduce: " + line


def _crash(f: Any) -> bool:
    return f.check in ("forward-shape", "backward-shape", "protocol") and f.evidence.get("call") in ("forward", "backward", "factory")


def classify(lt: LayerTarget, mutant: Mutant, report: Report, budget: Budget, mutant_obj: Any) -> MutantResult:
    covered = [n for n, st in report.checks.items() if st.status in ("passed", "failed")]
    if report.passed:
        if not budget.equivalence:
            return MutantResult(mutant, "Survived", covered_by=covered,
                                reason="every check passed (equivalence not analysed)")
        verdict = compare_with_original(lt, mutant_obj, budget, mutant)
        if verdict["equivalent"]:
            return MutantResult(mutant, "Ignored", covered_by=covered, reason="probably equivalent: " + verdict["text"],
                                evidence=verdict)
        return MutantResult(mutant, "Survived", covered_by=covered, evidence=verdict,
                            reason="every check passed, yet the mutant differs from the original: " + verdict["text"])

    failures = report.failures
    if report.examples == 0 and all(f.check == "protocol" and f.evidence.get("call") == "factory" for f in failures):
        first = failures[0]
        return MutantResult(mutant, "RuntimeError", covered_by=covered, message=first.message, example=first.example,
                            reason=f"incompetent: the factory raised on every example, so no check could run "
                                   f"({first.summary})")
    first = failures[0]
    if all("did not return within" in f.summary for f in failures):
        # the harness's own per-call limit cut a hang (no per-mutant limit was armed)
        return MutantResult(mutant, "Timeout", covered_by=covered, message=first.message, example=first.example,
                            reason=f"a call into the layer hung and was cut by check_layer's per-call limit "
                                   f"({first.summary}): counted as detected")
    killed_by = report.failed_checks()
    repro = _reproduce_line(lt, mutant, first.check, first.example)
    crash = all(_crash(f) for f in failures)
    reason = f"killed by {', '.join(killed_by)}: [{first.check}] {first.summary}"
    if crash:
        reason += " (a crash: forward/backward must not raise on valid shapes)"
    return MutantResult(mutant, "Killed", killed_by=killed_by, covered_by=covered,
                        message=_with_reproduce(first.message, repro), example=jsonable(first.example),
                        diagnosis=getattr(first, "diagnosis", None), diagnosis_text=getattr(first, "diagnosis_text", "") or "",
                        reason=reason, crash=crash, reproduce=repro,
                        evidence={"failures": [{"check": f.check, "summary": f.summary, "tensor": f.tensor,
                                                "diagnosis": getattr(f, "diagnosis", None)} for f in failures]})


def run_mutant(lt: LayerTarget, mutant: Mutant, budget: Budget) -> MutantResult:
    """Build one mutant and run the layer's checks on it (in this process, no time limit)."""
    started = time.perf_counter()
    try:
        obj = build(lt, mutant)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - the mutant's failure to compile
        return MutantResult(mutant, "CompileError", reason=f"{type(exc).__name__}: {exc}",
                            seconds=time.perf_counter() - started)
    try:
        report = check_layer(obj, **budget.check_options())
        result = classify(lt, mutant, report, budget, obj)
    except InvalidArgument as exc:
        result = MutantResult(mutant, "RuntimeError", reason=f"check_layer rejected the mutant: {exc}")
    result.seconds = time.perf_counter() - started
    return result


# ----- equivalence ------------------------------------------------------------------------------
def _arrays(ctx: Any, trace: Any) -> list[tuple[str, str, Any]]:
    out = [("out", "out", trace.out), ("dx", "dx", trace.dx)]
    out += [(f"grads[{k!r}]", k, v) for k, v in sorted(trace.grads.items())]
    return out


def _difference(name: str, a: Any, b: Any, eps: float, roundoff: float) -> tuple[bool, float, str]:
    """Whether two results agree within round-off: (same, relative difference, why not)."""
    if a is None or b is None:
        return (a is None and b is None), (0.0 if a is None and b is None else math.inf), f"{name} is None on one side"
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False, math.inf, f"{name} has shape {b.shape}, the original's is {a.shape}"
    if a.dtype != b.dtype:
        return False, math.inf, f"{name} is {b.dtype}, the original's is {a.dtype}"
    if a.size == 0:
        return True, 0.0, ""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):
        if np.array_equal(a64, b64, equal_nan=True):
            return True, 0.0, ""
        diff = float(np.nanmax(np.abs(a64 - b64)))
        scale = float(max(np.nanmax(np.abs(a64)), np.nanmax(np.abs(b64))))
    if not np.isfinite(diff):
        return False, math.inf, f"{name} is finite on one side only"
    rel = diff / scale if scale > 0 else math.inf
    tol = max(EQUIV_ULPS * eps * scale, EQUIV_ROUNDOFF * roundoff)
    return diff <= tol, rel, f"{name} differs by {diff:.3g} (relative {rel:.3g}; round-off tolerance {tol:.2g})"


def compare_with_original(lt: LayerTarget, mutant_obj: Any, budget: Budget, mutant: Mutant | None = None) -> dict[str, Any]:
    """Outputs, gradients, in-place writes and a repeated call of the mutant against the original's on
    every example of the same seeded budget, in every dtype."""
    spec_o = spec_of(lt.decl, budget)
    mdecl = declaration_of(mutant_obj)
    assert mdecl is not None
    spec_m = spec_of(mdecl, budget)
    exs = tried_examples(spec_o, budget.seed, budget.max_examples)
    compared = 0
    worst: dict[str, float] = {}
    for ex in exs:
        try:
            so = Session(spec_o, ex, Counter())
        except LayerCallError:
            continue
        try:
            sm = Session(spec_m, ex, Counter())
        except LayerCallError as err:
            return _differs(ex, None, f"the mutant's factory {err.detail} where the original's did not")
        for dt in spec_o.dtypes:
            try:
                co = so.context(dt)
            except LayerCallError:
                continue
            try:
                cm = sm.context(dt)
            except LayerCallError as err:
                return _differs(ex, dt, f"the mutant's {err.what} {err.detail}")
            compared += 1
            eps = float(np.finfo(co.dtype).eps) if co.dtype.kind == "f" else 0.0
            assert co.base is not None and cm.base is not None
            pairs = list(zip(_arrays(co, co.base), _arrays(cm, cm.base)))
            names_o = sorted(co.base.grads)
            names_m = sorted(cm.base.grads)
            if names_o != names_m:
                return _differs(ex, dt, f"the mutant sets grads {names_m}, the original {names_o}")
            differing: list[tuple[str, float, str]] = []
            for (label, key, a), (_, _, b) in pairs:
                same, rel, why = _difference(label, a, b, eps, co.roundoff(key))
                worst[str(co.dtype)] = max(worst.get(str(co.dtype), 0.0), rel if np.isfinite(rel) else 0.0)
                if not same:
                    differing.append((label, rel, why))
            if differing:
                label, rel, why = differing[0]
                also = [d[0] for d in differing[1:]]
                text = why + (f" (also {', '.join(also)})" if also else "")
                return _differs(ex, dt, text, rel, arrays=[d[0] for d in differing])
            writes_o = sorted((m.call, m.array) for m in co.mutations)
            writes_m = sorted((m.call, m.array) for m in cm.mutations)
            if writes_o != writes_m:
                return _differs(ex, dt, f"in-place writes differ: the mutant's {writes_m or 'none'}, "
                                        f"the original's {writes_o or 'none'}")
            # a second forward + backward on the same layer: accumulation and state show here
            try:
                assert co.dout is not None and cm.dout is not None
                to = co.trace(co.x, co.dout)
            except LayerCallError:
                continue
            try:
                tm = cm.trace(cm.x, cm.dout)
            except LayerCallError as err:
                return _differs(ex, dt, f"a second call: the mutant's {err.what} {err.detail}")
            for (label, key, a), (_, _, b) in zip(_arrays(co, to), _arrays(cm, tm)):
                same, rel, why = _difference(label, a, b, eps, co.roundoff(key))
                if not same:
                    return _differs(ex, dt, f"on a second forward + backward, {why}", rel)
    if compared == 0:
        return {"equivalent": False, "examples": len(exs), "compared": 0,
                "text": "no example could be compared (the original itself raised)"}
    rel_text = ", ".join(f"{v:.1g} in {k}" for k, v in worst.items())
    text = (f"out, dx, every grad, the in-place writes and a repeated call are identical to the original's "
            f"within round-off on all {len(exs)} examples of the seeded budget, in every dtype "
            f"({compared} comparisons; max relative difference {rel_text})")
    if mutant is not None and mutant.operator == "transpose-grad":
        text += (". transpose-grad only changes a square gradient and none of size >= 2 was drawn: the "
                 "configuration never exercised it")
    return {"equivalent": True, "examples": len(exs), "compared": compared, "max_relative_difference": worst,
            "text": text}


#: what a survivor that differs probably is, by what differs
SURVIVOR_KINDS = {
    "forward": ("forward computes another function and backward is still its exact derivative (every gradient "
                "check passed): the checks verify backward against forward and the contracts, not forward's values, "
                "so only a reference for the output could catch it"),
    "backward": ("forward is unchanged and backward is wrong, yet no check saw it: a blind spot of the checks or of "
                 "the configuration (the dims, dtypes, domain or budget drawn)"),
    "behaviour": ("the results of one call agree; a repeated call, an in-place write or a crash differs and no "
                  "check saw it: a blind spot of the checks or of the configuration"),
}


def _differs(ex: Example, dt: Any, why: str, rel: float | None = None, arrays: Sequence[str] = ()) -> dict[str, Any]:
    dtype = "" if dt is None else str(np.dtype(dt))
    where = f"example {ex.as_dict()}" + (f" in {dtype}" if dtype else "")
    kind = "forward" if "out" in arrays else ("backward" if arrays else "behaviour")
    return {"equivalent": False, "example": {**ex.as_dict(), "dtype": dtype or None}, "difference": why,
            "relative_difference": rel, "arrays": list(arrays), "survivor_kind": kind,
            "text": f"{why} on {where}. {SURVIVOR_KINDS[kind][0].upper()}{SURVIVOR_KINDS[kind][1:]}"}


# ----- sensitivity ---------------------------------------------------------------------------------
def _noise_killed(lt: LayerTarget, tensor: str, level: float, budget: Budget) -> list[str]:
    make = rt.wrap_factory(lt.decl.make, "noisy-grad", tensor, level=level)
    setattr(make, DECLARATION_ATTR, Declaration(lt.decl.name, make, dict(lt.decl.options), None))
    return check_layer(make, **budget.check_options()).failed_checks()


def measure_sensitivity(lt: LayerTarget, tensor: str, budget: Budget, claimed: float | None = None) -> Sensitivity:
    """Bisect (in log scale) the smallest relative noise on one gradient that the checks catch."""
    runs = 0
    killed_hi = _noise_killed(lt, tensor, NOISE_HI, budget)
    runs += 1
    if not killed_hi:
        return Sensitivity(tensor, None, NOISE_HI, runs, claimed=claimed)
    killed_lo = _noise_killed(lt, tensor, NOISE_LO, budget)
    runs += 1
    if killed_lo:
        return Sensitivity(tensor, NOISE_LO, None, runs, killed_lo, claimed=claimed)
    lo, hi, hi_killed = NOISE_LO, NOISE_HI, killed_hi
    while hi / lo > NOISE_RESOLUTION:
        mid = math.sqrt(lo * hi)
        k = _noise_killed(lt, tensor, mid, budget)
        runs += 1
        if k:
            hi, hi_killed = mid, k
        else:
            lo = mid
    return Sensitivity(tensor, hi, lo, runs, hi_killed, claimed=claimed)


# ----- the pool ---------------------------------------------------------------------------------
@dataclass
class _Job:
    kind: str                    # "baseline" | "mutant" | "sensitivity"
    layer: int
    mutant: int = -1
    tensor: str = ""
    timeout: float | None = None  # soft limit in seconds


_STATE: dict[str, Any] = {}


@contextlib.contextmanager
def _soft_limit(seconds: float | None) -> Any:
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise MutantTimeout(f"over the {seconds:.0f}s limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _execute(index: int) -> Any:
    """Run one job of _STATE (in a worker, or in-process)."""
    job: _Job = _STATE["jobs"][index]
    lt: LayerTarget = _STATE["layers"][job.layer]
    budget: Budget = _STATE["budget"]
    started = time.perf_counter()
    try:
        with _soft_limit(job.timeout if _STATE.get("soft", True) else None):
            if job.kind == "baseline":
                return _baseline(lt, budget)
            if job.kind == "sensitivity":
                return measure_sensitivity(lt, job.tensor, budget, _STATE.get("claimed", {}).get((job.layer, job.tensor)))
            mutant = _STATE["mutants"][job.layer][job.mutant]
            return run_mutant(lt, mutant, budget)
    except MutantTimeout:
        return _timeout_result(job, time.perf_counter() - started)


def _timeout_result(job: _Job, seconds: float) -> Any:
    limit = f"{job.timeout:.0f}s" if job.timeout else "the"
    if job.kind == "mutant":
        mutant = _STATE["mutants"][job.layer][job.mutant]
        return MutantResult(mutant, "Timeout", reason=f"ran over the {limit} per-mutant limit ({seconds:.1f}s): "
                            "a hang, counted as detected", seconds=seconds)
    if job.kind == "sensitivity":
        return Sensitivity(job.tensor, None, None, 0)
    return Baseline(False, f"the original ran over the {limit} limit", ["timeout"], seconds, {}, {})


def _crash_result(job: _Job, detail: str) -> Any:
    if job.kind == "mutant":
        mutant = _STATE["mutants"][job.layer][job.mutant]
        return MutantResult(mutant, "RuntimeError", reason=f"incompetent: the worker process died on this mutant ({detail})")
    if job.kind == "sensitivity":
        return Sensitivity(job.tensor, None, None, 0)
    return Baseline(False, f"the worker process died on the original ({detail})", ["crash"], 0.0, {}, {})


def checkable(decl: Declaration) -> Any:
    """An object check_layer reads `decl` from: the declared class or function itself, or a fresh
    factory carrying it (never an attribute set on the user's own function)."""
    obj = _declared_obj(decl)
    if declaration_of(obj) is decl:
        return obj

    def make(dims: Mapping[str, Any], rng: np.random.Generator) -> Any:
        return decl.make(dims, rng)

    make.__name__ = make.__qualname__ = decl.name
    setattr(make, DECLARATION_ATTR, decl)
    return make


def _baseline(lt: LayerTarget, budget: Budget) -> Baseline:
    report = check_layer(checkable(lt.decl), **budget.check_options())
    return Baseline(report.passed, report.summary(), report.failed_checks(), report.seconds,
                    {n: s.status for n, s in report.checks.items()}, report.sensitivity,
                    "\n\n".join(f.message for f in report.failures[:3]))


def _run_jobs(jobs: list[_Job], n_workers: int, on_done: Callable[[int, Any], None]) -> None:
    _STATE["jobs"] = jobs
    if n_workers <= 0 or "fork" not in multiprocessing.get_all_start_methods():
        for i in range(len(jobs)):
            on_done(i, _execute(i))
        return
    ctx = multiprocessing.get_context("fork")
    pending = deque(range(len(jobs)))
    solo: set[int] = set()
    while pending:
        pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx)
        running: dict[Any, tuple[int, float]] = {}
        restart = False
        try:
            while (pending or running) and not restart:
                while pending and len(running) < n_workers:
                    i = pending[0]
                    if i in solo and running:
                        break
                    pending.popleft()
                    running[pool.submit(_execute, i)] = (i, time.monotonic())
                    if i in solo:
                        break
                done, _ = wait(list(running), timeout=0.05, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, _start = running.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool as exc:
                        restart = True
                        if i in solo:
                            on_done(i, _crash_result(jobs[i], str(exc) or "broken process pool"))
                        else:
                            solo.add(i)
                            pending.appendleft(i)
                        continue
                    except Exception as exc:  # noqa: BLE001 - the job's own error, reported on it
                        result = _crash_result(jobs[i], f"{type(exc).__name__}: {exc}")
                    on_done(i, result)
                now = time.monotonic()
                for fut, (i, start) in list(running.items()):
                    limit = jobs[i].timeout
                    if limit is not None and now - start > limit + max(HARD_GRACE, 0.5 * limit):
                        running.pop(fut)
                        on_done(i, _timeout_result(jobs[i], now - start))
                        restart = True
        except BaseException:
            _kill(pool)
            raise
        for fut, (i, _start) in running.items():
            pending.appendleft(i)
        if restart or running:
            _kill(pool)
        else:
            pool.shutdown(wait=True)


def _kill(pool: ProcessPoolExecutor) -> None:
    procs = list(getattr(pool, "_processes", {}).values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


# ----- progress -----------------------------------------------------------------------------------
class _Progress:
    def __init__(self, total: int, enabled: bool, stream: Any) -> None:
        self.total, self.enabled, self.stream = total, enabled, stream
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()

    def update(self, status: str | None) -> None:
        self.done += 1
        if status:
            self.counts[status] = self.counts.get(status, 0) + 1
        if not self.enabled or not self.total:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        c = self.counts
        text = (f"\r  mutants [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                f"killed {c.get('Killed', 0)}  survived {c.get('Survived', 0)}  equivalent {c.get('Ignored', 0)}  "
                f"timeout {c.get('Timeout', 0)}  {elapsed:.0f}s, eta {eta:.0f}s ")
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.total:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()


# ----- the whole run --------------------------------------------------------------------------------
def mutate(target: Any, *, kinds: str = "auto", operators: Sequence[str] | None = None,
           max_examples: int = DEFAULT_MAX_EXAMPLES, seed: int | None = DEFAULT_SEED, jobs: int | None = None,
           timeout: float | None = None, equivalence: bool = True, sensitivity: bool | None = None,
           include_init: bool = False, noise: float = rt.NOISE_LEVEL, progress: bool | None = None,
           progress_stream: Any = None, **overrides: Any) -> MutationReport:
    """Mutate every declared layer of `target`, run its checks on each mutant, and report.

    `kinds`: "auto" (the layer's source when it has mutable code, else runtime wrappers), "source",
    "runtime" or "all". `jobs`: worker processes (default: the local cores; 0 runs in this process,
    without the hard time limit). `timeout`: per-mutant limit in seconds (default: the larger of
    60 s and 30 times the original's own run). `sensitivity`: bisect the smallest gradient noise
    the checks catch, per tensor (default: with runtime mutations). Other keywords are check_layer
    options applied on top of each declaration (dtypes, checks, skip, ...).
    """
    started = time.perf_counter()
    from .._spec import validate_option_names

    validate_option_names(overrides, where="gradharness.mutate.mutate")
    for bad in ("max_examples", "seed", "example"):
        overrides.pop(bad, None)
    budget = Budget(max_examples=max_examples, seed=seed, overrides=overrides, timeout=timeout, equivalence=equivalence)
    # an undeclared factory is named by name= when given; its other options apply as overrides
    decls = resolve(target, **({"name": overrides["name"]} if overrides.get("name") else {}))
    layers = [layer_target(d) for d in decls]
    mutants: list[list[Mutant]] = []
    notes: list[list[str]] = []
    for lt in layers:
        m, n = generate(lt, kinds=kinds, operators=operators, include_init=include_init, budget=budget, noise=noise)
        mutants.append(m)
        notes.append(n)
    setup = time.perf_counter() - started
    n_workers = (os.cpu_count() or 1) if jobs is None else jobs
    _STATE.clear()
    _STATE.update(layers=layers, mutants=mutants, budget=budget, soft=True)

    baselines: dict[int, Baseline] = {}
    t0 = time.perf_counter()
    _run_jobs([_Job("baseline", i, timeout=max(600.0, timeout or 0.0)) for i in range(len(layers))], min(n_workers, len(layers)),
              lambda i, r: baselines.__setitem__(i, r))
    baseline_seconds = time.perf_counter() - t0

    jobs_list: list[_Job] = []
    claimed: dict[tuple[int, str], float] = {}
    for li, lt in enumerate(layers):
        base = baselines.get(li)
        if base is None or not base.passed:
            continue
        limit = timeout or max(TIMEOUT_FLOOR, TIMEOUT_FACTOR * base.seconds)
        jobs_list += [_Job("mutant", li, mi, timeout=limit) for mi in range(len(mutants[li]))]
        do_sens = sensitivity if sensitivity is not None else any(m.kind == "runtime" for m in mutants[li])
        if do_sens:
            tensors = sorted({m.tensor for m in mutants[li] if m.operator == "noisy-grad" and m.tensor})
            if not tensors:
                params, _, has_dx, _ = _layer_tensors(lt, budget)
                tensors = (["x"] if has_dx else []) + params
            first_dt = next(iter(base.sensitivity.values()), {})
            for t in tensors:
                if t in first_dt:
                    claimed[(li, t)] = first_dt[t]
                jobs_list.append(_Job("sensitivity", li, tensor=t, timeout=limit * 10))
    _STATE["claimed"] = claimed
    stream = progress_stream or sys.stderr
    enabled = progress if progress is not None else bool(getattr(stream, "isatty", lambda: False)())
    bar = _Progress(sum(j.kind == "mutant" for j in jobs_list), enabled, stream)
    outcomes: dict[int, Any] = {}

    def on_done(i: int, result: Any) -> None:
        outcomes[i] = result
        if jobs_list[i].kind == "mutant":
            bar.update(result.status)

    try:
        _run_jobs(jobs_list, n_workers, on_done)
    finally:
        bar.close()
    layer_results = []
    for li, lt in enumerate(layers):
        idx = [i for i, j in enumerate(jobs_list) if j.layer == li]
        results = [outcomes[i] for i in idx if jobs_list[i].kind == "mutant" and i in outcomes]
        sens = [outcomes[i] for i in idx if jobs_list[i].kind == "sensitivity" and i in outcomes]
        base = baselines.get(li)
        lnotes = list(notes[li])
        if base is not None and not base.passed:
            lnotes.append(f"not mutated: the original fails its own checks ({', '.join(base.failed_checks)}); "
                          "mutation testing needs a passing baseline")
        layer_results.append(LayerResult(lt.name, lt.ref, lt.file, results, lnotes, base, sens,
                                         sum(r.seconds for r in results)))
    config = {"targets": [lt.ref or lt.name for lt in layers], "kinds": kinds,
              "operators": list(operators) if operators else None, "max_examples": max_examples, "seed": seed,
              "jobs": n_workers, "timeout": timeout, "include_init": include_init, "noise": noise,
              "overrides": jsonable(dict(overrides))}
    return MutationReport(layer_results, config, time.perf_counter() - started, setup, baseline_seconds)


def mutants_of(target: Any, *, kinds: str = "auto", operators: Sequence[str] | None = None,
               include_init: bool = False, noise: float = rt.NOISE_LEVEL, **overrides: Any) -> list[Mutant]:
    """The mutants `mutate` would run on `target`, without running them."""
    budget = Budget(overrides=overrides)
    out = []
    for d in resolve(target, **({"name": overrides["name"]} if overrides.get("name") else {})):
        out += generate(layer_target(d), kinds=kinds, operators=operators, include_init=include_init, budget=budget,
                        noise=noise)[0]
    return out


def _find(target: Any, mutant_id: str, **gen: Any) -> tuple[LayerTarget, Mutant]:
    layer_name = mutant_id.split(":", 1)[0]
    for d in resolve(target):
        if d.name != layer_name:
            continue
        lt = layer_target(d)
        mutants, _ = generate(lt, kinds="all", **gen)
        for m in mutants:
            if m.id == mutant_id:
                return lt, m
        known = ", ".join(m.id for m in mutants[:5])
        raise InvalidArgument("mutant_id", mutant_id, f"the id of a mutant of {d.name}", f"Some are: {known}")
    raise InvalidArgument("mutant_id", mutant_id, "an id whose first part names a layer of the target")


def mutant_layer(target: Any, mutant_id: str, **gen: Any) -> Any:
    """The declared mutant layer with this id, to check by hand: check_layer(mutant_layer(T, id), ...)."""
    lt, m = _find(target, mutant_id, **gen)
    return build(lt, m)


def run_one(target: Any, mutant_id: str, *, max_examples: int = DEFAULT_MAX_EXAMPLES, seed: int | None = DEFAULT_SEED,
            equivalence: bool = True, timeout: float | None = None, call_timeout: float | None = None,
            **overrides: Any) -> MutantResult:
    """Run one mutant in this process, under a per-mutant limit of `timeout` seconds when given (else
    check_layer's own per-call limit, `call_timeout`, cuts a hang)."""
    if call_timeout is not None:
        overrides["timeout"] = call_timeout
    lt, m = _find(target, mutant_id)
    budget = Budget(max_examples=max_examples, seed=seed, overrides=overrides, equivalence=equivalence)
    started = time.perf_counter()
    try:
        with _soft_limit(timeout):
            return run_mutant(lt, m, budget)
    except MutantTimeout:
        return MutantResult(m, "Timeout", reason=f"ran over the {timeout:.0f}s limit", seconds=time.perf_counter() - started)


# ----- pytest ----------------------------------------------------------------------------------------
def pytest_mutants(target: Any, *, kinds: str = "auto", operators: Sequence[str] | None = None,
                   max_examples: int = DEFAULT_MAX_EXAMPLES, seed: int | None = DEFAULT_SEED,
                   timeout: float | None = TIMEOUT_FLOOR, include_init: bool = False, **overrides: Any) -> Callable[..., None]:
    """A pytest test function parametrized over every mutant of `target`, one item per mutant:

        test_linear_mutants = gradharness.mutate.pytest_mutants(Linear)

    A killed or timed-out mutant passes, a survivor fails with its evidence, a probably
    equivalent or incompetent one is skipped with the reason. pytest-xdist distributes the
    items like any others (`pytest -n auto`).
    """
    import pytest

    budget = Budget(max_examples=max_examples, seed=seed, overrides=overrides)
    decls = resolve(target, **({"name": overrides["name"]} if overrides.get("name") else {}))
    pairs: list[tuple[LayerTarget, Mutant]] = []
    for d in decls:
        lt = layer_target(d)
        ms, _ = generate(lt, kinds=kinds, operators=operators, include_init=include_init, budget=budget)
        pairs += [(lt, m) for m in ms]
    by_id = {m.id: (lt, m) for lt, m in pairs}

    @pytest.mark.parametrize("mutant_id", list(by_id))
    def test_mutant(mutant_id: str) -> None:
        __tracebackhide__ = True
        lt, m = by_id[mutant_id]
        started = time.perf_counter()
        try:
            with _soft_limit(timeout):
                result = run_mutant(lt, m, budget)
        except MutantTimeout:
            return  # a hang is detected
        del started
        if result.status in DETECTED:
            return
        if result.status in ("Ignored", "RuntimeError", "CompileError"):
            pytest.skip(f"{result.status}: {result.reason}")
        pytest.fail(f"mutant {m.id} survived ({m.location})\n{m.diff()}\n{result.reason}", pytrace=False)

    names = "_".join(d.name for d in decls)[:60]
    test_mutant.__name__ = f"test_mutants_{names}"
    test_mutant.__qualname__ = test_mutant.__name__
    return test_mutant


def list_mutators() -> dict[str, str]:
    """Every mutation operator's stable name and one-line description: source operators, then runtime ones."""
    return {**ops.operator_descriptions(), **rt.operator_descriptions()}


__all__ = [
    "Baseline",
    "Budget",
    "LayerResult",
    "Mutant",
    "MutantResult",
    "MutationReport",
    "Sensitivity",
    "list_mutators",
    "mutant_layer",
    "mutants_of",
    "mutate",
    "pytest_mutants",
    "run_one",
]
