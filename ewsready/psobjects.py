"""PowerShell objects as the audit sees them, whatever the source.

Live (pypsrp over WinRM) and offline (Export-Clixml files) sources both turn what
Exchange returns into PSObject values: the type-name chain, the properties by name, and
the object's ToString text. Property values are plain Python: str, int, float, bool,
None (Nil), datetime, bytes (byte arrays such as RawData), tuple (lists), or a nested
PSObject. Enums arrive as their ToString text ("IIS, SMTP"); URIs as str; Exchange's
ServerVersion as a PSObject whose text is "Version 15.1 (Build 2507.6)".

A source answers a Pipeline: one or more cmdlets, each fed the previous one's output.
`read` gives the output together with the non-terminating error records the pipeline
wrote (a cmdlet that fails for one mailbox of many writes an error and goes on with the
next); `run` and `stream` give the output alone and raise ShellError when there were
such errors, so no caller can drop them by accident.
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


class ShellSessionError(ShellError):
    """The session itself failed (stopped answering, a WSMan fault, a lost
    connection): the message says what happened to it, not to one cmdlet."""


@dataclass(frozen=True)
class ErrorRecord:
    """A non-terminating error record: the cmdlet could not handle one input object
    (one mailbox, one server) and went on with the next."""

    message: str  # the exception's message, as PowerShell prints the error
    target: str | None = None  # TargetObject (or CategoryInfo.TargetName) as text
    reason: str | None = None  # CategoryInfo.Reason: the exception's short name
    category: str | None = None  # CategoryInfo.Category: "ReadError", "NotSpecified"
    activity: str | None = None  # CategoryInfo.Activity: the cmdlet that wrote it
    error_id: str | None = None  # FullyQualifiedErrorId

    def __str__(self) -> str:
        about = f" for {self.target}" if self.target else ""
        return f"{self.activity or 'the pipeline'} failed{about}: {self.message}"


@dataclass(frozen=True)
class ShellOutput:
    """What a pipeline returned: its output objects and its non-terminating errors."""

    objects: tuple[PSObject, ...]
    errors: tuple[ErrorRecord, ...] = ()


def errors_message(names: str, errors: tuple[ErrorRecord, ...]) -> str:
    """One line for a pipeline's non-terminating errors: how many, and the first."""
    if len(errors) == 1:
        return f"{names} reported an error: {errors[0]}"
    return f"{names} reported {len(errors)} errors, the first: {errors[0]}"


class ShellSource(Protocol):
    """Where shell facts come from: a live session or a folder of exports."""

    description: str

    def read(self, pipeline: Pipeline) -> ShellOutput:
        """Every object the pipeline outputs, and the error records it wrote for the
        objects it could not handle; ShellError when the pipeline as a whole fails."""
        ...

    def run(self, pipeline: Pipeline) -> list[PSObject]:
        """Every object the pipeline outputs; ShellError when it fails or wrote
        error records."""
        ...

    def stream(self, pipeline: Pipeline) -> Iterator[PSObject]:
        """The same, one object at a time, for pipelines over many mailboxes."""
        ...


def pipeline(*cmdlets: Cmdlet | str) -> Pipeline:
    return tuple(Cmdlet(c) if isinstance(c, str) else c for c in cmdlets)
