"""The offline shell source (ExportFolder) and the collector script that feeds it."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from ewsready.probes import offline
from ewsready.probes.offline import NOT_FOUND, NOT_IN_EXPORT, ExportFolder
from ewsready.psobjects import (
    Cmdlet,
    ErrorRecord,
    PSObject,
    ShellError,
    ShellSource,
    pipeline,
)
from tests.audits import CLIXML_HEADER as HEADER

SCRIPT = Path(offline.__file__).parents[1] / "data" / "collect.ps1"


# --- a small CLIXML writer for collector-shaped exports -----------------------------


class Obj:
    """An object to write: type names, text and properties (tags go in <MS>)."""

    def __init__(self, text=None, type_name="Test.Object", ms=None, **props):
        self.text, self.type_name, self.ms, self.props = (
            text,
            type_name,
            ms or {},
            props,
        )


def _element(value, name=None) -> str:
    n = f' N="{escape(name)}"' if name is not None else ""
    if value is None:
        return f"<Nil{n} />"
    if isinstance(value, bool):
        return f"<B{n}>{str(value).lower()}</B>"
    if isinstance(value, int):
        kind = "I32" if -(2**31) <= value < 2**31 else "I64"
        return f"<{kind}{n}>{value}</{kind}>"
    if isinstance(value, dt.datetime):
        return f"<DT{n}>{value.isoformat()}</DT>"
    if isinstance(value, str):
        return f"<S{n}>{escape(value)}</S>"
    if isinstance(value, tuple):
        items = "".join(_element(v) for v in value)
        return f"<Obj{n}><TN><T>System.Collections.ArrayList</T></TN><LST>{items}</LST></Obj>"
    if isinstance(value, Obj):
        text = f"<ToString>{escape(value.text)}</ToString>" if value.text else ""
        props = "".join(_element(v, k) for k, v in value.props.items())
        ms = "".join(_element(v, k) for k, v in value.ms.items())
        ms = f"<MS>{ms}</MS>" if ms else ""
        return f"<Obj{n}><TN><T>{value.type_name}</T></TN>{text}<Props>{props}</Props>{ms}</Obj>"
    raise TypeError(value)


def write(folder: Path, name: str, *objects) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(_element(o) for o in objects)
    (folder / name).write_text(HEADER + body + "</Objs>", encoding="utf-8-sig")


def mailbox(name: str, primary: str, *aliases: str) -> Obj:
    return Obj(
        name,
        "Microsoft.Exchange.Data.Directory.Management.Mailbox",
        Name=name,
        Alias=name.lower(),
        Identity=Obj(f"contoso.local/Users/{name}", "ADObjectId", Name=name),
        DistinguishedName=f"CN={name},CN=Users,DC=contoso,DC=local",
        PrimarySmtpAddress=primary,
        UserPrincipalName=f"{name.lower()}@contoso.local",
        EmailAddresses=(
            f"SMTP:{primary}",
            *(f"smtp:{a}" for a in aliases),
            "X500:/o=x",
        ),
        RecipientTypeDetails="RoomMailbox" if name == "Boardroom" else "UserMailbox",
    )


SERVICE = "svc-calendar@contoso.example"


@pytest.fixture
def export(tmp_path) -> Path:
    """A folder as collect.ps1 leaves it for a small organisation."""
    folder = tmp_path / "export"
    write(
        folder,
        "GetMailbox.xml",
        mailbox("Ann", "ann@contoso.example", "ann.smith@contoso.example"),
        mailbox("Bert", "bert@contoso.example"),
        mailbox("Boardroom", "boardroom@contoso.example"),
    )
    write(
        folder,
        "GetUser.xml",
        Obj(
            "svc-calendar",
            Name="svc-calendar",
            DisplayName="Calendar Service",
            SamAccountName="svc-calendar",
            UserPrincipalName=SERVICE,
            Identity=Obj("contoso.local/Users/svc-calendar", "ADObjectId"),
            DistinguishedName="CN=svc-calendar,CN=Users,DC=contoso,DC=local",
        ),
    )
    tag = offline.MAILBOX_TAG
    write(
        folder,
        "GetMailboxFolderStatistics.xml",
        Obj(Name="Calendar", FolderType="Calendar", ms={tag: "ann@contoso.example"}),
        Obj(Name="Birthdays", FolderType="Birthdays", ms={tag: "ann@contoso.example"}),
        Obj(Name="Kalender", FolderType="Calendar", ms={tag: "bert@contoso.example"}),
    )

    def permission(address: str, folder_name: str, user: str, rights: str) -> Obj:
        return Obj(
            FolderName=folder_name,
            User=Obj(user, "MailboxFolderPermissionUser", DisplayName=user),
            AccessRights=(rights,),
            ms={tag: address},
        )

    write(
        folder,
        "GetMailboxFolderPermission.xml",
        permission("ann@contoso.example", "Calendar", "Default", "AvailabilityOnly"),
        permission("ann@contoso.example", "Calendar", "Calendar Service", "Editor"),
        permission("bert@contoso.example", "Kalender", "Default", "AvailabilityOnly"),
    )
    write(
        folder,
        "GetADPermission.xml",
        Obj(
            User="CONTOSO\\svc-calendar",
            ExtendedRights=("Send-As",),
            Deny=False,
            Identity="contoso.local/Users/Ann",
            ms={tag: "ann@contoso.example"},
        ),
    )

    def assignment(effective: str) -> Obj:
        return Obj(
            "CalendarServiceImpersonation",
            Name="CalendarServiceImpersonation",
            Identity="CalendarServiceImpersonation",
            Role=Obj("ApplicationImpersonation", "ADObjectId"),
            RoleAssignee=Obj("contoso.local/Groups/Calendar Services", "ADObjectId"),
            RoleAssigneeType="SecurityGroup",
            EffectiveUserName=effective,
            CustomRecipientWriteScope=Obj("CalendarMailboxes", "ADObjectId"),
        )

    write(
        folder,
        "GetManagementRoleAssignment.xml",
        assignment("svc-calendar"),
        assignment("someone-else"),
    )
    flt = "CustomAttribute15 -eq 'CalendarService'"
    write(
        folder,
        "GetRecipient.xml",
        Obj(
            "Ann",
            Name="Ann",
            ms={"EwsreadyScope": "CalendarMailboxes", offline.FILTER_TAG: flt},
        ),
    )
    write(
        folder,
        "GetExchangeCertificate.xml",
        Obj(
            Thumbprint="AB12",
            Services="IMAP, POP, IIS, SMTP",
            Status="Valid",
            RootCAType="ThirdParty",
            IsSelfSigned=False,
            CertificateDomains=("mail.contoso.example",),
            ms={offline.SERVER_TAG: "EX01"},
        ),
        Obj(Thumbprint="CD34", Services="SMTP", ms={offline.SERVER_TAG: "EX02"}),
    )
    manifest = {
        "collector": "ewsready collect.ps1",
        "script_version": "1.0",
        "started_utc": "2026-12-04T10:00:00.0000000Z",
        "mailbox_filter": None,
        "files": {
            "GetRecipient.xml": {"status": "ok", "filters": [flt]},
            "GetADPermission.xml": {
                "status": "partial",
                "errors": ["bert@contoso.example: Active Directory operation failed"],
                "failures": {
                    "bert@contoso.example": "Active Directory operation failed"
                },
            },
            "GetADUser.xml": {
                "status": "skipped",
                "errors": ["the ActiveDirectory PowerShell module is not installed"],
            },
        },
    }
    # PowerShell 5.1 writes its UTF-8 with a byte order mark.
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8-sig")
    return folder


def names(rows) -> list[str]:
    return [str(r.get("Name") or r) for r in rows]


# --- the real exports, laid out as collect.ps1 names them ---------------------------


def test_reads_real_exports_by_the_collectors_file_names(tmp_path, real):
    folder = tmp_path / "export"
    folder.mkdir()
    for name in (
        "GetExchangeServer.xml",
        "GetWebServicesVirtualDirectory.xml",
        "GetExchangeCertificate.xml",
        "GetAcceptedDomain.xml",
        "GetOwaVirtualDirectory.xml",  # not one of the collector's; left unread
    ):
        shutil.copy(real / name, folder / name)
    source: ShellSource = ExportFolder(folder)

    assert str(folder) in source.description
    assert "GetOwaVirtualDirectory.xml" not in source.files

    (server,) = source.run(pipeline("Get-ExchangeServer"))
    assert str(server["AdminDisplayVersion"]) == "Version 15.1 (Build 2375.7)"
    fqdn = Cmdlet("Get-ExchangeServer", {"Identity": "solo-e16a.solo.local"})
    assert source.run(pipeline(fqdn)) == [server]

    by_server = Cmdlet("Get-WebServicesVirtualDirectory", {"Server": "SOLO-E16A"})
    (vdir,) = source.run(pipeline(by_server))
    assert str(vdir["Identity"]) == "SOLO-E16A\\EWS (Default Web Site)"
    assert vdir["BasicAuthentication"] is False
    assert vdir["ExternalUrl"] is None
    assert vdir["InternalUrl"] == "https://solo-e16a.solo.local/EWS/Exchange.asmx"
    other = Cmdlet("Get-WebServicesVirtualDirectory", {"Server": "EX02"})
    assert source.run(pipeline(other)) == []

    certificates = list(source.stream(pipeline("Get-ExchangeCertificate")))
    assert len(certificates) == 3
    # A one-server organisation's certificates can only be that server's.
    local = Cmdlet("Get-ExchangeCertificate", {"Server": "Solo-E16A.Solo.local"})
    assert len(source.run(pipeline(local))) == 3
    by_print = Cmdlet(
        "Get-ExchangeCertificate",
        {"Thumbprint": "823884a32609dcdc8c4b5462952586c30d814073"},
    )
    (solo,) = source.run(pipeline(by_print))
    assert "CN=Solo-E16A" in str(solo)

    domains = source.run(pipeline("Get-AcceptedDomain"))
    assert [str(d["DomainName"]) for d in domains] == [
        "Solo.com",
        "*.contoso.local",
        "*.com",
    ]

    with pytest.raises(ShellError) as caught:
        source.run(pipeline("Get-Mailbox"))
    assert str(caught.value).startswith("not in the export: GetMailbox.xml is missing")
    assert caught.value.error_id == NOT_IN_EXPORT


# --- the folder ---------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(offline.ExportFolderError, match="is not a folder"):
        ExportFolder(tmp_path / "nowhere")


def test_folder_without_a_known_file_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "Mailboxes.xml").write_text(HEADER + "</Objs>")
    with pytest.raises(
        offline.ExportFolderError, match="none of the files collect.ps1"
    ):
        ExportFolder(tmp_path)


def test_unreadable_manifest_is_a_clear_error(export):
    (export / "manifest.json").write_text("{not json")
    with pytest.raises(offline.ExportFolderError, match="manifest.json is unreadable"):
        ExportFolder(export)


def test_description_names_the_folder_and_the_run(export):
    source = ExportFolder(export)
    assert source.description == (
        f"Export-Clixml folder {export} (collect.ps1 1.0, started "
        "2026-12-04T10:00:00.0000000Z UTC)"
    )


@pytest.mark.parametrize(
    "cmdlets, message",
    [
        (
            [Cmdlet("Get-ADUser", {"Identity": SERVICE})],
            "not in the export: GetADUser.xml: the collector recorded the query as "
            "skipped: the ActiveDirectory PowerShell module is not installed",
        ),
        (
            [Cmdlet("Get-ExchangeServer")],
            "not in the export: GetExchangeServer.xml is missing",
        ),
        (
            [Cmdlet("Get-OwaVirtualDirectory")],
            "not in the export: collect.ps1 writes no file that answers "
            "Get-OwaVirtualDirectory",
        ),
        (
            [Cmdlet("Get-Mailbox", {"Anr": "ann"})],
            "not in the export: Get-Mailbox -Anr cannot be applied to GetMailbox.xml",
        ),
        (
            [Cmdlet("Get-ManagementRoleAssignment", {"Role": "MyBaseOptions"})],
            "was collected with -Role ApplicationImpersonation, not 'MyBaseOptions'",
        ),
        (
            [
                Cmdlet("Get-Mailbox"),
                Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Inbox"}),
            ],
            "was collected with -FolderScope Calendar, not 'Inbox'",
        ),
        (
            [
                Cmdlet(
                    "Get-Recipient", {"RecipientPreviewFilter": "Department -eq 'IT'"}
                )
            ],
            "holds the recipients of the impersonation scopes' filters only",
        ),
        (
            [Cmdlet("Get-ADPermission", {"Identity": "bert@contoso.example"})],
            "GetADPermission.xml has no rows for bert@contoso.example; the collector "
            "recorded: Active Directory operation failed",
        ),
    ],
)
def test_what_the_export_cannot_answer(export, cmdlets, message):
    with pytest.raises(ShellError) as caught:
        ExportFolder(export).run(tuple(cmdlets))
    assert message in str(caught.value)
    assert caught.value.error_id == NOT_IN_EXPORT


def test_malformed_file_fails_the_query_with_its_line(export):
    (export / "GetMailbox.xml").write_text(HEADER + "\n<S>cut off", encoding="utf-8")
    with pytest.raises(ShellError) as caught:
        ExportFolder(export).run(pipeline("Get-Mailbox"))
    assert "GetMailbox.xml, line 2: not well-formed XML" in str(caught.value)
    assert caught.value.error_id == "UnreadableExport"


# --- parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity",
    [
        "ann@contoso.example",
        "ANN.SMITH@contoso.example",  # a secondary SMTP address
        "ann@contoso.local",  # the UPN
        "Ann",
        "CONTOSO\\ann",  # domain\alias
        "CN=Ann,CN=Users,DC=contoso,DC=local",
        "contoso.local/Users/Ann",
    ],
)
def test_mailbox_by_any_identity(export, identity):
    rows = ExportFolder(export).run(
        pipeline(Cmdlet("Get-Mailbox", {"Identity": identity}))
    )
    assert names(rows) == ["Ann"]


def test_unknown_mailbox_is_not_found_as_live(export):
    with pytest.raises(ShellError) as caught:
        ExportFolder(export).run(
            pipeline(Cmdlet("Get-Mailbox", {"Identity": "zoe@x.example"}))
        )
    assert caught.value.error_id == NOT_FOUND
    assert "'zoe@x.example' couldn't be found" in str(caught.value)


def test_mailbox_outside_a_limited_export_is_not_in_the_export(export):
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8-sig"))
    manifest["mailbox_filter"] = ["ann@contoso.example", "bert@contoso.example"]
    (export / "manifest.json").write_text(json.dumps(manifest))
    query = pipeline(Cmdlet("Get-Mailbox", {"Identity": "boardroom@contoso.example"}))
    assert names(ExportFolder(export).run(query)) == ["Boardroom"]

    query = pipeline(
        Cmdlet("Get-MailboxFolderStatistics", {"Identity": "zoe@x.example"})
    )
    with pytest.raises(ShellError) as caught:
        ExportFolder(export).run(query)
    assert caught.value.error_id == NOT_IN_EXPORT
    assert "collected for 2 listed mailbox(es) only" in str(caught.value)


@pytest.mark.parametrize(
    "reason, error_id",
    [
        ("ManagementObjectNotFoundException", NOT_FOUND),
        ("ADTransientException", NOT_IN_EXPORT),
    ],
)
def test_invited_address_the_collector_could_not_read(export, reason, error_id):
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8-sig"))
    manifest["mailbox_filter"] = ["ann@contoso.example", "zoe@contoso.example"]
    text = "zoe@contoso.example: The operation couldn't be performed ..."
    manifest["files"]["GetMailbox.xml"] = {
        "status": "partial",
        "errors": [text],
        "failures": {"zoe@contoso.example": {"error": text, "reason": reason}},
    }
    (export / "manifest.json").write_text(json.dumps(manifest))

    query = pipeline(Cmdlet("Get-Mailbox", {"Identity": "ZOE@contoso.example"}))
    with pytest.raises(ShellError) as caught:
        ExportFolder(export).run(query)
    assert caught.value.error_id == error_id
    assert text in str(caught.value)


def test_lookups_skip_files_the_collector_recorded_as_failed(export):
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8-sig"))
    manifest["files"]["GetUser.xml"] = {"status": "failed", "errors": ["denied"]}
    (export / "manifest.json").write_text(json.dumps(manifest))
    (export / "GetUser.xml").write_text(HEADER + "<Obj><Props>", encoding="utf-8")
    source = ExportFolder(export)

    with pytest.raises(ShellError, match="recorded the query as failed: denied"):
        source.run(pipeline(Cmdlet("Get-User", {"Identity": SERVICE})))
    # Without the account's names only rows naming it by its UPN would match.
    query = Cmdlet("Get-ADPermission", {"Identity": "Ann", "User": SERVICE})
    assert source.run(pipeline(query)) == []


def test_mailbox_types_and_result_size(export):
    query = Cmdlet(
        "Get-Mailbox",
        {"RecipientTypeDetails": "RoomMailbox", "ResultSize": "Unlimited"},
    )
    assert names(ExportFolder(export).run(pipeline(query))) == ["Boardroom"]


def test_calendar_folders_through_get_mailbox(export):
    source = ExportFolder(export)
    statistics = Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"})

    everyone = source.run(pipeline("Get-Mailbox", statistics))
    assert names(everyone) == ["Calendar", "Birthdays", "Kalender"]

    bert = Cmdlet("Get-Mailbox", {"Identity": "bert@contoso.example"})
    (calendar,) = source.run(pipeline(bert, statistics))
    assert (calendar["Name"], calendar["FolderType"]) == ("Kalender", "Calendar")

    alone = Cmdlet(
        "Get-MailboxFolderStatistics", {"Identity": "Ann", "FolderScope": "calendar"}
    )
    assert names(source.run(pipeline(alone))) == ["Calendar", "Birthdays"]


def test_calendar_permissions_by_folder_and_user(export):
    source = ExportFolder(export)
    folder = Cmdlet(
        "Get-MailboxFolderPermission", {"Identity": "ann@contoso.example:\\Calendar"}
    )
    rows = source.run(pipeline(folder))
    assert [str(r["User"]) for r in rows] == ["Default", "Calendar Service"]

    # The service account named by its UPN is found by its display name in the row.
    mine = Cmdlet(
        "Get-MailboxFolderPermission",
        {"Identity": "ann@contoso.example:\\Calendar", "User": SERVICE},
    )
    (row,) = source.run(pipeline(mine))
    assert row["AccessRights"] == ("Editor",)

    localized = Cmdlet(
        "Get-MailboxFolderPermission", {"Identity": "bert@contoso.example:\\Kalender"}
    )
    assert len(source.run(pipeline(localized))) == 1

    english = Cmdlet(
        "Get-MailboxFolderPermission", {"Identity": "bert@contoso.example:\\Calendar"}
    )
    with pytest.raises(ShellError) as caught:
        source.run(pipeline(english))
    assert caught.value.error_id == NOT_FOUND


def test_send_as_rows(export):
    source = ExportFolder(export)
    ann = Cmdlet("Get-Mailbox", {"Identity": "ann@contoso.example"})
    mine = Cmdlet("Get-ADPermission", {"User": SERVICE})
    (row,) = source.run(pipeline(ann, mine))
    assert row["ExtendedRights"] == ("Send-As",)

    # No Send-As row is an answer, not an error.
    boardroom = Cmdlet("Get-ADPermission", {"Identity": "boardroom@contoso.example"})
    assert source.run(pipeline(boardroom)) == []


def test_role_assignments_by_assignee_and_without_effective_users(export):
    source = ExportFolder(export)
    effective = Cmdlet(
        "Get-ManagementRoleAssignment",
        {
            "Role": "ApplicationImpersonation",
            "RoleAssignee": SERVICE,
            "GetEffectiveUsers": True,
        },
    )
    (row,) = source.run(pipeline(effective))
    assert row["EffectiveUserName"] == "svc-calendar"

    # Without -GetEffectiveUsers Exchange lists each assignment once.
    plain = Cmdlet("Get-ManagementRoleAssignment", {"Role": "ApplicationImpersonation"})
    assert names(source.run(pipeline(plain))) == ["CalendarServiceImpersonation"]

    nobody = Cmdlet(
        "Get-ManagementRoleAssignment", {"RoleAssignee": "zoe@contoso.example"}
    )
    assert source.run(pipeline(nobody)) == []


def test_scope_members_by_filter(export):
    query = Cmdlet(
        "Get-Recipient",
        {
            "RecipientPreviewFilter": "CustomAttribute15 -eq 'CalendarService'",
            "ResultSize": "Unlimited",
        },
    )
    assert names(ExportFolder(export).run(pipeline(query))) == ["Ann"]


def test_certificates_by_server_keep_spelled_out_properties(export):
    source = ExportFolder(export)
    (cert,) = source.run(
        pipeline(Cmdlet("Get-ExchangeCertificate", {"Server": "ex01.contoso.local"}))
    )
    assert cert["Services"] == "IMAP, POP, IIS, SMTP"
    assert cert["CertificateDomains"] == ("mail.contoso.example",)
    assert cert["IsSelfSigned"] is False
    (cert,) = source.run(
        pipeline(Cmdlet("Get-ExchangeCertificate", {"Thumbprint": "cd34"}))
    )
    assert cert["Services"] == "SMTP"


def test_stream_reads_one_object_at_a_time(export):
    rows = ExportFolder(export).stream(pipeline("Get-Mailbox"))
    assert not isinstance(rows, list)
    first = next(rows)
    assert isinstance(first, PSObject) and first["Name"] == "Ann"
    assert names(rows) == ["Bert", "Boardroom"]


def test_large_files_are_read_again_not_kept(export, monkeypatch):
    monkeypatch.setattr(offline, "CACHE_LIMIT", 10)
    source = ExportFolder(export)
    assert len(source.run(pipeline("Get-Mailbox"))) == 3
    assert len(source.run(pipeline("Get-Mailbox"))) == 3
    assert source._cache == {}


# --- the collector script -----------------------------------------------------------

# Commands the collector may call besides Get- cmdlets: filtering, shaping, output to
# its own folder, and the host's progress and warnings.
LOCAL_COMMANDS = {
    "Where-Object",
    "Select-Object",
    "ForEach-Object",
    "Add-Member",
    "Export-Clixml",
    "ConvertTo-Json",
    "Out-File",
    "New-Item",
    "New-Object",
    "Test-Path",
    "Join-Path",
    "Resolve-Path",
    "Import-Module",
    "Write-Host",
    "Write-Warning",
    "Write-Progress",
}


def _powershell_code(source: str) -> str:
    """The script without comments and string literals, except the code inside "$(...)"
    subexpressions; enough of PowerShell's lexer to find every command name."""
    code: list[str] = []
    i = 0
    while i < len(source):
        if source.startswith("<#", i):
            i = source.index("#>", i) + 2
        elif source[i] == "#":
            end = source.find("\n", i)
            i = len(source) if end < 0 else end
        elif source.startswith(("@'", '@"'), i) and source[i + 2 : i + 3] in (
            "\n",
            "\r",
        ):
            quote = source[i + 1]
            end = source.index("\n" + quote + "@", i)
            body = source[i:end]
            if quote == '"':
                code.extend(_subexpressions(body))
            i = end + 3
        elif source[i] == "'":
            j = i + 1
            while True:
                j = source.index("'", j)
                if source.startswith("''", j):
                    j += 2
                    continue
                break
            code.append("''")
            i = j + 1
        elif source[i] == '"':
            j = i + 1
            while source[j] != '"' or source.startswith('""', j):
                j += 2 if source[j] == "`" or source.startswith('""', j) else 1
            code.append('""')
            code.extend(_subexpressions(source[i : j + 1]))
            i = j + 1
        else:
            code.append(source[i])
            i += 1
    return "".join(code)


