from pathlib import Path

import pytest

from ewsready.secret import Secret
from ewsready.settings import (
    Resolver,
    SettingsError,
    build_settings,
    parse_resolver,
    read_mailbox_csv,
    read_tenant_file,
)

URL = "https://mail.contoso.example/EWS/Exchange.asmx"
ENV = {"EWSREADY_PASSWORD": "canary-Pw-123"}
FILE = {
    "ews.url": URL,
    "service_account.username": "svc@contoso.example",
    "mailboxes.invited": ["ana@contoso.example"],
}


def build(values=None, env=None, cli=None, base=Path(".")):
    return build_settings(
        {**FILE, **(values or {})}, ENV if env is None else env, cli or {}, base
    )


def test_defaults():
    settings = build()
    assert settings.ews_host == "mail.contoso.example"
    assert settings.ews_port == 443
    assert settings.access == "impersonation"
    assert settings.password == Secret("canary-Pw-123")
    assert "canary" not in repr(settings)


def test_command_line_beats_environment_beats_file():
    settings = build(
        {"ews.access": "delegate", "mailboxes.invited": ["file@c.example"]},
        env={**ENV, "EWSREADY_URL": "https://env.example/EWS/Exchange.asmx"},
        cli={
            "ews.url": "https://cli.example/EWS/Exchange.asmx",
            "mailboxes": ("cli@c.example",),
        },
    )
    assert settings.ews_url == "https://cli.example/EWS/Exchange.asmx"
    assert settings.mailboxes == ("cli@c.example",)
    assert settings.access == "delegate"


@pytest.mark.parametrize(
    "values, env, message",
    [
        (
            {"ews.url": "mail.contoso.example/EWS"},
            None,
            "ews.url = 'mail.contoso.example/EWS' is not an absolute URL",
        ),
        (
            {"ews.url": "https://mail.contoso.example:99999/EWS/Exchange.asmx"},
            None,
            "is not a valid URL (Port out of range",
        ),
        (
            {"ews.access": "owner"},
            None,
            "ews.access = 'owner' is not 'impersonation' or 'delegate'",
        ),
        ({}, {}, "no password: set EWSREADY_PASSWORD"),
        (
            {"mailboxes.invited": ["not-an-address"]},
            None,
            "mailboxes.invited[0]: 'not-an-address' is not an e-mail address",
        ),
        ({"network.workers": 0}, None, "network.workers = 0 must be from 1 to 64"),
        (
            {"network.connect_timeout": -1},
            None,
            "network.connect_timeout = -1 must be above 0",
        ),
        (
            {"network.resolvers": ["dns.google"]},
            None,
            "network.resolvers: 'dns.google' is not an IP address",
        ),
        (
            {"service_account.password_file": "/nonexistent/pw"},
            {},
            "service_account.password_file /nonexistent/pw: cannot be read",
        ),
        (
            {"network.ca_bundle": "/nonexistent/ca.pem"},
            None,
            "network.ca_bundle /nonexistent/ca.pem: cannot be read",
        ),
    ],
)
def test_mistakes_name_the_setting(values, env, message):
    with pytest.raises(SettingsError) as caught:
        build(values, env=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_url_and_username():
    with pytest.raises(SettingsError, match="ews.url is not set"):
        build_settings({}, ENV, {}, Path("."))
    with pytest.raises(SettingsError, match="service_account.username is not set"):
        build_settings({"ews.url": URL}, ENV, {}, Path("."))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[ews]\nurll = 'x'\n", "unknown setting [ews] urll; known: url, access"),
        ("[tenant]\nurl = 'x'\n", "unknown table [tenant]"),
        (
            "[network]\nworkers = 'eight'\n",
            "network.workers = 'eight'; expected concurrent EWS requests, 1 to 64",
        ),
        (
            "[network]\nconnect_timeout = true\n",
            "network.connect_timeout = True; expected seconds",
        ),
        ("[ews\nurl = 1", "not valid TOML"),
        ("organisation = 3\n", "organisation = 3; expected the organisation's name"),
        (
            "[ews]\nfingerprint = 12\n",
            "ews.fingerprint = 12; expected the SHA-256 fingerprint of the EWS",
        ),
    ],
)
def test_tenant_file_mistakes(tmp_path, text, message):
    path = tmp_path / "tenant.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=None) as caught:
        read_tenant_file(path)
    assert message in str(caught.value)


