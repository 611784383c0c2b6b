import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Iterator

import pytest

from ewsready.probes.shell import (
    LiveShell,
    ReadOnlyViolation,
    ShellTarget,
    check_read_only,
)
from ewsready.psobjects import (
    Cmdlet,
    ErrorRecord,
    ShellError,
    ShellSessionError,
    pipeline,
)
from ewsready.secret import Secret
from fixtures.audit import lab_settings, lab_shell
from lab import Lab, load_scenario
from lab.scenario import LabWinrm


@pytest.mark.parametrize(
    "names, allowed",
    [
        (("Get-Mailbox",), True),
        (("Get-Mailbox", "Get-MailboxFolderStatistics"), True),
        (("Test-ServiceHealth",), True),
        (("Set-Mailbox",), False),
        (("Get-Mailbox", "Set-Mailbox"), False),
        (("Get-Mailbox;Remove-Mailbox",), False),
        (("Get-Mailbox | Remove-Mailbox",), False),
        (("Add-MailboxFolderPermission",), False),
        (("Invoke-Expression",), False),
    ],
)
def test_only_read_cmdlets_leave_the_process(names, allowed):
    commands = pipeline(*names)
    if allowed:
        check_read_only(commands)
    else:
        with pytest.raises(ReadOnlyViolation):
            check_read_only(commands)


def test_a_refused_pipeline_never_opens_a_session():
    shell = LiveShell(ShellTarget("https://127.0.0.1:9/PowerShell", "a", Secret("p")))
    with pytest.raises(ReadOnlyViolation):
        shell.run((Cmdlet("Remove-Mailbox", {"Identity": "x"}),))
    assert shell.pipelines == 0 and shell._pool is None


def test_basic_over_http_is_refused():
    with pytest.raises(ValueError, match="only over https"):
        LiveShell(ShellTarget("http://ex01/PowerShell", "a", Secret("p"), auth="basic"))


def test_exchange_multi_valued_properties_become_tuples():
    from pypsrp.complex_objects import GenericComplexObject

    from ewsready.probes.shell import convert

    value = GenericComplexObject()
    value.property_sets = [
        "<LST><S>SMTP:ana@contoso.example</S><S>smtp:a_x005F_b@contoso.example</S>"
        "<Obj><ToString>mail.contoso.example</ToString></Obj><Nil /></LST>"
    ]
    assert convert(value) == (
        "SMTP:ana@contoso.example",
        "smtp:a_b@contoso.example",
        "mail.contoso.example",
    )


def test_enums_read_as_exchange_prints_them():
    from pypsrp.complex_objects import GenericComplexObject

    from ewsready.probes.shell import convert

    value = GenericComplexObject()
    value.types = ["Microsoft.Exchange.AllowedServices", "System.Enum", "System.Object"]
    value.to_string = "IIS, SMTP"
    value.property_sets = [24]
    assert convert(value) == "IIS, SMTP"


# --- error records ------------------------------------------------------------------


def test_pypsrp_error_records_become_typed_records():
    from pypsrp.complex_objects import ErrorRecord as PypsrpRecord

    from ewsready.probes.shell import error_record

    record = PypsrpRecord()
    record._to_string = "The mailbox database 'DB02' is dismounted.\r\nMore detail."
    record.target_object = "contoso.local/Users/Chloé Martin"
    record.reason = "MailboxUnavailableException"
    record.category = 22
    record.activity = "Get-MailboxFolderStatistics"
    record.fq_error = "[Server=ex01] 5DC2A1B9,GetMailboxFolderStatistics"

    assert error_record(record) == ErrorRecord(
        message="The mailbox database 'DB02' is dismounted.",
        target="contoso.local/Users/Chloé Martin",
        reason="MailboxUnavailableException",
        category="ReadError",
        activity="Get-MailboxFolderStatistics",
        error_id="[Server=ex01] 5DC2A1B9,GetMailboxFolderStatistics",
    )
    # Without a TargetObject, CategoryInfo's TargetName names the object.
    record.target_object, record.target_name = None, "EX02"
    assert error_record(record).target == "EX02"


def test_a_live_pipeline_returns_its_error_records_with_its_output():
    every = Cmdlet("Get-Mailbox", {"ResultSize": "Unlimited"})
    statistics = Cmdlet("Get-MailboxFolderStatistics", {"FolderScope": "Calendar"})
    with Lab(load_scenario("mailbox_unreadable")) as lab:
        shell = lab_shell(lab, lab_settings(lab))
        try:
            output = shell.read((every, statistics))
            with pytest.raises(ShellError) as caught:
                shell.run((every, statistics))
        finally:
            shell.close()

    owners = {str(o["Identity"]).partition("\\")[0] for o in output.objects}
    assert "ana.lopez@contoso.example" in owners
    assert "chloe.martin@contoso.example" not in owners
    (error,) = output.errors
    assert error.target == "contoso.local/Users/Chloé Martin"
    assert (error.reason, error.category, error.activity) == (
        "MailboxUnavailableException",
        "ReadError",
        "Get-MailboxFolderStatistics",
    )
    assert error.message == (
        "The mailbox database 'DB02' that holds this mailbox is dismounted."
    )
    # run() gives output alone, so it refuses to drop the errors silently.
    assert str(caught.value) == (
        "Get-Mailbox | Get-MailboxFolderStatistics reported an error: "
        "Get-MailboxFolderStatistics failed for contoso.local/Users/Chloé Martin: "
        "The mailbox database 'DB02' that holds this mailbox is dismounted."
    )