def _subexpressions(text: str) -> list[str]:
    found, depth, start = [], 0, None
    for k, char in enumerate(text):
        if text.startswith("$(", k) and depth == 0:
            start, depth = k + 2, 1
        elif start is not None and k >= start:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                found.append(" " + text[start:k] + " ")
                start = None
    return found


COMMAND = re.compile(r"(?<![\w$.\-])([A-Za-z]+-[A-Za-z]+)\b")


def test_collector_script_calls_only_read_or_local_commands():
    source = SCRIPT.read_text(encoding="utf-8")
    code = _powershell_code(source)
    defined = set(re.findall(r"(?im)^\s*function\s+([\w-]+)", code))
    commands = set(COMMAND.findall(code))

    assert {"Get-Mailbox", "Export-Clixml", "Invoke-ExportStep"} <= commands
    unexpected = {
        c
        for c in commands
        if not c.startswith("Get-") and c not in LOCAL_COMMANDS and c not in defined
    }
    assert unexpected == set()
    # Helpers are named for what they do and stay few.
    assert defined == {
        "Save-Manifest",
        "Add-StepError",
        "Add-StepErrorRecords",
        "Invoke-ExportStep",
        "Show-MailboxProgress",
    }
    # No way around the list: no expression invocation, .NET calls or aliases of
    # commands that change things.
    assert "::" not in code
    assert not re.search(r"(?i)\b(iex|icm|saps|rm|del|ri|sc|si|sp|ni|mv|cp)\b", code)
    assert "Invoke-Expression" not in code and ".Invoke(" not in code