def test_missing_tenant_file(tmp_path):
    with pytest.raises(SettingsError, match="no such tenant file"):
        read_tenant_file(tmp_path / "nope.toml")


def test_password_file_and_csv_relative_to_the_tenant_file(tmp_path):
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "invited.csv").write_text(
        "name,address\nAna,ana@c.example\nBen,ben@c.example\n"
    )
    settings = build(
        {
            "service_account.password_file": "pw",
            "mailboxes.invited": [],
            "mailboxes.csv": "invited.csv",
        },
        env={},
        base=tmp_path,
    )
    assert settings.password.reveal() == "from-file"
    assert settings.mailboxes == ("ana@c.example", "ben@c.example")


@pytest.mark.parametrize(
    "text, addresses",
    [
        ("ana@c.example\nben@c.example\n", ("ana@c.example", "ben@c.example")),
        ("email\nana@c.example\n", ("ana@c.example",)),
        ("\ufeffaddress,name\nana@c.example,Ana\n\n", ("ana@c.example",)),
    ],
)
def test_mailbox_csv(tmp_path, text, addresses):
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    assert read_mailbox_csv(path) == addresses


def test_bad_csv_line_is_named(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("address\nana@c.example\nnot an address\n")
    with pytest.raises(
        SettingsError, match="line 3: 'not an address' is not an e-mail address"
    ):
        read_mailbox_csv(path)


def test_ca_bundle_must_be_pem(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate")
    with pytest.raises(SettingsError, match="holds no PEM certificate"):
        build({"network.ca_bundle": str(path)})


def test_aws_secret_reader_is_used(tmp_path):
    calls = []

    def reader(secret_id, region):
        calls.append((secret_id, region))
        return Secret("from-aws")

    settings = build_settings(
        {
            **FILE,
            "service_account.aws_secret_id": "prod/ews",
            "service_account.aws_region": "eu-west-1",
        },
        {},
        {},
        tmp_path,
        aws_reader=reader,
    )
    assert settings.password.reveal() == "from-aws"
    assert calls == [("prod/ews", "eu-west-1")]


@pytest.mark.parametrize(
    "text, resolver",
    [
        ("1.1.1.1", Resolver("1.1.1.1", 53)),
        ("127.0.0.1:5353", Resolver("127.0.0.1", 5353)),
        ("2606:4700::1111", Resolver("2606:4700::1111", 53)),
        ("[::1]:53", Resolver("::1", 53)),
    ],
)
def test_parse_resolver(text, resolver):
    assert parse_resolver(text) == resolver


@pytest.mark.parametrize(
    "values, env, message",
    [
        ({"ews.url": "https://[::1/EWS/Exchange.asmx"}, None, "is not a valid URL"),
        (
            {"ews.url": "https://svc:Hunter2@mail.c.example/EWS/Exchange.asmx"},
            None,
            "holds a user name or password",
        ),
        ({"ews.url": "https://mail.c.example:0/EWS/Exchange.asmx"}, None, "has port 0"),
        (
            {"ews.url": "https://a..b.example/EWS/Exchange.asmx"},
            None,
            "is not a valid host name",
        ),
        (
            {"ews.url": f"https://{'x' * 70}.example/EWS/Exchange.asmx"},
            None,
            "is not a valid host name",
        ),
        (
            {"mailboxes.invited": ["a\x1b[31mb@c.example"]},
            None,
            "holds the control character U+001B",
        ),
        ({"mailboxes.invited": ["ana@x.com;Ana"]}, None, "is not an e-mail address"),
        ({"network.resolvers": []}, None, "network.resolvers is empty"),
        (
            {"organisation": "Contoso\u202e"},
            None,
            "organisation: 'Contoso\\u202e' holds the control character U+202E",
        ),
        (
            {},
            {"EWSREADY_PASSWORD": "x", "EWSREADY_USERNAME": "svc\udcff@c.example"},
            "holds the control character U+DCFF",
        ),
    ],
)
def test_hostile_or_odd_values_are_refused(values, env, message):
    with pytest.raises(SettingsError) as caught:
        build(values, env=env)
    assert message in str(caught.value)


def test_latin1_tenant_file_is_one_line(tmp_path):
    path = tmp_path / "tenant.toml"
    path.write_bytes("organisation = 'Caf\xe9'\n".encode("latin-1"))
    with pytest.raises(SettingsError, match="not UTF-8 text"):
        read_tenant_file(path)


def test_password_file_must_be_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "pw"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match="not a regular file"):
        build({"service_account.password_file": str(fifo)}, env={})


def test_unknown_home_folder(tmp_path):
    with pytest.raises(SettingsError, match="home folder"):
        build({"mailboxes.csv": "~nosuchuser-ewsready/x.csv"})


def test_shell_settings(tmp_path):
    settings = build(
        {
            "shell.url": "https://ex01.contoso.local/PowerShell",
            "shell.username": "audit@c.example",
        },
        env={**ENV, "EWSREADY_SHELL_PASSWORD": "shell-pw"},
    )
    assert settings.shell_url == "https://ex01.contoso.local/PowerShell"
    assert settings.shell_password.reveal() == "shell-pw"
    assert "shell-pw" not in repr(settings)
    assert settings.shell_timeout == 120


@pytest.mark.parametrize(
    "timeout, expected",
    [(15, 15.0), (2.5, 2.5), (0, "shell.timeout = 0 must be above 0 and at most 3600")],
)
def test_shell_timeout(timeout, expected):
    values = {
        "shell.url": "https://ex01.contoso.local/PowerShell",
        "shell.username": "audit@c.example",
        "shell.timeout": timeout,
    }
    env = {**ENV, "EWSREADY_SHELL_PASSWORD": "shell-pw"}
    if isinstance(expected, str):
        with pytest.raises(SettingsError, match=expected):
            build(values, env=env)
    else:
        assert build(values, env=env).shell_timeout == expected


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"shell.username": "a@b.example"},
            "[shell] needs url as well as shell.username",
        ),
        (
            {"shell.url": "http://ex01/PowerShell", "shell.username": "a@b.example"},
            "Basic authentication needs an https URL",
        ),
        ({"shell.url": "https://ex01/PowerShell"}, "shell.username is not set"),
        (
            {"shell.url": "https://ex01/PowerShell", "shell.username": "a@b.example"},
            "no shell password",
        ),
        (
            {"shell.url": "https://ex01/PowerShell", "shell.auth": "credssp"},
            "shell.auth = 'credssp'",
        ),
    ],
)
def test_shell_mistakes(values, message):
    with pytest.raises(SettingsError) as caught:
        build(values)
    assert message in str(caught.value)


