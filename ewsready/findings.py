"""Findings: the verdicts that rules hand to the checks and the report."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Ordered so that `max()` gives the worst; FAIL and above make a run not ready."""

    PASS = 0
    INFO = 1
    WARN = 2
    BLOCKED = 3
    FAIL = 4
    UNKNOWN = 5  # the check could not evaluate

    @classmethod
    def from_label(cls, label: str) -> Severity:
        """The severity a label names ('could not evaluate' -> UNKNOWN)."""
        return next(severity for severity in cls if severity.label == label)

    @property
    def label(self) -> str:
        return {
            Severity.PASS: "passed",
            Severity.INFO: "note",
            Severity.WARN: "warning",
            Severity.BLOCKED: "blocked",
            Severity.FAIL: "failure",
            Severity.UNKNOWN: "could not evaluate",
        }[self]


@dataclass(frozen=True)
class Finding:
    """One verdict: a sentence naming the object, its evidence, and how to fix it.

    `fix` names a catalogue entry; `values` fills its command templates with the
    organisation's own names. `blocked_by` names the marker of a root-cause check.
    """

    severity: Severity
    sentence: str
    evidence: tuple[str, ...] = ()
    fix: str | None = None
    values: Mapping[str, object] = field(default_factory=dict)
    blocked_by: str | None = None
    subjects: tuple[str, ...] = ()  # objects the finding is about (mailboxes, hosts)


def blocked(cause: str, check: str) -> Finding:
    return Finding(Severity.BLOCKED, f"Blocked by {check}: {cause}", blocked_by=check)
