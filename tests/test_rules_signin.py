"""Rules for basic_auth, logon and version."""

import datetime as dt

import pytest

from ewsready.facts import Blocked, HttpAnswer, LogonFacts, Unavailable
from ewsready.findings import Severity
from ewsready.rules import basic_auth, logon, version

EWS = "https://mail.contoso.example/EWS/Exchange.asmx"
TODAY = dt.date(2026, 12, 4)


@pytest.mark.parametrize(
    "schemes, sentence",
    [
        (("Negotiate", "NTLM", "Basic"), None),
        (("basic",), None),
        (
            ("Negotiate", "NTLM"),
            f"{EWS} does not offer Basic authentication (offered: Negotiate, NTLM); "
            "this is not a wrong password.",
        ),
        (
            (),
            f"{EWS} does not offer Basic authentication (offered: none); this is not "
            "a wrong password.",
        ),
    ],
)
def test_basic_offered(schemes, sentence):
    findings = basic_auth.basic_offered(
        HttpAnswer(EWS, "GET", 401, auth_schemes=schemes)
    )
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])


def _vdir(name: str, basic: bool | None):
    from ewsready.shellfacts import VirtualDirectoryInfo

    return VirtualDirectoryInfo(
        f"{name}\\EWS (Default Web Site)", name, basic, True, None, EWS
    )


@pytest.mark.parametrize(
    "directories, fix",
    [
        (None, "basic_not_offered"),
        (Unavailable("no [shell] settings"), "basic_not_offered"),
        ([], "basic_not_offered"),
        ([_vdir("EX01", True), _vdir("EX02", False)], "basic_not_offered"),
        ([_vdir("EX01", True), _vdir("EX02", None)], "basic_not_offered"),
        ([_vdir("EX01", True), _vdir("EX02", True)], "basic_stripped_in_front"),
    ],
)
def test_basic_not_offered_although_configured_points_in_front(directories, fix):
    answer = HttpAnswer(EWS, "GET", 401, auth_schemes=("Negotiate", "NTLM"))
    (finding,) = basic_auth.basic_offered(answer, directories)
    assert finding.fix == fix
    assert finding.values == {"host": "mail.contoso.example"}


def test_basic_unknown_when_no_challenge():
    [finding] = basic_auth.basic_offered(HttpAnswer(EWS, "GET", 200, "text/html"))
    assert finding.severity == Severity.UNKNOWN


@pytest.mark.parametrize(
    "facts, fix, sentence",
    [
        (LogonFacts(EWS, "svc@contoso.example", True, 200), None, None),
        (
            LogonFacts(EWS, "svc@contoso.example", False, 401, "Unauthorized"),
            "logon_rejected",
            f"svc@contoso.example was refused at {EWS} (HTTP 401) although Basic is "
            "offered: "
            "the password is wrong or expired, or the account is locked or disabled.",
        ),
        (
            LogonFacts(EWS, "svc@contoso.example", False, None, "ErrorServerBusy"),
            "server_busy",
            f"{EWS} kept answering ErrorServerBusy to svc@contoso.example beyond the "
            "wait budget.",
        ),
        (
            LogonFacts(
                EWS,
                "svc@contoso.example",
                False,
                None,
                "NoAnswer",
                f"EWS at {EWS} accepted the connection but sent no answer within 2 s",
            ),
            "ews_answer_unusable",
            "The sign-in of svc@contoso.example did not complete: EWS at "
            f"{EWS} accepted the connection but sent no answer within 2 s.",
        ),
        (
            LogonFacts(
                EWS,
                "svc@contoso.example",
                False,
                None,
                "ServiceUnavailable",
                f"EWS at {EWS} kept answering HTTP 503 Service Unavailable beyond the "
                "busy budget of 60 s (it last asked for a back-off of 10 s)",
            ),
            "service_unavailable",
            "The sign-in of svc@contoso.example did not complete: EWS at "
            f"{EWS} kept answering HTTP 503 Service Unavailable beyond the busy budget "
            "of 60 s (it last asked for a back-off of 10 s).",
        ),
        (
            LogonFacts(
                EWS, "svc@contoso.example", False, None, "TransportError", "reset"
            ),
            "logon_failed",
            f"The sign-in of svc@contoso.example at {EWS} did not complete: "
            "TransportError.",
        ),
    ],
)
def test_logon(facts, fix, sentence):
    findings = logon.service_account_logs_on(facts)
    assert [(f.fix, f.sentence) for f in findings] == (
        [(fix, sentence)] if sentence else []
    )


NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def ad_user(**changes):
    from ewsready.shellfacts import DirectoryAccount

    base = dict(
        name="svc@contoso.example",
        enabled=True,
        locked=False,
        password_never_expires=False,
        password_expired=False,
        password_last_set=None,
        password_expires=NOW + dt.timedelta(days=30),
        account_expires=None,
    )
    return DirectoryAccount(**{**base, **changes})


@pytest.mark.parametrize(
    "directory, fix, reason",
    [
        (
            [ad_user(password_expired=True, password_expires=NOW - dt.timedelta(1))],
            "password_expired",
            "Active Directory shows the password expired on 2026-12-03 12:00 UTC.",
        ),
        (
            [ad_user(locked=True)],
            "account_locked",
            "Active Directory shows the account locked out.",
        ),
        (
            [ad_user(enabled=False)],
            "account_disabled",
            "Active Directory shows the account disabled.",
        ),
        (
            [ad_user()],
            "password_wrong",
            "Active Directory shows the account enabled, not locked and its password "
            "current, so the password given is wrong.",
        ),
        (
            # Not read: the general sentence stays.
            Unavailable("no domain controller is configured"),
            "logon_rejected",
            "the password is wrong or expired, or the account is locked or disabled.",
        ),
    ],
)
def test_a_refused_logon_names_the_directorys_reason(directory, fix, reason):
    facts = LogonFacts(EWS, "svc@contoso.example", False, 401, "Unauthorized")
    (finding,) = logon.service_account_logs_on(facts, directory, NOW)
    assert finding.fix == fix
    assert finding.sentence.endswith("although Basic is offered: " + reason)


def signed_in(build: str) -> LogonFacts:
    return LogonFacts(EWS, "svc@contoso.example", True, 200, server_build=build)


@pytest.mark.parametrize(
    "build, sentence",
    [
        (
            "14.3.123.4",
            "Exchange 2010 SP3 (build 14.3.123.4) is below the Exchange 2013 minimum.",
        ),
        (
            "8.3.83.6",
            "Exchange 2007 SP3 (build 8.3.83.6) is below the Exchange 2013 minimum.",
        ),
        ("15.0.1497.48", None),
        ("15.2.2562.46", None),
    ],
)
def test_at_least_2013(build, sentence):
    findings = version.at_least_2013(signed_in(build))
    assert [f.sentence for f in findings] == ([sentence] if sentence else [])


@pytest.mark.parametrize(
    "build, severity, sentence",
    [
        ("15.2.2562.46", None, None),
        (
            "15.1.2507.39",
            Severity.WARN,
            "Exchange 2016 CU23 (build 15.1.2507.39) has been out of support since "
            "2025-10-14.",
        ),
        (
            "15.0.1497.48",
            Severity.WARN,
            "Exchange 2013 CU23 (build 15.0.1497.48) has been out of support since "
            "2023-04-11.",
        ),
        (
            "15.2.1748.49",
            Severity.WARN,
            "Exchange 2019 CU15 (build 15.2.1748.49) has been out of support since "
            "2025-10-14.",
        ),
        (
            "15.2.2562.17",
            Severity.WARN,
            "Exchange SE RTM (build 15.2.2562.17) is behind Exchange SE RTM Aug26SU "
            "(15.2.2562.46, released "
            "2026-08-11); Subscription Edition is supported only on current updates.",
        ),
        (
            "15.2.2562.45",
            None,
            None,
        ),  # Jul26SU: the newer update is under 60 days old... or not
        ("15.2.9999.1", None, None),  # newer than the table
    ],
)
def test_build_supported(build, severity, sentence):
    findings = version.build_supported(
        signed_in(build),
        today=dt.date(2026, 9, 1) if build.endswith("2562.45") else TODAY,
    )
    assert [(f.severity, f.sentence) for f in findings] == (
        [(severity, sentence)] if sentence else []
    )


def test_version_blocked_by_logon():
    [finding] = version.at_least_2013(
        Blocked("svc could not sign in (Unauthorized)", "logon")
    )
    assert finding.severity == Severity.BLOCKED
    assert finding.sentence == "Blocked by logon: svc could not sign in (Unauthorized)"


def test_garbled_version_could_not_evaluate():
    [finding] = version.at_least_2013(signed_in("fifteen"))
    assert finding.severity == Severity.UNKNOWN
