"""The audit only reads: every request the lab received during a full audit."""

from collections import Counter

import pytest

from lab import Lab, load_scenario
from tests.audits import lab_collector

READ_OPERATIONS = {"ConvertId", "ResolveNames", "GetFolder", "FindItem", "GetItem"}


@pytest.mark.parametrize("name", ["contoso", "delegate_reviewer", "owa_url"])
def test_a_full_audit_sends_only_read_operations(name):
    with Lab(load_scenario(name)) as lab:
        collector = lab_collector(lab)
        try:
            collector.exchange_servers()
            collector.ews_directories()
            collector.exchange_certificates()
            collector.reachability()
            collector.certificates()
            collector.url()
            collector.logon()
            collector.addresses()
            collector.mailboxes()
        finally:
            collector.close()
        log = list(lab.log)
        shell = list(lab.shell_log)

    ews = [e for e in log if e.path.casefold().startswith("/ews/")]
    operations = Counter(entry.operation for entry in ews if entry.operation)
    assert operations, "the audit reached EWS"
    assert set(operations) <= READ_OPERATIONS
    wsman = {e.operation for e in log if e.path.casefold() in ("/powershell", "/wsman")}
    assert wsman <= {"Create", "Command", "Receive", "Signal", "Delete"}
    assert {entry.method for entry in log} <= {"GET", "POST"}
    assert shell, "the audit read Exchange's configuration"
    for call in shell:
        assert all(name.startswith(("Get-", "Test-")) for name in call.commands), call
