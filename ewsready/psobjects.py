"""PowerShell objects as the audit sees them, whatever the source.

Live (pypsrp over WinRM) and offline (Export-Clixml files) sources both turn what
Exchange returns into PSObject values: the type-name chain, the properties by name, and
the object's ToString text. Property values are plain Python: str, int, float, bool,
None (Nil), datetime, bytes (byte arrays such as RawData), tuple (lists), or a nested
PSObject. Enums arrive as their ToString text ("IIS, SMTP"); URIs as str; Exchange's
ServerVersion as a PSObject whose text is "Version 15.1 (Build 2507.6)".

A source answers a Pipeline: one or more cmdlets, each fed the previous one's output.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class PSObject:
    type_names: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        """A property by name, case-insensitively, as PowerShell looks them up."""
        if name in self.properties:
            return self.properties[name]
        wanted = name.casefold()
        for key, value in self.properties.items():
            if key.casefold() == wanted:
                return value
        return default

    def __getitem__(self, name: str) -> Any:
        sentinel = object()
        value = self.get(name, sentinel)
        if value is sentinel:
            raise KeyError(name)
        return value

    def is_a(self, type_name: str) -> bool:
        return any(
            t == type_name or t.endswith("." + type_name) for t in self.type_names
        )

    def __str__(self) -> str:
        return self.text if self.text is not None else repr(self)


@dataclass(frozen=True)
class Cmdlet:
    name: str  # "Get-Mailbox"
    parameters: Mapping[str, Any] = field(default_factory=dict)  # switches: True


Pipeline = tuple[Cmdlet, ...]


class ShellError(RuntimeError):
    """A pipeline that failed on the server (or in the file it came from)."""

    def __init__(self, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id  # e.g. "CommandNotFoundException"


class ShellSource(Protocol):
    """Where shell facts come from: a live session or a folder of exports."""

    description: str

    def run(self, pipeline: Pipeline) -> list[PSObject]:
        """Every object the pipeline outputs; ShellError when it fails."""
        ...

    def stream(self, pipeline: Pipeline) -> Iterator[PSObject]:
        """The same, one object at a time, for pipelines over many mailboxes."""
        ...


def pipeline(*cmdlets: Cmdlet | str) -> Pipeline:
    return tuple(Cmdlet(c) if isinstance(c, str) else c for c in cmdlets)
