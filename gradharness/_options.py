"""Run options shared by every front-end (CLI flags, and later pytest options and ini keys)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from ._spec import PROFILES


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text}")
    return value


@dataclass(frozen=True)
class Option:
    """One run option: the check_layer keyword it sets and how a command line spells it."""

    key: str
    flag: str
    type: Callable[[str], Any]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


OPTIONS = (
    Option("max_examples", "--max-examples", _positive_int, "examples per layer and search (default 50)", "N"),
    Option("seed", "--seed", int, "seed: the same seed gives the same report", "N"),
    Option("profile", "--profile", str, "settings profile: dev (random), ci (derandomized), thorough (10x examples)",
           choices=PROFILES),
    Option("checks", "--checks", _csv, "comma-separated checks to run (default: all that apply)", "NAMES"),
    Option("skip", "--skip", _csv, "comma-separated checks to skip", "NAMES"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every run option to an argparse parser."""
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.key, "default": None, "help": opt.help}
        if opt.choices:
            kwargs["choices"] = opt.choices
        else:
            kwargs["type"] = opt.type
            kwargs["metavar"] = opt.metavar
        parser.add_argument(opt.flag, **kwargs)


def overrides(namespace: argparse.Namespace) -> dict[str, Any]:
    """The check_layer keywords a parsed command line sets."""
    return {o.key: getattr(namespace, o.key) for o in OPTIONS if getattr(namespace, o.key, None) is not None}
