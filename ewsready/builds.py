"""Exchange build numbers: which product, which update, and whether it is supported.

The build table is data (data/exchange-builds.csv, from microsoft/Get-ExchangeBuildNumber,
MIT licence beside it); support end dates are in data/exchange-support.toml.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
LEVEL = re.compile(r"^(Exchange (?:\d{4}|SE)(?: (?:SP\d|CU\d+|RTM))?)")

Build = tuple[int, int, int, int]


class BuildError(ValueError):
    """A version string that is not an Exchange build number."""


def parse_build(text: str) -> Build:
    """'15.1.2507.39', '15.01.2507.039' or 'Version 15.1 (Build 2507.39)' -> a tuple."""
    text = text.strip()
    match = re.fullmatch(r"Version (\d+)\.(\d+) \(Build (\d+)\.(\d+)\)", text)
    parts = match.groups() if match else text.split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise BuildError(f"{text!r} is not an Exchange build number like 15.1.2507.39")
    major, minor, build, revision = (int(p) for p in parts)
    return major, minor, build, revision


def build_text(build: Build) -> str:
    return ".".join(str(n) for n in build)


def product_line(build: Build) -> str:
    """The product a build belongs to, by Microsoft's numbering."""
    major, minor, number, _ = build
    if major == 15 and minor == 2:
        return "Exchange SE" if number >= 2562 else "Exchange 2019"
    return {
        (15, 1): "Exchange 2016",
        (15, 0): "Exchange 2013",
        (14, 3): "Exchange 2010",
        (14, 2): "Exchange 2010",
        (14, 1): "Exchange 2010",
        (14, 0): "Exchange 2010",
    }.get((major, minor)) or (
        "Exchange 2007" if major == 8 else f"Exchange {major}.{minor} (unknown)"
    )


@dataclass(frozen=True)
class Release:
    name: str  # "Exchange 2016 CU23 Aug23SU"
    build: Build
    date: dt.date
    kb: str


@dataclass(frozen=True)
class BuildInfo:
    build: Build
    product: str  # "Exchange 2016"
    level: str  # "Exchange 2016 CU23": the update level it sits on
    release: Release | None  # the exact release, when the table has it
    latest: Release | None  # the newest release of the same product line
    ended: dt.date | None  # support end of the product line, if it has one
    stale_after_days: int | None

    @property
    def text(self) -> str:
        return build_text(self.build)

    @property
    def below_minimum(self) -> bool:
        return self.build < (15, 0, 0, 0)

    def out_of_support(self, today: dt.date) -> bool:
        return self.ended is not None and today >= self.ended

    def behind_latest(self, today: dt.date) -> bool:
        """Modern Lifecycle: a newer update has been out for longer than allowed."""
        if self.stale_after_days is None or self.latest is None:
            return False
        if self.latest.build <= self.build:
            return False
        return (today - self.latest.date).days > self.stale_after_days


def _date(text: str) -> dt.date:
    month, day, year = (int(p) for p in text.split("/"))
    return dt.date(year, month, day)


@functools.cache
def releases() -> tuple[Release, ...]:
    rows = []
    with (DATA / "exchange-builds.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                Release(
                    name=row["Product Name"].strip(),
                    build=parse_build(row["Build Number"]),
                    date=_date(row["Date"]),
                    kb=row["KB"].strip(),
                )
            )
    return tuple(sorted(rows, key=lambda r: r.build))


@functools.cache
def support() -> dict:
    with (DATA / "exchange-support.toml").open("rb") as handle:
        return tomllib.load(handle)


def lookup(build: Build) -> BuildInfo:
    """What the table knows of a build; unknown builds still get their product line."""
    product = product_line(build)
    same_line = [r for r in releases() if product_line(r.build) == product]
    exact = next((r for r in same_line if r.build == build), None)
    at_or_below = [
        r for r in same_line if r.build <= build and r.build[:2] == build[:2]
    ]
    nearest = exact or (at_or_below[-1] if at_or_below else None)
    level_match = LEVEL.match(nearest.name) if nearest else None
    level = level_match.group(1) if level_match else product
    policy = support()["products"].get(product, {})
    return BuildInfo(
        build=build,
        product=product,
        level=level,
        release=exact,
        latest=same_line[-1] if same_line else None,
        ended=policy.get("ended"),
        stale_after_days=policy.get("stale_after_days"),
    )