SHELL = {
    "shell.url": "https://ex01.contoso.local/PowerShell",
    "shell.username": "audit@c.example",
}
DC = "https://dc01.contoso.local:5986/wsman"


@pytest.mark.parametrize(
    "values, env, username, password, auth",
    [
        # Without an account of its own, [directory] borrows the shell's.
        ({**SHELL, "directory.url": DC}, {}, "audit@c.example", "shell-pw", "basic"),
        (
            {**SHELL, "shell.auth": "ntlm", "directory.url": DC},
            {},
            "audit@c.example",
            "shell-pw",
            "ntlm",
        ),
        (
            {**SHELL, "directory.url": DC, "directory.username": "ad@c.example"},
            {"EWSREADY_DIRECTORY_PASSWORD": "dc-pw"},
            "ad@c.example",
            "dc-pw",
            "basic",
        ),
        (
            {"directory.url": DC, "directory.username": "ad@c.example"},
            {"EWSREADY_DIRECTORY_PASSWORD": "dc-pw"},
            "ad@c.example",
            "dc-pw",
            "basic",
        ),
    ],
)
def test_directory_settings(values, env, username, password, auth):
    settings = build(values, env={**ENV, "EWSREADY_SHELL_PASSWORD": "shell-pw", **env})
    assert settings.directory_url == DC
    assert settings.directory_username == username
    assert settings.directory_password.reveal() == password
    assert settings.directory_auth == auth
    assert password not in repr(settings)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"directory.username": "a@b.example"}, "[directory] needs url"),
        ({"directory.url": DC}, "directory.username is not set"),
        (
            # Its own account needs its own password, never the shell's.
            {**SHELL, "directory.url": DC, "directory.username": "ad@c.example"},
            "no directory password: set EWSREADY_DIRECTORY_PASSWORD",
        ),
        (
            {"directory.url": "http://dc01/wsman", "directory.username": "a@b.example"},
            "directory.url: Basic authentication needs an https URL",
        ),
    ],
)
def test_directory_mistakes(values, message):
    with pytest.raises(SettingsError) as caught:
        build(values, env={**ENV, "EWSREADY_SHELL_PASSWORD": "shell-pw"})
    assert message in str(caught.value)


