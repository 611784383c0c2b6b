"""EWS probes with the service account: logon, address resolution, calendar reads.

Read operations only (ConvertId, ResolveNames, GetFolder, FindItem). The server
version is pinned after logon so that no later request guesses it again; calendars are
addressed directly by DistinguishedFolderId with the target mailbox, because a
calendar-only delegate is refused the mailbox root. Impersonation reads one mailbox per
request on a bounded pool; delegate reads go out as GetFolder batches.

Every request goes through ewsready.probes.ews_answers.EwsAdapter (a deadline and a
size cap on each answer, SOAP screened before exchangelib parses it). A busy answer
(ErrorServerBusy, HTTP 503) is waited out for the back-off the server asks, out of one
BusyBudget that the whole run shares; a failure of any other kind is reported as what
the server did ("EWS at URL accepted the connection but sent no answer within 2 s").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    UTC,
    Account,
    Configuration,
    Credentials,
)
from exchangelib import errors as ews_errors
from exchangelib.folders import Calendar, FolderCollection
from exchangelib.folders.roots import Root
from exchangelib.properties import DistinguishedFolderId, EffectiveRights, Mailbox
from exchangelib.protocol import CachingProtocol, Protocol
from exchangelib.version import Build, Version

from ewsready import stop
from ewsready.facts import (
    AddressFacts,
    AddressResolution,
    LogonFacts,
    MailboxAccessFacts,
    MailboxRead,
)
from ewsready.probes.ews_answers import (
    AuditRetryPolicy,
    EwsAdapter,
    ServiceUnavailable,
    busy_signal,
)
from ewsready.secret import Secret
from ewsready.transport import diagnose, install_for_exchangelib, seconds_text

log = logging.getLogger(__name__)

T = TypeVar("T")
BATCH = 100  # exchangelib's GetFolder chunk; one request per this many calendars


class BusyBudget:
    """The wall-clock time a run may spend waiting on a busy server, shared by every
    probe and thread: waits that overlap count once, so the total stays bounded
    whatever the number of mailboxes and workers."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._until = 0.0
        self._lock = threading.Lock()

    def reserve(self, wait: float) -> bool:
        """Take `wait` seconds from now, if what is left of the budget allows it."""
        with self._lock:
            now = time.monotonic()
            end = now + wait
            added = max(0.0, end - max(now, self._until))
            if self.spent + added > self.seconds:
                return False
            self.spent += added
            self._until = max(self._until, end)
            return True


class StillBusy(Exception):
    """The server kept answering busy until the busy budget was spent."""

    def __init__(self, code: str, what: str) -> None:
        super().__init__(what)
        self.code = code
        self.what = what


class Breaker:
    """Stops sending once the server has failed this many requests in a row on the
    wire (no answer, a cut connection, an unusable answer): against a black hole every
    request would wait out its own timeout, and a run over a thousand mailboxes would
    take hours. Any request that gets an answer closes it again."""

    THRESHOLD = 3

    def __init__(self) -> None:
        self._failures = 0
        self._last: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise NotSent when the breaker is open."""
        with self._lock:
            if self._failures < self.THRESHOLD or self._last is None:
                return
            code, message = self._last
            failures = self._failures
        raise NotSent(
            code,
            f"{message} (this request was not sent: the last {failures} requests "
            "had failed that way in a row)",
        )

    def failed(self, code: str, message: str) -> None:
        with self._lock:
            self._failures += 1
            self._last = (code, message)

    def answered(self) -> None:
        with self._lock:
            self._failures = 0
            self._last = None


class NotSent(Exception):
    """A request the breaker held back; code and message are the failure before it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class EwsTarget:
    url: str
    username: str
    password: Secret
    timeout: float
    workers: int
    busy: BusyBudget
    breaker: Breaker

    def __post_init__(self) -> None:
        if not self.url.casefold().startswith("https://"):
            raise ValueError(f"refusing to send Basic credentials to {self.url}")


class RequestCounter:
    """Counts the EWS requests a probe makes, for the report and for scale tests."""

    def __init__(self) -> None:
        self.count = 0
        self.busy_waits = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n

    def waited(self) -> None:
        with self._lock:
            self.busy_waits += 1


def _configuration(target: EwsTarget, version: Version | None) -> Configuration:
    install_for_exchangelib(EwsAdapter)
    return Configuration(
        service_endpoint=target.url,
        credentials=Credentials(target.username, target.password.reveal()),
        auth_type=BASIC,
        version=version,
        retry_policy=AuditRetryPolicy(),
        max_connections=target.workers,
    )