# --- a session that breaks ----------------------------------------------------------


@contextlib.contextmanager
def live_shell(winrm: LabWinrm, stall: float = 10.0) -> Iterator[tuple[Lab, LiveShell]]:
    """The audit's live shell on a lab whose remote PowerShell breaks as told."""
    scenario = dataclasses.replace(load_scenario("healthy"), winrm=winrm)
    with Lab(scenario) as lab:
        settings = dataclasses.replace(lab_settings(lab), shell_timeout=stall)
        shell = lab_shell(lab, settings)
        try:
            yield lab, shell
        finally:
            shell.close()


def test_a_wsman_fault_part_way_is_a_failed_read_and_the_session_goes_on():
    with live_shell(LabWinrm(fault_in="Get-Mailbox", fault_after=2)) as (lab, shell):
        with pytest.raises(ShellSessionError) as caught:
            shell.read(pipeline("Get-Mailbox"))
        servers = shell.read(pipeline("Get-ExchangeServer"))
        outcomes = [c.outcome for c in lab.shell_log]

    assert re.fullmatch(
        r"the PowerShell session at https://ex01\.contoso\.local:\d+/PowerShell "
        r"answered Get-Mailbox after 2 objects with WSMan fault 2147500037: The WSMan "
        r"provider host process did not return a proper response\. A provider in the "
        r"host process may have behaved improperly",
        str(caught.value),
    )
    assert len(servers.objects) == 1
    assert outcomes == ["Faulted", "Completed"]


def test_a_pipeline_that_fails_after_some_output_is_not_taken_as_complete():
    breaks = LabWinrm(fault_in="Get-Mailbox", fault_after=2, fault_kind="psrp")
    with live_shell(breaks) as (lab, shell):
        with pytest.raises(ShellError) as caught:
            shell.read(pipeline("Get-Mailbox"))
        outcomes = [c.outcome for c in lab.shell_log]

    assert not isinstance(caught.value, ShellSessionError)
    assert str(caught.value) == (
        "Get-Mailbox: The simulated server failed while running Get-Mailbox: the "
        "scenario breaks this pipeline (after 2 objects)"
    )
    assert outcomes == ["Failed"]


def test_a_held_receive_gives_the_session_up_once_and_leaves_no_thread_behind():
    before = set(threading.enumerate())
    held = LabWinrm(hold_in="Get-ExchangeServer")
    with live_shell(held, stall=1.0) as (lab, shell):
        started = time.monotonic()
        with pytest.raises(ShellSessionError) as first:
            shell.read(pipeline("Get-ExchangeServer"))
        waited = time.monotonic() - started

        lab.clear_log()
        started = time.monotonic()
        with pytest.raises(ShellSessionError) as then:
            shell.read(pipeline("Get-Mailbox"))
        again = time.monotonic() - started
        time.sleep(4)  # past the held request's own timeout, when pypsrp retries it
        sent = [(r.operation, r.status) for r in lab.log]

    assert 1.0 <= waited < 4.0
    assert re.fullmatch(
        r"the PowerShell session at https://ex01\.contoso\.local:\d+/PowerShell "
        r"stopped answering after 1 s during Get-ExchangeServer",
        str(first.value),
    )
    # Given up for the run: the next read says why at once and sends nothing, and
    # the held Receive is not sent again.
    assert str(then.value) == str(first.value) and again < 0.5
    assert sent == []
    # Once the lab stops, no thread (the lab's or the audit's) is left waiting.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(threading.enumerate()) - before:
        time.sleep(0.1)
    assert set(threading.enumerate()) - before == set()


def test_a_reference_bomb_in_an_answer_is_refused_quickly():
    import time

    from ewsready.probes.shell import TooManyValues, convert

    # pypsrp resolves <Ref>s to shared objects: ten references to ten references...
    shared: object = ["abcdefghij"] * 10
    for _ in range(9):
        shared = [shared] * 10
    started = time.monotonic()
    with pytest.raises(TooManyValues, match="more than 1,000,000 values"):
        convert(shared)
    assert time.monotonic() - started < 10
    assert convert([["a"] * 10] * 10) == (("a",) * 10,) * 10