def test_collector_script_writes_only_files_the_offline_source_reads():
    source = SCRIPT.read_text(encoding="utf-8")
    written = re.findall(r"-File\s+'([^']+)'", source)
    assert len(written) == len(set(written))
    assert set(written) == offline.KNOWN_FILES

    code = _powershell_code(source)
    for name in written:
        # Each file is named after the cmdlet it exports, without the hyphen.
        cmdlet = "Get-" + name.removeprefix("Get").removesuffix(".xml")
        assert re.search(rf"(?<![\w-]){re.escape(cmdlet)}(?![\w-])", code), cmdlet
        # and the script's own help lists it.
        assert name in source.split("#>", 1)[0]
    assert code.count("Export-Clixml") == 1
    assert code.count("Out-File") == 1 and "'manifest.json'" in source


def test_collector_script_gathers_what_the_audit_needs():
    source = SCRIPT.read_text(encoding="utf-8")
    assert (
        "Get-ManagementRoleAssignment -Role ApplicationImpersonation -GetEffectiveUsers"
        in source
    )
    assert "Get-Mailbox -ResultSize Unlimited" in source
    assert "-FolderScope Calendar" in source
    # The calendar is found by its type, never by the English name.
    assert "FolderType -eq 'Calendar'" in source
    assert ":\\Calendar" not in source
    assert "Where-Object { $_.ExtendedRights -like '*Send-As*' }" in source
    for parameter in ("OutputFolder", "ServiceAccount", "Mailbox"):
        assert f"${parameter}" in source
    assert re.search(r"(?m)^#Requires -Version 3\.0$", source)


