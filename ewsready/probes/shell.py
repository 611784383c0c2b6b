"""The live shell: Exchange cmdlets over PowerShell remoting (pypsrp over WinRM).

Read-only by construction: a pipeline whose cmdlets are not all on the allow-list of
read verbs is refused before anything leaves the process. Basic authentication is used
only over HTTPS; NTLM and Kerberos run with WinRM message encryption. Connections go
through the audit's pinned transport, so the lab (and a pinned EWS host) work the same.

A pipeline's non-terminating error records come back with its output (`read`), typed,
with the object each one names. Nothing waits forever: every request has the network
timeouts, and each pipeline runs in a helper thread that the audit gives up on when it
goes `stall_timeout` seconds without an answer (a Receive the server holds, an answer
that trickles in, a cmdlet that never ends). A session given up on is not used again in
the run, so one server that stopped answering costs that time once, not once a check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ewsready import logs
from ewsready.clixml import decode_string
from ewsready.probes.ews_answers import UnusableAnswer, declares_doctype
from ewsready.psobjects import (
    ErrorRecord,
    Pipeline,
    PSObject,
    ShellError,
    ShellOutput,
    ShellSessionError,
    errors_message,
)
from ewsready.secret import Secret
from ewsready.transport import AnswerFault, LimitedAdapter

log = logging.getLogger(__name__)

T = TypeVar("T")

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
    timeout: float = 60.0  # connect and read timeout of one WSMan request
    # How long a pipeline (or opening the session) may go without an answer before
    # the session counts as stopped.
    stall_timeout: float = 120.0


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


# The most values one output object may expand to. pypsrp resolves CLIXML <Ref>s to
# shared objects, so references to references can stand for far more than the
# answer's size; converting them copies every one.
MAX_VALUES_PER_OBJECT = 1_000_000


class TooManyValues(ShellError):
    """An output object whose references expand beyond MAX_VALUES_PER_OBJECT."""


def convert(value: Any, budget: list[int] | None = None) -> Any:
    """pypsrp's deserialized values as plain Python and PSObject, refusing an object
    that expands to more than MAX_VALUES_PER_OBJECT values (a reference bomb)."""
    from pypsrp.complex_objects import ComplexObject, GenericComplexObject

    budget = [MAX_VALUES_PER_OBJECT] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise TooManyValues(
            f"an object in the answer expands to more than "
            f"{MAX_VALUES_PER_OBJECT:,} values through its references; refused"
        )

    def inner(item: Any) -> Any:
        return convert(item, budget)

    if isinstance(value, GenericComplexObject):
        if "System.Enum" in value.types and value.to_string is not None:
            return value.to_string  # enums and flags read as Exchange prints them
        properties = {k: inner(v) for k, v in value.adapted_properties.items()}
        properties.update({k: inner(v) for k, v in value.extended_properties.items()})
        raw = value.property_sets[0] if len(value.property_sets) == 1 else None
        if not properties and isinstance(raw, str) and raw.lstrip().startswith("<LST"):
            return _list_items(raw)  # an Exchange multi-valued property
        if not properties and value.property_sets:
            return (
                inner(value.property_sets[0])
                if len(value.property_sets) == 1
                else tuple(inner(v) for v in value.property_sets)
            )
        return PSObject(tuple(value.types), properties, value.to_string)
    if isinstance(value, ComplexObject):
        # Known types (enums and the like) are read through their string form.
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(inner(v) for v in value)
    if isinstance(value, dict):
        return {inner(k): inner(v) for k, v in value.items()}
    return value


def _error_text(powershell: Any) -> tuple[str, str | None]:
    errors = list(getattr(powershell.streams, "error", []) or [])
    if not errors:
        return "the pipeline failed without an error record", None
    # The terminating error comes last (with the pipeline's state).
    last = errors[-1]
    message = str(last) or getattr(last, "message", "") or repr(last)
    error_id = getattr(last, "fq_error", None) or getattr(last, "reason", None)
    return _first_line(message), (str(error_id) if error_id else None)


def _first_line(text: str, limit: int = 400) -> str:
    lines = text.strip().splitlines()
    return lines[0][:limit] if lines else ""


def _text(value: Any) -> str | None:
    """A TargetObject (a string, or an object read through its ToString) as text."""
    if value is None:
        return None
    converted = convert(value)
    if isinstance(converted, PSObject):
        return converted.text
    if isinstance(converted, tuple):
        return ", ".join(str(v) for v in converted)
    return str(converted)


def _category(number: Any) -> str | None:
    from psrpcore.types import ErrorCategory

    try:
        return ErrorCategory(int(number)).name
    except (TypeError, ValueError):
        return None


def error_record(record: Any) -> ErrorRecord:
    """pypsrp's ErrorRecord as the audit's: message, target, CategoryInfo, error id."""
    message = getattr(record, "details_message", None) or str(record)
    if not message:
        exception = getattr(record, "exception", None)
        properties = getattr(exception, "adapted_properties", None) or {}
        message = str(properties.get("Message") or "") or "no message"
    target = _text(getattr(record, "target_object", None)) or getattr(
        record, "target_name", None
    )
    return ErrorRecord(
        message=_first_line(message),
        target=target or None,
        reason=getattr(record, "reason", None) or None,
        category=_category(getattr(record, "category", None)),
        activity=getattr(record, "activity", None) or None,
        error_id=getattr(record, "fq_error", None) or None,
    )


class _GivenUp(OSError):
    """A request on a session the audit has given up on; never sent."""


class _SessionAdapter(LimitedAdapter):
    """The pinned adapter of one session: answers within the read deadline and size
    cap, and none with a document type declaration, since pypsrp parses them with
    ElementTree, which expands internal entities. Once the audit gives up on the
    session, the helper thread still running its pipeline cannot send another request
    (pypsrp retries a Receive that timed out several times)."""

    def __init__(self, given_up: threading.Event) -> None:
        super().__init__(max_retries=0)
        self.given_up = given_up

    def send_unlimited(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if self.given_up.is_set():
            raise _GivenUp("the audit gave up on this PowerShell session")
        return super().send_unlimited(request, **kwargs)

    def screen(self, request, response) -> None:  # type: ignore[no-untyped-def]
        # TODO: with NTLM or Kerberos message encryption the XML is inside an
        # encrypted body and is parsed by pypsrp after decryption, unscreened; an
        # entity bomb there costs memory up to expat's amplification limit.
        if declares_doctype(response.content):
            response.close()
            raise UnusableAnswer(
                request.url or "",
                "DocumentType",
                "answered with a document type declaration (DTD)",
            )


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
        # The shell's account is as secret as the service account's.
        logs.register(target.password, target.username)
        self.description = f"PowerShell at {target.url} as {target.username}"
        self._pool: Any = None
        self._wsman: Any = None
        self._lock = threading.Lock()
        self._given_up = threading.Event()
        self._broken: str | None = None  # why the session is not used any more
        self.pipelines = 0

    # --- the session ------------------------------------------------------------

    def _open(self) -> Any:
        from pypsrp.powershell import RunspacePool
        from pypsrp.wsman import WSMan

        parts = urlsplit(self.target.url)
        # A request never waits longer than the pipeline may stall; the server is
        # asked to answer a Receive well within that (it then says "nothing yet").
        read = max(1, int(min(self.target.timeout, self.target.stall_timeout)))
        wsman = WSMan(
            server=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            path=parts.path.lstrip("/") or "wsman",
            ssl=parts.scheme == "https",
            auth=self.target.auth,
            username=self.target.username,
            password=self.target.password.reveal(),
            cert_validation=self.target.ca_bundle or True,
            connection_timeout=read,
            read_timeout=read + 2,
            operation_timeout=max(1, min(read // 2, 60)),
            reconnection_backoff=0.5,
            no_proxy=True,
            encryption="auto" if parts.scheme == "https" else "always",
        )
        # pypsrp builds its requests session on first send; build it now and mount the
        # pinned adapter so connections follow the audit's routes and trust.
        session = wsman.transport._build_session()
        adapter = _SessionAdapter(self._given_up)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        wsman.transport.session = session
        self._wsman = wsman
        pool = RunspacePool(wsman, configuration_name=self.target.configuration)
        started = time.monotonic()

        def open_pool(progress: Callable[[], None]) -> None:
            pool.open()

        self._bounded("while it was being opened", open_pool)
        log.debug(
            "shell %s opened in %.3f s", self.target.url, time.monotonic() - started
        )
        return pool

    def _runspace(self) -> Any:
        with self._lock:
            if self._broken is not None:
                raise ShellSessionError(self._broken)
            if self._pool is None:
                try:
                    self._pool = self._open()
                except ShellSessionError as exc:
                    self._broken = self._broken or str(exc)
                    raise
                except Exception as exc:
                    raise self._session_error(exc, "opening the session") from exc
            return self._pool

    def _give_up(self, reason: str) -> None:
        """Use the session no more this run, and stop its requests."""
        self._broken = self._broken or reason
        self._given_up.set()
        wsman = self._wsman
        session = getattr(getattr(wsman, "transport", None), "session", None)
        if session is not None:
            session.close()  # idle connections; a request in flight ends at its timeout
        log.debug("shell %s given up: %s", self.target.url, reason)

    def _bounded(self, when: str, work: Callable[[Callable[[], None]], T]) -> T:
        """Run work(progress) in a helper thread; give up on the session when it goes
        stall_timeout seconds without calling progress (each answer calls it). `when`
        ends the sentence that says so: "during Get-Mailbox"."""
        last = [time.monotonic()]
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def progress() -> None:
            last[0] = time.monotonic()

        def run() -> None:
            try:
                outcome["value"] = work(progress)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                outcome["error"] = exc
            finally:
                done.set()

        helper = threading.Thread(target=run, name="ewsready-shell", daemon=True)
        helper.start()
        while not done.wait(
            max(0.05, last[0] + self.target.stall_timeout - time.monotonic())
        ):
            silent = time.monotonic() - last[0]
            if silent >= self.target.stall_timeout:
                reason = (
                    f"the PowerShell session at {self.target.url} stopped answering "
                    f"after {silent:.0f} s {when}"
                )
                self._give_up(reason)
                raise ShellSessionError(reason)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _session_error(self, exc: BaseException, what: str) -> ShellSessionError:
        """A failure of the session (not of a cmdlet) as one sentence; the session is
        given up when it cannot be expected to work for the next pipeline either."""
        import requests
        from pypsrp.exceptions import (
            AuthenticationError,
            WinRMTransportError,
            WSManFaultError,
        )

        url = self.target.url
        if isinstance(exc, WSManFaultError):
            reason = _first_line(str(exc.reason or "no reason given"), 300)
            reason = reason.rstrip(".")  # the sentence it goes into ends with one
            return ShellSessionError(
                f"the PowerShell session at {url} answered {what} with WSMan fault "
                f"{exc.code}: {reason}",
                str(exc.code),
            )
        if isinstance(exc, AnswerFault):
            # A hostile or broken answer (a DTD, too large, too slow): no later
            # pipeline on this session can be trusted to fare better.
            message = f"the PowerShell session at {url} {exc.what} to {what}"
        elif isinstance(exc, AuthenticationError):
            message = f"the PowerShell session at {url} refused {self.target.username}"
        elif isinstance(exc, WinRMTransportError):
            message = (
                f"the PowerShell session at {url} answered {what} with HTTP {exc.code}"
            )
        elif isinstance(exc, requests.Timeout):
            message = (
                f"the PowerShell session at {url} stopped answering "
                f"({what}: {type(exc).__name__})"
            )
        elif isinstance(exc, (requests.RequestException, OSError)):
            message = (
                f"the PowerShell session at {url} could not be reached ({what}: "
                f"{type(exc).__name__})"
            )
        else:
            log.debug("shell %s: %s failed", url, what, exc_info=exc)
            return ShellSessionError(
                f"the PowerShell session at {url} failed ({what}: "
                f"{type(exc).__name__}: {_first_line(str(exc), 200)})"
            )
        log.debug("shell %s: %s failed: %r", url, what, exc)
        self._give_up(message)
        return ShellSessionError(message)

    # --- pipelines --------------------------------------------------------------

    def read(self, pipeline: Pipeline) -> ShellOutput:
        from pypsrp.complex_objects import PSInvocationState
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

        def invoke(progress: Callable[[], None]) -> None:
            powershell.begin_invoke()
            progress()
            while powershell.state == PSInvocationState.RUNNING:
                before = self._seen(powershell)
                powershell.poll_invoke()
                if self._seen(powershell) != before:
                    progress()  # "nothing yet" (an OperationTimeout fault) is not

        try:
            self._bounded(f"during {names}", invoke)
        except ShellError:
            raise
        except Exception as exc:
            received = len(powershell.output)
            what = names + (f" after {received} objects" if received else "")
            raise self._session_error(exc, what) from exc
        output = powershell.output
        errors = tuple(error_record(e) for e in powershell.streams.error)
        log.debug(
            "shell %s: %d objects, %d errors in %.3f s",
            names,
            len(output),
            len(errors),
            time.monotonic() - started,
        )
        if powershell.had_errors:
            # A terminating error: whatever came before it is not the whole answer.
            message, error_id = _error_text(powershell)
            if output:
                message = f"{message} (after {len(output)} objects)"
            raise ShellError(f"{names}: {message}", error_id)
        objects = []
        for value in output:
            converted = convert(value)
            objects.append(
                converted
                if isinstance(converted, PSObject)
                else PSObject(text=str(converted))
            )
        return ShellOutput(tuple(objects), errors)

    @staticmethod
    def _seen(powershell: Any) -> tuple[int, ...]:
        streams = powershell.streams
        return (
            len(powershell.output),
            len(streams.error),
            len(streams.warning),
            int(powershell.state),
        )

    def run(self, pipeline: Pipeline) -> list[PSObject]:
        return list(self.stream(pipeline))

    def stream(self, pipeline: Pipeline) -> Iterator[PSObject]:
        output = self.read(pipeline)
        yield from output.objects
        if output.errors:
            names = " | ".join(c.name for c in pipeline)
            raise ShellError(errors_message(names, output.errors))

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            broken = self._broken is not None
        if pool is None:
            return
        if not broken:
            try:
                self._bounded("while it was being closed", lambda _: pool.close())
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.debug("shell close failed: %r", exc)
        self._given_up.set()
        session = getattr(getattr(self._wsman, "transport", None), "session", None)
        if session is not None:
            session.close()
