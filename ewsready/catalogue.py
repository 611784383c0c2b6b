"""The remediation catalogue: why each finding matters and the commands that fix it.

Loaded once from data/catalogue.toml and validated: each entry has a title, a reason, an
https documentation link and command templates whose placeholders are all declared.
Values are quoted by ewsready.powershell when a command is rendered, never by hand;
in a comment that is prose (not a "# Change: Verb-Noun ..." command to run by hand) a
value reads as plain text on the comment's one line.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ewsready.powershell import comment_text, quote, quote_list

CATALOGUE_PATH = Path(__file__).parent / "data" / "catalogue.toml"
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
REQUIRED = {"title": str, "why": str, "doc": str, "values": list, "commands": str}
# once_per names a value: in remediation.ps1 the first block with a given value of it
# stands for every later one (they would write the same certificate request file).
OPTIONAL = {"once_per": str}


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
    once_per: str | None = None

    def render(self, values: Mapping[str, object]) -> str:
        """The commands with every placeholder replaced: by a quoted value in code and
        in a commented command, by plain text in a comment that is prose."""
        missing = [name for name in self.values if name not in values]
        if missing:
            raise CatalogueError(f"fix {self.id} needs value(s) {', '.join(missing)}")

        def as_code(match: re.Match[str]) -> str:
            value = values[match.group(1)]
            if isinstance(value, Sequence) and not isinstance(value, str):
                return quote_list(value)
            return quote(value)

        def as_text(match: re.Match[str]) -> str:
            return comment_text(values[match.group(1)])

        lines = [
            PLACEHOLDER.sub(as_text if is_prose_comment(line) else as_code, line)
            for line in self.commands.split("\n")
        ]
        return "\n".join(lines).strip("\n")


# A comment that holds a command for the admin to run by hand: its values are quoted.
COMMENTED_COMMAND = re.compile(r"\s*# Change: (?=[A-Z][a-z]+-[A-Z])")


def is_prose_comment(line: str) -> bool:
    return line.lstrip().startswith("#") and not COMMENTED_COMMAND.match(line)


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
        extra = set(entry) - set(REQUIRED) - set(OPTIONAL)
        if extra:
            raise CatalogueError(
                f"{source}: [{fix_id}] unknown key(s) {', '.join(sorted(extra))}"
            )
        for key, kind in OPTIONAL.items():
            if key in entry and not isinstance(entry[key], kind):
                raise CatalogueError(
                    f"{source}: [{fix_id}] {key} is not {kind.__name__}"
                )
        if "once_per" in entry and entry["once_per"] not in entry["values"]:
            raise CatalogueError(
                f"{source}: [{fix_id}] once_per names {entry['once_per']!r}, which is "
                "not in values"
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
            once_per=entry.get("once_per"),
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
