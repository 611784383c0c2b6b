"""pytest --from-export on the real Exchange 2016 export (shared/real-world)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fixtures.reporting import all_checks
from tests.audits import PROJECT, run_audit
from tests.audits import REAL_EXPORTS as REAL


@pytest.fixture(scope="module")
def real_export(tmp_path_factory) -> Path:
    if not REAL.is_dir():
        pytest.fail(f"the real-world export is missing: {REAL}")
    folder = tmp_path_factory.mktemp("export")
    for name in (
        "GetExchangeServer.xml",
        "GetWebServicesVirtualDirectory.xml",
        "GetExchangeCertificate.xml",
        "GetAcceptedDomain.xml",
    ):
        shutil.copy(REAL / name, folder / name)  # the names collect.ps1 writes
    return folder


@pytest.fixture(scope="module")
def audit(real_export, tmp_path_factory):
    return run_audit(tmp_path_factory.mktemp("run"), f"--from-export={real_export}")


def test_findings_of_the_real_export(audit):
    failures = audit.sentences("failure")
    warnings = audit.sentences("warning")
    assert (
        "Basic authentication is off on SOLO-E16A\\EWS (Default Web Site)." in failures
    )
    assert (
        "SOLO-E16A\\EWS (Default Web Site) has no ExternalUrl; only the InternalUrl "
        "https://solo-e16a.solo.local/EWS/Exchange.asmx is set."
    ) in warnings
    assert (
        "SOLO-E16A runs Exchange 2016 CU22 (build 15.1.2375.7), out of support since "
        "2025-10-14."
    ) in warnings
    [certificates] = [
        f for f in failures if f.startswith("No certificate in the store")
    ]
    for thumbprint in ("92E196F3", "823884A3", "A60C6E62"):
        assert f"{thumbprint}… it is self-signed" in certificates


def test_the_offline_verdict_is_partial_and_says_why(audit):
    assert audit.returncode == 1
    assert audit.document["verdict"] == "NOT READY"
    left_out = all_checks(PROJECT) - len(audit.document["checks"])
    assert left_out == audit.document["left_out_offline"] > 0
    assert (
        f"note: {left_out} checks of the live endpoint are left out in an offline "
        "audit\n"
    ) in audit.stdout
    assert "were selected" not in audit.stdout
    markers = {m for c in audit.document["checks"] for m in c["markers"]}
    assert markers == {
        "version",
        "basic_auth",
        "ews_url",
        "certificate",
        "impersonation",
        "send_as",
        "calendar_permission",
        "password_expiry",
    }
    # The real export has no role assignments and no Get-ADUser file: those checks
    # say so instead of passing.
    for marker in ("impersonation", "password_expiry"):
        [check] = [c for c in audit.document["checks"] if marker in c["markers"]]
        assert check["severity"] == "could not evaluate", marker


def test_fix_names_the_real_directory(audit):
    assert (
        "@('SOLO-E16A\\EWS (Default Web Site)') | ForEach-Object { "
        "Set-WebServicesVirtualDirectory -Identity $_ -BasicAuthentication $true }"
    ) in audit.commands()


def test_an_empty_folder_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_audit(tmp_path, f"--from-export={empty}")
    assert run.returncode == 4
    assert "--from-export" in run.stderr and "Traceback" not in run.stderr