def _keep_pool_size() -> None:
    """Stands in for exchangelib's decrease_poolsize (see _protocol)."""


def _protocol(config: Configuration, timeout: float) -> Protocol:
    """exchangelib's (cached) protocol for config, with the audit's request timeout."""
    protocol = Protocol(config=config)
    protocol.TIMEOUT = timeout
    # On ErrorServerBusy exchangelib 5.6 shrinks its session pool while holding the
    # pool lock; when every session is in use it then waits for a new one under that
    # lock and deadlocks. The audit backs off itself (with_back_off), so the pool keeps
    # its size instead.
    protocol.decrease_poolsize = _keep_pool_size
    return protocol


def forget_protocols() -> None:
    """Drop exchangelib's cached protocols (and their sessions) for a fresh start."""
    CachingProtocol.clear_cache()


DEFAULT_BACK_OFF = 2.0  # seconds, when a busy answer names no back-off


def with_back_off(
    call: Callable[[], T], target: EwsTarget, counter: RequestCounter, what: str
) -> T:
    """Run call; on a busy answer wait the server's back-off, out of the run's budget.

    Raises StillBusy when the budget cannot cover the next wait, and NotSent without
    calling when the target's breaker is open. An interrupted run (ewsready.stop) ends
    the wait at once with the busy error."""
    while True:
        target.breaker.check()
        counter.add()
        try:
            result = call()
        except Exception as exc:
            signal = busy_signal(exc)
            if signal is None:
                wire = diagnose(exc)
                if wire is not None:
                    target.breaker.failed(wire[0], f"EWS at {target.url} {wire[1]}")
                raise
            target.breaker.answered()
            wait = signal.back_off if signal.back_off is not None else DEFAULT_BACK_OFF
            if stop.requested():
                raise
            if not target.busy.reserve(wait):
                raise _still_busy(signal, wait, target.busy) from exc
            log.debug("%s: server busy, backing off %.3f s", what, wait)
            counter.waited()
            if stop.sleep(wait):
                log.debug("%s: back-off cut short, the run is stopping", what)
                raise
        else:
            target.breaker.answered()
            return result


def _still_busy(signal: Exception, wait: float, busy: BusyBudget) -> StillBusy:
    if isinstance(signal, ServiceUnavailable):
        code, answer = "ServiceUnavailable", "HTTP 503 Service Unavailable"
    else:
        code, answer = "ErrorServerBusy", "ErrorServerBusy"
    return StillBusy(
        code,
        f"kept answering {answer} beyond the busy budget of "
        f"{seconds_text(busy.seconds)} (it last asked for a back-off of "
        f"{seconds_text(wait)})",
    )


def _failure(exc: BaseException, url: str) -> tuple[str, str]:
    """(code, message) for a failed request: what the server did when it is known,
    else exchangelib's own error."""
    if isinstance(exc, StillBusy):
        return exc.code, f"EWS at {url} {exc.what}"
    if isinstance(exc, NotSent):
        return exc.code, exc.message
    wire = diagnose(exc)
    if wire is not None:
        code, what = wire
        return code, f"EWS at {url} {what}"
    return _code(exc), _short(exc)


def _code(exc: BaseException) -> str:
    if isinstance(exc, ews_errors.UnauthorizedError):
        return "Unauthorized"
    if isinstance(exc, ews_errors.ResponseMessageError | ews_errors.EWSError):
        return type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "Timeout"
    return type(exc).__name__


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# --- logon --------------------------------------------------------------------------


def probe_logon(
    target: EwsTarget, counter: RequestCounter
) -> tuple[LogonFacts, Version | None]:
    """One signed-in request (the version guess); the server's build comes back with it."""
    config = _configuration(target, version=None)
    started = time.monotonic()
    try:
        protocol = _protocol(config, target.timeout)
        version = with_back_off(lambda: protocol.version, target, counter, "logon")
    except ews_errors.UnauthorizedError as exc:
        log.debug("logon %s as %s: 401 (%s)", target.url, target.username, _short(exc))
        return (
            LogonFacts(
                target.url, target.username, False, 401, "Unauthorized", _short(exc)
            ),
            None,
        )
    except Exception as exc:  # noqa: BLE001 - every failure is a fact the check reports
        log.debug("logon %s failed: %r", target.url, exc, exc_info=True)
        code, message = _failure(exc, target.url)
        return (
            LogonFacts(target.url, target.username, False, None, code, message),
            None,
        )
    build = version.build
    text = f"{build.major_version}.{build.minor_version}.{build.major_build}.{build.minor_build}"
    log.debug(
        "logon %s as %s ok in %.3f s: build %s, %s",
        target.url,
        target.username,
        time.monotonic() - started,
        text,
        version.api_version,
    )
    facts = LogonFacts(
        target.url,
        target.username,
        True,
        200,
        server_build=text,
        schema_version=version.api_version,
    )
    return facts, version