PIN = "AB" * 32


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + ":".join(["ab"] * 32),
        "SHA256:" + PIN,
        PIN.lower(),
        "SHA-256: " + " ".join(["Ab"] * 32),
    ],
)
def test_fingerprint_forms(text):
    assert build({"ews.fingerprint": text}).ews_fingerprint == PIN


def test_no_fingerprint_unless_given():
    assert build().ews_fingerprint is None


EXPECTED = "expected 'sha256:' and 32 hex pairs, e.g. 'sha256:AB:CD:...:EF'"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", f"ews.fingerprint = '' is not a SHA-256 fingerprint; {EXPECTED}"),
        (
            "sha256:" + "AB" * 31,
            f"ews.fingerprint = 'sha256:{'AB' * 31}' is not a SHA-256 fingerprint",
        ),
        (
            "sha256:" + "GG" * 32,
            f"ews.fingerprint = 'sha256:{'GG' * 32}' is not a SHA-256 fingerprint",
        ),
        (
            "CD" * 20,
            f"ews.fingerprint = '{'CD' * 20}' looks like the SHA-1 thumbprint "
            "Get-ExchangeCertificate shows; the pin is the certificate's SHA-256: "
            + EXPECTED,
        ),
        (
            "sha1:" + "CD" * 20,
            f"ews.fingerprint = 'sha1:{'CD' * 20}': SHA-1 fingerprints are not "
            "accepted, only SHA-256",
        ),
        ("sha256:AB\nCD", "ews.fingerprint: 'sha256:AB\\nCD' holds the control"),
    ],
)
def test_malformed_fingerprints_name_the_setting(text, message):
    with pytest.raises(SettingsError) as caught:
        build({"ews.fingerprint": text})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_malformed_fingerprint_stops_the_audit_in_one_line(tmp_path):
    from tests.audits import run_audit

    tenant = tmp_path / "tenant.toml"
    tenant.write_text(
        f'[ews]\nurl = "{URL}"\nfingerprint = "sha256:12:34"\n'
        '[service_account]\nusername = "svc@contoso.example"\n',
        encoding="utf-8",
    )
    run = run_audit(tmp_path, f"--tenant={tenant}", env=ENV)

    assert run.returncode == 4
    assert (
        f"{tenant}: ews.fingerprint = 'sha256:12:34' is not a SHA-256 fingerprint; "
        f"{EXPECTED}"
    ) in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.run_dir is None  # nothing was audited


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"mailboxes.invited": []},
            "mailboxes.invited is empty; expected at least one invited address "
            "(mailboxes.invited, mailboxes.csv or --mailbox=ADDRESS)",
        ),
        (
            {"mailboxes.invited": [], "mailboxes.csv": "empty.csv"},
            "empty.csv names no address; expected at least one invited address",
        ),
        (
            {"mailboxes.invited": None},
            "no invited mailbox: mailboxes.invited is not set; expected at least one",
        ),
    ],
)
def test_no_invited_mailbox_is_a_settings_mistake(tmp_path, values, message):
    (tmp_path / "empty.csv").write_text("address\n", encoding="utf-8")
    file_values = {**FILE, **values}
    file_values = {k: v for k, v in file_values.items() if v is not None}
    with pytest.raises(SettingsError) as caught:
        build_settings(file_values, ENV, {}, tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    # A mailbox on the command line is enough.
    settings = build_settings(
        file_values, ENV, {"mailboxes": ("b@c.example",)}, tmp_path
    )
    assert settings.mailboxes == ("b@c.example",)


def test_an_empty_invited_list_stops_the_audit_in_one_line(tmp_path):
    from tests.audits import run_audit

    tenant = tmp_path / "tenant.toml"
    tenant.write_text(
        f'[ews]\nurl = "{URL}"\n[service_account]\nusername = "svc@contoso.example"\n'
        "[mailboxes]\ninvited = []\n",
        encoding="utf-8",
    )
    run = run_audit(tmp_path, f"--tenant={tenant}", env=ENV)

    assert run.returncode == 4
    assert "mailboxes.invited is empty" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.run_dir is None


# --- an offline audit (--from-export) -------------------------------------------------

MANIFEST = {"service_account": "svc-calendar@contoso.example", "mailbox_filter": None}


def offline_settings(manifest=MANIFEST, cli=None, env=None):
    from ewsready.settings import export_settings

    return export_settings(Path("/exports/contoso"), manifest, cli or {}, env or {})


def test_an_export_names_its_service_account_and_assumes_impersonation():
    settings = offline_settings()
    assert settings.username == "svc-calendar@contoso.example"
    assert settings.access == "impersonation"
    assert settings.access_assumed is True
    assert settings.offline is True
    assert settings.mailboxes == ()


@pytest.mark.parametrize(
    "cli, env",
    [
        ({"service_account.username": "SVC-Calendar@contoso.example"}, {}),
        ({}, {"EWSREADY_USERNAME": "svc-calendar@contoso.example"}),
    ],
)
def test_a_service_account_that_agrees_with_the_manifest(cli, env):
    assert offline_settings(cli=cli, env=env).username.casefold() == (
        "svc-calendar@contoso.example"
    )


@pytest.mark.parametrize(
    "cli, env, source",
    [
        (
            {"service_account.username": "other@contoso.example"},
            {},
            "--service-account",
        ),
        ({}, {"EWSREADY_USERNAME": "other@contoso.example"}, "EWSREADY_USERNAME"),
    ],
)
def test_a_service_account_that_contradicts_the_manifest(cli, env, source):
    with pytest.raises(SettingsError) as caught:
        offline_settings(cli=cli, env=env)
    assert str(caught.value) == (
        f"{source}=other@contoso.example contradicts the export: its manifest.json "
        "names the service account svc-calendar@contoso.example (collect.ps1 "
        "-ServiceAccount)"
    )


def test_without_a_manifest_the_command_line_names_the_account():
    settings = offline_settings(
        {}, cli={"service_account.username": "svc@contoso.example"}
    )
    assert settings.username == "svc@contoso.example"
    assert offline_settings({}).username == ""


@pytest.mark.parametrize(
    "cli, env, access",
    [
        ({"ews.access": "delegate"}, {}, "delegate"),
        ({}, {"EWSREADY_ACCESS": "delegate"}, "delegate"),
        (
            {"ews.access": "impersonation"},
            {"EWSREADY_ACCESS": "delegate"},
            "impersonation",
        ),
    ],
)
def test_the_access_mode_of_an_offline_audit(cli, env, access):
    settings = offline_settings(cli=cli, env=env)
    assert (settings.access, settings.access_assumed) == (access, False)


def test_a_wrong_access_mode_in_the_environment_is_named():
    with pytest.raises(SettingsError, match="EWSREADY_ACCESS = 'owner' is not"):
        offline_settings(env={"EWSREADY_ACCESS": "owner"})


def test_target_mailboxes_of_an_offline_audit():
    limited = {
        **MANIFEST,
        "mailbox_filter": ["ann@contoso.example", "bo@contoso.example"],
    }
    assert offline_settings(limited).mailboxes == (
        "ann@contoso.example",
        "bo@contoso.example",
    )
    chosen = offline_settings(limited, cli={"mailboxes": ("ANN@contoso.example",)})
    assert chosen.mailboxes == ("ANN@contoso.example",)
    assert offline_settings(cli={"mailboxes": ("zoe@contoso.example",)}).mailboxes == (
        "zoe@contoso.example",
    )
    with pytest.raises(SettingsError) as caught:
        offline_settings(limited, cli={"mailboxes": ("zoe@contoso.example",)})
    assert str(caught.value) == (
        "--mailbox=zoe@contoso.example contradicts the export: collect.ps1 read only "
        "the 2 mailbox(es) given to -Mailbox (ann@contoso.example, bo@contoso.example)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:S3cretLeak@mail.contoso.com:99999/EWS/Exchange.asmx",
        "ftp://user:S3cretLeak@mail.contoso.com/EWS/Exchange.asmx",
        "https://user:S3cret\x01Leak@mail.contoso.com/EWS/Exchange.asmx",
        "https://u:S3cretLeak@[::1/EWS/Exchange.asmx",
        "https://S3cretLeak@mail.contoso.com/EWS/Exchange.asmx",
        "https://svc:pa/S3cretLeak@127.0.0.1/EWS/Exchange.asmx",
        "https://svc:pa?S3cretLeak@127.0.0.1/EWS/Exchange.asmx",
        "https:///svc:S3cretLeak@mail.contoso.com/EWS/Exchange.asmx",
        "https://svc:2024#S3cretLeak@127.0.0.1/EWS/Exchange.asmx",
    ],
)
def test_a_password_in_a_url_is_never_echoed(url):
    with pytest.raises(SettingsError) as caught:
        build({"ews.url": url})
    message = str(caught.value)
    assert "S3cret" not in message
    assert message == (
        "ews.url: the URL holds a user name or password; give the account in "
        "service_account.username and the password through EWSREADY_PASSWORD"
    )


