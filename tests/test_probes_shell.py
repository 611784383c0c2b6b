import pytest

from ewsready.probes.shell import (
    LiveShell,
    ReadOnlyViolation,
    ShellTarget,
    check_read_only,
)
from ewsready.psobjects import Cmdlet, pipeline
from ewsready.secret import Secret


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
