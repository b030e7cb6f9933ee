"""Errors raised to the user (bad arguments) and internal control-flow signals."""
from __future__ import annotations

from typing import Any


class InvalidArgument(ValueError):
    """A public argument is invalid: the message echoes ``name=value`` and suggests the fix."""

    def __init__(self, name: str, value: Any, expected: str, fix: str | None = None) -> None:
        self.name = name
        self.value = value
        text = f"{name}={value!r}: expected {expected}"
        if fix:
            text += f". {fix}"
        super().__init__(text)


class LayerCallError(Exception):
    """A call into the user's layer raised, returned the wrong type, or broke the protocol."""

    def __init__(self, what: str, detail: str, *, cause: BaseException | None = None) -> None:
        self.what = what
        self.detail = detail
        self.cause = cause
        super().__init__(f"{what}: {detail}")