def pinned_version(version: Version) -> Version:
    """The version to pin: exchangelib talks the 2016 schema to 15.1 and 15.2 alike."""
    build = version.build
    return Version(
        build=Build(
            build.major_version,
            build.minor_version,
            build.major_build,
            build.minor_build,
        ),
        api_version=version.api_version,
    )


# --- addresses ----------------------------------------------------------------------


def _resolve_one(
    protocol: Protocol, address: str, target: EwsTarget, counter: RequestCounter
) -> AddressResolution:
    try:
        results = with_back_off(
            lambda: protocol.resolve_names([f"smtp:{address}"]),
            target,
            counter,
            f"resolve {address}",
        )
    except Exception as exc:  # noqa: BLE001
        log.debug("resolve %s failed: %r", address, exc)
        code, message = _failure(exc, target.url)
        return AddressResolution(address, False, code=code, message=message)
    mailboxes = [r for r in results if isinstance(r, Mailbox)]
    errors = [r for r in results if isinstance(r, Exception)]
    if not mailboxes:
        code = _code(errors[0]) if errors else "ErrorNameResolutionNoResults"
        return AddressResolution(
            address, False, code=code, message=_short(errors[0]) if errors else ""
        )
    exact = [
        m for m in mailboxes if (m.email_address or "").casefold() == address.casefold()
    ]
    chosen = exact[0] if exact else mailboxes[0]
    return AddressResolution(
        address, True, primary=chosen.email_address, display_name=chosen.name
    )


def probe_addresses(
    target: EwsTarget,
    version: Version,
    addresses: Sequence[str],
    counter: RequestCounter,
    progress: Callable[[int], None] | None = None,
) -> AddressFacts:
    config = _configuration(target, pinned_version(version))
    protocol = _protocol(config, target.timeout)
    results = _pooled(
        lambda a: _resolve_one(protocol, a, target, counter),
        addresses,
        target.workers,
        progress,
    )
    return AddressFacts(tuple(results))


# --- calendars ----------------------------------------------------------------------


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that an interrupted caller leaves at once: requests not started
    are cancelled, and those in flight end within their own timeout unwatched."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ews")
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _pooled(
    work: Callable[[str], T],
    items: Sequence[str],
    workers: int,
    progress: Callable[[int], None] | None,
) -> list[T]:
    if not items:
        return []
    with _pool(min(workers, len(items))) as pool:
        results = []
        for result in pool.map(work, items):
            results.append(result)
            if progress:
                progress(1)
        return results


def _calendar_of(account: Account, address: str) -> Calendar:
    root = Root(account=account)
    return Calendar(
        root=root,
        _distinguished_id=DistinguishedFolderId(
            id="calendar", mailbox=Mailbox(email_address=address)
        ),
    )


def _read_impersonated(
    config: Configuration,
    invited: str,
    primary: str,
    target: EwsTarget,
    counter: RequestCounter,
    window: tuple[dt.datetime, dt.datetime],
) -> MailboxRead:
    started = time.monotonic()
    account = Account(
        primary_smtp_address=primary,
        config=config,
        access_type=IMPERSONATION,
        autodiscover=False,
        default_timezone=UTC,
    )
    calendar = _calendar_of(account, primary)
    start, end = window
    query = (
        FolderCollection(account=account, folders=[calendar])
        .view(start, end)
        .only("subject")
    )
    try:
        with_back_off(lambda: list(query[:1]), target, counter, f"read {primary}")
    except Exception as exc:  # noqa: BLE001
        log.debug("impersonated read %s: %r", primary, exc)
        code, message = _failure(exc, target.url)
        return MailboxRead(
            invited,
            False,
            code,
            message,
            read_as=_alias(invited, primary),
            seconds=time.monotonic() - started,
        )
    log.debug("impersonated read %s ok in %.3f s", primary, time.monotonic() - started)
    return MailboxRead(
        invited,
        True,
        "NoError",
        read_as=_alias(invited, primary),
        seconds=time.monotonic() - started,
    )


def _alias(invited: str, primary: str) -> str | None:
    return primary if primary.casefold() != invited.casefold() else None


