"""Run options shared by every front-end: one definition gives, for each option, the CLI flag,
the pytest flag, the pytest ini key and the ``[tool.gradharness]`` key.

    key           gradharness check     pytest                        ini key / [tool.gradharness]
    max_examples  --max-examples N      --gradharness-max-examples N  gradharness_max_examples / max_examples
    seed          --seed N              --gradharness-seed N          gradharness_seed / seed
    profile       --profile NAME        --gradharness-profile NAME    gradharness_profile / profile
    checks        --checks A,B          --gradharness-checks A,B      gradharness_checks / checks
    skip          --skip A,B            --gradharness-skip A,B        gradharness_skip / skip
    json          --json PATH           --gradharness-json PATH       gradharness_json / json

Precedence, lowest first: the defaults, the project settings (``[tool.gradharness]``, then the
pytest ini keys), the layer's declaration (``@gradharness.layer(...)``), the options of the
front-end call (``pytest_checks(Layer, ...)``), the command line. ``skip`` is the union of every
source's and ``checks`` the intersection (a check runs only if no source leaves it out).
"""
from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ._spec import PROFILES


class UsageError(Exception):
    """A bad target, option or setting: one line naming it (CLI exit code 4, a pytest usage error)."""


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _check_names(text: str) -> tuple[str, ...]:
    from .checks import REGISTRY

    names = _csv(text)
    for name in names:
        if name not in REGISTRY:
            close = difflib.get_close_matches(name, list(REGISTRY), n=1)
            hint = f"Did you mean {close[0]!r}?" if close else "`gradharness list` prints them."
            raise argparse.ArgumentTypeError(f"{names!r}: expected names of checks. {name!r} is not a check. {hint}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, got {text}") from None


def _seconds(text: str) -> float:
    """A duration: 30, 30s, 1.5m."""
    t = text.strip().lower()
    factor = 60.0 if t.endswith("m") else 1.0
    t = t[:-1] if t and t[-1] in "sm" else t
    try:
        value = float(t) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30s or 2m, got {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text}")
    return value


def _profile(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PROFILES)}, got {text}")
    return text


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path")
    return text


@dataclass(frozen=True)
class Option:
    """One run option: its key (a check_layer keyword when ``layer``), and how each front-end spells it."""

    key: str
    flag: str
    type: Callable[[str], Any]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: a check_layer keyword (False: a setting of the front-end, such as the report path)
    layer: bool = True
    #: a list of names: a config file may give a TOML array or a comma-separated string
    names: bool = False

    @property
    def pytest_flag(self) -> str:
        return "--gradharness-" + self.flag[2:]

    @property
    def pytest_dest(self) -> str:
        return "gradharness_" + self.key

    ini = pytest_dest

    def parse(self, value: Any) -> Any:
        """A value from a command line, an ini file (strings) or a TOML file (native types)."""
        if self.names and isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise argparse.ArgumentTypeError(f"expected a list of check names, got {list(value)!r}")
            value = ",".join(value)
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            raise argparse.ArgumentTypeError(f"expected {'a list of names' if self.names else 'a value'}, "
                                             f"got {value!r}")
        return self.type(str(value))


OPTIONS = (
    Option("max_examples", "--max-examples", _positive_int, "examples per layer and search (default 50)", "N"),
    Option("seed", "--seed", _int, "seed: the same seed gives the same report (default: a random seed, printed)",
           "N"),
    Option("profile", "--profile", _profile,
           "settings profile: dev (random), ci (derandomized), thorough (10x examples)", "NAME", choices=PROFILES),
    Option("checks", "--checks", _check_names, "comma-separated checks to run (default: all that apply)", "NAMES",
           names=True),
    Option("skip", "--skip", _check_names, "comma-separated checks to skip", "NAMES", names=True),
    Option("budget", "--budget", _seconds, "time budget per layer (30s, 2m): the search stops when it is spent, "
           "after the edge cases (smallest, distinct and largest sizes)", "TIME"),
    Option("json", "--json", _path, "write the machine-readable report (JSON, schema_version 1) here", "PATH",
           layer=False),
)
BY_KEY = {o.key: o for o in OPTIONS}
#: the keys of [tool.gradharness] only the command line reads
CLI_KEYS = ("targets", "junitxml")
SECTION = "[tool.gradharness]"