# --- many mailboxes at once ---------------------------------------------------------


def test_bulk_query_yields_what_it_has_then_names_the_mailboxes_missed(export):
    query = pipeline("Get-Mailbox", Cmdlet("Get-ADPermission"))
    rows = ExportFolder(export).stream(query)
    assert str(next(rows)["User"]) == "CONTOSO\\svc-calendar"
    with pytest.raises(ShellError) as caught:
        next(rows)
    assert caught.value.error_id == NOT_IN_EXPORT
    assert str(caught.value) == (
        "not in the export: GetADPermission.xml lacks 1 mailbox(es) the collector "
        "could not read: bert@contoso.example"
    )
    # Mailboxes chosen without the missed one are answered in full.
    rooms = Cmdlet("Get-Mailbox", {"RecipientTypeDetails": "RoomMailbox"})
    assert ExportFolder(export).run(pipeline(rooms, Cmdlet("Get-ADPermission"))) == []


def test_read_gives_a_missed_mailbox_as_an_error_record_naming_it(export):
    query = pipeline("Get-Mailbox", Cmdlet("Get-ADPermission"))
    output = ExportFolder(export).read(query)
    assert [str(r["User"]) for r in output.objects] == ["CONTOSO\\svc-calendar"]
    assert output.errors == (
        ErrorRecord(
            message="Active Directory operation failed",
            target="bert@contoso.example",
            activity="Get-ADPermission",
            error_id=NOT_IN_EXPORT,
        ),
    )


