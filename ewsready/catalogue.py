"""The remediation catalogue: why each finding matters and the commands that fix it.

Loaded once from data/catalogue.toml and validated: each entry has a title, a reason, an
https documentation link and command templates whose placeholders are all declared.
Values are quoted by ewsready.powershell when a command is rendered, never by hand.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ewsready.powershell import quote, quote_list

CATALOGUE_PATH = Path(__file__).parent / "data" / "catalogue.toml"
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
REQUIRED = {"title": str, "why": str, "doc": str, "values": list, "commands": str}


class CatalogueError(ValueError):
    """The catalogue file is malformed; a programming error, not a user one."""


@dataclass(frozen=True)
class Remedy:
    id: str
    title: str
    why: str
    doc: str
    values: tuple[str, ...]
    commands: str

    def render(self, values: Mapping[str, object]) -> str:
        """The commands with every placeholder replaced by a quoted value."""
        missing = [name for name in self.values if name not in values]
        if missing:
            raise CatalogueError(f"fix {self.id} needs value(s) {', '.join(missing)}")

        def substitute(match: re.Match[str]) -> str:
            value = values[match.group(1)]
            if isinstance(value, Sequence) and not isinstance(value, str):
                return quote_list(value)
            return quote(value)

        return PLACEHOLDER.sub(substitute, self.commands).strip("\n")


def parse_catalogue(data: Mapping[str, object], source: str) -> dict[str, Remedy]:
    remedies: dict[str, Remedy] = {}
    for fix_id, entry in data.items():
        if not isinstance(entry, dict):
            raise CatalogueError(f"{source}: [{fix_id}] is not a table")
        for key, kind in REQUIRED.items():
            if not isinstance(entry.get(key), kind):
                raise CatalogueError(
                    f"{source}: [{fix_id}] {key} missing or not {kind.__name__}"
                )
        extra = set(entry) - set(REQUIRED)
        if extra:
            raise CatalogueError(
                f"{source}: [{fix_id}] unknown key(s) {', '.join(sorted(extra))}"
            )
        if not entry["doc"].startswith("https://"):
            raise CatalogueError(f"{source}: [{fix_id}] doc must be an https link")
        if not entry["commands"].strip():
            raise CatalogueError(f"{source}: [{fix_id}] has no commands")
        used = set(PLACEHOLDER.findall(entry["commands"]))
        declared = set(entry["values"])
        if used != declared:
            raise CatalogueError(
                f"{source}: [{fix_id}] placeholders {sorted(used)} differ from values "
                f"{sorted(declared)}"
            )
        remedies[fix_id] = Remedy(
            id=fix_id,
            title=entry["title"],
            why=entry["why"],
            doc=entry["doc"],
            values=tuple(entry["values"]),
            commands=entry["commands"],
        )
    return remedies


@functools.cache
def catalogue() -> dict[str, Remedy]:
    with CATALOGUE_PATH.open("rb") as handle:
        return parse_catalogue(tomllib.load(handle), CATALOGUE_PATH.name)


def remedy(fix_id: str) -> Remedy:
    try:
        return catalogue()[fix_id]
    except KeyError:
        raise CatalogueError(f"no fix {fix_id!r} in the catalogue") from None
