"""Version: Exchange 2013 or later, on a build that is still supported."""

from __future__ import annotations

import datetime as dt

from ewsready.builds import BuildError, lookup, parse_build
from ewsready.facts import Blocked, LogonFacts
from ewsready.findings import Finding, Severity
from ewsready.rules import Result, from_blocked


def _info(facts: LogonFacts):  # type: ignore[no-untyped-def]
    return lookup(parse_build(facts.server_build or ""))


def _unreadable(facts: LogonFacts) -> Result:
    return [
        Finding(
            Severity.UNKNOWN,
            f"{facts.url} sent no usable ServerVersionInfo ({facts.server_build!r}).",
        )
    ]


def at_least_2013(facts: LogonFacts | Blocked) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    try:
        info = _info(facts)
    except BuildError:
        return _unreadable(facts)
    if not info.below_minimum:
        return []
    return [
        Finding(
            Severity.FAIL,
            f"{info.level} (build {info.text}) is below the Exchange 2013 minimum.",
            evidence=(f"ServerVersionInfo from {facts.url}: {info.text}",),
            fix="version_below_minimum",
            values={"product": info.level, "build": info.text},
        )
    ]


def build_supported(
    facts: LogonFacts | Blocked, today: dt.date | None = None
) -> Result:
    if isinstance(facts, Blocked):
        return from_blocked(facts)
    today = today or dt.date.today()
    try:
        info = _info(facts)
    except BuildError:
        return _unreadable(facts)
    name = info.level
    evidence = [f"ServerVersionInfo from {facts.url}: {info.text}"]
    if info.release:
        evidence.append(
            f"{info.release.name}, released {info.release.date:%Y-%m-%d} {info.release.kb}".strip()
        )
    if info.out_of_support(today):
        return [
            Finding(
                Severity.WARN,
                f"{name} (build {info.text}) has been out of support since "
                f"{info.ended:%Y-%m-%d}.",
                evidence=tuple(evidence),
                fix="version_out_of_support",
                values={
                    "product": name,
                    "build": info.text,
                    "ended": f"{info.ended:%Y-%m-%d}",
                },
            )
        ]
    if info.behind_latest(today):
        latest = info.latest
        assert latest is not None
        return [
            Finding(
                Severity.WARN,
                f"{name} (build {info.text}) is behind {latest.name} "
                f"({'.'.join(map(str, latest.build))}, "
                f"released {latest.date:%Y-%m-%d}); Subscription Edition is supported "
                "only on current updates.",
                evidence=tuple(evidence),
                fix="version_out_of_support",
                values={
                    "product": name,
                    "build": info.text,
                    "ended": f"{latest.date:%Y-%m-%d}",
                },
            )
        ]
    if (
        info.release is None
        and info.latest is not None
        and info.build < info.latest.build
    ):
        return [
            Finding(
                Severity.INFO,
                f"Build {info.text} is not in the build table; it sits between known "
                f"{info.product} releases.",
                evidence=tuple(evidence),
                fix="version_unknown_build",
                values={"build": info.text},
            )
        ]
    return []