def test_leading_get_mailbox_chooses_mailboxes_by_type(export):
    users = Cmdlet("Get-Mailbox", {"RecipientTypeDetails": "UserMailbox"})
    statistics = Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"})
    rows = ExportFolder(export).run(pipeline(users, statistics))
    assert [r[offline.MAILBOX_TAG] for r in rows] == [
        "ann@contoso.example",
        "ann@contoso.example",
        "bert@contoso.example",
    ]


def test_stream_refuses_before_the_first_object(export):
    with pytest.raises(ShellError, match="GetExchangeServer.xml is missing"):
        ExportFolder(export).stream(pipeline("Get-ExchangeServer"))


def test_untagged_rows_are_matched_by_mailbox_identity(export):
    """An export made by hand has no EwsreadyMailbox; the rows' Identity names the
    mailbox, as Exchange writes it."""
    write(
        export,
        "GetMailboxFolderStatistics.xml",
        Obj(
            Name="Calendar",
            FolderType="Calendar",
            Identity="contoso.local/Users/Ann\\Calendar",
        ),
        Obj(
            Name="Kalender",
            FolderType="Calendar",
            Identity="contoso.local/Users/Bert\\Kalender",
        ),
    )
    write(
        export,
        "GetMailboxFolderPermission.xml",
        Obj(FolderName="Kalender", User=Obj("Default"), Identity="Bert:\\Kalender"),
    )
    source = ExportFolder(export)
    query = Cmdlet("Get-MailboxFolderStatistics", {"Identity": "bert@contoso.example"})
    assert names(source.run(pipeline(query))) == ["Kalender"]
    query = Cmdlet(
        "Get-MailboxFolderPermission", {"Identity": "bert@contoso.example:\\Kalender"}
    )
    assert [str(r["User"]) for r in source.run(pipeline(query))] == ["Default"]


