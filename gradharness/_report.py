"""Findings of checks, failures with their layered messages, and the report of one check_layer call."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass
class Finding:
    """What a check found wrong on one example: a summary line, detail lines and the numbers behind them."""

    check: str
    summary: str
    tensor: str | None = None
    lines: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    dtype: str = ""
    #: arrays and objects the diagnosis reads (not serialized)
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    diagnosis: Any = None


class _NotApplicable:
    """Returned by a check that does not apply to this example (a batch of 1, no params...)."""

    def __repr__(self) -> str:
        return "NOT_APPLICABLE"


NOT_APPLICABLE = _NotApplicable()


@dataclass
class Failure:
    """One failed check: `.check`, `.message` (the text a person reads), `.example` (dims, seed, ...)."""

    check: str
    message: str
    example: dict[str, Any]
    layer: str = ""
    tensor: str | None = None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    reproduce: str = ""
    #: a stable code naming the most likely bug ("sign-flip", "scaled-by-batch", ...), or None
    diagnosis: str | None = None
    #: the numbers behind the diagnosis
    diagnosis_params: dict[str, Any] = field(default_factory=dict)
    #: the diagnosis in words (also the message's first line after the header)
    diagnosis_text: str = ""

    def __str__(self) -> str:
        return self.message


@dataclass
class CheckStat:
    """How one check fared over the examples."""

    name: str
    status: str = "passed"      # passed | failed | not-applicable (no example could exercise it) | skipped
    ran: int = 0
    not_applicable: int = 0
    failed: int = 0


@dataclass
class Report:
    """The result of one check_layer call."""

    layer: str
    passed: bool
    failures: list[Failure]
    checks: dict[str, CheckStat]
    examples: int
    calls: dict[str, int]
    #: per dtype, per tensor: the largest relative gradient error a passing verdict could have missed
    sensitivity: dict[str, dict[str, float]]
    inconclusive_probes: int = 0
    seconds: float = 0.0
    seed: int | None = None
    #: what the harness noticed and put right (printing, global numpy state), in words
    notes: list[str] = field(default_factory=list)
    #: the time budget ran out before max_examples were run
    budget_exhausted: bool = False

    def failed_checks(self) -> list[str]:
        return list(dict.fromkeys(f.check for f in self.failures))

    def summary(self) -> str:
        state = "PASSED" if self.passed else f"FAILED ({', '.join(self.failed_checks())})"
        sens = "; ".join(f"{dt}: " + ", ".join(f"{k} {v:.1e}" for k, v in per.items())
                         for dt, per in self.sensitivity.items())
        text = (f"{self.layer}: {state}; {self.examples} examples, {self.calls['forward']} forward and "
                f"{self.calls['backward']} backward calls in {self.seconds:.2f}s")
        if sens:
            text += f"; gradient sensitivity (relative): {sens}"
        if self.budget_exhausted:
            text += " (the time budget ran out first)"
        for note in self.notes:
            text += f"\n  note: {note}"
        return text

    def __repr__(self) -> str:
        return f"<Report {self.summary()}>"

    def __str__(self) -> str:
        parts = [self.summary()]
        parts += [f.message for f in self.failures]
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return jsonable(d)


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: numpy scalars and arrays converted, anything else its repr."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def fmt(v: float) -> str:
    """A number as failure messages print it."""
    return f"{v: .9g}"


def format_failure(layer: str, finding: Finding, example: Mapping[str, Any], reproduce: str) -> str:
    """The layered message: header, what and where, numbers, the example and how to re-run it."""
    where = f", array {finding.tensor!r}" if finding.tensor else ""
    dt = f" ({finding.dtype})" if finding.dtype else ""
    lines = [f"[{finding.check}] {layer}{where}{dt}: {finding.summary}"]
    if finding.diagnosis is not None:
        lines.append(f"  Diagnosis: {finding.diagnosis.text}")
    lines += [f"  {ln}" for ln in finding.lines]
    ex = ", ".join(f"{k}={v!r}" for k, v in example.items())
    lines.append(f"  Example: {ex}")
    lines.append(f"  Reproduce: {reproduce}")
    return "\n".join(lines)
