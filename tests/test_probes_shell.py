import pytest

from ewsready.probes.shell import (
    LiveShell,
    ReadOnlyViolation,
    ShellTarget,
    check_read_only,
)
from ewsready.psobjects import Cmdlet, ErrorRecord, ShellError, pipeline
from ewsready.secret import Secret
from fixtures.audit import lab_settings, lab_shell
from lab import Lab, load_scenario


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
