"""Gather the facts of one run, once each, in dependency order.

Each accessor returns facts or a Blocked naming the root cause: no DNS answer blocks
everything behind it; an untrusted certificate blocks every request that carries the
password; a URL that is not EWS, or EWS without Basic, blocks the sign-in; a failed
sign-in blocks everything that needs it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import certifi
from exchangelib.version import Version

from ewsready import logs, shellfacts
from ewsready.facts import (
    AddressFacts,
    Blocked,
    CertificateFacts,
    HttpAnswer,
    LogonFacts,
    MailboxAccessFacts,
    Reachability,
    Unavailable,
    UrlFacts,
    server_failed,
)
from ewsready.probes import ews, http, network
from ewsready.probes.shell import LiveShell, ReadOnlyViolation, ShellTarget
from ewsready.psobjects import (
    Cmdlet,
    ShellError,
    ShellOutput,
    ShellSessionError,
    ShellSource,
    errors_message,
)
from ewsready.rules.certificate import weaknesses
from ewsready.rules.ews_url import answer_kind, ews_url_for, kind_of_path
from ewsready.rules.reachability import unreachable
from ewsready.settings import Settings
from ewsready.transport import ROUTES, Route

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class _Failed:
    error: Exception


class Collector:
    """The facts of one audit run; thread-safe, each probe runs at most once."""

    def __init__(
        self,
        settings: Settings,
        public_roots: list[Path] | None = None,
        store_name: str | None = None,
        progress: Progress | None = None,
        shell: ShellSource | None = None,
        directory: ShellSource | None = None,
    ) -> None:
        self.settings = settings
        logs.install()
        logs.register(settings.password, settings.username)
        self.public_roots = public_roots or [Path(certifi.where())]
        self.store_name = store_name or "Mozilla (certifi)"
        self.progress = progress
        self.counter = ews.RequestCounter()
        self.busy = ews.BusyBudget(settings.busy_budget)
        self.breaker = ews.Breaker()
        self._lock = threading.RLock()
        self._chains: dict[str, tuple[list[bytes], str | None]] = {}
        self._version: Version | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="ewsready-"))
        self._shell: ShellSource | Unavailable | None = shell
        self._directory: ShellSource | Unavailable | None = directory

    # --- helpers ------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.settings.ews_host

    @property
    def port(self) -> int:
        return self.settings.ews_port

    def _once(method):  # type: ignore[no-untyped-def]  # noqa: N805
        attribute = f"_cached_{method.__name__}"

        @functools.wraps(method)
        def wrapper(self):  # type: ignore[no-untyped-def]
            with self._lock:
                if not hasattr(self, attribute):
                    try:
                        setattr(self, attribute, method(self))
                    except Exception as exc:
                        # A probe that failed fails the same way for every check
                        # that asks, so its error is reported (and logged) once.
                        setattr(self, attribute, _Failed(exc))
                found = getattr(self, attribute)
                if isinstance(found, _Failed):
                    raise found.error
                return found

        return wrapper

    @functools.cached_property
    def credential_bundle(self) -> Path:
        """The trust store for requests that carry the password: public + ca_bundle."""
        paths = list(self.public_roots)
        if self.settings.ca_bundle:
            paths.append(self.settings.ca_bundle)
        if len(paths) == 1:
            return paths[0]
        combined = self._workdir / "trust.pem"
        combined.write_bytes(b"\n".join(p.read_bytes() for p in paths))
        return combined

    # --- reachability and TLS ---------------------------------------------------------

    @_once
    def reachability(self) -> Reachability:
        s = self.settings
        reach, self._chains = network.probe_reachability(
            self.host, self.port, s.resolvers, s.connect_timeout, lab=s.lab
        )
        good = tuple(a.address for a in reach.attempts if a.tcp_ok and a.tls_ok)
        # In lab mode the route is set even when empty, so that no request for the
        # lab's host name ever falls back to the machine's own resolver.
        if good or s.lab:
            ROUTES.set(
                self.host,
                self.port,
                Route(
                    good,
                    str(self.credential_bundle),
                    loopback_only=s.lab,
                    fingerprint=s.ews_fingerprint,
                ),
            )
        return reach

    def reach_blocked(self) -> Blocked | None:
        return unreachable(self.reachability())

    @_once
    def certificates(self) -> list[CertificateFacts] | Blocked:
        """One CertificateFacts per distinct chain the addresses sent (with the
        addresses that sent it), so every front end's certificate is judged."""
        blocked = self.reach_blocked()
        if blocked:
            return blocked
        reach = self.reachability()
        roots = network.load_store(self.public_roots)
        by_chain: dict[tuple[bytes, ...], list[str]] = {}
        for attempt in reach.attempts:
            if attempt.tcp_ok and attempt.tls_ok and attempt.address in self._chains:
                chain = tuple(self._chains[attempt.address][0])
                by_chain.setdefault(chain, []).append(attempt.address)
        facts = []
        for chain, addresses in by_chain.items():
            first = next(a for a in reach.attempts if a.address == addresses[0])
            judged = network.certificate_facts(
                self.host,
                ", ".join(addresses),
                self.port,
                list(chain),
                first.tls_version,
                self._chains[addresses[0]][1],
                roots,
                self.store_name,
            )
            facts.append(replace(judged, pinned=self.settings.ews_fingerprint))
        return facts

    def credentials_blocked(self) -> Blocked | None:
        """Credentials go only over TLS that verifies against the credential store, or
        to the certificate the settings pin (ews.fingerprint), at every address the
        host name leads to. With a pin, only the pinned certificate will do."""
        blocked = self.reach_blocked()
        if blocked:
            return blocked
        all_facts = self.certificates()
        assert isinstance(all_facts, list)
        roots = network.load_store([self.credential_bundle])
        now = dt.datetime.now(dt.UTC)
        for facts in all_facts:
            weak = weaknesses(facts)
            if weak:
                return Blocked(
                    f"the certificate on {self.host} is too weak for current TLS "
                    f"clients ({weak[0]}); the password is not sent over it",
                    "certificate",
                )
            if facts.pin_matches is not None:
                if facts.pin_matches:
                    log.debug(
                        "credentials go to %s (%s) on the pinned certificate",
                        self.host,
                        facts.address,
                    )
                    continue
                return Blocked(
                    f"the certificate on {self.host} ({facts.address}) is not the one "
                    "ews.fingerprint pins, and the password is sent only to that one",
                    "certificate",
                )
            if facts.verified:
                continue
            chain = self._chains[facts.address.split(", ")[0]][0]
            if network.verify_chain(self.host, chain, roots, now) is None:
                continue
            log.debug("credentials withheld from %s: %s", self.host, facts.verify_error)
            return Blocked(
                f"the certificate on {self.host} ({facts.address}) does not verify, and "
                "the password is sent only over verified TLS",
                "certificate",
            )
        return None

    # --- URL and offered authentication -----------------------------------------------

    @_once
    def url(self) -> UrlFacts | Blocked:
        blocked = self.reach_blocked()
        if blocked:
            return blocked
        given = self.settings.ews_url
        timeout = self.settings.read_timeout
        session = http.anonymous_session()
        answer = http.probe(given, timeout, session)
        if answer.error and given.startswith("https:"):
            # No answer to judge: nothing suggests another URL, and the signed-in
            # checks try the given one (their own failure then says what happened).
            return UrlFacts(given, answer)
        if (
            kind_of_path(given) is None
            and answer_kind(answer) is None
            and given.startswith("https:")
        ):
            return UrlFacts(given, answer)
        candidate = ews_url_for(given)
        candidate_answer = (
            http.probe(candidate, timeout, session) if candidate != given else answer
        )
        return UrlFacts(given, answer, candidate, candidate_answer)

    def effective_url(self) -> str | Blocked:
        """The URL the signed-in checks use: the given one, or the EWS URL proposed for
        it (always https: an http URL is never the one the password goes to)."""
        facts = self.url()
        if isinstance(facts, Blocked):
            return facts
        if facts.candidate is None:
            return facts.given
        if (
            facts.candidate_answer is not None
            and answer_kind(facts.candidate_answer) is None
        ):
            log.info(
                "using %s instead of %s for the signed-in checks",
                facts.candidate,
                facts.given,
            )
            return facts.candidate
        return Blocked(
            f"{facts.given} is not the EWS endpoint, and {facts.candidate} does not "
            "answer like EWS",
            "ews_url",
        )

    def audited_url(self) -> str | None:
        """The URL the signed-in checks used, if the run got that far."""
        if not hasattr(self, "_cached_url"):
            return None
        url = self.effective_url()
        return None if isinstance(url, Blocked) else url

    def offered(self) -> HttpAnswer | Blocked:
        url = self.effective_url()
        if isinstance(url, Blocked):
            return url
        facts = self.url()
        assert isinstance(facts, UrlFacts)
        if url == facts.given and facts.given_answer is not None:
            return facts.given_answer
        assert facts.candidate_answer is not None
        return facts.candidate_answer

    # --- signed in ------------------------------------------------------------------

    def _target(self, url: str) -> ews.EwsTarget:
        s = self.settings
        return ews.EwsTarget(
            url,
            s.username,
            s.password,
            s.read_timeout,
            s.workers,
            self.busy,
            self.breaker,
        )

    @_once
    def logon(self) -> LogonFacts | Blocked:
        blocked = self.credentials_blocked()
        if blocked:
            return blocked
        url = self.effective_url()
        if isinstance(url, Blocked):
            return url
        offered = self.offered()
        if isinstance(offered, HttpAnswer) and offered.status == 401:
            if not any(s.casefold() == "basic" for s in offered.auth_schemes):
                return Blocked(
                    f"{url} does not offer Basic authentication", "basic_auth"
                )
        facts, version = ews.probe_logon(self._target(url), self.counter)
        self._version = version
        return facts

    def signed_in_blocked(self) -> Blocked | None:
        logon = self.logon()
        if isinstance(logon, Blocked):
            return logon
        if not logon.ok:
            if server_failed(logon.error_code or "") and logon.error:
                return Blocked(
                    f"{logon.username} could not sign in: {logon.error}", "logon"
                )
            return Blocked(
                f"{logon.username} could not sign in ({logon.error_code})", "logon"
            )
        return None

    @_once
    def addresses(self) -> AddressFacts | Blocked:
        blocked = self.signed_in_blocked()
        if blocked:
            return blocked
        assert self._version is not None
        invited = self.settings.mailboxes
        return ews.probe_addresses(
            self._target(self.effective_url()),  # type: ignore[arg-type]
            self._version,
            invited,
            self.counter,
            self._progress("resolving invited addresses", len(invited)),
        )

    @_once
    def mailboxes(self) -> MailboxAccessFacts | Blocked:
        blocked = self.signed_in_blocked()
        if blocked:
            return blocked
        assert self._version is not None
        addresses = self.addresses()
        assert isinstance(addresses, AddressFacts)
        pairs: list[tuple[str, str]] = []
        unresolved: list[str] = []
        for resolution in addresses.resolutions:
            if resolution.found and resolution.primary:
                pairs.append((resolution.invited, resolution.primary))
            elif resolution.code == "ErrorNameResolutionNoResults":
                unresolved.append(resolution.invited)
            else:
                # Resolution failed for another reason: read by the invited address, so
                # calendar access is still judged on its own.
                pairs.append((resolution.invited, resolution.invited))
        if not pairs and unresolved:
            return Blocked("no invited address belongs to a mailbox", "invited_address")
        counter = ews.RequestCounter()
        facts = ews.probe_mailboxes(
            self._target(self.effective_url()),  # type: ignore[arg-type]
            self._version,
            self.settings.access,
            pairs,
            counter,
            self._progress("reading calendars", len(pairs)),
        )
        self.counter.add(counter.count)
        return MailboxAccessFacts(
            facts.access,
            facts.reads,
            facts.requests,
            facts.busy_waits,
            facts.error,
            tuple(unresolved),
            facts.url,
        )

    # --- Exchange's own configuration ------------------------------------------------

    def shell(self) -> ShellSource | Unavailable:
        """The shell source: given by the caller (lab, export) or from settings."""
        with self._lock:
            if self._shell is None:
                self._shell = self._live_shell(
                    "shell",
                    "Microsoft.Exchange",
                    "no shell is configured (a [shell] table in the tenant file, or "
                    "--from-export with files from collect.ps1)",
                )
            return self._shell

    def directory(self) -> ShellSource | Unavailable:
        """Active Directory's shell (a domain controller, or the export's files)."""
        with self._lock:
            if self._directory is None:
                self._directory = self._live_shell(
                    "directory",
                    "Microsoft.PowerShell",
                    "no domain controller is configured (a [directory] table in the "
                    "tenant file, or --from-export with GetADUser.xml from collect.ps1)",
                )
            return self._directory

    def _live_shell(
        self, table: str, configuration: str, missing: str
    ) -> LiveShell | Unavailable:
        """A session to the endpoint the settings' [table] names, or why there is none."""
        s = self.settings
        url, username, password, auth = (
            getattr(s, f"{table}_{key}")
            for key in ("url", "username", "password", "auth")
        )
        if not (url and username and password):
            return Unavailable(missing)
        return LiveShell(
            ShellTarget(
                url,
                username,
                password,
                auth,
                configuration=configuration,
                ca_bundle=str(self.credential_bundle),
                timeout=s.read_timeout,
                stall_timeout=s.shell_timeout,
            )
        )

    def _shell_output(
        self, what: str, *commands: Cmdlet, source: ShellSource | None = None
    ) -> ShellOutput | Unavailable:
        """A pipeline's output and error records, or why it could not be run."""
        source = source or self.shell()
        if isinstance(source, Unavailable):
            return source
        try:
            return source.read(tuple(commands))
        except ShellSessionError as exc:
            return Unavailable(str(exc))
        except ShellError as exc:
            return Unavailable(f"{what} failed: {exc}")
        except (OSError, ValueError) as exc:
            if isinstance(exc, ReadOnlyViolation):
                raise
            log.debug("shell read %s failed: %r", what, exc, exc_info=True)
            return Unavailable(f"{what} could not run: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - pypsrp raises its own hierarchy
            log.debug("shell read %s failed: %r", what, exc, exc_info=True)
            return Unavailable(f"{what} could not run: {type(exc).__name__}")

    def _shell_read(self, what: str, build, *commands: Cmdlet, source=None):  # type: ignore[no-untyped-def]
        """Facts from one pipeline that is read as a whole: an error record for any
        of its objects (a server, the account) makes the whole read unavailable,
        naming that object, since what is missing cannot be told from what is not."""
        output = self._shell_output(what, *commands, source=source)
        if isinstance(output, Unavailable):
            return output
        if output.errors:
            return Unavailable(errors_message(what, output.errors))
        return build(output.objects)

    def _per_mailbox(  # type: ignore[no-untyped-def]
        self,
        what: str,
        build,
        names: dict[str, str],
        *commands: Cmdlet,
        answers: frozenset[str] = frozenset(),
    ):
        """(facts, ReadErrors) from a pipeline over many mailboxes: a mailbox the
        pipeline failed on is marked as not read, with the error's message, and
        the rest are judged as they are."""
        output = self._shell_output(what, *commands)
        if isinstance(output, Unavailable):
            return output, shellfacts.ReadErrors()
        errors = shellfacts.errors_by_mailbox(output.errors, names, answers)
        for error in errors.unattributed:
            log.debug("%s: an error naming no mailbox: %s", what, error)
        return build(output.objects), errors

    @_once
    def exchange_servers(self):  # type: ignore[no-untyped-def]
        return self._shell_read(
            "Get-ExchangeServer",
            shellfacts.exchange_servers,
            Cmdlet("Get-ExchangeServer"),
        )

    @_once
    def ews_directories(self):  # type: ignore[no-untyped-def]
        return self._shell_read(
            "Get-WebServicesVirtualDirectory",
            shellfacts.virtual_directories,
            Cmdlet("Get-WebServicesVirtualDirectory", {"ADPropertiesOnly": True}),
        )

    @_once
    def exchange_certificates(self):  # type: ignore[no-untyped-def]
        """Every server's certificate store: Get-ExchangeCertificate lists only the
        store of the server the session is on unless -Server names another, so one
        pipeline per server (the servers are few; the mailboxes are not)."""
        servers = self.exchange_servers()
        if isinstance(servers, Unavailable) or not servers:
            return self._shell_read(
                "Get-ExchangeCertificate",
                shellfacts.exchange_certificates,
                Cmdlet("Get-ExchangeCertificate"),
            )
        found: list = []
        for server in servers:
            name = server.name
            certificates = self._shell_read(
                f"Get-ExchangeCertificate -Server {name}",
                functools.partial(shellfacts.exchange_certificates, server=name),
                Cmdlet("Get-ExchangeCertificate", {"Server": name}),
            )
            if isinstance(certificates, Unavailable):
                return certificates
            found.extend(certificates)
        return tuple(found)

    def _unnamed_account(self) -> Unavailable | None:
        if self.settings.username:
            return None
        return Unavailable("the service account is not named in the settings")

    @_once
    def impersonation(self):  # type: ignore[no-untyped-def]
        """(service account, ApplicationImpersonation assignments, scope members).

        Scope membership comes from Exchange (Get-Recipient with the scope's own
        filter), so OPATH is never re-implemented here; the number of pipelines grows
        with the scopes in use, not with the mailboxes."""
        upn = self.settings.username
        missing = self._unnamed_account()
        if missing:
            return missing, missing, missing
        account = self._shell_read(
            "Get-Mailbox", shellfacts.account, Cmdlet("Get-Mailbox", {"Identity": upn})
        )
        assignments = self._shell_read(
            "Get-ManagementRoleAssignment",
            shellfacts.role_assignments,
            Cmdlet(
                "Get-ManagementRoleAssignment",
                {"Role": "ApplicationImpersonation", "GetEffectiveUsers": True},
            ),
        )
        if isinstance(assignments, Unavailable):
            return account, assignments, assignments
        scopes = []
        for name in sorted({a.custom_scope for a in assignments if a.custom_scope}):
            found = self._shell_read(
                "Get-ManagementScope",
                list,
                Cmdlet("Get-ManagementScope", {"Identity": name}),
            )
            if isinstance(found, Unavailable):
                return account, assignments, found
            recipient_filter = (
                shellfacts.text_of(found[0].get("RecipientFilter")) if found else None
            )
            if not recipient_filter:
                return (
                    account,
                    assignments,
                    Unavailable(f"scope {name} has no RecipientFilter"),
                )
            members = self._shell_read(
                f"Get-Recipient for scope {name}",
                shellfacts.primary_addresses,
                Cmdlet(
                    "Get-Recipient",
                    {
                        "RecipientPreviewFilter": recipient_filter,
                        "ResultSize": "Unlimited",
                    },
                ),
            )
            if isinstance(members, Unavailable):
                return account, assignments, members
            scopes.append(shellfacts.ScopeMembers(name, recipient_filter, members))
        return account, assignments, scopes

    @_once
    def mailbox_directory(self):  # type: ignore[no-untyped-def]
        """Every mailbox (Get-Mailbox -ResultSize Unlimited), read once for the reads
        over all mailboxes: it maps identities and other names to addresses."""
        return self._shell_read(
            "Get-Mailbox",
            tuple,
            Cmdlet("Get-Mailbox", {"ResultSize": "Unlimited"}),
        )

    def _mailbox_names(self) -> dict[str, str]:
        directory = self.mailbox_directory()
        if isinstance(directory, Unavailable):
            return {}
        return shellfacts.mailbox_names(directory)

    @_once
    def send_as(self):  # type: ignore[no-untyped-def]
        """(mailbox identity -> primary address, Send-As rows for the service account,
        the mailboxes Get-ADPermission failed on): two pipelines over all mailboxes,
        whatever their number."""
        upn = self.settings.username
        missing = self._unnamed_account()
        if missing:
            return missing, missing, shellfacts.ReadErrors()
        directory = self.mailbox_directory()
        mailboxes = (
            directory
            if isinstance(directory, Unavailable)
            else shellfacts.mailbox_addresses(directory)
        )
        entries, errors = self._per_mailbox(
            "Get-ADPermission",
            shellfacts.send_as_entries,
            self._mailbox_names(),
            Cmdlet("Get-Mailbox", {"ResultSize": "Unlimited"}),
            Cmdlet("Get-ADPermission", {"User": upn}),
        )
        return mailboxes, entries, errors

    @_once
    def calendar_permissions(self):  # type: ignore[no-untyped-def]
        """(mailbox -> calendar name by FolderType, (mailbox, folder) -> rights of the
        service account, the mailboxes either read failed on): two pipelines over all
        mailboxes, whatever their number."""
        upn = self.settings.username
        missing = self._unnamed_account()
        if missing:
            return missing, missing, shellfacts.ReadErrors()
        names = self._mailbox_names()
        folders = (
            Cmdlet("Get-Mailbox", {"ResultSize": "Unlimited"}),
            Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"}),
        )
        calendars, folder_errors = self._per_mailbox(
            "Get-MailboxFolderStatistics", shellfacts.calendar_folders, names, *folders
        )
        rights, rights_errors = self._per_mailbox(
            "Get-MailboxFolderPermission",
            shellfacts.folder_rights,
            names,
            *folders,
            Cmdlet("Get-MailboxFolderPermission", {"User": upn}),
            # "No permission entry for that user" is an answer: no rights.
            answers=frozenset({"UserNotFoundInPermissionEntryException"}),
        )
        return calendars, rights, folder_errors.merged(rights_errors)

    @_once
    def directory_account(self):  # type: ignore[no-untyped-def]
        """The service account as Active Directory shows it, found by its UPN."""
        source = self.directory()
        if isinstance(source, Unavailable):
            return source
        # An export holds the one account collect.ps1 was given; a live query needs it.
        missing = self._unnamed_account()
        if missing and isinstance(source, LiveShell):
            return missing
        parameters: dict[str, object] = {
            "Properties": list(shellfacts.DIRECTORY_PROPERTIES)
        }
        if self.settings.username:
            # Inside the filter's quotes a quote is written twice (AD filter syntax).
            upn = self.settings.username.replace("'", "''")
            parameters["Filter"] = f"UserPrincipalName -eq '{upn}'"
        return self._shell_read(
            "Get-ADUser",
            shellfacts.directory_accounts,
            Cmdlet("Get-ADUser", parameters),
            source=source,
        )

    def target_mailboxes(self) -> list[str]:
        """The invited mailboxes by primary address when EWS resolved them, else as
        invited."""
        if not self.settings.mailboxes:
            return []
        live = self.settings.ews_url and not self.settings.offline
        resolved = self.addresses() if live else None
        if isinstance(resolved, AddressFacts):
            # Addresses no mailbox has are invited_address's finding, not a scope gap.
            return [
                r.primary if r.found and r.primary else r.invited
                for r in resolved.resolutions
                if r.found or r.code != "ErrorNameResolutionNoResults"
            ]
        return list(self.settings.mailboxes)

    def presented_thumbprints(self) -> list[str]:
        live = self.settings.ews_url and not self.settings.offline
        facts = self.certificates() if live else []
        if isinstance(facts, Blocked):
            return []
        return [f.leaf.thumbprint for f in facts if f.leaf is not None]

    def _progress(self, what: str, total: int) -> Callable[[int], None] | None:
        if self.progress is None or total < 50:
            return None
        done = 0
        lock = threading.Lock()

        def step(n: int) -> None:
            nonlocal done
            with lock:
                done += n
                self.progress(what, done, total)  # type: ignore[misc]

        return step

    def close(self) -> None:
        ROUTES.remove(self.host, self.port)
        ews.forget_protocols()
        for source in (self._shell, self._directory):
            if isinstance(source, LiveShell):
                source.close()
