"""Rules: pure judgements over facts. Each returns findings, or nothing when all is well.

A rule never talks to the network. When its facts are Blocked it says so with the
root cause, instead of failing on its own account.
"""

from __future__ import annotations

from collections.abc import Iterable

from ewsready.facts import Blocked
from ewsready.findings import Finding, Severity, blocked

Result = list[Finding]


def from_blocked(facts: Blocked) -> Result:
    return [blocked(facts.cause, facts.check)]


def listing(items: Iterable[str], limit: int = 5) -> str:
    """'a, b and c', or 'a, b, c, d, e and 7 more'."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    if len(items) <= limit:
        return ", ".join(items[:-1]) + " and " + items[-1]
    return ", ".join(items[:limit]) + f" and {len(items) - limit} more"


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural_word or word + 's')}"


__all__ = ["Finding", "Severity", "Result", "from_blocked", "listing", "plural"]
