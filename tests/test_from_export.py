"""pytest --from-export on the real Exchange 2016 export (shared/real-world)."""

from __future__ import annotations

import json
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
        assert f"({thumbprint}…) is self-signed" in certificates


def test_the_offline_verdict_is_partial_and_says_why(audit):
    assert audit.returncode == 1
    assert audit.document["verdict"] == "NOT READY"
    left_out = all_checks(PROJECT) - len(audit.document["checks"])
    assert left_out == audit.document["left_out_offline"] > 0
    assert (
        f"note: {left_out} checks of the live endpoint are left out in an offline "
        "audit;"
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


def test_without_an_access_mode_the_notes_say_it_was_assumed(audit):
    [send_as] = [c for c in audit.document["checks"] if "send_as" in c["markers"]]
    [note] = send_as["findings"]
    assert note["severity"] == "note"
    assert note["sentence"] == (
        "Not needed if the calendar service uses impersonation access, which this "
        "audit assumed because no access mode was given: --access=impersonation or "
        "--access=delegate (or EWSREADY_ACCESS) sets it."
    )
    assert audit.document["access_assumed"] is True
    assert "impersonation access was assumed (--access or EWSREADY_ACCESS" in (
        audit.stdout
    )


@pytest.fixture(scope="module")
def with_manifest(real_export, tmp_path_factory) -> Path:
    """The real export with the manifest collect.ps1 writes beside its files."""
    folder = tmp_path_factory.mktemp("manifest")
    for path in real_export.iterdir():
        shutil.copy(path, folder / path.name)
    manifest = {
        "collector": "ewsready collect.ps1",
        "script_version": "1.0",
        "service_account": "svc-calendar@solo.local",
        "mailbox_filter": None,
        "files": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8-sig")
    return folder


def _check(run, marker: str) -> dict:
    [check] = [c for c in run.document["checks"] if marker in c["markers"]]
    return check


def test_the_service_account_comes_from_the_manifest(with_manifest, tmp_path):
    run = run_audit(tmp_path, f"--from-export={with_manifest}")
    assert run.document["username"] == "svc-calendar@solo.local"
    [finding] = _check(run, "impersonation")["findings"]
    # The account is known; what is missing now is the export's assignments file.
    assert "not named in the settings" not in finding["sentence"]
    assert "GetManagementRoleAssignment.xml" in finding["sentence"]


def test_access_and_mailboxes_apply_to_an_offline_audit(with_manifest, tmp_path):
    run = run_audit(
        tmp_path,
        f"--from-export={with_manifest}",
        "--access=delegate",
        "--mailbox=ann@solo.local",
        env={"EWSREADY_USERNAME": "svc-calendar@solo.local"},
    )
    assert run.returncode == 1, (run.stdout + run.stderr)[-2000:]
    assert (run.document["access"], run.document["access_assumed"]) == (
        "delegate",
        False,
    )
    [note] = _check(run, "impersonation")["findings"]
    assert note["sentence"] == "Not needed: the calendar service uses delegate access."
    # Delegate access is judged for the mailbox named (the real export has no
    # mailbox files, so it says so instead of passing).
    assert _check(run, "send_as")["severity"] == "could not evaluate"
    assert "assumed" not in run.stdout


@pytest.mark.parametrize(
    "args, env, named",
    [
        (
            ["--service-account=other@solo.local"],
            {},
            "--service-account=other@solo.local",
        ),
        (
            [],
            {"EWSREADY_USERNAME": "other@solo.local"},
            "EWSREADY_USERNAME=other@solo.local",
        ),
    ],
)
def test_an_account_that_contradicts_the_manifest_is_one_line(
    with_manifest, tmp_path, args, env, named
):
    run = run_audit(tmp_path, f"--from-export={with_manifest}", *args, env=env)
    assert run.returncode == 4
    assert (
        f"{named} contradicts the export: its manifest.json names the service account "
        "svc-calendar@solo.local"
    ) in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_the_lab_refuses_a_service_account(tmp_path):
    run = run_audit(tmp_path, "--lab", "--service-account=x@contoso.example")
    assert run.returncode == 4
    assert "--service-account applies to --tenant and --from-export runs" in run.stderr


def test_an_offline_audit_never_contacts_the_endpoint(with_manifest, tmp_path):
    """The URL and the mailboxes are for comparison only: no DNS, TCP or EWS."""
    log_file = tmp_path / "run.log"
    run = run_audit(
        tmp_path,
        f"--from-export={with_manifest}",
        "--ews-url=https://mail.solo.example/EWS/Exchange.asmx",
        "--mailbox=ann@solo.local",
        f"--log-file={log_file}",
        "--log-file-level=DEBUG",
    )
    log = log_file.read_text(encoding="utf-8")
    # The probes of the endpoint log every DNS query, connection and EWS request.
    assert "ewsready.probes.network" not in log
    assert "ewsready.probes.ews" not in log
    assert run.document["ews_requests"] == 0
    certificate = _check(run, "certificate")
    assert certificate["severity"] == "failure"
    assert all("could not" not in f["sentence"] for f in certificate["findings"])


def test_without_the_public_url_no_fix_invents_a_host(audit):
    commands = audit.commands()
    assert "None" not in commands
    assert "-DomainName ''" not in commands
    assert "solo.local/EWS" not in commands  # the internal name is no public URL
    [external] = [f for f in audit.findings() if "has no ExternalUrl" in f["sentence"]]
    assert external["commands"].splitlines()[1:] == [
        "# The audit was not given the public EWS URL (--ews-url), so it cannot fill "
        "in the host: the InternalUrl's name is not one the internet reaches.",
        "# Copy the next line without '# Change: ', put the name the internet reaches "
        "EWS by in place of <public-EWS-host>, then run it.",
        "# Change: Set-WebServicesVirtualDirectory -Identity 'SOLO-E16A\\EWS (Default "
        "Web Site)' -ExternalUrl 'https://<public-EWS-host>/EWS/Exchange.asmx'",
    ]
    [certificate] = [
        f for f in audit.findings() if f["sentence"].startswith("No certificate")
    ]
    assert certificate["commands"].splitlines()[1:] == [
        "# A new certificate must name the public EWS host, and the audit was not "
        "given it (--ews-url), so no request is written here:",
        "# run the audit again with --ews-url "
        "https://<public-EWS-host>/EWS/Exchange.asmx to get the request commands "
        "with that name.",
    ]
    assert "New-ExchangeCertificate" not in commands


def test_with_the_public_url_the_fixes_name_its_host(real_export, tmp_path):
    run = run_audit(
        tmp_path,
        f"--from-export={real_export}",
        "--ews-url=https://mail.solo.example/EWS/Exchange.asmx",
    )
    commands = run.commands()
    assert (
        "Set-WebServicesVirtualDirectory -Identity 'SOLO-E16A\\EWS (Default Web "
        "Site)' -ExternalUrl 'https://mail.solo.example/EWS/Exchange.asmx'"
    ) in commands
    assert (
        "New-ExchangeCertificate -GenerateRequest -SubjectName 'CN=mail.solo.example' "
        "-DomainName @('mail.solo.example', 'autodiscover.solo.example')"
    ) in commands
    assert "Set-Content -Path 'C:\\certreq\\mail.solo.example.req'" in commands
