"""The live shell: Exchange cmdlets over PowerShell remoting (pypsrp over WinRM).

Read-only by construction: a pipeline whose cmdlets are not all on the allow-list of
read verbs is refused before anything leaves the process. Basic authentication is used
only over HTTPS; NTLM and Kerberos run with WinRM message encryption. Connections go
through the audit's pinned transport, so the lab (and a pinned EWS host) work the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ewsready.clixml import decode_string
from ewsready.psobjects import Pipeline, PSObject, ShellError
from ewsready.secret import Secret
from ewsready.transport import PinnedAdapter

log = logging.getLogger(__name__)

READ_VERBS = ("Get-", "Test-")
AUTH_METHODS = ("basic", "ntlm", "kerberos")


class ReadOnlyViolation(ValueError):
    """A pipeline with a cmdlet that could change something; never sent."""


def check_read_only(pipeline: Pipeline) -> None:
    for cmdlet in pipeline:
        verb, dash, noun = cmdlet.name.partition("-")
        if f"{verb}{dash}" not in READ_VERBS or not noun.isalnum():
            raise ReadOnlyViolation(
                f"refusing to send {cmdlet.name!r}: the audit only reads"
            )


@dataclass(frozen=True)
class ShellTarget:
    url: str  # https://ex01.contoso.local/PowerShell
    username: str
    password: Secret
    auth: str = "basic"
    configuration: str = "Microsoft.Exchange"
    ca_bundle: str | None = None
    timeout: float = 60.0


def _list_items(fragment: str) -> tuple[str, ...]:
    """Items of a multi-valued property that pypsrp left as raw <LST> XML: each item's
    text, or its ToString when it is an object."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(fragment.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return (fragment,)
    items = []
    for child in root:
        name = etree.QName(child).localname
        if name == "Obj":
            text = child.findtext("{*}ToString") or child.findtext("ToString")
            items.append(decode_string(text or ""))
        elif name != "Nil":
            items.append(decode_string(child.text or ""))
    return tuple(items)


def convert(value: Any) -> Any:
    """pypsrp's deserialized values as plain Python and PSObject."""
    from pypsrp.complex_objects import ComplexObject, GenericComplexObject

    if isinstance(value, GenericComplexObject):
        if "System.Enum" in value.types and value.to_string is not None:
            return value.to_string  # enums and flags read as Exchange prints them
        properties = {k: convert(v) for k, v in value.adapted_properties.items()}
        properties.update({k: convert(v) for k, v in value.extended_properties.items()})
        raw = value.property_sets[0] if len(value.property_sets) == 1 else None
        if not properties and isinstance(raw, str) and raw.lstrip().startswith("<LST"):
            return _list_items(raw)  # an Exchange multi-valued property
        if not properties and value.property_sets:
            return (
                convert(value.property_sets[0])
                if len(value.property_sets) == 1
                else tuple(convert(v) for v in value.property_sets)
            )
        return PSObject(tuple(value.types), properties, value.to_string)
    if isinstance(value, ComplexObject):
        # Known types (enums and the like) are read through their string form.
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(convert(v) for v in value)
    if isinstance(value, dict):
        return {convert(k): convert(v) for k, v in value.items()}
    return value


def _error_text(powershell: Any) -> tuple[str, str | None]:
    errors = list(getattr(powershell.streams, "error", []) or [])
    if not errors:
        return "the pipeline failed without an error record", None
    first = errors[0]
    message = str(first) or getattr(first, "message", "") or repr(first)
    error_id = getattr(first, "fq_error", None) or getattr(first, "reason", None)
    return message.splitlines()[0][:400], (str(error_id) if error_id else None)


class LiveShell:
    """A ShellSource over one RunspacePool, opened on first use."""

    def __init__(self, target: ShellTarget) -> None:
        if target.auth not in AUTH_METHODS:
            raise ValueError(f"shell auth {target.auth!r} is not one of {AUTH_METHODS}")
        parts = urlsplit(target.url)
        if target.auth == "basic" and parts.scheme != "https":
            raise ValueError(
                "Basic authentication to the shell is used only over https"
            )
        self.target = target
        self.description = f"PowerShell at {target.url} as {target.username}"
        self._pool: Any = None
        self._wsman: Any = None
        self._lock = threading.Lock()
        self.pipelines = 0

    def _open(self) -> Any:
        from pypsrp.powershell import RunspacePool
        from pypsrp.wsman import WSMan

        parts = urlsplit(self.target.url)
        wsman = WSMan(
            server=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            path=parts.path.lstrip("/") or "wsman",
            ssl=parts.scheme == "https",
            auth=self.target.auth,
            username=self.target.username,
            password=self.target.password.reveal(),
            cert_validation=self.target.ca_bundle or True,
            connection_timeout=int(self.target.timeout),
            read_timeout=int(self.target.timeout) + 30,
            operation_timeout=min(int(self.target.timeout), 60),
            no_proxy=True,
            encryption="auto" if parts.scheme == "https" else "always",
        )
        # pypsrp builds its requests session on first send; build it now and mount the
        # pinned adapter so connections follow the audit's routes and trust.
        session = wsman.transport._build_session()
        adapter = PinnedAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        wsman.transport.session = session
        pool = RunspacePool(wsman, configuration_name=self.target.configuration)
        started = time.monotonic()
        pool.open()
        log.debug(
            "shell %s opened in %.3f s", self.target.url, time.monotonic() - started
        )
        self._wsman = wsman
        return pool

    def _runspace(self) -> Any:
        with self._lock:
            if self._pool is None:
                self._pool = self._open()
            return self._pool

    def run(self, pipeline: Pipeline) -> list[PSObject]:
        return list(self.stream(pipeline))

    def stream(self, pipeline: Pipeline) -> Iterator[PSObject]:
        from pypsrp.powershell import PowerShell

        check_read_only(pipeline)
        pool = self._runspace()
        powershell = PowerShell(pool)
        for cmdlet in pipeline:
            powershell.add_cmdlet(cmdlet.name)
            for name, value in cmdlet.parameters.items():
                powershell.add_parameter(name, None if value is True else value)
        names = " | ".join(c.name for c in pipeline)
        started = time.monotonic()
        with self._lock:
            self.pipelines += 1
        output = powershell.invoke()
        log.debug(
            "shell %s: %d objects in %.3f s",
            names,
            len(output),
            time.monotonic() - started,
        )
        if powershell.had_errors and not output:
            message, error_id = _error_text(powershell)
            raise ShellError(f"{names}: {message}", error_id)
        for value in output:
            converted = convert(value)
            yield (
                converted
                if isinstance(converted, PSObject)
                else PSObject(text=str(converted))
            )

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                try:
                    self._pool.close()
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    log.debug("shell close failed: %r", exc)
                self._pool = None
