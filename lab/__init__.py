"""A simulated Exchange organisation on loopback for the audit and its tests.

`Lab(scenario)` makes the certificate authority, starts DNS and the HTTPS front end
(EWS, OWA, ECP, autodiscover, and PowerShell remoting at /PowerShell and /wsman) on
ephemeral 127.0.0.1 ports, and records every request it receives. Clients reach the
EWS host name by connecting to 127.0.0.1:ews_port with the scenario's host name in SNI
and Host. The lab imports nothing from the audit.

    with Lab(load_scenario("contoso")) as lab:
        ...  # point exchangelib at lab.url, trusting lab.public_root_bundle
        ...  # point pypsrp at lab.shell_url as lab.shell_username (Basic, HTTPS)

The shell endpoints accept only the audit's reader account, `shell_username` with
`shell_password` (EWSREADY_SHELL_PASSWORD, or a random token). `shell_log` gets one
ShellCall per pipeline run; `shell_overrides` maps cmdlet names to Export-Clixml files
whose real objects are served instead of the scenario's.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from lab.dns import LabDns
from lab.ews import EwsServer, LabRequest
from lab.pki import LabPki
from lab.scenario import Scenario, ScenarioError, load_scenario, scenario_names
from lab.shell import ShellCall, ShellOrganisation
from lab.winrm import ShellService

__all__ = [
    "Lab",
    "LabRequest",
    "Scenario",
    "ShellCall",
    "ScenarioError",
    "load_scenario",
    "scenario_names",
]

logger = logging.getLogger(__name__)


class Lab:
    """PKI, DNS and EWS for one scenario; use as a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        scenario: Scenario,
        password: str | None = None,
        workdir: Path | None = None,
        shell_overrides: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.scenario = scenario
        if password is None:
            password = os.environ.get("EWSREADY_PASSWORD") or secrets.token_urlsafe(18)
        self.password = password
        domain = scenario.service_upn.rpartition("@")[2]
        self.shell_username = f"audit-reader@{domain}"
        self.shell_password = os.environ.get(
            "EWSREADY_SHELL_PASSWORD"
        ) or secrets.token_urlsafe(18)
        self.shell_overrides = dict(shell_overrides or {})
        self.log: list[LabRequest] = []
        self.shell_log: list[ShellCall] = []
        self.ews_port = 0
        self.dns_port = 0
        self._log_lock = threading.Lock()
        self._workdir = Path(workdir) if workdir is not None else None
        self._own_workdir: Path | None = None
        self._pki: LabPki | None = None
        self._dns: LabDns | None = None
        self._ews: EwsServer | None = None
        self._shell: ShellService | None = None

    def __repr__(self) -> str:
        # The password stays out of reprs, tracebacks and pytest's assertion output.
        state = f"ews_port={self.ews_port}" if self._ews else "stopped"
        return f"Lab({self.scenario.name!r}, {state})"

    @property
    def base_url(self) -> str:
        return f"https://{self.scenario.ews_host}:{self.ews_port}"

    @property
    def url(self) -> str:
        return self.base_url + self.scenario.audit.url_path

    @property
    def shell_url(self) -> str:
        """Exchange's remote PowerShell (configuration Microsoft.Exchange)."""
        return self.base_url + "/PowerShell"

    @property
    def dc_url(self) -> str:
        """A domain controller's WinRM (configuration Microsoft.PowerShell)."""
        return self.base_url + "/wsman"

    @property
    def public_root_bundle(self) -> Path:
        if self._pki is None:
            raise RuntimeError("the lab is not started")
        return self._pki.public_root_bundle

    def clear_log(self) -> None:
        """Forget the requests and the pipelines recorded so far."""
        with self._log_lock:
            self.log.clear()
            self.shell_log.clear()

    def _record(self, request: LabRequest) -> None:
        with self._log_lock:
            self.log.append(request)

    def _record_shell(self, call: ShellCall) -> None:
        with self._log_lock:
            self.shell_log.append(call)

    def start(self) -> None:
        if self._ews is not None:
            return
        workdir = self._workdir
        if workdir is None:
            self._own_workdir = workdir = Path(tempfile.mkdtemp(prefix="ewsready-lab-"))
        try:
            self._pki = LabPki(workdir)
            credentials = self._pki.server_credentials(
                self.scenario.certificate, self.scenario.ews_host
            )
            self._dns = LabDns(self.scenario.dns_records)
            self._dns.start()
            self.dns_port = self._dns.port
            organisation = ShellOrganisation(
                self.scenario, self._pki.server_credentials, self.shell_overrides
            )
            self._shell = ShellService(
                organisation,
                self.shell_username,
                self.shell_password,
                record=self._record_shell,
            )
            self._ews = EwsServer(
                self.scenario,
                self.password,
                credentials,
                record=self._record,
                shell=self._shell,
            )
            self._ews.start()
            self.ews_port = self._ews.port
        except BaseException:
            self.stop()
            raise
        logger.info(
            "lab %s: EWS on %s:%s as %s, DNS on %s:%s",
            self.scenario.name,
            self.host,
            self.ews_port,
            self.scenario.ews_host,
            self.host,
            self.dns_port,
        )

    def stop(self) -> None:
        ews, self._ews = self._ews, None
        if ews is not None:
            ews.stop()
        shell, self._shell = self._shell, None
        if shell is not None:
            shell.close()
        dns, self._dns = self._dns, None
        if dns is not None:
            dns.stop()
        own, self._own_workdir = self._own_workdir, None
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