def _read_delegate_batch(
    config: Configuration,
    pairs: Sequence[tuple[str, str]],
    target: EwsTarget,
    counter: RequestCounter,
) -> list[MailboxRead]:
    """One GetFolder for up to BATCH calendars, asking for the caller's EffectiveRights."""
    from exchangelib.fields import FieldPath
    from exchangelib.folders.base import Folder

    account = Account(
        primary_smtp_address=target.username if "@" in target.username else pairs[0][1],
        config=config,
        access_type=DELEGATE,
        autodiscover=False,
        default_timezone=UTC,
    )
    folders = [_calendar_of(account, primary) for _, primary in pairs]
    fields = {
        FieldPath(field=Folder.get_field_by_fieldname("effective_rights")),
        FieldPath(field=Folder.get_field_by_fieldname("name")),
    }
    collection = FolderCollection(account=account, folders=folders)
    try:
        results = with_back_off(
            lambda: list(collection.get_folders(additional_fields=set(fields))),
            target,
            counter,
            f"read {len(pairs)} calendars",
        )
    except (
        Exception
    ) as exc:  # noqa: BLE001 - a batch-wide fault applies to each mailbox
        log.debug("delegate batch of %d failed: %r", len(pairs), exc)
        code, message = _failure(exc, target.url)
        return [
            MailboxRead(
                invited,
                False,
                code,
                message,
                read_as=_alias(invited, primary),
            )
            for invited, primary in pairs
        ]
    reads = []
    for (invited, primary), result in zip(pairs, results, strict=False):
        if isinstance(result, Exception):
            reads.append(
                MailboxRead(
                    invited,
                    False,
                    _code(result),
                    _short(result),
                    read_as=_alias(invited, primary),
                )
            )
            continue
        rights: EffectiveRights | None = getattr(result, "effective_rights", None)
        # Without EffectiveRights the folder was visible, which needs read access;
        # whether events can be added stays unknown (can_write None) and is reported.
        can_read = bool(rights.read) if rights is not None else True
        can_write = (
            bool(rights.create_contents and rights.modify)
            if rights is not None
            else None
        )
        reads.append(
            MailboxRead(
                invited,
                can_read,
                "NoError" if can_read else "NoReadRight",
                "" if can_read else "the calendar is visible but its items are not",
                read_as=_alias(invited, primary),
                can_write=can_write,
            )
        )
    if len(results) < len(pairs):
        for invited, primary in pairs[len(results) :]:
            reads.append(
                MailboxRead(
                    invited,
                    False,
                    "NoResponse",
                    "the server returned no answer for this calendar",
                    read_as=_alias(invited, primary),
                )
            )
    return reads


def probe_mailboxes(
    target: EwsTarget,
    version: Version,
    access: str,
    pairs: Sequence[tuple[str, str]],
    counter: RequestCounter,
    progress: Callable[[int], None] | None = None,
    now: dt.datetime | None = None,
) -> MailboxAccessFacts:
    """Read each (invited, primary) mailbox's calendar as the calendar service would."""
    config = _configuration(target, pinned_version(version))
    _protocol(config, target.timeout)  # the cached protocol every Account shares
    now = now or dt.datetime.now(dt.UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    window = (start, start + dt.timedelta(days=1))
    if access == "impersonation":
        by_primary = dict((primary, invited) for invited, primary in pairs)
        reads = _pooled(
            lambda primary: _read_impersonated(
                config, by_primary[primary], primary, target, counter, window
            ),
            list(by_primary),
            target.workers,
            progress,
        )
        return MailboxAccessFacts(
            access, tuple(reads), counter.count, counter.busy_waits, url=target.url
        )

    batches = [list(pairs[i : i + BATCH]) for i in range(0, len(pairs), BATCH)]
    reads = []
    for batch_reads in _pooled_batches(config, batches, target, counter, progress):
        reads.extend(batch_reads)
    return MailboxAccessFacts(
        access, tuple(reads), counter.count, counter.busy_waits, url=target.url
    )


def _pooled_batches(
    config: Configuration,
    batches: Iterable[list[tuple[str, str]]],
    target: EwsTarget,
    counter: RequestCounter,
    progress: Callable[[int], None] | None,
) -> list[list[MailboxRead]]:
    batches = list(batches)
    if not batches:
        return []
    with _pool(min(target.workers, len(batches))) as pool:
        out = []
        for batch, reads in zip(
            batches,
            pool.map(
                lambda b: _read_delegate_batch(config, b, target, counter), batches
            ),
            strict=True,
        ):
            out.append(reads)
            if progress:
                progress(len(batch))
        return out