def test_a_password_in_the_shell_url_names_the_shell_settings():
    with pytest.raises(SettingsError) as caught:
        build({**SHELL, "shell.url": "ftp://u:ShellPwLeak@ex01/PowerShell"})
    assert "ShellPwLeak" not in str(caught.value)
    assert "shell.username" in str(caught.value)
    assert "EWSREADY_SHELL_PASSWORD" in str(caught.value)


@pytest.mark.parametrize("key", ["mailboxes.csv", "network.ca_bundle"])
def test_a_fifo_is_refused_not_waited_on(tmp_path, key):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SettingsError, match=f"^{key} .*: not a regular file$"):
        build({key: str(fifo)})


@pytest.mark.parametrize(
    "key", ["mailboxes.csv", "network.ca_bundle", "service_account.password_file"]
)
def test_a_device_is_refused_not_read_without_end(key):
    env = {} if key == "service_account.password_file" else ENV
    with pytest.raises(SettingsError, match="not a regular file"):
        build({key: "/dev/zero"}, env=env)


def test_an_oversized_password_file_is_refused(tmp_path):
    big = tmp_path / "pw"
    big.write_bytes(b"x" * 70_000)
    with pytest.raises(SettingsError, match="more than the 65,536 expected"):
        build({"service_account.password_file": str(big)}, env={})


