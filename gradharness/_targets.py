"""What to check: targets (``pkg.mod:Name``, a module, a package, a path) and the project settings
of ``[tool.gradharness]`` in ``pyproject.toml``."""
from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._declare import Declaration, declaration_of, declared_in
from ._errors import InvalidArgument
from ._options import CLI_KEYS, SECTION, UsageError, from_config


@dataclass
class Project:
    """The pyproject.toml found for a directory (None: none) and its ``[tool.gradharness]`` settings."""

    path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path} {SECTION}" if self.path else SECTION


def find_pyproject(start: Path | str) -> Path | None:
    """The nearest pyproject.toml in `start` or its parents."""
    here = Path(start).resolve()
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _toml_load(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ModuleNotFoundError:
            raise UsageError(f"{path}: reading {SECTION} needs Python 3.11 or the tomli package") from None
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it as TOML ({exc})") from None


def tool_table(path: Path) -> dict[str, Any]:
    """The raw ``[tool.gradharness]`` table of a pyproject.toml ({} when it has none)."""
    table = _toml_load(path).get("tool", {}).get("gradharness", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: {SECTION} must be a table")
    return table


def load_project(start: Path | str, *, cli: bool = True) -> Project:
    """The project settings for `start`: validated options, plus ``targets``/``junitxml`` for the CLI."""
    path = find_pyproject(start)
    if path is None:
        return Project()
    return project_from(path, cli=cli)


def project_from(path: Path, *, cli: bool = True) -> Project:
    where = f"{path.name} {SECTION}"
    raw = tool_table(path)
    settings = from_config(raw, where, allowed_extra=CLI_KEYS)
    targets = settings.get("targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        raise UsageError(f"{where}: targets = {targets!r}: expected a list of targets, "
                         f"e.g. targets = [\"mypkg.layers\"]")
    junit = settings.get("junitxml")
    if junit is not None and not isinstance(junit, str):
        raise UsageError(f"{where}: junitxml = {junit!r}: expected a file path")
    if not cli:
        for key in CLI_KEYS:
            settings.pop(key, None)
    return Project(path, settings)


def _module_name(target: str, base: Path | None = None) -> str:
    """A path (``pkg/layers.py``, ``pkg/``; relative to `base`, default the current directory) as a
    module name; a dotted name unchanged."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        root = (base or Path.cwd()).resolve()
        p = Path(target)
        p = p if p.is_absolute() else root / p
        if p.exists():
            try:
                rel = p.resolve().relative_to(root)
            except ValueError:
                raise UsageError(f"target {target!r}: a path must be inside {root} "
                                 f"(or name the module, e.g. pkg.layers)") from None
            parts = list(rel.with_suffix("").parts) if rel.suffix == ".py" else list(rel.parts)
            if parts and parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
        if target.endswith(".py"):
            raise UsageError(f"target {target!r}: no such file")
        return target.rstrip("/\\").replace("/", ".").replace("\\", ".")
    return target


def _import(target: str, mod_name: str) -> Any:
    try:
        return importlib.import_module(mod_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and missing != mod_name and not mod_name.startswith(missing + "."):
            # the target exists but an import inside it failed: show where
            raise UsageError(f"target {target!r}: importing {mod_name!r} failed: {exc}\n"
                             + traceback.format_exc().rstrip()) from exc
        raise UsageError(f"target {target!r}: cannot import module {mod_name!r} ({exc})") from exc
    except Exception as exc:
        raise UsageError(f"target {target!r}: importing {mod_name!r} raised {type(exc).__name__}: {exc}\n"
                         + traceback.format_exc().rstrip()) from exc


def resolve(target: str, base: Path | None = None) -> list[Declaration]:
    """Declared layers of a target: ``pkg.mod:Name`` (``Name`` may be dotted), a module, a package or a
    path to either (relative to `base`, default the current directory). A module or package yields
    every declared layer in it (possibly none)."""
    if not isinstance(target, str) or not target.strip():
        raise UsageError(f"target {target!r}: expected a module, a package or module:Layer")
    target = target.strip()
    mod_part, _, attr = target.partition(":")
    mod_name = _module_name(mod_part, base)
    module = _import(target, mod_name)
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
    try:
        return list(declared_in(module))
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"target {target!r}: importing a submodule raised {type(exc).__name__}: {exc}\n"
                         + traceback.format_exc().rstrip()) from exc


def resolve_all(targets: Iterable[str], *, search_path: Iterable[Path | str] = (),
                base: Path | None = None) -> list[Declaration]:
    """The declared layers of every target, each once, in order. `search_path` directories (the
    current directory, the project's root) are put on sys.path first, as ``python -m`` does;
    path targets are relative to `base`."""
    for d in reversed([str(Path(p).resolve()) for p in search_path]):
        if d not in sys.path:
            sys.path.insert(0, d)
    out: list[Declaration] = []
    seen: set[int] = set()
    for t in targets:
        for decl in resolve(t, base):
            if id(decl) not in seen:
                seen.add(id(decl))
                out.append(decl)
    return out


def target_of(decl: Declaration) -> str:
    """The target that names one declared layer: ``module:qualname`` (its name when not importable)."""
    obj = decl.target if decl.target is not None else decl.make
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if mod and qual and "<" not in qual:
        return f"{mod}:{qual}"
    return decl.name


# ----- pytest_checks: the pytest plugin's targets (no pytest import here) ------------------------
class LayerChecks:
    """What `pytest_checks` returns: declared layers and options; collected as one test per check."""

    def __init__(self, layers: list[Declaration], options: Mapping[str, Any], where: tuple[str, int]) -> None:
        self.layers = layers
        self.options = dict(options)
        self.path, self.lineno = where

    def __repr__(self) -> str:
        return f"<gradharness checks of {', '.join(d.name for d in self.layers)}>"


def _declarations(layer: Any) -> list[Declaration]:
    if isinstance(layer, Declaration):
        return [layer]
    if isinstance(layer, str):
        try:
            return resolve(layer)
        except UsageError as exc:
            raise InvalidArgument("layers", layer, "a declared layer, a module or 'pkg.module:Name'", str(exc)) from None
    decl = declaration_of(layer)
    if decl is not None:
        return [decl]
    if isinstance(layer, type(sys)):
        found = list(declared_in(layer))
        if not found:
            raise InvalidArgument("layers", layer, "a module with declared layers",
                                  f"{layer.__name__} declares none (decorate them with @gradharness.layer(...))")
        return found
    name = getattr(layer, "__qualname__", repr(layer))
    raise InvalidArgument("layers", name, "declared layers", f"{name} is not declared: decorate it with "
                          "@gradharness.layer(...)")


def pytest_checks(*layers: Any, **options: Any) -> LayerChecks:
    """Tests for declared layers: assign the result to a module (or class) attribute, e.g.
    ``test_linear = pytest_checks(Linear)``; each check becomes the item ``test_linear[<check>]``
    (``test_layers[<Layer>-<check>]`` for several layers).

    ``layers``: declared classes or factories (``@gradharness.layer``), modules (every declared
    layer in them) or targets ``"pkg.module:Name"``. ``options``: check_layer options on top of
    each declaration (``max_examples=20``, ``skip=("no-aliasing",)``, ``dims=...``); the
    ``--gradharness-*`` command line still wins.
    """
    if not layers:
        raise InvalidArgument("layers", (), "at least one declared layer", "Pass the class: pytest_checks(Linear).")
    from ._spec import validate_option_names

    validate_option_names(options, where="pytest_checks")
    decls: list[Declaration] = []
    for layer in layers:
        for d in _declarations(layer):
            if all(d is not x for x in decls):
                decls.append(d)
    frame = sys._getframe(1)
    return LayerChecks(decls, options, (frame.f_code.co_filename, frame.f_lineno - 1))