def argument_specs(*, pytest: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """(flag, keyword arguments) of every option for argparse's add_argument or pytest's addoption."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.pytest_dest if pytest else opt.key, "default": None,
                                  "help": opt.help, "type": opt.type, "metavar": opt.metavar}
        if opt.choices:
            kwargs["metavar"] = "{" + ",".join(opt.choices) + "}"
        yield (opt.pytest_flag if pytest else opt.flag), kwargs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every run option to an argparse parser."""
    for flag, kwargs in argument_specs():
        parser.add_argument(flag, **kwargs)


def overrides(namespace: Any, *, pytest: bool = False) -> dict[str, Any]:
    """The options a parsed command line sets (``json`` included)."""
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        value = getattr(namespace, opt.pytest_dest if pytest else opt.key, None)
        if value is not None:
            out[opt.key] = value
    return out


def from_config(values: Mapping[str, Any], where: str, *, allowed_extra: Iterable[str] = ()) -> dict[str, Any]:
    """Options from a config table (``[tool.gradharness]``: TOML values; ini: strings), validated.

    Keys in ``allowed_extra`` are passed through unparsed; sub-tables (other tools' sections
    under ``[tool.gradharness.*]``) are left alone; any other key is a UsageError naming it.
    """
    extra = tuple(allowed_extra)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in extra:
            out[key] = value
            continue
        if isinstance(value, dict):
            continue
        opt = BY_KEY.get(key)
        if opt is None:
            known = [o.key for o in OPTIONS] + list(extra)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Known settings: {', '.join(known)}."
            raise UsageError(f"{where}: unknown setting {key!r}.{hint}")
        try:
            out[key] = opt.parse(value)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{where}: {key} = {value!r}: {exc}") from None
    return out


def from_ini(getini: Callable[[str], Any], where: str) -> dict[str, Any]:
    """Options from pytest ini keys (``gradharness_max_examples = 20``...), validated."""
    values = {}
    for opt in OPTIONS:
        raw = getini(opt.ini)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        values[opt.key] = raw.strip() if isinstance(raw, str) else raw
    try:
        return from_config(values, where)
    except UsageError as exc:
        # name the ini key as the user wrote it
        text = str(exc)
        for opt in OPTIONS:
            text = text.replace(f": {opt.key} = ", f": {opt.ini} = ")
        raise UsageError(text) from None


def merge(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Options of several sources, later ones winning; ``skip`` unions and ``checks`` intersects."""
    out: dict[str, Any] = {}
    skip: list[str] = []
    checks: list[str] | None = None
    for src in sources:
        if not src:
            continue
        for key, value in src.items():
            if key == "skip":
                names = (value,) if isinstance(value, str) else tuple(value or ())
                skip.extend(n for n in names if n not in skip)
            elif key == "checks":
                if value is None:
                    continue
                names = (value,) if isinstance(value, str) else tuple(value)
                checks = list(names) if checks is None else [n for n in checks if n in names]
            else:
                out[key] = value
    if skip:
        out["skip"] = tuple(skip)
    if checks is not None:
        out["checks"] = tuple(checks)
    return out


def layer_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The check_layer keywords among merged options (drops front-end settings such as ``json``)."""
    return {k: v for k, v in options.items() if k not in BY_KEY or BY_KEY[k].layer}


def selected_checks(options: Mapping[str, Any]) -> list[str]:
    """The checks merged options leave to run, in report order (before applicability)."""
    from .checks import CHECK_ORDER

    chosen = options.get("checks")
    skip = set(options.get("skip") or ())
    return [n for n in CHECK_ORDER if (chosen is None or n in chosen) and n not in skip]


def with_session_seed(options: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """Options with the session's seed filled in, unless a seed is set or the profile is derandomized (ci)."""
    out = dict(options)
    if seed is not None and out.get("seed") is None and out.get("profile", "dev") != "ci":
        out["seed"] = seed
    return out