def with_ad_user(export: Path, *users: Obj) -> None:
    """The fixture's export, with GetADUser.xml collected after all."""
    write(export, "GetADUser.xml", *users)
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8-sig"))
    manifest["files"]["GetADUser.xml"] = {"status": "ok"}
    (export / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_the_service_account_from_get_aduser(export):
    from ewsready.collect import Collector
    from ewsready.secret import Secret
    from ewsready.settings import Settings

    with_ad_user(
        export,
        Obj(
            "CN=svc-calendar,CN=Users,DC=contoso,DC=local",
            "Microsoft.ActiveDirectory.Management.ADUser",
            UserPrincipalName=SERVICE,
            Enabled=True,
            LockedOut=False,
            PasswordNeverExpires=False,
            PasswordExpired=False,
            PasswordLastSet=dt.datetime(2026, 9, 5, 9, 30, tzinfo=dt.UTC),
            **{"msDS-UserPasswordExpiryTimeComputed": 134095104000000000},
            AccountExpirationDate=None,
        ),
    )

    # The export holds the account collect.ps1 was given: no name is needed here.
    settings = Settings(organisation="x", ews_url="", username="", password=Secret(""))
    source = ExportFolder(export)
    collector = Collector(settings, shell=source, directory=source)
    try:
        (account,) = collector.directory_account()
    finally:
        collector.close()
    assert account.name == SERVICE
    assert account.password_last_set == dt.datetime(2026, 9, 5, 9, 30, tzinfo=dt.UTC)
    assert account.password_expires == dt.datetime(2025, 12, 6, 16, 0, tzinfo=dt.UTC)
    assert (account.enabled, account.locked, account.password_expired) == (
        True,
        False,
        False,
    )


@pytest.mark.parametrize(
    "upn_filter, found",
    [
        (f"UserPrincipalName -eq '{SERVICE}'", 1),
        (f"userprincipalname -EQ '{SERVICE.upper()}'", 1),
        ("UserPrincipalName -eq 'someone@contoso.example'", 0),
    ],
)
def test_get_aduser_by_upn_filter(export, upn_filter, found):
    with_ad_user(export, Obj("svc", UserPrincipalName=SERVICE))
    rows = ExportFolder(export).run((Cmdlet("Get-ADUser", {"Filter": upn_filter}),))
    assert len(rows) == found


def test_get_aduser_refuses_other_filters(export):
    with_ad_user(export, Obj("svc", UserPrincipalName=SERVICE))
    with pytest.raises(ShellError, match="can answer -Filter"):
        ExportFolder(export).run((Cmdlet("Get-ADUser", {"Filter": "Name -like '*'"}),))


def test_a_deeply_nested_manifest_is_one_clear_error(export):
    (export / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(offline.ExportFolderError, match="nested too deeply"):
        ExportFolder(export)


def test_calendar_rights_through_the_collectors_pipeline(export):
    from ewsready import shellfacts

    rows = ExportFolder(export).run(
        pipeline(
            Cmdlet("Get-Mailbox", {"ResultSize": "Unlimited"}),
            Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"}),
            Cmdlet("Get-MailboxFolderPermission", {"User": SERVICE}),
        )
    )
    rights = shellfacts.folder_rights(rows)
    assert rights[("ann@contoso.example", "Calendar")] == ("Editor",)


def test_an_offline_delegate_audit_judges_calendar_rights(export, tmp_path):
    from tests.audits import run_audit

    run = run_audit(
        tmp_path,
        f"--from-export={export}",
        "--access=delegate",
        f"--service-account={SERVICE}",
        "--mailbox=ann@contoso.example",
        "-m",
        "calendar_permission",
    )
    [check] = run.document["checks"]
    assert check["severity"] == "passed", (run.stdout + run.stderr)[-2000:]