@pytest.mark.parametrize(
    "values, env, message",
    [
        (
            {},
            {"EWSREADY_PASSWORD": "Pw\u20acuro"},
            "the service account's password: the password holds a character outside "
            "Latin-1",
        ),
        (
            SHELL,
            {**ENV, "EWSREADY_SHELL_PASSWORD": "Sh\u20acll"},
            "the [shell] account's password: the password holds a character outside "
            "Latin-1",
        ),
        (
            {"service_account.username": "a:b@contoso.example"},
            ENV,
            "service_account.username = 'a:b@contoso.example' holds ':'",
        ),
        (
            {"service_account.username": "\u0142ukasz@contoso.example"},
            ENV,
            "service_account.username = '\u0142ukasz@contoso.example' holds a "
            "character outside Latin-1",
        ),
    ],
)
def test_what_basic_authentication_cannot_send(values, env, message):
    with pytest.raises(SettingsError) as caught:
        build(values, env=env)
    assert message in str(caught.value)
    assert "\u20ac" not in str(caught.value)


def test_ntlm_carries_any_password():
    settings = build(
        {**SHELL, "shell.auth": "ntlm"},
        env={**ENV, "EWSREADY_SHELL_PASSWORD": "Sh\u20acll"},
    )
    assert settings.shell_password.reveal() == "Sh\u20acll"


def test_a_fragment_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as caught:
        build({"ews.url": "https://mail.contoso.com/EWS/Exchange.asmx#S3cret"})
    assert "S3cret" not in str(caught.value) and "fragment" in str(caught.value)
